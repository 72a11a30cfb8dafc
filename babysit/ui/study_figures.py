"""Plotly figures for the Study page: many runs at once, each hyperparameter on its own scale.

Every builder is a plain function of the frames the Client returns (``study_runs``: one row
per run with ``id``, ``status``, one column per hyperparameter, ``objective``; metric and event
frames), so tests call it without a browser::

    fig = hp_scatter_figure(study_runs, space["lr"], "val_loss", "min")
    st.plotly_chart(fig, on_select="rerun")

One colour scale everywhere: a run's colour is its final objective, dark for the best runs
and pale for the worst (whatever the direction), grey when it has no finite value yet.
Nothing here imports Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from babysit.format import fmt
from babysit.study.objective import best as best_key
from babysit.study.space import Param, Space, check_direction
from babysit.ui.downsample import downsample_indices
from babysit.ui.figures import _log_ticks
from babysit.ui.fmt import _parse_detail
from babysit.ui.plotting import empty_figure
from babysit.ui.text import plot, shorten

__all__ = [
    "COLORSCALE",
    "Axis",
    "family_tree_figure",
    "hp_axis",
    "hp_scatter_figure",
    "importance_figure",
    "objective_colors",
    "parallel_figure",
    "study_curves_figure",
]

#: dark = low values; reversed for "max" studies, so the best runs are always the dark ones
COLORSCALE = "Viridis"
NO_VALUE_COLOR = "#bbbbbb"
_EXPLOIT_COLOR = "#8c564b"    # the exploit marker colour of the run page (figures.EVENT_STYLES)
_FORK_COLOR = "#17becf"


# ---------------------------------------------------------------------------------------------
# Colour by objective


@dataclass(frozen=True)
class _Scale:
    """The objective range shared by the colour bar and every coloured trace."""

    cmin: float
    cmax: float
    reverse: bool          # True for "max": high values (the best) get the dark end

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray, direction: str) -> _Scale | None:
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if not len(v):
            return None
        lo, hi = float(v.min()), float(v.max())
        if len(v) >= 5:
            # Tukey's fences: one run that blew up (loss 60 among losses near 0.2) would paint
            # every other run the same colour; values beyond a fence take the end colour.
            q1, q3 = np.percentile(v, [25, 75])
            lo, hi = max(lo, q1 - 1.5 * (q3 - q1)), min(hi, q3 + 1.5 * (q3 - q1))
        if lo == hi:       # one run, or all equal: any colour, but no division by zero
            lo, hi = lo - 0.5, hi + 0.5
        return cls(lo, hi, check_direction(direction) == "max")

    def color(self, value: float) -> str:
        if not math.isfinite(value):
            return NO_VALUE_COLOR
        t = (min(max(value, self.cmin), self.cmax) - self.cmin) / (self.cmax - self.cmin)
        return str(sample_colorscale(COLORSCALE, [1.0 - t if self.reverse else t])[0])

    def marker(self, title: str, *, bar: bool = True, x: float = 1.02) -> dict[str, Any]:
        """Marker/line settings coloured by this scale; ``bar`` draws its colour bar at ``x``."""
        return {"colorscale": COLORSCALE, "reversescale": self.reverse, "cmin": self.cmin,
                "cmax": self.cmax, "showscale": bar,
                "colorbar": {"title": {"text": title, "side": "right"}, "thickness": 14, "x": x}}


def objective_colors(values: Sequence[float], direction: str = "min") -> list[str]:
    """The colour of each objective value: dark for the best, pale for the worst, grey for NaN.

    >>> a, b, c = objective_colors([0.1, 0.9, float("nan")], "min")
    >>> a == objective_colors([0.9, 0.1], "max")[0], c
    (True, '#bbbbbb')
    """
    scale = _Scale.of(values, direction)
    return [scale.color(float(v)) if scale else NO_VALUE_COLOR for v in values]


def wants_log(values: Sequence[float] | np.ndarray) -> bool:
    """Whether an objective is better read on a log axis: all > 0, spanning 30x or more.

    >>> wants_log([0.1, 0.2, 60.0]), wants_log([0.1, 0.3]), wants_log([-1.0, 50.0])
    (True, False, False)
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return bool(len(v) >= 2 and v.min() > 0 and v.max() / v.min() >= 30)


def _finals(study_runs: pd.DataFrame | None, column: str = "objective") -> dict[int, float]:
    """{run id: final objective} (NaN when missing)."""
    if study_runs is None or not len(study_runs) or "id" not in study_runs.columns:
        return {}
    values = (pd.to_numeric(study_runs[column], errors="coerce") if column in study_runs.columns
              else pd.Series(np.nan, index=study_runs.index))
    return {int(i): float(v) for i, v in zip(study_runs["id"], values, strict=True)}


# ---------------------------------------------------------------------------------------------
# Curves of every run


def study_curves_figure(
    curves: Mapping[int, pd.DataFrame],
    study_runs: pd.DataFrame | None,
    objective: str,
    direction: str = "min",
    *,
    x: str = "step",
    log_y: bool = False,
    max_points: int = 400,
) -> go.Figure:
    """Every run's ``objective`` curve overlaid, each line coloured by the run's final value.

    ``curves[run_id]`` is that run's metrics frame (step, day, name, value, superseded); only
    live rows of ``objective`` are drawn, downsampled to ``max_points`` per run. ``x`` is
    "step" or "day". The best run (by the ``best`` column, its best day-end value, when the
    frame has one) is drawn last and thicker; a colour bar shows the scale.

    >>> df = pd.DataFrame({"step": [0, 100], "day": [1, 2], "name": "val_loss", "value": [1.0, 0.5]})
    >>> runs = pd.DataFrame({"id": [3], "objective": [0.5]})
    >>> [t.name for t in study_curves_figure({3: df}, runs, "val_loss").data]
    ['#3', 'val_loss']
    """
    if x not in ("step", "day"):
        raise ValueError(f"x must be 'step' or 'day', got {x!r}")
    finals = _finals(study_runs)
    scale = _Scale.of(list(finals.values()), direction)
    # the best run as the study ranks it: best day-end value when the frame has it
    scores = _finals(study_runs, "best") if study_runs is not None and \
        "best" in study_runs.columns else finals
    best = best_key(sorted(scores.items()), check_direction(direction))[1]   # tie: lowest id
    names = _run_names(study_runs)
    traces: list[go.Scatter] = []
    drawn: list[np.ndarray] = []
    for run_id, df in sorted(curves.items(), key=lambda kv: (kv[0] == best, kv[0])):
        if df is None or not len(df) or not {"step", "name", "value"} <= set(df.columns):
            continue
        rows = df[df["name"] == objective]
        if "superseded" in rows.columns:
            rows = rows[~rows["superseded"].astype(bool)]
        if not len(rows):
            continue
        rows = rows.sort_values("step")
        xs = rows[x].to_numpy() if x in rows.columns else rows["step"].to_numpy()
        ys = pd.to_numeric(rows["value"], errors="coerce").to_numpy(dtype=np.float64)
        keep = downsample_indices(xs, ys, max_points)
        drawn.append(ys[keep])
        final = finals.get(int(run_id), math.nan)
        color = scale.color(final) if scale else NO_VALUE_COLOR
        label = names.get(int(run_id), f"#{run_id}")
        traces.append(go.Scatter(
            x=xs[keep], y=np.where(np.isfinite(ys[keep]), ys[keep], np.nan), name=f"#{run_id}",
            mode="lines+markers" if len(rows) <= 30 else "lines",
            line={"color": color, "width": 3.2 if run_id == best else 1.4},
            marker={"size": 4, "color": color}, opacity=1.0 if run_id == best else 0.85,
            showlegend=False,
            hovertemplate=f"{label}<br>{plot(objective)} %{{y:.4g}} at {x} %{{x}}"
                          f"<br>final {fmt(final)}<extra></extra>",
        ))
    if not traces:
        return empty_figure(f"No {plot(objective)} yet")
    if scale is not None:
        # The colour bar: an invisible marker carrying the scale.
        traces.append(go.Scatter(
            x=[None], y=[None], mode="markers", name=plot(objective), showlegend=False,
            hoverinfo="skip",
            marker={"color": [scale.cmin], **scale.marker(f"final {plot(objective)}")},
        ))
    layout: dict[str, Any] = {
        "xaxis": {"title": {"text": x}},
        "yaxis": _y_axis(plot(objective), np.concatenate(drawn), log_y),
        "height": 420, "hovermode": "closest", "uirevision": "study-curves",
        "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
    }
    if best is not None:
        layout["title"] = {"text": f"best: {names.get(best, f'#{best}')} "
                                   f"({plot(objective)} {fmt(scores[best])}) · colour: final "
                                   f"{plot(objective)}",
                           "font": {"size": 13}, "x": 0.01}
    return go.Figure(data=traces, layout=layout)


# ---------------------------------------------------------------------------------------------
# Each hyperparameter on its own scale


@dataclass(frozen=True)
class Axis:
    """How one hyperparameter is drawn on a numeric axis: position, range and tick labels.

    ``position(value)`` is where a value sits (log10 for ``log``, log2 for ``pow2``,
    -log10(1 - beta) for ``one_minus_log``, the index for ``choice``), ``range`` the space's
    bounds in those units, and ``tickvals``/``ticktext`` label them in the user's units.
    """

    param: Param
    range: tuple[float, float]
    tickvals: tuple[float, ...]
    ticktext: tuple[str, ...]

    def position(self, value: Any) -> float:
        p = self.param
        if p.scale == "choice":
            index = p.choice_index(value)
            return float(index) if index is not None else math.nan
        try:
            v = float(value)
        except (TypeError, ValueError):
            return math.nan
        if p.scale == "log":
            return math.log10(v) if v > 0 else math.nan
        if p.scale == "pow2":
            return math.log2(v) if v > 0 else math.nan
        if p.scale == "one_minus_log":
            return -math.log10(1.0 - v) if v < 1 else math.nan
        return v

    @property
    def title(self) -> str:
        extra = {"log": " (log)", "pow2": " (log2)", "one_minus_log": " (log of 1-β)"}
        return plot(self.param.name) + extra.get(self.param.scale, "")


def hp_axis(param: Param) -> Axis:
    """The axis of ``param``: log10 with decade ticks for ``log``, and so on (see `Axis`).

    >>> from babysit.study.space import Param
    >>> a = hp_axis(Param("momentum", "one_minus_log", 0.9, 0.999))
    >>> a.ticktext, round(a.position(0.99), 6)
    (('0.9', '0.99', '0.999'), 2.0)
    """
    p = param
    if p.scale == "choice":
        choices = p.choices or ()
        return Axis(p, (-0.5, len(choices) - 0.5), tuple(float(i) for i in range(len(choices))),
                    tuple(plot(shorten(fmt(c), 40)) for c in choices))
    assert p.low is not None and p.high is not None
    probe = Axis(p, (0.0, 1.0), (), ())
    lo, hi = probe.position(p.low), probe.position(p.high)
    if p.scale == "pow2":
        first, last = p.exponents
        step = max(1, math.ceil((last - first + 1) / 8))
        ticks = [float(e) for e in range(first, last + 1, step)]
        return Axis(p, (float(first), float(last)), tuple(ticks), tuple(str(2 ** int(e)) for e in ticks))
    if p.scale in ("log", "one_minus_log"):
        ticks = _log_ticks(lo, hi)
        to_user = (lambda t: 10.0**t) if p.scale == "log" else (lambda t: 1.0 - 10.0 ** (-t))
        return Axis(p, (lo, hi), tuple(ticks), tuple(fmt(round(to_user(t), 12)) for t in ticks))
    return Axis(p, (lo, hi), (), ())      # linear and int: plotly's own ticks are fine


def _y_axis(title: str, values: Any, log: bool) -> dict[str, Any]:
    """The objective's y axis; a log one labels its own ticks (0.2, 0.5, 1, 2, ...): plotly's
    default writes 2 and 5 between decades without their decade, which reads as nonsense."""
    axis: dict[str, Any] = {"title": {"text": title}, "type": "log" if log else "linear"}
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if log and len(v):
        lo, hi = math.log10(float(v.min())), math.log10(float(v.max()))
        ticks = _log_ticks(math.floor(lo * 10) / 10, math.ceil(hi * 10) / 10)
        axis["tickvals"] = [10.0**t for t in ticks]
        axis["ticktext"] = [fmt(round(10.0**t, 12)) for t in ticks]
    return axis


def parallel_figure(
    study_runs: pd.DataFrame | None,
    space: Space,
    objective: str = "objective",
    direction: str = "min",
    *,
    log_y: bool = False,
) -> go.Figure:
    """Parallel coordinates: one axis per hyperparameter (on its own scale), then the objective.

    Log params are drawn as log10 of the value with ticks in the user's units (1e-3, 0.01,
    ...), ``one_minus_log`` params as -log10(1 - beta) with ticks 0.9, 0.99, 0.999. Only runs
    with a finite objective are drawn; lines are coloured by the objective. ``log_y`` puts
    the objective on a log axis too (when every value is > 0).
    """
    check_direction(direction)
    if study_runs is None or not len(study_runs) or "objective" not in study_runs.columns:
        return empty_figure("No finished days yet")
    values = pd.to_numeric(study_runs["objective"], errors="coerce")
    runs = study_runs[np.isfinite(values.to_numpy(dtype=np.float64))]
    if not len(runs):
        return empty_figure("No run has a finite objective yet")
    scale = _Scale.of(pd.to_numeric(runs["objective"]).to_numpy(dtype=np.float64), direction)
    assert scale is not None
    dimensions = []
    for p in space:
        if p.name not in runs.columns:
            continue
        axis = hp_axis(p)
        positions = [axis.position(v) for v in runs[p.name]]
        lo = min([axis.range[0], *[v for v in positions if math.isfinite(v)]])
        hi = max([axis.range[1], *[v for v in positions if math.isfinite(v)]])
        dim: dict[str, Any] = {"label": axis.title, "values": positions, "range": [lo, hi]}
        if axis.tickvals:
            dim["tickvals"] = list(axis.tickvals)
            dim["ticktext"] = list(axis.ticktext)
        dimensions.append(dim)
    obj = pd.to_numeric(runs["objective"]).to_numpy(dtype=np.float64)
    if log_y and bool(np.all(obj > 0)):
        logs = np.log10(obj)
        ticks = _log_ticks(float(logs.min()), float(logs.max()))
        dimensions.append({"label": f"{plot(objective)} (log)", "values": logs,
                           "tickvals": ticks, "ticktext": [fmt(round(10.0**t, 12)) for t in ticks]})
    else:
        dimensions.append({"label": plot(objective), "values": obj})
    return go.Figure(
        go.Parcoords(
            line={"color": obj, **scale.marker(plot(objective), x=1.06)},
            dimensions=dimensions, labelangle=0, labelside="top",
        ),
        layout={"height": 380, "margin": {"l": 60, "r": 110, "t": 60, "b": 30}},
    )


def hp_scatter_figure(
    study_runs: pd.DataFrame | None,
    param: Param,
    objective: str = "objective",
    direction: str = "min",
    *,
    log_y: bool = False,
) -> go.Figure:
    """One hyperparameter against the objective, on the hyperparameter's own scale.

    ``log`` and ``pow2`` get a log x axis; ``one_minus_log`` is drawn as 1 - beta on a log
    axis, reversed so beta grows to the right, and labelled in beta (0.9, 0.99, 0.999);
    ``choice`` is categorical. Points are coloured by the objective; each point's
    ``customdata`` is ``[run id, value]`` so a box or lasso selection gives back the values.
    """
    check_direction(direction)
    if study_runs is None or not len(study_runs) or param.name not in study_runs.columns:
        return empty_figure(f"No runs with {plot(param.name)} yet")
    ys = (pd.to_numeric(study_runs["objective"], errors="coerce").to_numpy(dtype=np.float64)
          if "objective" in study_runs.columns else np.full(len(study_runs), np.nan))
    raw = list(study_runs[param.name])
    ids = [int(i) for i in study_runs["id"]]
    finite = np.isfinite(ys)
    if not finite.any():
        return empty_figure("No run has a finite objective yet")
    scale = _Scale.of(ys, direction)
    assert scale is not None
    keep = [i for i in range(len(raw)) if finite[i] and _plottable(param, raw[i])]
    xs: list[Any] = [_x_value(param, raw[i]) for i in keep]
    names = _run_names(study_runs)
    # coloured like the other figures; no colour bar: the y axis is the objective already
    marker = {"size": 10, "color": [float(ys[i]) for i in keep],
              "line": {"width": 0.5, "color": "#333333"},
              **scale.marker(plot(objective), bar=False)}
    trace = go.Scatter(
        x=xs, y=[float(ys[i]) for i in keep], mode="markers", name=plot(param.name),
        marker=marker, customdata=[[ids[i], _json_value(raw[i])] for i in keep],
        hovertext=[f"{names.get(ids[i], f'#{ids[i]}')}<br>{plot(param.name)} = "
                   f"{plot(shorten(fmt(raw[i]), 80))}<br>{plot(objective)} = "
                   f"{fmt(float(ys[i]))}" for i in keep],
        hoverinfo="text", showlegend=False,
    )
    return go.Figure(data=[trace], layout={
        "xaxis": _scatter_xaxis(param),
        "yaxis": _y_axis(plot(objective), [ys[i] for i in keep], log_y),
        "height": 320, "hovermode": "closest", "dragmode": "select",
        "margin": {"l": 60, "r": 10, "t": 30, "b": 50}, "uirevision": f"hp-{param.name}",
        "title": {"text": plot(f"{param.name} · {param.describe()}"), "font": {"size": 13},
                  "x": 0.01},
    })


def _plottable(param: Param, value: Any) -> bool:
    return math.isfinite(hp_axis(param).position(value)) if param.scale != "choice" \
        else param.choice_index(value) is not None


def _x_value(param: Param, value: Any) -> Any:
    if param.scale == "choice":
        return plot(shorten(fmt(value), 40))     # the category, as hp_axis's ticktext names it
    if param.scale == "one_minus_log":
        return 1.0 - float(value)
    return float(value)


def _json_value(value: Any) -> Any:
    """customdata travels as JSON: numpy scalars become Python numbers."""
    return value.item() if isinstance(value, np.generic) else value


def _scatter_xaxis(param: Param) -> dict[str, Any]:
    axis = hp_axis(param)
    if param.scale == "choice":
        return {"title": {"text": plot(param.name)}, "type": "category",
                "categoryorder": "array", "categoryarray": list(axis.ticktext)}
    pad = 0.04 * (axis.range[1] - axis.range[0])
    if param.scale == "log":
        return {"title": {"text": axis.title}, "type": "log",
                "range": [axis.range[0] - pad, axis.range[1] + pad],
                "tickvals": [10.0**t for t in axis.tickvals], "ticktext": list(axis.ticktext)}
    if param.scale == "pow2":
        # a log axis, in log10 units (plotly's), ticked at the powers of two
        lo, hi = (axis.range[0] - pad) * math.log10(2), (axis.range[1] + pad) * math.log10(2)
        return {"title": {"text": axis.title}, "type": "log", "range": [lo, hi],
                "tickvals": [2.0**t for t in axis.tickvals], "ticktext": list(axis.ticktext)}
    if param.scale == "one_minus_log":
        # x is 1 - beta on a log axis; reversed, so the largest beta sits at the right
        return {"title": {"text": plot(f"{param.name} (log scale of 1-{param.name})")},
                "type": "log",
                "range": [-axis.range[0] + pad, -axis.range[1] - pad],
                "tickvals": [10.0 ** (-t) for t in axis.tickvals], "ticktext": list(axis.ticktext)}
    span = axis.range[1] - axis.range[0]
    return {"title": {"text": plot(param.name)}, "range": [axis.range[0] - 0.04 * span,
                                                     axis.range[1] + 0.04 * span]}


# ---------------------------------------------------------------------------------------------
# The PBT family tree


def family_tree_figure(
    study_runs: pd.DataFrame | None,
    events: pd.DataFrame | None,
    direction: str = "min",
) -> go.Figure:
    """Who copied whom, at which day: one row per run over days, an arrow per exploit.

    ``events`` holds the events of the study's runs with a ``run_id`` column; an ``exploit``
    event of run B with detail ``from_run`` A and ``from_day`` d is drawn as an edge from
    (day d, run A) to (the day B took it, run B), an arrow head at B's end; its hover says
    what changed. A fork inside the study (``parent_id``/``parent_day`` of a run) is an
    edge too, dotted. Rows are coloured by the run's final objective.

    >>> runs = pd.DataFrame({"id": [1, 2], "day": [3, 3], "objective": [0.2, 0.5]})
    >>> ev = pd.DataFrame({"run_id": [2], "kind": ["exploit"], "day": [3], "step": [200],
    ...                    "source": ["autopilot"], "detail": [{"from_run": 1, "from_day": 2}]})
    >>> [t.name for t in family_tree_figure(runs, ev).data][:2]
    ['runs', 'exploits']
    """
    if study_runs is None or not len(study_runs) or "id" not in study_runs.columns:
        return empty_figure("No runs yet")
    ids = sorted(int(i) for i in study_runs["id"])
    row = {run_id: i for i, run_id in enumerate(ids)}
    records = {int(r["id"]): r for r in study_runs.to_dict("records")}
    finals = _finals(study_runs)
    scale = _Scale.of(list(finals.values()), direction)
    names = _run_names(study_runs)

    def start_day(r: Mapping[str, Any]) -> float:
        day = _number(r.get("parent_day"))
        return day if math.isfinite(day) else 0.0

    edges = _copy_edges(events, set(ids), records)
    lx: list[float | None] = []
    ly: list[float | None] = []
    colors: list[str] = []
    last_day = max([_number(r.get("day")) for r in records.values()] + [1.0]
                   + [e["to_day"] for e in edges], key=lambda v: v if math.isfinite(v) else 0.0)
    for run_id in ids:
        r = records[run_id]
        end = _number(r.get("day"))
        lx += [start_day(r), end if math.isfinite(end) else start_day(r), None]
        ly += [-row[run_id], -row[run_id], None]
        colors.append(scale.color(finals.get(run_id, math.nan)) if scale else NO_VALUE_COLOR)

    traces: list[go.Scatter] = [go.Scatter(
        x=lx, y=ly, mode="lines", name="runs", line={"color": "#cccccc", "width": 6},
        hoverinfo="skip", showlegend=False,
    )]
    for kind, color, dash, label in (("exploit", _EXPLOIT_COLOR, "solid", "exploits"),
                                     ("fork", _FORK_COLOR, "dot", "forks")):
        mine = [e for e in edges if e["kind"] == kind]
        if not mine:
            continue
        # one segment per edge, source -> target: a dot where it comes from, an arrow head
        # (turned along the segment by angleref) where it lands
        ex: list[float | None] = []
        ey: list[float | None] = []
        # exploits of one day are vertical lines at the same x: spread them a little apart
        on_day: dict[float, int] = {}
        for e in mine:
            on_day[e["to_day"]] = on_day.get(e["to_day"], 0) + 1
        seen: dict[float, int] = {}
        for e in mine:
            k, n_day = seen.get(e["to_day"], 0), on_day[e["to_day"]]
            seen[e["to_day"]] = k + 1
            shift = 0.0 if n_day == 1 else (k - (n_day - 1) / 2) * min(0.12, 0.5 / n_day)
            ex += [e["from_day"] + shift, e["to_day"] + shift, None]
            ey += [-row[e["from_run"]], -row[e["run"]], None]
        n = len(mine)
        traces.append(go.Scatter(
            x=ex, y=ey, mode="lines+markers", name=label, legendgroup=kind,
            line={"color": color, "width": 1.6, "dash": dash},
            marker={"symbol": ["circle", "arrow", "circle"] * n, "size": [6, 14, 0] * n,
                    "angleref": "previous", "color": color},
            hovertext=[t for e in mine for t in (e["text"], e["text"], "")], hoverinfo="text",
        ))
    # the runs themselves, at the day they reached, coloured by objective
    traces.append(go.Scatter(
        x=[_number(records[i].get("day")) if math.isfinite(_number(records[i].get("day")))
           else start_day(records[i]) for i in ids],
        y=[-row[i] for i in ids], mode="markers", name="run", showlegend=False,
        marker={"size": 12, "color": colors, "line": {"width": 1, "color": "#444444"}},
        customdata=ids,
        hovertext=[f"{names.get(i, f'#{i}')}<br>{plot(records[i].get('status', ''))} · day "
                   f"{fmt(_number(records[i].get('day')))} · final {fmt(finals.get(i, math.nan))}"
                   for i in ids], hoverinfo="text",
    ))
    if scale is not None:
        traces.append(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False,
                                 hoverinfo="skip", name="objective",
                                 marker={"color": [scale.cmin], **scale.marker("final objective")}))
    return go.Figure(data=traces, layout={
        "xaxis": {"title": {"text": "day"}, "range": [-0.3, last_day + 0.8], "dtick": 1},
        "yaxis": {"tickvals": [-row[i] for i in ids], "ticktext": [f"#{i}" for i in ids],
                  "range": [-len(ids) + 0.4, 0.6], "title": {"text": "run"}},
        "height": max(260, 26 * len(ids) + 110), "hovermode": "closest",
        "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
        "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
    })


def _copy_edges(events: pd.DataFrame | None, ids: set[int],
                records: Mapping[int, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Exploit events and in-study forks as edges {kind, from_run, from_day, run, to_day, text}."""
    edges: list[dict[str, Any]] = []
    if events is not None and len(events) and {"run_id", "kind"} <= set(events.columns):
        for e in events[events["kind"] == "exploit"].to_dict("records"):
            d = _parse_detail(e.get("detail"))
            target, source = _int(e.get("run_id")), _int(d.get("from_run"))
            from_day = _number(d.get("from_day"))
            if target not in ids or source not in ids or not math.isfinite(from_day):
                continue
            # the event's day is the day in progress when the target took the copy
            day = _number(e.get("day"))
            to_day = max(from_day, day - 1) if math.isfinite(day) else from_day
            # the explore part: {hp: {old, new}} of the hyperparameters changed on top
            raw = d.get("explore")
            explore: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
            changes = ", ".join(f"{k} {fmt(v.get('old'))} → {fmt(v.get('new'))}"
                                for k, v in explore.items() if isinstance(v, Mapping))
            source_name = e.get("source") or ""
            text = plot(f"#{target} copied #{source}'s day {fmt(from_day)} weights"
                        f"{f' ({source_name})' if source_name else ''}")
            if changes:
                text += f"<br>{plot(shorten(changes, 200))}"
            if d.get("reason"):
                text += f"<br>{plot(shorten(d['reason'], 200))}"
            edges.append({"kind": "exploit", "from_run": source, "from_day": from_day,
                          "run": target, "to_day": to_day, "text": text})
    for run_id, r in records.items():
        parent, day = _int(r.get("parent_id")), _number(r.get("parent_day"))
        if parent in ids and parent != run_id and math.isfinite(day):
            edges.append({"kind": "fork", "from_run": parent, "from_day": day, "run": run_id,
                          "to_day": day, "text": f"#{run_id} forked from #{parent} at the end of day {fmt(day)}"})
    return edges


# ---------------------------------------------------------------------------------------------
# Importance


def importance_figure(importances: Mapping[str, float]) -> go.Figure:
    """Horizontal bars, most important hyperparameter on top, labelled in percent.

    >>> importance_figure({"lr": 0.8, "momentum": 0.2}).data[0].y
    ('momentum', 'lr')
    """
    items = [(plot(k), float(v)) for k, v in importances.items() if math.isfinite(float(v))]
    if not items:
        return empty_figure("No importance yet")
    items.sort(key=lambda kv: kv[1])           # plotly draws the first bar at the bottom
    return go.Figure(
        go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
               text=[f"{100 * v:.0f}%" for _, v in items], textposition="auto",
               marker={"color": "#3b528b"}, hovertemplate="%{y}: %{x:.3f}<extra></extra>"),
        layout={"height": max(180, 40 * len(items) + 60), "xaxis": {"title": {"text": "importance"},
                "range": [0, max(1.0, max(v for _, v in items))]},
                "margin": {"l": 100, "r": 20, "t": 20, "b": 40}},
    )


# ---------------------------------------------------------------------------------------------
# Small helpers


def _run_names(study_runs: pd.DataFrame | None) -> dict[int, str]:
    if study_runs is None or not len(study_runs) or "id" not in study_runs.columns:
        return {}
    names = study_runs["name"] if "name" in study_runs.columns else [""] * len(study_runs)
    # escaped for plotly: every caller puts a name into a label or hover text
    return {int(i): plot(f"#{int(i)} {shorten(n, 80)}".rstrip()) if isinstance(n, str)
            else f"#{int(i)}" for i, n in zip(study_runs["id"], names, strict=True)}


def _number(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.nan
    return f


def _int(value: Any) -> int | None:
    f = _number(value)
    return int(f) if math.isfinite(f) and not isinstance(value, bool) else None
