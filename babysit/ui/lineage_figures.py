"""The Lineage page's figure: the run family tree."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from babysit.ui.fmt import _as_int, _finite, _is_missing, _parse_detail, run_label
from babysit.ui.plotting import STATUS_COLORS, empty_figure, status_color
from babysit.ui.text import plot, shorten


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
        ltext.append(f"end of day {day}" if day is not None else "day ?")
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
             plot(f"{r['status']} · {day} days saved · step {step}")]
    if r["hp"]:
        lines.append(plot(run_label({"id": r["id"], "hp": r["hp"]}, max_hps=8).partition(" ")[2]))
    if r["parent_id"] is not None:
        at = f" at the end of day {r['parent_day']}" if r["parent_day"] is not None else ""
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
