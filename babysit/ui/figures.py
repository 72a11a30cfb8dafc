"""Plotly figures for the dashboard: one run, several runs side by side, and the run family tree.

Each figure is a plain function of the frames the store returns, so tests build it without
a browser and the Streamlit pages only call it and show it::

    fig = run_figure(metrics, events, checkpoints, x="step", smoothing=0.6)
    st.plotly_chart(fig)

Curves go through :func:`babysit.ui.downsample.downsample` (at most ``max_points`` per
trace, spikes and nan/inf kept), so a refresh stays small whatever the run's length.
Nothing here imports Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from babysit.format import fmt
from babysit.ui.compare_figures import compare_figure
from babysit.ui.fmt import _finite, describe_event, run_label
from babysit.ui.frames import (
    XAxis,
    _base_metric,
    _bools,
    _check_smoothing,
    _check_x,
    _last_point,
    _live_checkpoints,
    _MetricTable,
    _numeric,
    _order_metrics,
    _points,
    _XMapper,
    smooth,
)
from babysit.ui.lineage_figures import lineage_figure
from babysit.ui.plotting import (
    _DAY_LINE_COLOR,
    _HP_COLORS,
    _MAX_DAY_LABELS,
    _METRIC_COLORS,
    _UNKNOWN_EVENT,
    EVENT_STYLES,
    STATUS_COLORS,
    _NonFinite,
    empty_figure,
    status_color,
)
from babysit.ui.text import plot

__all__ = [
    "EVENT_STYLES",
    "STATUS_COLORS",
    "compare_figure",
    "describe_event",
    "empty_figure",
    "lineage_figure",
    "run_figure",
    "run_label",
    "smooth",
    "status_color",
]

# ---------------------------------------------------------------------------------------------
# The run figure


def run_figure(
    metrics: pd.DataFrame | None,
    events: pd.DataFrame | None = None,
    checkpoints: pd.DataFrame | None = None,
    *,
    x: XAxis = "step",
    log_y: bool = False,
    smoothing: float = 0.0,
    metric_names: Sequence[str] | None = None,
    hp_names: Sequence[str] | None = None,
    max_points: int | None = 1500,
) -> go.Figure:
    """Learning curves of one run over its hyperparameter schedule, with days and events.

    Top row: metric curves (``val_*`` as markers and lines, in the colour of their train
    metric), nan/inf as red crosses along the top, every event as a marker along the bottom
    with a hover saying what changed. Bottom row: hyperparameters as step lines (``hp/lr``
    on a log axis, the others on a second axis). Rows of branches abandoned by a rollback
    (``superseded``) are drawn faded and dashed in the same legend group as the live curve.
    Day boundaries (live checkpoints) are faint vertical lines labelled "day N".

    ``x`` is "step", "time" (local datetimes) or "day" (fractional days, from the
    checkpoints' steps). ``smoothing`` is TensorBoard's EMA weight in [0, 1); the raw curve
    stays faint behind. ``metric_names`` / ``hp_names`` pick curves (default: all;
    ``hp_names`` with or without the ``hp/`` prefix). ``max_points`` caps points per curve;
    None draws every point (slow, for comparison only).

    >>> df = pd.DataFrame({"step": [0, 1, 2], "day": 1, "name": "loss", "value": [2.0, 1.5, 1.2],
    ...                    "time": 0.0, "branch": 0, "superseded": False})
    >>> [t.name for t in run_figure(df).data]
    ['loss']
    """
    _check_x(x)
    weight = _check_smoothing(smoothing)
    table = _MetricTable.of(metrics)
    if table is None:
        return empty_figure("No metrics yet")

    present = list(table.groups)
    wanted = list(metric_names) if metric_names is not None else [n for n in present if not n.startswith("hp/")]
    curve_names = _order_metrics([n for n in dict.fromkeys(wanted) if n in table.groups and not n.startswith("hp/")])
    if hp_names is None:
        # lr and momentum always; any other hyperparameter only once it was changed, so a
        # constant batch size of 64 does not squash a weight decay nudge into a flat line
        hp_list = sorted((n for n in present if n.startswith("hp/") and (
            n in ("hp/lr", "hp/momentum") or len(np.unique(table.value[table.groups[n]])) > 1)),
            key=lambda n: (n != "hp/lr", n))
    else:
        hp_list = [n if n.startswith("hp/") else f"hp/{n}" for n in dict.fromkeys(hp_names)]
        hp_list = [n for n in hp_list if n in table.groups]
    if not curve_names and not hp_list:
        return empty_figure("No metrics yet")

    axis = _XMapper.build(x, table, _live_checkpoints(checkpoints))
    marks = _NonFinite()
    traces: list[go.Scatter] = []
    bases = list(dict.fromkeys(_base_metric(n) for n in curve_names))
    for name in curve_names:
        color = _METRIC_COLORS[bases.index(_base_metric(name)) % len(_METRIC_COLORS)]
        mode = "lines+markers" if name.startswith("val_") else "lines"
        traces += _metric_traces(table, name, axis, color, mode, weight, max_points, marks)
    hp_traces, hp_axes = _hp_traces(table, hp_list, axis, max_points)
    traces += hp_traces
    # nan/inf and events sit on an invisible [0, 1] axis over the top row ("y4"), so they
    # stay at its top and bottom edge whatever the zoom or log scale of the curves.
    if marks.x:
        traces.append(marks.trace(top=0.97, yaxis="y4"))
    traces += _event_traces(events, axis)
    traces += _day_traces(axis, two_rows=bool(hp_traces))

    # Axes spelled out rather than make_subplots, and day lines as traces rather than
    # shapes: plotly validates each layout object on its own, and a hundred day shapes plus
    # make_subplots cost more than every curve of the figure together.
    overlay = {"range": [0, 1], "visible": False, "fixedrange": True}
    layout: dict[str, Any] = {
        "yaxis": {"type": "log" if log_y else "linear", "anchor": "x"},
        "yaxis4": {"overlaying": "y", **overlay},
        "height": 620, "hovermode": "closest", "uirevision": "run",
        "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
        "legend": {"groupclick": "togglegroup", "tracegroupgap": 2},
    }
    x_type = {"type": "date"} if x == "time" else {}
    if hp_traces:
        layout["xaxis"] = {"anchor": "y", "matches": "x2", "showticklabels": False, **x_type}
        layout["xaxis2"] = {"anchor": "y2", "title": {"text": axis.title}, **x_type}
        layout["yaxis"]["domain"] = [0.34, 1.0]
        layout["yaxis2"] = {"anchor": "x2", "domain": [0.0, 0.3], **hp_axes[0]}
        if len(hp_axes) > 1:
            # tickmode auto: plotly.js would sync these ticks to lr's log grid, giving 0.9093...
            layout["yaxis3"] = {"anchor": "x2", "overlaying": "y2", "side": "right", "showgrid": False,
                                "tickmode": "auto", "nticks": 4, **hp_axes[1]}
        layout["yaxis5"] = {"overlaying": "y2", **overlay}
    else:
        layout["xaxis"] = {"anchor": "y", "title": {"text": axis.title}, **x_type}
    if not curve_names:
        layout["annotations"] = [{
            "text": "No metrics yet", "x": 0.5, "y": 0.65, "xref": "paper", "yref": "paper",
            "showarrow": False, "font": {"size": 16, "color": "#888888"},
        }]
    return go.Figure(data=traces, layout=layout)


def _metric_traces(
    table: _MetricTable,
    name: str,
    axis: _XMapper,
    color: str,
    mode: str,
    weight: float,
    max_points: int | None,
    marks: _NonFinite,
) -> list[go.Scatter]:
    """The live curve of ``name`` (raw faint + smoothed when smoothing) and its abandoned branches."""
    traces: list[go.Scatter] = []
    pos = table.groups[name]
    live = table.sorted(pos[~table.superseded[pos]])
    x_title = axis.title
    label = plot(name)      # a metric name is text: no <a href> in the legend, no %{...} in hovers
    hover = f"{label} %{{y:.4g}}<br>{x_title} %{{x}}<extra></extra>"
    marker = {"size": 5} if "markers" in mode else None

    if len(live):
        steps, values, times = table.columns(live)
        marks.add(label, steps, values, times, axis, max_points, superseded=False)
        if weight > 0:
            xs, ys = _points(steps, values, times, axis, max_points)
            traces.append(go.Scatter(
                x=xs, y=ys, name=f"{label} (raw)", mode=mode, legendgroup=name, showlegend=False,
                line={"color": color, "width": 1}, marker=marker, opacity=0.25, hoverinfo="skip",
            ))
            values = smooth(values, weight)
        xs, ys = _points(steps, values, times, axis, max_points)
        traces.append(go.Scatter(
            x=xs, y=ys, name=label, mode=mode, legendgroup=name, line={"color": color, "width": 1.6},
            marker=marker, hovertemplate=hover,
        ))

    dead = pos[table.superseded[pos]]
    for branch in np.unique(table.branch[dead]):
        rows = table.sorted(dead[table.branch[dead] == branch])
        steps, values, times = table.columns(rows)
        marks.add(label, steps, values, times, axis, max_points, superseded=True)
        # Start the dashed line at the live point it left from, so the fork is visible.
        if len(live):
            before = live[table.step[live] < steps[0]]
            if len(before):
                joint = before[-1:]
                steps = np.concatenate((table.step[joint], steps))
                values = np.concatenate((table.value[joint], values))
                times = np.concatenate((table.time[joint], times))
        if weight > 0:
            values = smooth(values, weight)
        xs, ys = _points(steps, values, times, axis, max_points)
        traces.append(go.Scatter(
            x=xs, y=ys, name=f"{label} (branch {int(branch)}, rolled back)", mode=mode,
            legendgroup=name, showlegend=False, opacity=0.45, marker=marker,
            line={"color": color, "width": 1.2, "dash": "dash"},
            hovertemplate=f"{label} %{{y:.4g}} (rolled back)<br>{x_title} %{{x}}<extra></extra>",
        ))
    return traces


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Decade ticks in [lo, hi] (log10 units); 1-2-5 steps in between when that is too few,
    then every digit (0.2, 0.3, ...) for a range under a decade.

    >>> [round(10**t, 3) for t in _log_ticks(-0.9, -0.5)]
    [0.2, 0.3]
    """
    decades = list(range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1))
    if len(decades) >= 3:
        step = max(1, math.ceil(len(decades) / 8))
        return [float(d) for d in decades[::step]]
    for mantissas in ((1, 2, 5), tuple(range(1, 10))):
        ticks = [d + math.log10(m) for d in range(math.floor(lo), math.ceil(hi) + 1)
                 for m in mantissas]
        inside = [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9]
        if len(inside) >= 2:
            return inside
    return [lo, hi]


def _hp_traces(
    table: _MetricTable, hp_list: list[str], axis: _XMapper, max_points: int | None
) -> tuple[list[go.Scatter], list[dict[str, Any]]]:
    """Hyperparameters as step lines for the bottom row, held up to the run's last step.

    Returns the traces and the settings of their y axes: lr on "y2" (log), the others on
    "y3" at the right, or all on "y2" when there is no lr.
    """
    traces: list[go.Scatter] = []
    if not hp_list:
        return traces, []
    on_lr_axis = [n for n in hp_list if n == "hp/lr" or n.endswith("lr")]
    secondary = bool(on_lr_axis) and len(on_lr_axis) < len(hp_list)
    last_live = _last_point(table, ~table.superseded)
    values_on: dict[str, list[np.ndarray]] = {"y2": [], "y3": []}
    for i, name in enumerate(hp_list):
        label = plot(name.removeprefix("hp/"))
        color = _HP_COLORS[i % len(_HP_COLORS)]
        yaxis = "y3" if secondary and name not in on_lr_axis else "y2"
        pos = table.groups[name]
        hover = f"{label} %{{y:.4g}}<br>{axis.title} %{{x}}<extra></extra>"
        segments: list[tuple[np.ndarray, tuple[float, float] | None, bool]] = []
        live = table.sorted(pos[~table.superseded[pos]])
        if len(live):
            segments.append((live, last_live, False))
        dead = pos[table.superseded[pos]]
        for branch in np.unique(table.branch[dead]):
            rows = table.sorted(dead[table.branch[dead] == branch])
            segments.append((rows, _last_point(table, table.superseded & (table.branch == branch)), True))
        legend_shown = False
        for rows, end, dead_branch in segments:
            steps, values, times = table.columns(rows)
            keep = np.isfinite(values)
            steps, values, times = steps[keep], values[keep], times[keep]
            if not len(steps):
                continue
            if end is not None and end[0] > steps[-1]:
                steps = np.append(steps, end[0])
                values = np.append(values, values[-1])
                times = np.append(times, end[1])
            values_on[yaxis].append(values)
            xs, ys = _points(steps, values, times, axis, max_points)
            show = not dead_branch and not legend_shown
            legend_shown = legend_shown or show
            traces.append(go.Scatter(
                x=xs, y=ys, xaxis="x2", yaxis=yaxis, mode="lines", line_shape="hv",
                name=f"{label} (rolled back)" if dead_branch else label,
                legendgroup=name, showlegend=show, opacity=0.45 if dead_branch else 1.0,
                line={"color": color, "width": 1.2 if dead_branch else 1.6,
                      "dash": "dash" if dead_branch else "solid"},
                hovertemplate=hover,
            ))

    def titled(names: list[str], axis_name: str, lr: bool) -> dict[str, Any]:
        text = ", ".join(plot(n.removeprefix("hp/")) for n in names)
        settings = {"title": {"text": text}, "type": _hp_axis_type(values_on[axis_name], lr=lr)}
        values = np.concatenate(values_on[axis_name]) if values_on[axis_name] else np.array([])
        values = values[np.isfinite(values) & (values > 0)]
        if settings["type"] == "log" and len(values):
            # plotly labels the digits between decades "2 3 4 ..."; say 0.02, 0.05 instead
            lo, hi = math.log10(float(values.min())), math.log10(float(values.max()))
            ticks = _log_ticks(math.floor(lo * 10) / 10, math.ceil(hi * 10) / 10)
            settings["tickvals"] = [10.0**t for t in ticks]
            settings["ticktext"] = [fmt(round(10.0**t, 12)) for t in ticks]
        return settings

    if not secondary:
        return traces, [titled(hp_list, "y2", lr=bool(on_lr_axis))]
    others = [n for n in hp_list if n not in on_lr_axis]
    return traces, [titled(on_lr_axis, "y2", lr=True), titled(others, "y3", lr=False)]


def _hp_axis_type(values: list[np.ndarray], *, lr: bool) -> str:
    """Log for lr, and for others spanning two decades or more, when every value is > 0."""
    if not values:
        return "linear"
    v = np.concatenate(values)
    if len(v) == 0 or not bool(np.all(v > 0)):
        return "linear"
    return "log" if lr or v.max() / v.min() >= 100 else "linear"


def _event_traces(events: pd.DataFrame | None, axis: _XMapper, yaxis: str = "y4") -> list[go.Scatter]:
    """One marker trace per event kind, along the bottom of the top row (``yaxis``: its
    invisible [0, 1] overlay)."""
    if events is None or len(events) == 0 or "kind" not in events.columns:
        return []
    n = len(events)
    kinds = events["kind"].astype(str).to_numpy()
    steps = _numeric(events, "step", n)
    times = _numeric(events, "time", n)
    days = _numeric(events, "day", n)
    superseded = _bools(events, "superseded", n)
    sources = events["source"].to_numpy() if "source" in events.columns else np.full(n, None)
    details = events["detail"].to_numpy() if "detail" in events.columns else np.full(n, None)
    finite_times = times[np.isfinite(times)]
    ref = float(finite_times.max()) if len(finite_times) else None
    xs_all = axis.of(steps, times)

    order = [k for k in EVENT_STYLES if k in set(kinds)] + sorted(set(kinds) - set(EVENT_STYLES))
    traces = []
    for i, kind in enumerate(order):
        idx = np.flatnonzero(kinds == kind)
        idx = idx[np.isfinite(steps[idx]) | np.isfinite(times[idx])]
        if not len(idx):
            continue
        symbol, color = EVENT_STYLES.get(kind, _UNKNOWN_EVENT)
        texts = []
        for j in idx:
            line = plot(describe_event(kind, details[j], sources[j], times[j], ref_time=ref))
            where = [f"step {int(steps[j])}"] if _finite(steps[j]) else []
            if _finite(days[j]):
                where.append(f"during day {int(days[j])}")
            text = f"{line}<br>{', '.join(where)}" if where else line
            texts.append(f"(rolled back) {text}" if superseded[j] else text)
        traces.append(go.Scatter(
            x=xs_all[idx], y=np.full(len(idx), 0.03 + 0.04 * (i % 4)), yaxis=yaxis, xaxis="x",
            mode="markers", name=plot(kind), legendgroup=f"event:{kind}",
            marker={
                "symbol": symbol, "color": color, "size": 11,
                "opacity": np.where(superseded[idx], 0.35, 1.0),
                "line": {"width": 1.5, "color": color},
            },
            hovertext=texts, hoverinfo="text",
        ))
    return traces


def _day_traces(axis: _XMapper, *, two_rows: bool) -> list[go.Scatter]:
    """Faint vertical line at the end of each live day, labelled "day N" inside that day.

    One legend entry "days" toggles lines and labels. The lines sit on the [0, 1] overlay
    axes of each row ("y4", "y5") so they span the row whatever its y range.
    """
    days = axis.day_ends
    if not days:
        return []
    line_x: list[Any] = []
    line_y: list[float | None] = []
    for _, xpos in days:
        line_x += [xpos, xpos, None]
        line_y += [0.0, 1.0, None]
    every = max(1, math.ceil(len(days) / _MAX_DAY_LABELS))
    labelled = [d for i, d in enumerate(days) if (len(days) - 1 - i) % every == 0]
    line = {"color": _DAY_LINE_COLOR, "width": 1, "dash": "dot"}
    traces = [
        go.Scatter(
            x=line_x, y=line_y, xaxis="x", yaxis="y4", mode="lines", name="days",
            legendgroup="days", line=line, hoverinfo="skip",
        ),
        go.Scatter(
            x=[xpos for _, xpos in labelled], y=[1.0] * len(labelled), xaxis="x", yaxis="y4",
            mode="text", text=[f"day {d}" for d, _ in labelled], textposition="top left",
            textfont={"size": 10, "color": "#888888"}, cliponaxis=False, name="day labels",
            legendgroup="days", showlegend=False, hoverinfo="skip",
        ),
    ]
    if two_rows:
        traces.append(go.Scatter(
            x=line_x, y=line_y, xaxis="x2", yaxis="y5", mode="lines", name="days (hp)",
            legendgroup="days", showlegend=False, line=line, hoverinfo="skip",
        ))
    return traces


# ---------------------------------------------------------------------------------------------
