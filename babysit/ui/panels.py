"""The Run page's small multiples: one panel per metric, one row per changed hyperparameter.

Every panel has its own y axis (log or linear, per panel) and all share one x axis, the day
lines and the intervention markers, as TensorBoard and W&B draw them::

    fig = panels_figure(metrics, events, checkpoints, panels=["loss", "val_loss", "val_acc"])

Metrics are grouped into families by prefix (``train/``, ``val/``) or by the part before the
first ``_`` (``val_loss`` and ``val_acc`` are both ``val``), loss first. Hyperparameters are
drawn as the trainer logged them (``hp/lr`` is the effective, scheduled lr): lr on a log axis,
momentum as 1 − β on a log axis (0.9 → 0.99 is as far as 0.99 → 0.999), each in its own row,
with the nudges that changed them as markers. Nothing here imports Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from babysit.format import fmt
from babysit.ui.curves import Window, window_steps
from babysit.ui.figures import _event_traces, _log_ticks, _metric_traces
from babysit.ui.fmt import _parse_detail
from babysit.ui.frames import (
    XAxis,
    _check_smoothing,
    _check_x,
    _last_point,
    _live_checkpoints,
    _MetricTable,
    _points,
    _XMapper,
)
from babysit.ui.plotting import (
    _DAY_LINE_COLOR,
    _HP_COLORS,
    _METRIC_COLORS,
    _NonFinite,
    empty_figure,
)
from babysit.ui.text import plot

__all__ = ["family", "group_panels", "hp_rows", "panels_figure", "thin_days", "zoom_steps",
           "zoomed"]

_ROW_PX = 190          # height of one panel
_MAX_DAY_LINES = 40    # beyond this, draw every k-th day line: 70 dotted lines read as a hatch
_MAX_DAY_LABELS = 12   # labels need more room than lines: "day 12" is 40 px wide
_ONE_MINUS = ("momentum", "beta1", "beta2", "beta")   # drawn as 1 − β


def family(name: str) -> str:
    """The family a metric is grouped under: "train/loss" -> "train", "val_acc" -> "val".

    >>> family("train/loss"), family("val_acc"), family("loss")
    ('train', 'val', 'loss')
    """
    if "/" in name:
        return name.split("/", 1)[0]
    return name.split("_", 1)[0] if "_" in name else name


def group_panels(names: Iterable[str]) -> list[tuple[str, list[str]]]:
    """Metric names (no ``hp/``, no ``sys/``) grouped by family, families with a loss first.

    >>> group_panels(["val_acc", "loss", "val_loss", "train/acc"])
    [('loss', ['loss']), ('train', ['train/acc']), ('val', ['val_loss', 'val_acc'])]
    """
    groups: dict[str, list[str]] = {}
    for name in dict.fromkeys(names):
        groups.setdefault(family(name), []).append(name)
    order = sorted(groups, key=lambda f: (f != "loss", f))
    return [(f, sorted(groups[f], key=lambda n: ("loss" not in n, n))) for f in order]


def hp_rows(table: _MetricTable | None) -> list[str]:
    """The hyperparameters that get a row: lr and momentum, others once they changed."""
    if table is None:
        return []
    rows = [n for n in table.groups if n.startswith("hp/") and (
        n in ("hp/lr", "hp/momentum") or len(np.unique(table.value[table.groups[n]])) > 1)]
    return sorted(rows, key=lambda n: (n != "hp/lr", n != "hp/momentum", n))


def thin_days(days: Sequence[tuple[int, Any]], most: int) -> list[tuple[int, Any]]:
    """Every k-th day (the last one always kept), so at most ``most`` remain.

    >>> [d for d, _ in thin_days([(d, d) for d in range(1, 71)], 12)]
    [4, 10, 16, 22, 28, 34, 40, 46, 52, 58, 64, 70]
    """
    every = max(1, math.ceil(len(days) / most))
    return [d for i, d in enumerate(days) if (len(days) - 1 - i) % every == 0]


def panels_figure(
    metrics: pd.DataFrame | None,
    events: pd.DataFrame | None = None,
    checkpoints: pd.DataFrame | None = None,
    *,
    panels: Sequence[str] | None = None,
    log_y: Collection[str] = (),
    hp: Sequence[str] | None = None,
    x: XAxis = "step",
    smoothing: float = 0.0,
    show_superseded: bool = False,
    max_points: int | None = 1500,
    whole: pd.DataFrame | None = None,
) -> go.Figure:
    """One panel per metric in ``panels`` (default: every metric, grouped), then one row per
    hyperparameter in ``hp`` (default: lr, momentum and any that changed), sharing the x axis.

    ``log_y`` names the panels drawn on a log axis. Rows of branches abandoned by a rollback
    are left out unless ``show_superseded``, so the x range fits the live branch. ``whole``:
    when ``metrics`` holds a zoomed range only, the whole-run view, so days are placed as in
    the whole run (without checkpoints they come from the metrics' own day column).

    >>> df = pd.DataFrame({"step": [0, 1], "name": ["loss", "val_acc"], "value": [2.0, 0.5]})
    >>> [a.text for a in panels_figure(df).layout.annotations]
    ['loss', 'val_acc']
    """
    _check_x(x)
    weight = _check_smoothing(smoothing)
    if metrics is not None and not show_superseded and "superseded" in metrics.columns:
        metrics = metrics[~metrics["superseded"].eq(True)]
    table = _MetricTable.of(metrics)
    if table is None:
        return empty_figure("No metrics yet")
    present = [n for n in table.groups if not n.startswith("hp/")]
    if panels is None:
        names = [n for _, group in group_panels(n for n in present if not n.startswith("sys/"))
                 for n in group] + sorted(n for n in present if n.startswith("sys/"))
    else:
        names = [n for n in dict.fromkeys(panels) if n in table.groups]
    hps = hp_rows(table) if hp is None else [
        n for n in (h if h.startswith("hp/") else f"hp/{h}" for h in hp) if n in table.groups]
    rows = len(names) + len(hps)
    if not rows:
        return empty_figure("No metrics yet")

    whole_table = _MetricTable.of(whole) if whole is not None else None
    axis = _XMapper.build(x, whole_table or table, _live_checkpoints(checkpoints))
    gap = 0.35 / rows if rows > 1 else 0.0
    height = 1.0 / rows
    layout: dict[str, Any] = {
        "height": 40 + _ROW_PX * rows, "hovermode": "closest", "uirevision": "panels",
        "margin": {"l": 70, "r": 20, "t": 24, "b": 40}, "showlegend": True,
        "legend": {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1.0,
                   "xanchor": "right", "groupclick": "togglegroup"},
        "annotations": [],
    }
    traces: list[go.Scatter] = []
    marks = _NonFinite()
    for i, name in enumerate([*names, *hps]):
        top = 1.0 - i * height
        yname = "y" if i == 0 else f"y{i + 1}"
        ykey = "yaxis" if i == 0 else f"yaxis{i + 1}"
        domain = [max(0.0, top - height + gap / 2), top - gap / 2]
        title = name.removeprefix("hp/")
        if name.startswith("hp/"):
            row_traces, settings, title = _hp_row(table, name, axis, max_points, events,
                                                  _HP_COLORS[i % len(_HP_COLORS)])
        else:
            color = _METRIC_COLORS[i % len(_METRIC_COLORS)]
            mode = "lines+markers" if family(name) == "val" and len(table.groups[name]) < 200 \
                else "lines"
            row_traces = _metric_traces(table, name, axis, color, mode, weight, max_points, marks)
            settings = {"type": "log" if name in log_y else "linear"}
        for t in row_traces:
            t.update(xaxis="x", yaxis=yname, showlegend=False)
        traces += row_traces
        layout[ykey] = {"domain": domain, "anchor": "x", "automargin": True, **settings}
        layout["annotations"].append({
            "text": plot(title), "x": 0.0, "xref": "paper", "y": domain[1], "yref": "paper",
            "xanchor": "left", "yanchor": "bottom", "showarrow": False,
            "font": {"size": 12},         # the page's text colour (the chart frame's theme)
        })
    # events, nan/inf marks and day labels on a [0, 1] axis over the top panel; an axis over
    # every row would be a subplot of its own whose background hides the curves
    over = rows + 1
    layout[f"yaxis{over}"] = {"overlaying": "y", "range": [0, 1], "visible": False,
                              "fixedrange": True}
    oy = f"y{over}"
    if marks.x:
        traces.append(marks.trace(top=0.995, yaxis=oy))
    traces += _event_traces(events, axis, yaxis=oy)
    lines, labels = _day_lines(axis, oy)
    traces += labels
    layout["shapes"] = lines
    layout["xaxis"] = {"anchor": f"y{rows}" if rows > 1 else "y", "title": {"text": axis.title},
                       **({"type": "date"} if x == "time" else {})}
    return go.Figure(data=traces, layout=layout)


def zoom_steps(window: Window | None, metrics: pd.DataFrame | None,
               checkpoints: pd.DataFrame | None = None, *, x: XAxis = "step"
               ) -> tuple[int, int] | None:
    """The steps to re-read at full detail for a chart zoomed to ``window`` (in the chart's x
    units: steps, days or local times), using the whole-run view ``metrics`` to map days and
    times back to steps the way ``panels_figure`` mapped them. None: the whole run.

    >>> zoom_steps((100.4, 199.2), None)
    (100, 200)
    """
    _check_x(x)
    if window is None:
        return None
    if x == "step":
        return window_steps(window, np.empty(0, np.int64))
    table = _MetricTable.of(metrics)
    if table is None:
        return None
    live = np.flatnonzero(~table.superseded)
    if not len(live):
        return None
    rows = live[np.argsort(table.step[live], kind="stable")]
    axis = _XMapper.build(x, table, _live_checkpoints(checkpoints))
    return window_steps(window, table.step[rows].astype(np.int64),
                        axis.of(table.step[rows], table.time[rows]))


def zoomed(figure: go.Figure, window: Window | None) -> go.Figure:
    """``figure`` with its shared x axis set to ``window`` (None: autorange): a redraw after a
    re-read shows the range the user zoomed to, and keeps it across live refreshes."""
    if window is None:
        figure.update_layout(xaxis={"autorange": True})
    else:
        figure.update_layout(xaxis={"range": list(window), "autorange": False})
    return figure


def _hp_row(
    table: _MetricTable, name: str, axis: _XMapper, max_points: int | None,
    events: pd.DataFrame | None, color: str,
) -> tuple[list[go.Scatter], dict[str, Any], str]:
    """(traces, y axis settings, title) of one hyperparameter row: a step line held to the
    last step, nudges of this key as markers on it; momentum as 1 − β."""
    key = name.removeprefix("hp/")
    one_minus = key in _ONE_MINUS
    label = plot(key)
    pos = table.groups[name]
    rows = table.sorted(pos)
    steps, values, times = table.columns(rows)
    keep = np.isfinite(values)
    steps, values, times = steps[keep], values[keep], times[keep]
    end = _last_point(table, np.ones(len(table.step), dtype=bool))
    if len(steps) and end is not None and end[0] > steps[-1]:
        steps, values, times = np.append(steps, end[0]), np.append(values, values[-1]), \
            np.append(times, end[1])
    shown = 1.0 - values if one_minus else values
    xs, ys = _points(steps, shown, times, axis, max_points)
    custom = 1.0 - ys if one_minus else ys
    traces = [go.Scatter(
        x=xs, y=ys, mode="lines", line_shape="hv", name=label, legendgroup=name,
        line={"color": color, "width": 1.6}, customdata=custom,
        hovertemplate=f"{label} %{{customdata:.4g}}<br>{axis.title} %{{x}}<extra></extra>",
    )]
    nx, ny, text = _nudges(events, key, axis)
    if nx:
        ny_shown = [1.0 - v for v in ny] if one_minus else ny
        traces.append(go.Scatter(
            x=nx, y=ny_shown, mode="markers", name=f"{label} nudges", legendgroup=name,
            marker={"symbol": "diamond", "color": "#ff7f0e", "size": 10,
                    "line": {"width": 1, "color": "#ffffff"}},
            hovertext=text, hoverinfo="text",
        ))
    positive = shown[np.isfinite(shown)]
    log = (key.endswith("lr") or one_minus) and len(positive) and bool((positive > 0).all())
    settings: dict[str, Any] = {"type": "log" if log else "linear"}
    if log:
        # plotly labels the digits between decades "2 5"; say 0.02, 0.05 instead
        lo = math.log10(float(positive.min())) - 0.35
        hi = math.log10(float(positive.max())) + 0.35
        ticks = _log_ticks(lo, hi)
        settings.update(range=[lo, hi], tickvals=[10.0**t for t in ticks],
                        ticktext=[fmt(round(10.0**t, 12)) for t in ticks])
    title = f"1 − {key}" if one_minus else key
    return traces, settings, title


def _nudges(events: pd.DataFrame | None, key: str, axis: _XMapper
            ) -> tuple[list[Any], list[float], list[str]]:
    """x, new value and hover text of each applied nudge (or rollback override) of ``key``."""
    if events is None or len(events) == 0 or "kind" not in events.columns:
        return [], [], []
    xs: list[Any] = []
    ys: list[float] = []
    text: list[str] = []
    for row in events.to_dict("records"):
        if row.get("kind") != "nudge":
            continue
        change = _parse_detail(row.get("detail")).get(key)
        if not isinstance(change, dict) or not isinstance(change.get("new"), int | float):
            continue
        step = float(row.get("step") or 0)
        when = float(row.get("time") or math.nan)
        xs.append(axis.of(np.array([step]), np.array([when]))[0])
        ys.append(float(change["new"]))
        text.append(plot(f"nudge {key} {fmt(change.get('old'))} → {fmt(change['new'])} "
                         f"at step {int(step)} ({row.get('source') or '?'})"))
    return xs, ys, text


def _day_lines(axis: _XMapper, yaxis: str) -> tuple[list[dict[str, Any]], list[go.Scatter]]:
    """Day lines across every panel (shapes, at most ``_MAX_DAY_LINES``) and their labels
    along the top (at most ``_MAX_DAY_LABELS``): thinned so 70 days never read as a hatch."""
    days = axis.day_ends
    if not days:
        return [], []
    line = {"color": _DAY_LINE_COLOR, "width": 1, "dash": "dot"}
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": xpos, "x1": xpos,
               "y0": 0, "y1": 1, "line": line, "layer": "below"}
              for _, xpos in thin_days(days, _MAX_DAY_LINES)]
    labelled = thin_days(days, _MAX_DAY_LABELS)
    return shapes, [go.Scatter(
        x=[p for _, p in labelled], y=[1.0] * len(labelled), xaxis="x", yaxis=yaxis,
        mode="text", text=[f"day {d}" for d, _ in labelled], textposition="top left",
        textfont={"size": 10, "color": "#888888"}, cliponaxis=False, name="days",
        legendgroup="days", showlegend=False, hoverinfo="skip"),
        # the legend's key for them: a dotted line like the day lines (a text trace's own
        # key is plotly's "Aa"); a click on it shows or hides the labels
        go.Scatter(x=[None], y=[None], xaxis="x", yaxis=yaxis, mode="lines", line=line,
                   name="days", legendgroup="days", hoverinfo="skip")]
