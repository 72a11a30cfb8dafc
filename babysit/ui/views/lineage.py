"""Lineage page: the family tree of forks; pick a node to open that run."""

from __future__ import annotations

from typing import Any

import streamlit as st

from babysit.ui.figures import lineage_figure
from babysit.ui.views import label, load_runs, open_run


def _clicked_run(event: Any) -> int | None:
    try:
        points = event.selection.points
    except AttributeError:
        return None
    for point in points or []:
        data = point.get("customdata")
        if isinstance(data, list | tuple):
            data = data[0] if data else None
        try:
            return int(data)
        except (TypeError, ValueError):
            continue
    return None


def render() -> None:
    st.title("Lineage")
    runs = load_runs()
    if runs is None:
        return
    event = st.plotly_chart(lineage_figure(runs), key="lineage_figure", width="stretch",
                            on_select="rerun", selection_mode="points")
    clicked = _clicked_run(event)
    if clicked is not None:
        open_run(clicked)
    ids = sorted((int(i) for i in runs["id"]), reverse=True)
    labels = {int(r["id"]): label(r) for r in runs.to_dict("records")}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    pick = c1.selectbox("Run", ids, format_func=lambda i: labels[i], key="lineage_pick")
    if c2.button("Open run", key="lineage_open") and pick is not None:
        open_run(int(pick))

