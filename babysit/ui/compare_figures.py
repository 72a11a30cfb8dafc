"""The Compare page's figure: several runs overlaid."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from babysit.ui.fmt import run_label
from babysit.ui.frames import (
    _as_run_id,
    _check_smoothing,
    _MetricTable,
    _points,
    _runs_by_id,
    _XMapper,
    smooth,
)
from babysit.ui.plotting import _RUN_COLORS, _NonFinite, empty_figure
from babysit.ui.text import plot


def compare_figure(
    metrics_by_run: Mapping[Any, pd.DataFrame],
    metric: str,
    runs: pd.DataFrame | None = None,
    *,
    log_y: bool = False,
    smoothing: float = 0.0,
    max_points: int | None = 1500,
) -> go.Figure:
    """One metric of several runs overlaid by step, one legend entry per run with its hp.

    Keys of ``metrics_by_run`` are run ids (looked up in ``runs`` for the label, e.g.
    "#3 lr=0.05 m=0.9") or any label to show as is. Only live rows are drawn; a fork's curve
    starts at the step it forked at. Smoothing draws only the smoothed curves: twenty faint
    raw curves under twenty smoothed ones would hide them.

    >>> df = pd.DataFrame({"step": [0, 1], "name": "loss", "value": [2.0, 1.0], "superseded": False})
    >>> runs = pd.DataFrame({"id": [3], "status": ["running"], "hp": [{"lr": 0.05}]})
    >>> compare_figure({3: df}, "loss", runs).data[0].name
    '#3 lr=0.05'
    """
    weight = _check_smoothing(smoothing)
    by_id = _runs_by_id(runs)
    traces: list[go.Scatter] = []
    marks = _NonFinite()
    axis = _XMapper("step", [], [])
    for key, df in metrics_by_run.items():
        table = _MetricTable.of(df, [metric])
        if table is None or metric not in table.groups:
            continue
        pos = table.groups[metric]
        rows = table.sorted(pos[~table.superseded[pos]])
        if not len(rows):
            continue
        run_id = _as_run_id(key)
        run = by_id.get(run_id) if run_id is not None else None
        label = plot(run_label(run) if run is not None else key)
        status = f" · {plot(run.get('status'))}" if run is not None and run.get("status") else ""
        steps, values, times = table.columns(rows)
        marks.add(label, steps, values, times, axis, max_points, superseded=False)
        if weight > 0:
            values = smooth(values, weight)
        xs, ys = _points(steps, values, times, axis, max_points)
        color = _RUN_COLORS[len(traces) % len(_RUN_COLORS)]
        traces.append(go.Scatter(
            x=xs, y=ys, name=label, mode="lines", line={"color": color, "width": 1.6},
            legendgroup=label,
            hovertemplate=f"{label}{status}<br>{plot(metric)} %{{y:.4g}}<br>step %{{x}}"
                          "<extra></extra>",
        ))
    if not traces:
        return empty_figure(f"No {plot(metric)} yet")
    if marks.x:
        traces.append(marks.trace(top=0.97, yaxis="y2"))
    # One Figure call: plotly validates each add_trace/update_layout on its own.
    return go.Figure(data=traces, layout={
        "yaxis": {"type": "log" if log_y else "linear", "title": {"text": plot(metric)}},
        "yaxis2": {"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True},
        "xaxis": {"title": {"text": "step"}},
        "height": 480, "hovermode": "closest", "uirevision": "compare",
        "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
    })


