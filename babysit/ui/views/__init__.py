"""The dashboard's pages, one module each with a ``render()``, and how they link to each other.

``st.session_state`` keeps only selections (which run is open, which runs are compared); the
``run`` query parameter makes a run's page a link one can share.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import streamlit as st

from babysit.errors import BabysitError

#: url path -> (title, icon)
PAGES = {"runs": ("Runs", "📋"), "run": ("Run", "🍼"), "compare": ("Compare", "📈"),
         "lineage": ("Lineage", "🌳"), "study": ("Studies", "🐟")}
OPEN_RUN = "open_run"           # session_state key: id of the run the Run page shows
COMPARE_RUNS = "compare_runs"   # session_state key: ids the Compare page shows


def page(name: str) -> Any:
    """The st.Page for ``name`` ("runs", "run", "compare", "lineage", "study").

    Pages are identified by url path, so a page made here matches the one in the router.
    """
    from babysit.ui.views import compare, lineage, run, runs, study

    render = {"runs": runs.render, "run": run.render, "compare": compare.render,
              "lineage": lineage.render, "study": study.render}[name]
    title, icon = PAGES[name]
    return st.Page(render, title=title, icon=icon, url_path=name, default=name == "runs")


def all_pages() -> list[Any]:
    return [page(name) for name in PAGES]


def _as_id(value: Any) -> int | None:
    try:
        return int(str(value).lstrip("#"))
    except (TypeError, ValueError):
        return None


def open_run(run_id: int) -> None:
    """Show ``run_id`` on the Run page (stops this script run)."""
    st.session_state[OPEN_RUN] = int(run_id)
    st.switch_page(page("run"), query_params={"run": str(int(run_id))})


def compare_runs(run_ids: Sequence[int]) -> None:
    st.session_state[COMPARE_RUNS] = [int(i) for i in run_ids]
    st.switch_page(page("compare"))


def selected_run(ids: Sequence[int], live: Sequence[int] = ()) -> int | None:
    """The run to show: ?run=, then the last one opened, $BABYSIT_OPEN_RUN, a live run, the newest."""
    return selected_id(ids, "run", OPEN_RUN, os.environ.get("BABYSIT_OPEN_RUN"), live=live)


def selected_id(ids: Sequence[int], param: str, state_key: str, *more: Any,
              live: Sequence[int] = ()) -> int | None:
    """The id to show of a run or study: ?<param>=, then the last one opened
    (``session_state[state_key]``), then ``more``, then the newest live one, the newest."""
    ids = [int(i) for i in ids]
    for candidate in (st.query_params.get(param), st.session_state.get(state_key), *more):
        found = _as_id(candidate)
        if found in ids:
            return found
    if live:
        return int(max(live))
    return max(ids) if ids else None


def label(row: dict[str, Any]) -> str:
    """How a picker names a run or study: "#id name", nothing that changes while it trains
    (a picker is drawn once per page run; statuses are said where they are redrawn live)."""
    return f"#{int(row['id'])} {row.get('name') or ''}".rstrip()


def choose(what: str, rows: Sequence[dict[str, Any]], current: int | None, param: str,
           state_key: str) -> int | None:
    """A select box of runs or studies, newest first, labelled "#id name"; the choice is kept in
    ``session_state[state_key]`` and ``?<param>=``, so a reload or a shared link shows the same
    one. None when nothing is chosen.

    No status in the labels: the box is drawn by the page's full run, which an open page does
    not repeat, so "paused" there stayed beside a live header saying "running". The page's
    live header says the chosen one's status, the Runs page every run's."""
    ids = sorted((int(r["id"]) for r in rows), reverse=True)
    labels = {int(r["id"]): label(r) for r in rows}
    picked = st.selectbox(what, ids, index=ids.index(current) if current in ids else 0,
                          format_func=lambda i: labels.get(i, f"#{i}"))
    if picked is None:
        return None
    picked = int(picked)
    if st.session_state.get(state_key) != picked or st.query_params.get(param) != str(picked):
        st.session_state[state_key] = picked
        st.query_params[param] = str(picked)
    return picked


def no_store_message() -> None:
    """What a page shows before any run has created the store."""
    from babysit.ui.state import store_location
    from babysit.ui.text import md

    root, _ = store_location()
    st.info(f"No runs yet in {md(root)}. Start one with `babysit demo` (a small demo run and "
            "this dashboard), or add `run = babysit.init(...)` to a training script and "
            "launch it with `babysit run -- python train.py`.")


def store_error(exc: BaseException) -> None:
    from babysit.ui.text import md

    st.error("Cannot read the babysit store: " + md(exc))


def load_runs() -> Any:
    """The runs frame, or None after showing why there is nothing to show."""
    from babysit.ui import state

    if not state.store_exists():
        no_store_message()
        return None
    try:
        df = state.runs()
    except BabysitError as exc:
        store_error(exc)
        return None
    if not len(df):
        no_store_message()
        return None
    return df


def control_access() -> tuple[bool, str]:
    """(may this browser session steer runs?, the note to show where the controls are when not).

    Steering takes the token of the link ``babysit ui`` printed, or the password; every action
    checks again with ``auth.require()`` (a disabled button is only a hint to the browser).
    """
    from babysit.ui import auth

    auth.admit()
    if auth.may_steer():
        return True, ""
    return False, auth.note()
