"""The live charts of the Run and Compare pages: a plotly figure drawn by a small component of
babysit's own, which also reports the x range a user zooms or pans it to.

Why not ``st.plotly_chart``: it loads plotly's full bundle (4.7 MB, every trace type, maps,
WebGL), whose evaluation alone took ~0.8 s of a fresh tab's main thread on these 2 cores,
before the first curve could be drawn (issue 15: under 3 s from navigation). These charts use
scatter traces only, which plotly's "basic" bundle draws (1.1 MB, ~0.25 s; MIT, vendored in
``chart_frontend/``, served by Streamlit from the installed package: no network). The Study
and Lineage pages (parallel coordinates, ...) keep ``st.plotly_chart``.

The zoom: ``st.plotly_chart`` reports selections but not zooms, so a zoom would only magnify
the ~2,000 buckets of the whole-run view. This component sends back plotly's relayout events
that move the x axis: ``{"xaxis.range[0]": a, "xaxis.range[1]": b}`` after a zoom or a pan,
``{"xaxis.autorange": True}`` after a double click. The page turns it into a window
(``curves.chart_window``), the window into steps (``curves.window_steps``), re-reads that
range at full detail (``Store.curve(x_range=...)``) and redraws with the window as the x range,
so a live refresh every 2 s keeps the zoom.

    window = chart_window(chart.zoom("run_figure", revision=f"run_{run_id}_step"))
    ...
    chart.draw(figure, key="run_figure", revision=f"run_{run_id}_step")

``revision`` names what a zoom is a zoom of (a run and its x axis): a zoom made under another
revision (the day axis, another run) is not applied, so those start from the whole run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st
import streamlit.components.v1 as components

_FRONTEND = Path(__file__).with_name("chart_frontend")
#: the component's name as Streamlit serves it (``/component/<COMPONENT>/<file>``): the module
#: that declares it, then the declared name
COMPONENT = f"{__name__}.babysit_chart"
#: plotly's basic bundle, in ``chart_frontend/``
PLOTLY = "plotly-basic.min.js"
#: plotly config of these charts: a double click always means "the whole run" (plotly's
#: default first resets to the figure's own range, which after a zoom is the zoom)
CONFIG = {"doubleClick": "autosize", "displaylogo": False}
#: the session-state slot remembering which revision each chart was last drawn under
_DRAWN = "babysit_chart_revision_"


def zoom(key: str, *, revision: str) -> dict[str, Any] | None:
    """The last x relayout of the chart ``draw(..., key=key)`` made under ``revision`` (None:
    none yet, or the chart was last drawn under another revision). Call it before building the
    figure, so the chart is drawn with the zoom it reports."""
    if st.session_state.get(_DRAWN + key) != revision:
        return None
    value = st.session_state.get(key)
    if not isinstance(value, dict) or value.get("revision") != revision \
            or not isinstance(value.get("relayout"), dict):
        return None
    return dict(value["relayout"])


def figure_json(figure: go.Figure) -> str:
    """The figure as the frame draws it: plotly's JSON without its default template (7 KB a
    refresh; the frame applies the page's theme instead)."""
    figure.layout.template = None        # the caller's figure: it is drawn once, here
    return figure.to_json()


def draw(figure: go.Figure, *, key: str, revision: str) -> None:
    """Draw ``figure`` as the chart ``key``; a later :func:`zoom` reports its zooms made under
    ``revision``. Redrawn with a new figure (a live refresh), the frame stays: plotly updates
    the curves in place (``Plotly.react``) and keeps a zoom the figure's ``uirevision`` keeps."""
    st.session_state[_DRAWN + key] = revision
    # declared on each use, not at import: Streamlit registers a component (the folder its
    # frame is served from) only inside a script run, and ``babysit ui`` imports the pages
    # before its server starts (babysit.ui.warm); declared then, the frame was a 404
    frame = components.declare_component("babysit_chart", path=str(_FRONTEND))
    height = figure.layout.height
    frame(figure=figure_json(figure), revision=revision, config=CONFIG,
          height=int(height) if height else 450, key=key, default=None)
