"""Compare page: several runs overlaid, one panel per chosen metric."""

from __future__ import annotations

from typing import Any

import streamlit as st

from babysit.errors import BabysitError
from babysit.store import LIVE
from babysit.ui import chart, state
from babysit.ui.compare_figures import compare_panels_figure, first_live_step
from babysit.ui.curves import chart_window
from babysit.ui.panels import group_panels, zoom_steps, zoomed
from babysit.ui.text import md
from babysit.ui.views import COMPARE_RUNS, label, load_runs


def _any_live(runs: Any, run_ids: list[int]) -> bool:
    return bool(runs[runs["id"].isin(run_ids)]["status"].isin(LIVE).any())


def live_compare(run_ids: list[int], names: list[str], align: str, log_y: list[str],
                 smoothing: float, live_drawn: bool) -> None:
    """The overlaid curves; a zoom or a pan re-reads that range of every run at full detail
    (on "steps since the fork point", each run's own steps), a double click the whole runs.
    ``live_drawn``: whether one of the runs had a process when the page was drawn (it set the
    redraw pace); when that changes, the page is drawn again at the other pace."""
    zoom_key = f"compare_{align}"
    window = chart_window(chart.zoom("compare_figure", revision=zoom_key))
    steps = zoom_steps(window, None)
    try:
        runs = state.runs()
        if _any_live(runs, run_ids) != live_drawn:
            st.rerun()
        metrics = {i: state.metrics(i, names=names) for i in run_ids}
        starts = {i: first_live_step(df) for i, df in metrics.items()}
        if steps is not None:
            lo, hi = steps
            metrics = {i: state.metrics(i, names=names, x_range=(
                lo + int(starts[i] if align == "fork" else 0),
                hi + int(starts[i] if align == "fork" else 0))) for i in run_ids}
    except BabysitError as exc:
        st.error(f"Cannot read the runs: {md(exc)}")
        return
    figure = compare_panels_figure(metrics, names, runs, align=align, log_y=set(log_y),
                                   smoothing=smoothing, starts=starts)
    figure.update_layout(uirevision=zoom_key)
    zoomed(figure, window if steps is not None else None)
    chart.draw(figure, key="compare_figure", revision=zoom_key)


def render() -> None:
    st.title("Compare")
    runs = load_runs()
    if runs is None:
        return
    ids = sorted((int(i) for i in runs["id"]), reverse=True)
    labels = {int(r["id"]): label(r) for r in runs.to_dict("records")}
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
            names += [n for n in state.metric_names(i) if not str(n).startswith("hp/")]
    except BabysitError as exc:
        st.error(f"Cannot read the runs: {md(exc)}")
        return
    names = [n for _, group in group_panels(set(names)) for n in group]
    if not names:
        st.info("These runs have logged no metrics yet.")
        return
    default = [n for n in names if n == "loss" or n.startswith("val")][:4] or names[:1]
    c1, c2 = st.columns([3, 2])
    chosen_names = c1.multiselect("Metrics (one panel each)", names, default=default,
                                  key="compare_metrics")
    align = c2.radio("align by", ["step", "fork"], key="compare_align", horizontal=True,
                     format_func=lambda a: "step" if a == "step" else "steps since the fork point")
    c3, c4 = st.columns([3, 2])
    log_y = c3.multiselect("log y", chosen_names, key="compare_log_panels")
    smoothing = c4.slider("smoothing", 0.0, 0.99, 0.0, 0.01, key="compare_smoothing")
    # redrawn every 2 s while one of the runs trains, else every 10 s (state.refresh_s)
    live = _any_live(runs, [int(i) for i in chosen])
    st.fragment(live_compare, run_every=state.refresh_s(live))(
        [int(i) for i in chosen], [str(n) for n in chosen_names], str(align),
        [str(n) for n in log_y], float(smoothing), live)
