"""Zoom that re-reads: the x range a user zooms or pans a chart to, sent back to Python.

``st.plotly_chart`` reports selections but not zooms (plotly's ``relayout`` events), so a zoom
would only magnify the ~2,000 buckets of the whole-run view. ``listen(chart_key, key=...)``
places an invisible component (``zoom_frontend/index.html``, served by Streamlit from this
package, no network) that subscribes to the relayout events of the chart drawn with
``st.plotly_chart(..., key=chart_key)`` on the same page and returns the latest one that moved
the x axis: ``{"xaxis.range[0]": a, "xaxis.range[1]": b}`` after a zoom or a pan,
``{"xaxis.autorange": True}`` after a double click, None before any. The page turns it into a
window (``curves.chart_window``), the window into steps (``curves.window_steps``), re-reads
that range at full detail (``Store.curve(x_range=...)``) and redraws with the window as the
x range, so a live refresh every 2 s keeps the zoom.

The chart itself stays an ordinary ``st.plotly_chart``: Streamlit's theme, its tests
(AppTest sees the figure) and the text-never-markup rules of ``text.py`` are unchanged. The
listener reads numbers and date strings only and never writes markup.

    event = zoom.listen("run_figure", key=f"run_zoom_{run_id}")
    window = curves.chart_window(event)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
import streamlit.components.v1 as components

_FRONTEND = Path(__file__).with_name("zoom_frontend")
#: st.plotly_chart config of a zoomable chart: a double click always means "the whole run"
#: (plotly's default first resets to the figure's own range, which after a zoom is the zoom)
CHART_CONFIG = {"doubleClick": "autosize"}
#: listener keys start with this, so one constant style rule takes their frames out of the
#: layout: no gap above the chart, and no loading placeholder while the frame starts
KEY_PREFIX = "babysit_zoom_"
_OUT_OF_LAYOUT = (f"<style>[class*='st-key-{KEY_PREFIX}']{{position:absolute;height:0;"
                  "width:0;overflow:hidden;margin:0;padding:0}</style>")


def listen(chart_key: str, *, key: str) -> dict[str, Any] | None:
    """The last x relayout of the chart ``st.plotly_chart(..., key=chart_key)`` (None: none
    yet). ``key`` names this listener's state: a new key (another run, another x axis) starts
    from the whole run again. Call it before drawing the chart, in the same fragment, so the
    chart is drawn with the zoom it reports.

    >>> event = listen("run_figure", key="run_3_step")      # doctest: +SKIP
    """
    st.html(_OUT_OF_LAYOUT)              # style only: Streamlit gives it no space
    # declared on each use, not at import: Streamlit registers a component (the folder its
    # frame is served from) only inside a script run, and ``babysit ui`` imports the pages
    # before its server starts (babysit.ui.warm); declared then, the frame was a 404
    listener = components.declare_component("babysit_zoom", path=str(_FRONTEND))
    value = listener(chart_key=str(chart_key), key=KEY_PREFIX + key, default=None)
    if not isinstance(value, dict) or not isinstance(value.get("relayout"), dict):
        return None
    return dict(value["relayout"])
