"""Compare page: one metric of several runs overlaid."""

from __future__ import annotations

import streamlit as st

from babysit.errors import BabysitError
from babysit.ui import state
from babysit.ui.figures import compare_figure
from babysit.ui.text import md
from babysit.ui.views import COMPARE_RUNS, load_runs


@st.fragment(run_every=state.REFRESH_S)
def live_compare(run_ids: list[int], metric: str, log_y: bool, smoothing: float) -> None:
    try:
        runs = state.runs()
        metrics = {i: state.metrics(i) for i in run_ids}
    except BabysitError as exc:
        st.error(f"Cannot read the runs: {md(exc)}")
        return
    figure = compare_figure(metrics, metric, runs, log_y=log_y, smoothing=smoothing)
    st.plotly_chart(figure, key="compare_figure", width="stretch")


def render() -> None:
    st.title("Compare")
    runs = load_runs()
    if runs is None:
        return
    ids = sorted((int(i) for i in runs["id"]), reverse=True)
    labels = {int(r["id"]): f"#{int(r['id'])} {r['name']} · {r['status']}"
              for r in runs.to_dict("records")}
    default = [i for i in st.session_state.get(COMPARE_RUNS, []) if i in ids] or ids[:3]
    chosen = st.multiselect("Runs", ids, default=default, format_func=lambda i: labels[i],
                            key="compare_select")
    st.session_state[COMPARE_RUNS] = [int(i) for i in chosen]
    if not chosen:
        st.info("Pick one or more runs to compare.")
        return
    names: list[str] = []
    try:
        for i in chosen:
            names += [n for n in state.metrics(i)["name"].unique() if not str(n).startswith("hp/")]
    except BabysitError as exc:
        st.error(f"Cannot read the runs: {md(exc)}")
        return
    names = sorted(set(names), key=lambda n: (n != "loss", n))
    if not names:
        st.info("These runs have logged no metrics yet.")
        return
    c1, c2, c3 = st.columns([2, 1, 2])
    metric = c1.selectbox("Metric", names, key="compare_metric")
    log_y = c2.toggle("log y", key="compare_log_y")
    smoothing = c3.slider("smoothing", 0.0, 0.99, 0.0, 0.01, key="compare_smoothing")
    live_compare([int(i) for i in chosen], str(metric), bool(log_y), float(smoothing))

