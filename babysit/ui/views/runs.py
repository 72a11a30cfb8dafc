"""Runs page: every run at a glance; open one, or compare several."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from babysit.errors import BabysitError
from babysit.store import STATUSES
from babysit.ui import actions, state
from babysit.ui.frames import filter_runs
from babysit.ui.text import md
from babysit.ui.views import compare_runs, load_runs, open_run


def render() -> None:
    st.title("Runs")
    df = load_runs()
    if df is None:
        return
    c1, c2 = st.columns(2)
    projects = sorted({p for p in df["project"] if p})
    chosen_projects = c1.multiselect("Project", projects, key="runs_projects")
    chosen_status = c2.multiselect("Status", list(STATUSES), key="runs_status")
    f1, f2, f3, f4 = st.columns([3, 1.4, 1, 1])
    search = f1.text_input("Search name, project or tag", key="runs_search",
                           placeholder="e.g. warmup baseline")
    keys = sorted({k for hp in df["hp"] if isinstance(hp, dict) for k, v in hp.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)})
    hp = f2.selectbox("hyperparameter", [None, *keys], key="runs_hp",
                      format_func=lambda k: "–" if k is None else k)
    low = f3.number_input("from", value=None, format="%g", key="runs_hp_low", disabled=hp is None)
    high = f4.number_input("to", value=None, format="%g", key="runs_hp_high", disabled=hp is None)
    live_table(list(chosen_projects), list(chosen_status), str(search or ""), hp, low, high)


@st.fragment(run_every=state.REFRESH_S)
def live_table(projects: list[str], statuses: list[str], search: str = "",
               hp: str | None = None, low: float | None = None,
               high: float | None = None) -> None:
    """The runs table and its buttons; step, status and heartbeat refresh on their own."""
    try:
        df = state.runs()
    except BabysitError as exc:
        st.error(f"Cannot read the runs: {md(exc)}")
        return
    if projects:
        df = df[df["project"].isin(projects)]
    if statuses:
        df = df[df["status"].isin(statuses)]
    df = filter_runs(df, search, hp=hp, low=low, high=high)
    df = df.sort_values("id", ascending=False)
    ids = [int(i) for i in df["id"]]
    latest, checkpoints = state.runs_summary(ids)      # two queries for all runs
    empty = pd.DataFrame(columns=["day", "metrics"])
    best = {i: actions.best_val(checkpoints.get(i, empty)) for i in ids}
    table = actions.runs_table(df, latest, best)

    bad = table["status"].str.contains("crashed|diverged")
    if bad.any():
        st.warning(f"{int(bad.sum())} run(s) crashed or diverged: "
                   + ", ".join(f"#{i}" for i in table.loc[bad, "id"]))
    event = st.dataframe(
        table, key="runs_table", hide_index=True, width="stretch",
        on_select="rerun", selection_mode="multi-row",
        column_config={
            "id": st.column_config.NumberColumn("id", format="#%d"),
            "loss": st.column_config.NumberColumn("loss", format="%.4g"),
            "lr": st.column_config.NumberColumn("lr", format="%.4g"),
            "momentum": st.column_config.NumberColumn("momentum", format="%.4g"),
        })
    rows = list(event.selection.rows) if event is not None else []
    picked = [int(table.iloc[r]["id"]) for r in rows if r < len(table)]
    st.caption("Select one run to babysit it, or several to compare them.")
    c1, c2, c3, _ = st.columns([1, 1, 1, 3])
    if c1.button("Open run", key="runs_open", disabled=len(picked) != 1):
        open_run(picked[0])
    if c2.button("Compare", key="runs_compare", disabled=len(picked) < 2):
        compare_runs(picked)
    # a run of a study links to its study's page
    study_ids = [int(i) for i in df.loc[df["id"].isin(picked), "study_id"].dropna()]
    if c3.button("Open study", key="runs_open_study",
                 disabled=len(picked) != 1 or not study_ids):
        from babysit.ui.views.study import open_study

        open_study(study_ids[0])

