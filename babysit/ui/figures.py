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

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from babysit.ui.downsample import downsample_indices
from babysit.ui.text import plot, shorten

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

XAxis = Literal["step", "day", "time"]

STATUS_COLORS: dict[str, str] = {
    "starting": "#9ecae1",
    "running": "#2ca02c",
    "paused": "#ffbf00",
    "finished": "#1f77b4",
    "stopped": "#7f7f7f",
    "crashed": "#d62728",
    "diverged": "#9467bd",
}
_UNKNOWN_COLOR = "#bbbbbb"

# kind -> (marker symbol, colour). Red is kept for things that went wrong.
EVENT_STYLES: dict[str, tuple[str, str]] = {
    "started": ("triangle-right", "#2ca02c"),
    "nudge": ("diamond", "#ff7f0e"),
    "pause": ("square", "#ffbf00"),
    "resume": ("triangle-right-open", "#ffbf00"),
    "stop": ("square", "#7f7f7f"),
    "rollback": ("triangle-left", "#9467bd"),
    "fork": ("star", "#17becf"),
    "forked": ("star-open", "#17becf"),
    "restarted": ("circle-open", "#1f77b4"),
    "crashed": ("hexagon", "#d62728"),
    "diverged": ("triangle-up", "#d62728"),
    "rejected": ("circle-x", "#e377c2"),
    "checkpoint_failed": ("square-x", "#d62728"),
    "finished": ("circle", "#1f77b4"),
    "exploit": ("triangle-down", "#8c564b"),
    "explore": ("triangle-up-open", "#8c564b"),
}
_UNKNOWN_EVENT = ("circle", "#7f7f7f")

# Short names for the legend of the compare figure: "#3 lr=0.05 m=0.9".
_HP_ABBREVIATIONS = {"lr": "lr", "momentum": "m", "weight_decay": "wd", "batch_size": "bs"}

_METRIC_COLORS = qualitative.Plotly
_HP_COLORS = qualitative.Dark2
_RUN_COLORS = qualitative.Plotly + qualitative.Dark24
_NONFINITE_COLOR = "#d62728"
_DAY_LINE_COLOR = "rgba(120,120,120,0.35)"
_MAX_DAY_LABELS = 12  # beyond this, label every k-th day line: the labels would overlap


# ---------------------------------------------------------------------------------------------
# Small public helpers


def status_color(status: str | None) -> str:
    """Colour of a run status, the same in every figure and table.

    >>> status_color("running")
    '#2ca02c'
    """
    return STATUS_COLORS.get(str(status), _UNKNOWN_COLOR)


def smooth(values: np.ndarray | Sequence[float], weight: float) -> np.ndarray:
    """TensorBoard's smoothing: a debiased exponential moving average of weight ``weight``.

    ``weight`` is in [0, 1): 0 returns the values, 0.99 is very smooth. Non-finite values
    pass through unchanged and do not feed the average, as in TensorBoard.

    >>> smooth([1.0, 3.0, float("nan"), 3.0], 0.5).round(3).tolist()
    [1.0, 2.333, nan, 2.714]
    """
    w = _check_smoothing(weight)
    v = np.asarray(values, dtype=np.float64)
    if w == 0.0 or v.size == 0:
        return v.copy()
    finite = np.isfinite(v)
    # pandas' adjust=True EMA is the debiased one (sum w^i v / sum w^i); ignore_na skips
    # nan/inf like TensorBoard's numAccum does.
    out = (
        pd.Series(np.where(finite, v, np.nan))
        .ewm(alpha=1.0 - w, adjust=True, ignore_na=True)
        .mean()
        .to_numpy(dtype=np.float64, copy=True)
    )
    out[~finite] = v[~finite]
    return out


def describe_event(
    kind: str,
    detail: Mapping[str, Any] | str | None = None,
    source: str | None = None,
    time: float | None = None,
    *,
    ref_time: float | None = None,
) -> str:
    """One line saying what an event changed, for hovers and the audit log.

    The clock time is local; it carries the date when it is not the day of ``ref_time``
    (default: ``time`` itself, so the date is left out).

    >>> describe_event("nudge", {"lr": {"old": 0.1, "new": 0.05}}, "ui")
    'nudge lr 0.1 → 0.05 (ui)'
    >>> describe_event("rollback", {"to_day": 2, "to_step": 400, "from_step": 731}, "cli")
    'rollback to day 2 (step 400) from step 731 (cli)'
    """
    what = _describe_detail(str(kind), _parse_detail(detail))
    text = f"{kind} {what}" if what else str(kind)
    where = [str(source)] if source not in (None, "") and not _is_missing(source) else []
    if time is not None and _finite(time):
        where.append(_clock(float(time), ref_time))
    return f"{text} ({', '.join(where)})" if where else text


def run_label(run: Mapping[str, Any] | pd.Series, max_hps: int = 4) -> str:
    """Legend label of a run: its id and current hyperparameters, lr first.

    >>> run_label({"id": 3, "hp": {"momentum": 0.9, "lr": 0.05}})
    '#3 lr=0.05 m=0.9'
    """
    hp = _parse_detail(run.get("hp"))
    label = f"#{_fmt(run.get('id'))}"
    keys = sorted(hp, key=lambda k: (list(_HP_ABBREVIATIONS).index(k) if k in _HP_ABBREVIATIONS else 99, k))
    parts = [f"{shorten(_HP_ABBREVIATIONS.get(k, k), 40)}={shorten(_fmt(hp[k], digits=3), 40)}"
             for k in keys[:max_hps]]
    if len(keys) > max_hps:
        parts.append("…")
    return " ".join([label, *parts])


def empty_figure(message: str = "No metrics yet") -> go.Figure:
    """A blank figure with ``message`` in the middle, for pages with nothing to draw yet.

    >>> empty_figure().layout.annotations[0].text
    'No metrics yet'
    """
    fig = go.Figure()
    fig.add_annotation(
        text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
        font={"size": 16, "color": "#888888"},
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


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
            settings["ticktext"] = [_fmt(round(10.0**t, 12)) for t in ticks]
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


def _event_traces(events: pd.DataFrame | None, axis: _XMapper) -> list[go.Scatter]:
    """One marker trace per event kind, along the bottom of the top row."""
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
                where.append(f"day {int(days[j])}")
            text = f"{line}<br>{', '.join(where)}" if where else line
            texts.append(f"(rolled back) {text}" if superseded[j] else text)
        traces.append(go.Scatter(
            x=xs_all[idx], y=np.full(len(idx), 0.03 + 0.04 * (i % 4)), yaxis="y4", xaxis="x",
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
# The compare figure


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


# ---------------------------------------------------------------------------------------------
# The lineage figure


def lineage_figure(runs: pd.DataFrame | None) -> go.Figure:
    """Family tree of runs: who forked from whom, at which day.

    x is the generation (a root run is 0, its forks 1, ...), y the row of a depth-first walk
    in creation order, like ``git log --graph``. Nodes are coloured by status, one legend
    entry per status; each point's ``customdata`` is the run id, for the page to open the run
    on click. Edges go parent → child and are labelled "day d". A run whose parent is not in
    ``runs`` is drawn as a root, its hover naming the missing parent.

    >>> runs = pd.DataFrame({"id": [1, 2], "status": ["running", "paused"],
    ...                      "parent_id": [None, 1], "parent_day": [None, 3]})
    >>> [t.name for t in lineage_figure(runs).data]
    ['forks', 'fork days', 'running', 'paused']
    """
    if runs is None or len(runs) == 0 or "id" not in runs.columns:
        return empty_figure("No runs yet")
    records = [_run_record(r) for r in runs.to_dict("records")]
    records = [r for r in records if r["id"] is not None]
    if not records:
        return empty_figure("No runs yet")
    ids = {r["id"] for r in records}
    by_id = {r["id"]: r for r in records}
    records.sort(key=lambda r: (r["created"], r["id"]))
    children: dict[int, list[dict[str, Any]]] = {}
    roots = []
    for r in records:
        parent = r["parent_id"]
        if parent is not None and parent in ids and parent != r["id"]:
            children.setdefault(parent, []).append(r)
        else:
            roots.append(r)

    position: dict[int, tuple[int, int]] = {}
    edges: list[tuple[int, int]] = []
    row = 0
    # Roots first; a cycle (bad data) leaves runs unreached, which then start their own tree.
    for start in roots + records:
        if start["id"] in position:
            continue
        stack = [(start["id"], 0, None)]
        while stack:
            rid, depth, parent = stack.pop()
            if rid in position:
                continue
            position[rid] = (depth, row)
            row += 1
            if parent is not None:
                edges.append((parent, rid))
            for child in reversed(children.get(rid, [])):
                if child["id"] not in position:
                    stack.append((child["id"], depth + 1, rid))

    ex: list[float | None] = []
    ey: list[float | None] = []
    lx: list[float] = []
    ly: list[float] = []
    ltext: list[str] = []
    for parent, child in edges:
        (px, py), (cx, cy) = position[parent], position[child]
        # Elbow: down from the parent, then right to the child, like a file tree.
        ex += [px, px, cx, None]
        ey += [-py, -cy, -cy, None]
        lx.append((px + cx) / 2)
        ly.append(-cy)
        day = by_id[child]["parent_day"]
        ltext.append(f"day {day}" if day is not None else "day ?")
    traces = [
        go.Scatter(
            x=ex, y=ey, mode="lines", name="forks", line={"color": "#aaaaaa", "width": 1.2},
            hoverinfo="skip", showlegend=False,
        ),
        go.Scatter(
            x=lx, y=ly, mode="text", name="fork days", text=ltext, textposition="top center",
            textfont={"size": 10, "color": "#888888"}, hoverinfo="skip", showlegend=False,
        ),
    ]

    statuses = list(dict.fromkeys([s for s in STATUS_COLORS if any(r["status"] == s for r in records)]
                                  + [r["status"] for r in records]))
    for status in statuses:
        members = [r for r in records if r["status"] == status]
        traces.append(go.Scatter(
            x=[position[r["id"]][0] for r in members],
            y=[-position[r["id"]][1] for r in members],
            mode="markers+text", name=plot(status),
            text=[_node_text(r, ids) for r in members], textposition="middle right",
            marker={"size": 14, "color": status_color(status), "line": {"width": 1, "color": "#444444"}},
            customdata=[r["id"] for r in members],
            hovertext=[_lineage_hover(r, ids) for r in members], hoverinfo="text",
        ))
    depth = max(p[0] for p in position.values())
    return go.Figure(data=traces, layout={
        "xaxis": {"visible": False, "range": [-0.5, depth + 1.0]},
        "yaxis": {"visible": False, "range": [-row + 0.5, 0.8]},
        "height": max(260, 36 * row + 80), "hovermode": "closest", "clickmode": "event+select",
        "margin": {"l": 10, "r": 10, "t": 30, "b": 10}, "legend": {"title": {"text": "status"}},
    })


def _node_text(r: dict[str, Any], ids: set[int]) -> str:
    if r["parent_id"] is not None and r["parent_id"] not in ids:
        return f"#{r['id']} (from #{r['parent_id']}, not shown)"
    return f"#{r['id']}"


def _lineage_hover(r: dict[str, Any], ids: set[int]) -> str:
    day = "?" if r["day"] is None else r["day"]
    step = "?" if r["step"] is None else r["step"]
    # names, statuses and hyperparameters are text: escaped, then joined with plotly's <br>
    lines = [plot(f"#{r['id']} {shorten(r['name'], 80)}".rstrip()),
             plot(f"{r['status']} · day {day} · step {step}")]
    if r["hp"]:
        lines.append(plot(run_label({"id": r["id"], "hp": r["hp"]}, max_hps=8).partition(" ")[2]))
    if r["parent_id"] is not None:
        at = f" at day {r['parent_day']}" if r["parent_day"] is not None else ""
        missing = " (not shown)" if r["parent_id"] not in ids else ""
        lines.append(f"forked from #{r['parent_id']}{missing}{at}")
    if r["heartbeat_age"] is not None:
        lines.append(f"heartbeat {r['heartbeat_age']:.0f} s ago")
    return "<br>".join(lines)


def _run_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A runs-frame row with missing values as None and ids as ints."""
    created = row.get("created")
    age = row.get("heartbeat_age")
    return {
        "id": _as_int(row.get("id")),
        "name": "" if _is_missing(row.get("name")) else str(row.get("name")),
        "status": "unknown" if _is_missing(row.get("status")) else str(row.get("status")),
        "day": _as_int(row.get("day")),
        "step": _as_int(row.get("step")),
        "hp": _parse_detail(row.get("hp")),
        "parent_id": _as_int(row.get("parent_id")),
        "parent_day": _as_int(row.get("parent_day")),
        "heartbeat_age": float(age) if age is not None and _finite(age) else None,
        "created": float(created) if created is not None and _finite(created) else math.inf,
    }


# ---------------------------------------------------------------------------------------------
# Internals: frames to arrays, x mapping, non-finite markers


@dataclass(frozen=True)
class _MetricTable:
    """A metrics frame as numpy columns, with the row positions of each metric name."""

    step: np.ndarray
    value: np.ndarray
    time: np.ndarray
    branch: np.ndarray
    superseded: np.ndarray
    day: np.ndarray
    groups: dict[str, np.ndarray]

    @classmethod
    def of(cls, df: pd.DataFrame | None, names: Sequence[str] | None = None) -> _MetricTable | None:
        """Columns of ``df`` as arrays; ``names`` limits the groups to those metrics."""
        if df is None or len(df) == 0 or not {"step", "name", "value"} <= set(df.columns):
            return None
        n = len(df)
        step = _numeric(df, "step", n)
        ok = np.isfinite(step)
        if names is not None and len(names) <= 3:
            # A comparison wants one metric of many long runs: a few equality scans beat
            # grouping every row by name.
            found = {str(name): np.flatnonzero(df["name"].eq(name).to_numpy(dtype=bool, na_value=False))
                     for name in names}
        else:
            found = {str(name): pos for name, pos in df.groupby("name", sort=False, observed=True).indices.items()}
            if names is not None:
                found = {k: v for k, v in found.items() if k in set(names)}
        groups = found if ok.all() else {k: v[ok[v]] for k, v in found.items()}
        groups = {k: v for k, v in groups.items() if len(v)}
        if not groups:
            return None
        branch = _numeric(df, "branch", n)
        return cls(
            step=step,
            value=_numeric(df, "value", n),
            time=_numeric(df, "time", n),
            branch=np.where(np.isfinite(branch), branch, 0).astype(np.int64),
            superseded=_bools(df, "superseded", n),
            day=_numeric(df, "day", n),
            groups=groups,
        )

    def columns(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(step, value, time) of rows ``pos``; a view when they are one block of rows."""
        if len(pos) > 1 and pos[-1] - pos[0] == len(pos) - 1 and bool(np.all(pos[1:] > pos[:-1])):
            block = slice(int(pos[0]), int(pos[-1]) + 1)
            return self.step[block], self.value[block], self.time[block]
        return self.step[pos], self.value[pos], self.time[pos]

    def sorted(self, pos: np.ndarray) -> np.ndarray:
        """``pos`` ordered by step (stable: equal steps keep their row order)."""
        s = self.step[pos]
        if len(s) > 1 and not bool(np.all(s[1:] >= s[:-1])):
            pos = pos[np.argsort(s, kind="stable")]
        return pos


@dataclass
class _XMapper:
    """Maps (step, time) to the figure's x: step, local datetime or fractional day."""

    kind: str
    knots: list[tuple[float, float]]  # (step, day) where day d ended, increasing
    day_times: list[tuple[int, float]]  # (day, time) of the live checkpoints
    tz_offset_s: float = 0.0

    @property
    def title(self) -> str:
        return {"step": "step", "time": "time", "day": "days"}[self.kind]

    @classmethod
    def build(cls, kind: str, table: _MetricTable, checkpoints: pd.DataFrame | None) -> _XMapper:
        knots: list[tuple[float, float]] = []
        day_times: list[tuple[int, float]] = []
        if checkpoints is not None:
            for d, s, t in zip(checkpoints["day"], checkpoints["step"], checkpoints["time"], strict=True):
                knots.append((float(s), float(d)))
                day_times.append((int(d), float(t)))
        times = table.time[np.isfinite(table.time)]
        offset = _utc_offset(float(times.max())) if len(times) else 0.0
        if not knots and kind == "day":
            knots = _knots_from_days(table)
        return cls(kind, knots, day_times, offset)

    @property
    def day_ends(self) -> list[tuple[int, Any]]:
        """(day, x) of each live day boundary."""
        if self.kind == "time":
            return [(d, _iso(self._datetimes(np.array([t]))[0])) for d, t in self.day_times if _finite(t)]
        if self.kind == "day":
            return [(int(d), float(d)) for _, d in self.knots if d >= 1 and float(d).is_integer()]
        return [(int(d), float(s)) for s, d in self.knots if d >= 1 and float(d).is_integer()]

    def of(self, steps: np.ndarray, times: np.ndarray) -> np.ndarray:
        if self.kind == "time":
            return self._datetimes(times)
        if self.kind == "day":
            return self._days(steps)
        finite = steps[np.isfinite(steps)]
        if len(finite) == len(steps) and len(steps) and np.all(finite == np.round(finite)) \
                and np.abs(finite).max() < 2**31:
            return steps.astype(np.int32)  # half the bytes of floats in the figure's JSON
        return steps

    def _datetimes(self, times: np.ndarray) -> np.ndarray:
        # One UTC offset for the whole figure: a DST change mid-run shifts part of it by an hour.
        ms = np.where(np.isfinite(times), (times + self.tz_offset_s) * 1000.0, np.nan)
        out = np.full(len(times), np.datetime64("NaT"), dtype="datetime64[ms]")
        ok = np.isfinite(ms)
        out[ok] = ms[ok].astype(np.int64).astype("datetime64[ms]")
        return out

    def _days(self, steps: np.ndarray) -> np.ndarray:
        knots = [(0.0, 0.0)] + [k for k in self.knots if k[0] > 0]
        xp = [knots[0][0]]
        fp = [knots[0][1]]
        for s, d in knots[1:]:
            if s > xp[-1] and d > fp[-1]:
                xp.append(s)
                fp.append(d)
        if len(xp) < 2:
            return steps.astype(np.float64)
        out = np.interp(steps, xp, fp)
        # Past the last checkpoint the day in progress goes at the last day's pace.
        slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
        beyond = steps > xp[-1]
        out[beyond] = fp[-1] + (steps[beyond] - xp[-1]) * slope
        return out


def _knots_from_days(table: _MetricTable) -> list[tuple[float, float]]:
    """(step, day) knots from the metrics' own day column: day d-1 ended where day d began."""
    live = ~table.superseded & np.isfinite(table.day)
    if not live.any():
        return []
    frame = pd.DataFrame({"day": table.day[live], "step": table.step[live]})
    starts = frame.groupby("day")["step"].min()
    return [(float(s), float(d) - 1) for d, s in starts.items() if d >= 2]


def _live_checkpoints(checkpoints: pd.DataFrame | None) -> pd.DataFrame | None:
    """One checkpoint per day of the live branch, in day order."""
    if checkpoints is None or len(checkpoints) == 0 or not {"day", "step"} <= set(checkpoints.columns):
        return None
    n = len(checkpoints)
    frame = pd.DataFrame({
        "day": _numeric(checkpoints, "day", n),
        "step": _numeric(checkpoints, "step", n),
        "time": _numeric(checkpoints, "time", n),
        "branch": _numeric(checkpoints, "branch", n),
        "superseded": _bools(checkpoints, "superseded", n),
    })
    frame = frame[~frame["superseded"] & np.isfinite(frame["day"]) & np.isfinite(frame["step"])]
    if frame.empty:
        return None
    frame = frame.sort_values(["day", "branch"]).drop_duplicates("day", keep="last")
    return frame.reset_index(drop=True)


class _NonFinite:
    """Collects nan/±inf points of several curves into one red-cross trace."""

    def __init__(self) -> None:
        self.x: list[Any] = []
        self.text: list[str] = []
        self.faded: list[bool] = []

    def add(
        self, label: str, steps: np.ndarray, values: np.ndarray, times: np.ndarray,
        axis: _XMapper, max_points: int | None, *, superseded: bool,
    ) -> None:
        bad = ~np.isfinite(values)
        if not bad.any():
            return
        # Downsampled like the curve, so a run that went nan for good stays a few crosses.
        keep = downsample_indices(steps, values, max_points)
        keep = keep[bad[keep]]
        xs = axis.of(steps[keep], times[keep])
        note = " (rolled back)" if superseded else ""
        self.x.extend(xs.tolist())
        self.text.extend(f"{label}: {_fmt(v)} at step {int(s)}{note}" for s, v in zip(steps[keep], values[keep], strict=True))
        self.faded.extend([superseded] * len(keep))

    def trace(self, *, top: float, yaxis: str = "y4") -> go.Scatter:
        return go.Scatter(
            x=self.x, y=[top] * len(self.x), yaxis=yaxis, xaxis="x", mode="markers", name="nan / inf",
            marker={"symbol": "x", "color": _NONFINITE_COLOR, "size": 9,
                    "opacity": [0.35 if f else 1.0 for f in self.faded]},
            hovertext=self.text, hoverinfo="text",
        )


def _points(
    steps: np.ndarray, values: np.ndarray, times: np.ndarray, axis: _XMapper, max_points: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Downsampled (x, y) of one curve; nan/inf become gaps (their crosses are drawn apart)."""
    keep = downsample_indices(steps, values, max_points)
    if len(keep) != len(steps):
        steps, values, times = steps[keep], values[keep], times[keep]
    ys = np.where(np.isfinite(values), values, np.nan)
    return axis.of(steps, times), ys


def _last_point(table: _MetricTable, mask: np.ndarray) -> tuple[float, float] | None:
    """(step, time) of the last row under ``mask``: where a step line is held until."""
    if not mask.any():
        return None
    pos = np.flatnonzero(mask)
    last = pos[np.argmax(table.step[pos])]
    return float(table.step[last]), float(table.time[last])


def _order_metrics(names: Iterable[str]) -> list[str]:
    """loss first, then alphabetical; each val_* right after its train metric."""
    return sorted(names, key=lambda n: (_base_metric(n) != "loss", _base_metric(n), n.startswith("val_")))


def _base_metric(name: str) -> str:
    return name.removeprefix("val_")


def _runs_by_id(runs: pd.DataFrame | None) -> dict[int, dict[str, Any]]:
    if runs is None or len(runs) == 0 or "id" not in runs.columns:
        return {}
    out = {}
    for row in runs.to_dict("records"):
        rid = _as_int(row.get("id"))
        if rid is not None:
            out[rid] = row
    return out


def _as_run_id(key: Any) -> int | None:
    """A run id from a dict key: 3, "3" or "#3"."""
    if isinstance(key, str):
        key = key.strip().removeprefix("#")
        return int(key) if key.isdigit() else None
    return _as_int(key)


def _check_x(x: str) -> None:
    if x not in ("step", "day", "time"):
        raise ValueError(f"x must be 'step', 'day' or 'time', got {x!r}")


def _check_smoothing(weight: float) -> float:
    try:
        w = float(weight)
    except (TypeError, ValueError):
        w = math.nan
    if isinstance(weight, bool) or not 0.0 <= w < 1.0:
        raise ValueError(f"smoothing must be a number in [0, 1), got {weight!r}")
    return w


def _numeric(df: pd.DataFrame, column: str, n: int) -> np.ndarray:
    if column not in df.columns:
        return np.full(n, np.nan)
    col = df[column]
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iuf":
        return col.to_numpy(dtype=np.float64)  # the common case, without to_numeric's overhead
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _bools(df: pd.DataFrame, column: str, n: int) -> np.ndarray:
    if column not in df.columns:
        return np.zeros(n, dtype=bool)
    col = df[column]
    if col.dtype == bool:
        return col.to_numpy()
    return col.eq(True).fillna(False).to_numpy(dtype=bool)


def _parse_detail(detail: Any) -> dict[str, Any]:
    """An event detail or run hp as a dict, whether it came as a dict, JSON text or nothing."""
    if isinstance(detail, Mapping):
        return dict(detail)
    if isinstance(detail, str | bytes) and detail:
        try:
            parsed = json.loads(detail)
        except ValueError:
            return {"detail": detail}
        return dict(parsed) if isinstance(parsed, Mapping) else {"detail": parsed}
    return {}


def _describe_detail(kind: str, d: dict[str, Any]) -> str:
    if not d:
        return ""
    if kind == "rollback" and "to_day" in d:
        text = f"to day {_fmt(d['to_day'])}"
        if "to_step" in d:
            text += f" (step {_fmt(d['to_step'])})"
        if "from_step" in d:
            text += f" from step {_fmt(d['from_step'])}"
        rest = {k: v for k, v in d.items() if k not in ("to_day", "to_step", "from_step")}
        return _join(text, _describe_pairs(rest))
    if kind == "fork" and "child" in d:
        text = f"child #{_fmt(d['child'])}"
        if "day" in d:
            text += f" at day {_fmt(d['day'])}"
        return _join(text, _describe_pairs({k: v for k, v in d.items() if k not in ("child", "day")}))
    if kind == "diverged" and "metric" in d:
        text = f"{d['metric']} = {_fmt(d.get('value'))}"
        return _join(text, _describe_pairs({k: v for k, v in d.items() if k not in ("metric", "value")}))
    return _describe_pairs(d)


def _describe_pairs(d: Mapping[str, Any]) -> str:
    parts = []
    for key, value in d.items():
        if isinstance(value, Mapping) and "new" in value:
            parts.append(f"{key} {_fmt(value.get('old'))} → {_fmt(value['new'])}")
        elif isinstance(value, Mapping):
            parts.append(f"{key}={json.dumps(value, default=str, separators=(',', ':'))}")
        else:
            parts.append(f"{key}={_fmt(value)}")
    text = ", ".join(parts)
    return text if len(text) <= 200 else text[:199] + "…"


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def _fmt(value: Any, digits: int = 4) -> str:
    """Numbers as people write them: 0.05, 3e-05, 400, nan."""
    if value is None:
        return "none"
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else f"{f:.{digits}g}"
    return str(value)


def _clock(t: float, ref: float | None) -> str:
    when = datetime.fromtimestamp(t)
    if ref is not None and datetime.fromtimestamp(ref).date() != when.date():
        return when.strftime("%Y-%m-%d %H:%M:%S")
    return when.strftime("%H:%M:%S")


def _utc_offset(t: float) -> float:
    offset = datetime.fromtimestamp(t).astimezone().utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def _iso(value: np.datetime64) -> str:
    return str(value.astype("datetime64[ms]"))


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _as_int(value: Any) -> int | None:
    if _is_missing(value) or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) else None
