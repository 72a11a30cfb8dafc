"""Where the dashboard gets its data: one cached Client per store, short-lived query caches.

The store location comes from ``$BABYSIT_ROOT`` (default ./checkpoints) and
``$BABYSIT_STORE_URL``, as everywhere else in babysit. Queries are cached for a second, so a
page with several charts asks the store once per refresh, and the cache is cleared after every
action so the page shows its effect at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from babysit.client import Client
from babysit.store import DB_NAME, RunRecord
from babysit.ui.curves import CurveCache

#: how often the live parts of a page redraw, in seconds
REFRESH_S = 2
#: the same on the page of a run with no process (finished, stopped, crashed): each redraw
#: costs the browser and the server CPU that a training on the same machine would have used
#: (an open Run page: 18% of a core in Chromium at 2 s with nothing changing), and here
#: nothing changes until the run is started again, which the page notices at this pace
IDLE_REFRESH_S = 10


def refresh_s(live: bool) -> float:
    """How often a run's page redraws: ``REFRESH_S`` while it has a process, else slower."""
    return REFRESH_S if live else IDLE_REFRESH_S


def store_location() -> tuple[str, str | None]:
    """(root folder, store URL or None) from the environment.

    >>> store_location()                     # doctest: +SKIP
    ('/home/me/project/checkpoints', None)
    """
    root = str(Path(os.environ.get("BABYSIT_ROOT") or "checkpoints").resolve())
    return root, os.environ.get("BABYSIT_STORE_URL") or None


def store_exists() -> bool:
    """False for a SQLite store not created yet (no run has ever started here)."""
    root, url = store_location()
    return url is not None or (Path(root) / DB_NAME).exists()


@st.cache_resource(show_spinner=False)
def _client(root: str, url: str | None) -> Client:
    # create=False: a dashboard looks at a store, it never makes an empty one appear. A failure
    # raises and is not cached, so the page opens the store once a run has created it.
    return Client(root, store_url=url, source="ui", create=False)


def client() -> Client:
    """The Client for the configured store (raises StoreError when missing or broken)."""
    return _client(*store_location())


@st.cache_data(ttl=1, show_spinner=False)
def _runs(root: str, url: str | None) -> pd.DataFrame:
    return _client(root, url).runs()


@st.cache_resource(show_spinner=False)
def _curves() -> CurveCache:
    return CurveCache()


@st.cache_data(ttl=1, show_spinner=False)
def _metrics(root: str, url: str | None, run_id: int, branch: int,
             x_range: tuple[int, int] | None = None, names: tuple[str, ...] | None = None
             ) -> pd.DataFrame:
    return _curves().metrics(_client(root, url).store, run_id, branch, x_range=x_range,
                             names=names)


@st.cache_data(ttl=1, show_spinner=False)
def _metric_names(root: str, url: str | None, run_id: int) -> list[str]:
    return _client(root, url).store.metric_names(run_id)


def metric_names(run_id: int) -> list[str]:
    """The names one run has logged, sorted (one small query, no curve read)."""
    return _metric_names(*store_location(), int(run_id))


@st.cache_data(ttl=1, show_spinner=False)
def _events(root: str, url: str | None, run_id: int) -> pd.DataFrame:
    return _client(root, url).events(run_id)


@st.cache_data(ttl=1, show_spinner=False)
def _checkpoints(root: str, url: str | None, run_id: int) -> pd.DataFrame:
    return _client(root, url).checkpoints(run_id)


@st.cache_data(ttl=1, show_spinner=False)
def _effective(root: str, url: str | None, run_id: int) -> dict:
    return dict(_client(root, url).store.get_run(run_id).effective or {})


@st.cache_data(ttl=1, show_spinner=False)
def _latest_loss(root: str, url: str | None, run_id: int) -> float | None:
    return _client(root, url).store.latest_metric(run_id, "loss")


def runs() -> pd.DataFrame:
    """All runs (Client.runs()), at most a second old."""
    return _runs(*store_location())


def metrics(run_id: int, x_range: tuple[int, int] | None = None,
            names: list[str] | None = None) -> pd.DataFrame:
    """The points to draw of one run's curves (``names``: those only), superseded branches
    included (drawn faded): at most ~2,000 buckets per curve over ``x_range`` (steps; None:
    the whole run), each bucket's first, min, max and last kept, so a zoom into a narrow range
    comes back step by step. Re-read only when the run logged something.
    """
    table = runs()
    row = table[table["id"] == int(run_id)]
    branch = int(row["branch"].iloc[0]) if len(row) and "branch" in row else -1
    rng = None if x_range is None else (int(x_range[0]), int(x_range[1]))
    return _metrics(*store_location(), int(run_id), branch, rng,
                    None if names is None else tuple(sorted(str(n) for n in names)))


def events(run_id: int) -> pd.DataFrame:
    return _events(*store_location(), int(run_id))


def checkpoints(run_id: int) -> pd.DataFrame:
    return _checkpoints(*store_location(), int(run_id))


@st.cache_data(ttl=1, show_spinner=False)
def _record(root: str, url: str | None, run_id: int) -> RunRecord:
    return _client(root, url).store.get_run(run_id)


def record(run_id: int) -> RunRecord:
    """One run's full record (config, launch, note, tags), at most a second old."""
    return _record(*store_location(), int(run_id))


def effective(run_id: int) -> dict:
    """What the trainer reports its optimizer uses now: {"lr", "momentum", "step", ...}."""
    return _effective(*store_location(), int(run_id))


def latest_loss(run_id: int) -> float | None:
    return _latest_loss(*store_location(), int(run_id))


@st.cache_data(ttl=1, show_spinner=False)
def _runs_summary(root: str, url: str | None, ids: tuple[int, ...]
                  ) -> tuple[dict[int, float], dict[int, pd.DataFrame]]:
    store = _client(root, url).store
    latest = store.latest_metric_of(ids, "loss")
    by_run: dict[int, list[dict]] = {}
    for k in store.checkpoints_of(ids):
        by_run.setdefault(int(k.run_id), []).append({"day": k.day, "metrics": k.metrics})
    frames = {i: pd.DataFrame(rows, columns=["day", "metrics"]) for i, rows in by_run.items()}
    return latest, frames


def runs_summary(ids: list[int]) -> tuple[dict[int, float], dict[int, pd.DataFrame]]:
    """(latest loss by run, live day checkpoints by run) for the Runs page: two queries for
    every run together, whatever their number."""
    return _runs_summary(*store_location(), tuple(sorted(int(i) for i in ids)))


def refresh() -> None:
    """Forget cached query results: called after an action, so its effect shows at once."""
    for fn in (_runs, _metrics, _metric_names, _events, _checkpoints, _effective, _record, _latest_loss,
               _runs_summary):
        fn.clear()
