"""What every dashboard figure shares: status and event colours, the empty figure and the
non-finite markers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from babysit.format import fmt
from babysit.ui.downsample import downsample_indices
from babysit.ui.frames import _XMapper

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
    "checkpoint_corrupt": ("square-x-open", "#d62728"),
    "store_refused": ("x", "#d62728"),
    "not_reproducible": ("asterisk-open", "#e377c2"),
    "throttled": ("hourglass", "#7f7f7f"),
    "finished": ("circle", "#1f77b4"),
    "stopped": ("square-open", "#7f7f7f"),
    "exploit": ("triangle-down", "#8c564b"),
    "explore": ("triangle-up-open", "#8c564b"),
}
_UNKNOWN_EVENT = ("circle", "#7f7f7f")

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
        self.text.extend(f"{label}: {fmt(v)} at step {int(s)}{note}" for s, v in zip(steps[keep], values[keep], strict=True))
        self.faded.extend([superseded] * len(keep))

    def trace(self, *, top: float, yaxis: str = "y4") -> go.Scatter:
        return go.Scatter(
            x=self.x, y=[top] * len(self.x), yaxis=yaxis, xaxis="x", mode="markers", name="nan / inf",
            marker={"symbol": "x", "color": _NONFINITE_COLOR, "size": 9,
                    "opacity": [0.35 if f else 1.0 for f in self.faded]},
            hovertext=self.text, hoverinfo="text",
        )


