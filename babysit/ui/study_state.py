"""The Study page's queries: cached for a second, like `babysit.ui.state`, cleared after actions.

Only what the page draws is read: the objective curve of each run (not all its metrics), the
events of a study's runs only when the family tree is shown.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from babysit.ui import state

#: buckets per run's objective curve: the figure draws at most 400 points of each
CURVE_BUCKETS = 500


@st.cache_data(ttl=1, show_spinner=False)
def _studies(root: str, url: str | None) -> pd.DataFrame:
    return state._client(root, url).studies()


@st.cache_data(ttl=1, show_spinner=False)
def _study(root: str, url: str | None, study_id: int) -> Any:
    return state._client(root, url).study(study_id)


@st.cache_data(ttl=1, show_spinner=False)
def _study_runs(root: str, url: str | None, study_id: int) -> pd.DataFrame:
    return state._client(root, url).study_runs(study_id)


@st.cache_data(ttl=1, show_spinner=False)
def _decisions(root: str, url: str | None, study_id: int) -> pd.DataFrame:
    return state._client(root, url).decisions(study_id)


@st.cache_data(ttl=1, show_spinner=False)
def _curve(root: str, url: str | None, run_id: int, name: str) -> pd.DataFrame:
    # the summary pyramid's buckets (each one's first, min, max, last), never the whole
    # history: a study of twenty million-step runs costs what twenty short ones do
    return state._curves().metrics(state._client(root, url).store, run_id, names=[name],
                                   max_points=CURVE_BUCKETS)


@st.cache_data(ttl=1, show_spinner=False)
def _events(root: str, url: str | None, run_ids: tuple[int, ...]) -> pd.DataFrame:
    client = state._client(root, url)
    frames = [client.events(i).assign(run_id=i) for i in run_ids]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["run_id", "step", "day", "time", "kind", "source", "detail"])


def studies() -> pd.DataFrame:
    """All studies (Client.studies()), at most a second old."""
    return _studies(*state.store_location())


def study(study_id: int) -> Any:
    """One study's record (Client.study())."""
    return _study(*state.store_location(), int(study_id))


def study_runs(study_id: int) -> pd.DataFrame:
    """The study's runs: id, name, status, one column per hyperparameter, objective, ..."""
    return _study_runs(*state.store_location(), int(study_id))


def decisions(study_id: int) -> pd.DataFrame:
    """Every autopilot decision of the study (the page filters the pending ones)."""
    return _decisions(*state.store_location(), int(study_id))


def curve(run_id: int, name: str) -> pd.DataFrame:
    """One metric of one run, the objective curve: at most ``CURVE_BUCKETS`` buckets of it
    (every spike kept), read from the summary pyramid whatever the run's length."""
    return _curve(*state.store_location(), int(run_id), str(name))


def events(run_ids: list[int]) -> pd.DataFrame:
    """Events of several runs in one frame, with a ``run_id`` column."""
    return _events(*state.store_location(), tuple(sorted(int(i) for i in run_ids)))


def refresh() -> None:
    """Forget cached results, these and the run pages' (called after every action)."""
    state.refresh()
    for fn in (_studies, _study, _study_runs, _decisions, _curve, _events):
        fn.clear()
