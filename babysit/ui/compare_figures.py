"""The Compare page's figure: several runs overlaid."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
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




def first_live_step(metrics: pd.DataFrame | None) -> float:
    """The first step of a run's live branch in ``metrics`` (0 when none): where "steps since
    the fork point" count from.

    >>> first_live_step(pd.DataFrame({"step": [5, 9], "name": "loss", "value": 1.0}))
    5.0
    """
    table = _MetricTable.of(metrics)
    if table is None:
        return 0.0
    live = ~table.superseded & np.isfinite(table.step)
    return float(table.step[live].min()) if live.any() else 0.0


def compare_panels_figure(
    metrics_by_run: Mapping[Any, pd.DataFrame],
    names: Sequence[str],
    runs: pd.DataFrame | None = None,
    *,
    align: str = "step",
    log_y: Collection[str] = (),
    smoothing: float = 0.0,
    max_points: int | None = 1500,
    starts: Mapping[Any, float] | None = None,
) -> go.Figure:
    """Several metrics of several runs: one panel per metric, one colour per run, shared x.

    ``align`` is "step" or "fork" (steps since the run's first step: a fork's curve starts at
    0 beside its parent's). ``starts`` gives each run's first step when the frames hold only a
    zoomed range of steps (default: the first step in each frame). The legend names each run
    ("#3 baseline"); the hover carries its full hyperparameters.

    >>> df = pd.DataFrame({"step": [0, 1, 0, 1], "name": ["loss"] * 2 + ["val_acc"] * 2,
    ...                    "value": [2.0, 1.0, 0.5, 0.6], "superseded": False})
    >>> runs = pd.DataFrame({"id": [3], "name": ["base"], "status": ["running"], "hp": [{"lr": 0.05}]})
    >>> fig = compare_panels_figure({3: df}, ["loss", "val_acc"], runs)
    >>> [t.name for t in fig.data], [a.text for a in fig.layout.annotations]
    (['#3 base', '#3 base'], ['loss', 'val_acc'])
    """
    if align not in ("step", "fork"):
        raise ValueError(f"align must be 'step' or 'fork', got {align!r}")
    weight = _check_smoothing(smoothing)
    by_id = _runs_by_id(runs)
    names = list(dict.fromkeys(names))
    if not names:
        return empty_figure("Pick a metric")
    axis = _XMapper("step", [], [])
    rows = len(names)
    height, gap = 1.0 / rows, (0.3 / rows if rows > 1 else 0.0)
    layout: dict[str, Any] = {
        "height": 60 + 220 * rows, "hovermode": "closest", "uirevision": "compare",
        "margin": {"l": 70, "r": 20, "t": 30, "b": 40}, "annotations": [],
        "legend": {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0.0},
        "xaxis": {"anchor": f"y{rows}" if rows > 1 else "y",
                  "title": {"text": "steps since the fork point" if align == "fork" else "step"}},
    }
    traces: list[dict[str, Any]] = []
    # each run's frame as arrays once, not once per panel
    tables = {key: _MetricTable.of(df, names) for key, df in metrics_by_run.items()}
    for i, metric in enumerate(names):
        yname = "y" if i == 0 else f"y{i + 1}"
        top = 1.0 - i * height
        domain = [max(0.0, top - height + gap / 2), top - gap / 2]
        layout["yaxis" if i == 0 else f"yaxis{i + 1}"] = {
            "domain": domain, "anchor": "x", "type": "log" if metric in log_y else "linear"}
        layout["annotations"].append({
            "text": plot(metric), "x": 0.0, "xref": "paper", "y": domain[1], "yref": "paper",
            "xanchor": "left", "yanchor": "bottom", "showarrow": False,
            "font": {"size": 12}})        # the page's text colour (chart frame)
        for j, (key, table) in enumerate(tables.items()):
            if table is None or metric not in table.groups:
                continue
            live_all = ~table.superseded
            pos = table.groups[metric]
            sel = table.sorted(pos[live_all[pos]])
            if not len(sel):
                continue
            run_id = _as_run_id(key)
            run = by_id.get(run_id) if run_id is not None else None
            name = plot(f"#{run_id} {run.get('name') or ''}".strip()) if run is not None \
                else plot(key)
            hp = plot(run_label(run, max_hps=50).partition(" ")[2]) if run is not None else ""
            steps, values, times = table.columns(sel)
            if align == "fork":
                if starts is not None and key in starts:
                    start = float(starts[key])
                else:
                    start = float(np.nanmin(table.step[live_all])) if live_all.any() else 0.0
                steps = steps - start
            if weight > 0:
                values = smooth(values, weight)
            xs, ys = _points(steps, values, times, axis, max_points)
            color = _RUN_COLORS[j % len(_RUN_COLORS)]
            # a plain dict: go.Figure validates it once; a go.Scatter would be validated,
            # then deep-copied into the figure (a third of the page's time at 20 runs)
            traces.append(dict(
                type="scatter", x=xs, y=ys, xaxis="x", yaxis=yname, name=name,
                legendgroup=name, showlegend=i == 0, mode="lines",
                line={"color": color, "width": 1.6},
                hovertemplate=f"{name}<br>{hp}<br>{plot(metric)} %{{y:.4g}}<br>step %{{x}}"
                              "<extra></extra>"))
    if not traces:
        return empty_figure("No such metrics yet")
    return go.Figure(data=traces, layout=layout)
