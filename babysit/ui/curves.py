"""The dashboard's curves: what it shows, read at the cost of what it shows.

``Store.curve`` hands out at most ``max_points`` buckets per trace (min, max, first, last,
count, non-finite counts and the steps where each was reached) for any range of steps, from a
summary the writer keeps up to date; this module caches those small frames per view and turns
them into the points a plotly line needs. Nothing here grows with a run's history: a view of a
10-million-step run holds the same ~2,000 buckets per curve as a view of a 10-thousand-step
one, and the cache as a whole is capped in bytes.

- ``CurveCache.view(store, run_id, names, x_range=..., max_points=...)``: the bucket frame of
  one view. A refresh costs one tiny query (``Store.curve_version``) when nothing was logged,
  one bounded read when something was.
- ``CurveCache.metrics(store, run_id, branch, x_range=...)``: the same view as points (step,
  day, name, value, time, branch, superseded), the shape ``figures.run_figure`` draws.
- ``bucket_points(buckets)``: a bucket frame as points: each bucket's first, min, max, last (at
  their own steps) and its first non-finite value, so every spike and nan stays drawn.
- ``chart_window(relayout)``: the x window a plotly relayout event leaves a chart at (steps,
  days or local date strings; None after a double click), as ``ui.chart.zoom`` reports it.
- ``window_steps(window, steps, xs)``: that window as the steps to re-read (``x_range``), so a
  zoom re-reads its range at full detail, down to single steps.

No Streamlit here: ``state.py`` keeps one ``CurveCache`` per server process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from babysit.store import Store

#: columns of ``CurveCache.metrics`` / ``bucket_points``: those of ``Store.metrics`` rows
POINT_COLUMNS = ("step", "day", "name", "value", "time", "branch", "superseded")
XRange = tuple[float | None, float | None]


@dataclass(frozen=True)
class _Entry:
    version: tuple[int, int, int]
    buckets: pd.DataFrame
    points: pd.DataFrame | None
    nbytes: int


class CurveCache:
    """Bounded views of runs' curves, re-read only when a run logged something.

    >>> cache = CurveCache()
    >>> df = cache.view(store, 3, ["loss"])                         # whole run, <= 2000 buckets
    >>> df = cache.view(store, 3, ["loss"], x_range=(1e6, 1.01e6))  # a zoom: finer buckets
    >>> pts = cache.metrics(store, 3, branch=0)                     # as points, for a figure
    """

    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()    # Streamlit serves each browser tab from its own thread

    @property
    def nbytes(self) -> int:
        """Bytes held by cached frames (at most ``max_bytes``, plus the newest view)."""
        return self._bytes

    def view(self, store: Store, run_id: int, names: Iterable[str] | None = None, *,
             x_range: XRange | None = None, max_points: int = 2000,
             include_superseded: bool = True) -> pd.DataFrame:
        """``Store.curve``'s bucket frame for this view (shared: read it, never change it)."""
        return self._get(store, run_id, names, x_range, max_points, include_superseded).buckets

    def metrics(self, store: Store, run_id: int, branch: int | None = None, *,
                names: Iterable[str] | None = None, x_range: XRange | None = None,
                max_points: int = 2000) -> pd.DataFrame:
        """The view as points (``POINT_COLUMNS``), superseded branches included: what
        ``figures.run_figure`` and ``compare_figure`` draw. ``branch`` is accepted for callers
        that key on it; the curve's own version decides when to re-read."""
        key = self._key(store, run_id, names, x_range, max_points, True)
        entry = self._get(store, run_id, names, x_range, max_points, True)
        if entry.points is None:
            points = bucket_points(entry.buckets)
            entry = _Entry(entry.version, entry.buckets, points,
                           entry.nbytes + _frame_bytes(points))
            self._put(key, entry)
        assert entry.points is not None
        return entry.points

    # ------------------------------------------------------------------------------ internals
    @staticmethod
    def _key(store: Store, run_id: int, names: Iterable[str] | None, x_range: XRange | None,
             max_points: int, include_superseded: bool) -> tuple:
        names_key = None if names is None else tuple(sorted(str(n) for n in names))
        range_key = None if x_range is None else tuple(x_range)
        return (store.url, int(run_id), names_key, range_key, int(max_points),
                bool(include_superseded))

    def _get(self, store: Store, run_id: int, names: Iterable[str] | None,
             x_range: XRange | None, max_points: int, include_superseded: bool) -> _Entry:
        names = None if names is None else list(names)
        key = self._key(store, run_id, names, x_range, max_points, include_superseded)
        version = store.curve_version(run_id)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.version == version:
                self._entries.move_to_end(key)
                return entry
        buckets = store.curve(run_id, names, x_range=x_range, max_points=max_points,
                              include_superseded=include_superseded)
        entry = _Entry(version, buckets, None, _frame_bytes(buckets))
        self._put(key, entry)
        return entry

    def _put(self, key: tuple, entry: _Entry) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[key] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes


def _frame_bytes(df: pd.DataFrame) -> int:
    # every column holds 8-byte numbers or pointers to shared name strings (bools: 1 byte,
    # counted as 8): rows x columns x 8, without pandas' memory_usage, which cost more than
    # the read itself on a 20-run Compare page
    return 8 * len(df) * (len(df.columns) + 1) + 64 * int("name" in df.columns)


def bucket_points(buckets: pd.DataFrame) -> pd.DataFrame:
    """A ``Store.curve`` frame as points to draw: per bucket its first, min, max and last
    values at their own steps, and its first non-finite value, in step order per trace.

    A bucket holding one point gives one point, so exact views come back point for point.
    ``time`` and ``day`` of the inner points are interpolated along the trace (buckets carry
    those of their last point).

    >>> bucket_points(store.curve(run_id, ["loss"]))[["step", "value"]]
    """
    if buckets is None or len(buckets) == 0:
        return pd.DataFrame({c: pd.Series(dtype="object" if c == "name" else
                                          "bool" if c == "superseded" else
                                          "float64" if c in ("value", "time") else "int64")
                             for c in POINT_COLUMNS})
    n = len(buckets)
    col = {c: buckets[c].to_numpy() for c in ("step_lo", "step_hi", "first", "last", "min",
                                              "max", "step_min", "step_max", "nan", "posinf",
                                              "step_nonfinite", "time", "day")}
    nonfinite_value = np.where(col["nan"] > 0, np.nan,
                               np.where(col["posinf"] > 0, np.inf, -np.inf))
    steps = np.stack([col["step_lo"].astype(np.float64), col["step_min"], col["step_max"],
                      col["step_nonfinite"], col["step_hi"].astype(np.float64)], axis=1)
    values = np.stack([col["first"], col["min"], col["max"], nonfinite_value, col["last"]],
                      axis=1)
    # a trace is a run of rows with the same (name, branch, superseded) and a new trace id
    # starts where step_lo goes back; rows come grouped and in step order from Store.curve
    group = _trace_groups(buckets)
    owner = np.repeat(np.arange(n), 5)
    s, v = steps.reshape(-1), values.reshape(-1)
    keep = ~np.isnan(s)                      # no finite value: no min/max point; no nan: none
    owner, s, v = owner[keep], s[keep], v[keep]
    order = np.lexsort((s, group[owner]))
    owner, s, v = owner[order], s[order], v[order]
    # one point per (bucket, step): first == min at the same step is drawn once
    same = np.r_[False, (owner[1:] == owner[:-1]) & (s[1:] == s[:-1])
                 & ((v[1:] == v[:-1]) | (np.isnan(v[1:]) & np.isnan(v[:-1])))]
    owner, s, v = owner[~same], s[~same], v[~same]
    times = np.empty(len(s))
    days = np.empty(len(s), dtype=np.int64)
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        rows = rows[np.argsort(col["step_hi"][rows], kind="stable")]
        here = np.flatnonzero(group[owner] == g)
        times[here] = np.interp(s[here], col["step_hi"][rows].astype(np.float64),
                                col["time"][rows].astype(np.float64))
        days[here] = col["day"][rows][np.clip(np.searchsorted(col["step_hi"][rows], s[here]),
                                              0, len(rows) - 1)]
    return pd.DataFrame({
        "step": s.astype(np.int64), "day": days,
        "name": buckets["name"].to_numpy()[owner], "value": v, "time": times,
        "branch": buckets["branch"].to_numpy()[owner],
        "superseded": buckets["superseded"].to_numpy()[owner].astype(bool)})


def _trace_groups(buckets: pd.DataFrame) -> np.ndarray:
    """A number per (name, branch, superseded) group of rows, in row order. ``Store.curve``
    returns each group's rows together, so a group starts wherever one of the three changes
    (cheaper than a pandas groupby on a frame this small)."""
    name = buckets["name"].to_numpy(dtype=object)
    branch = buckets["branch"].to_numpy()
    superseded = buckets["superseded"].to_numpy()
    change = (name[1:] != name[:-1]) | (branch[1:] != branch[:-1]) | \
        (superseded[1:] != superseded[:-1])
    return np.r_[0, np.cumsum(change)]


#: a window in the chart's own x units: steps, fractional days, or plotly's local date strings
Window = tuple[float | str, float | str]


def chart_window(relayout: Mapping[str, Any] | None, axis: str = "xaxis") -> Window | None:
    """The x window a plotly relayout event leaves the chart at, in the chart's own units
    (numbers; on a date axis plotly's local date strings), or None for the whole run (no
    event yet, a double click, or an event that cannot be read).

    >>> chart_window({"xaxis.range[0]": 1200.4, "xaxis.range[1]": 5000})
    (1200.4, 5000.0)
    >>> chart_window({"xaxis.range": ["2026-12-01 10:00", "2026-12-01 11:30:05.5"]})
    ('2026-12-01 10:00', '2026-12-01 11:30:05.5')
    >>> chart_window({"xaxis.autorange": True}) is None
    True
    """
    if not relayout:
        return None
    axes = sorted({k.split(".", 1)[0] for k in relayout if k.startswith(axis) and "." in k},
                  key=lambda a: (len(a), a))
    for name in axes:
        if relayout.get(f"{name}.autorange"):
            return None
        pair = relayout.get(f"{name}.range")
        if pair is None and f"{name}.range[0]" in relayout and f"{name}.range[1]" in relayout:
            pair = (relayout[f"{name}.range[0]"], relayout[f"{name}.range[1]"])
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            continue
        lo, hi = (_window_bound(v) for v in pair)
        if lo is None or hi is None:
            continue
        if isinstance(lo, str) != isinstance(hi, str):
            continue
        if (_as_ms(lo) if isinstance(lo, str) else lo) > (_as_ms(hi) if isinstance(hi, str)
                                                          else hi):
            lo, hi = hi, lo
        return (lo, hi)
    return None


def _window_bound(value: Any) -> float | str | None:
    """A finite number, or a date string pandas can read (kept as sent: the chart's own
    text for its range); anything else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        f = float(value)
        return f if np.isfinite(f) else None
    if isinstance(value, str) and len(value) <= 64:
        try:
            _as_ms(value)
        except (ValueError, OverflowError):
            return None
        return value
    return None


def _as_ms(text: str) -> float:
    stamp = pd.Timestamp(text)
    if stamp is pd.NaT or stamp.tzinfo is not None:
        raise ValueError(f"not a local date: {text!r}")
    return float(stamp.value) / 1e6


def window_steps(window: Window | None, steps: np.ndarray, xs: np.ndarray | None = None
                 ) -> tuple[int, int] | None:
    """The steps to re-read for ``window``: exactly its steps on a step axis (``xs`` None),
    else the steps of the points drawn just outside it (``xs``: those points' x, in the
    chart's units, in step order: days as numbers, times as datetime64), so the re-read
    covers the window with a point on each side. None: the whole run.

    >>> window_steps((10.2, 99.7), np.arange(1000))
    (10, 100)
    >>> days = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    >>> window_steps((0.7, 1.2), np.array([0, 50, 100, 150, 200]), days)
    (50, 150)
    """
    if window is None:
        return None
    lo, hi = window
    if xs is None:
        if isinstance(lo, str) or isinstance(hi, str):
            return None
        return int(np.floor(lo)), int(np.ceil(hi))
    steps = np.asarray(steps)
    if not len(steps):
        return None
    x = np.asarray(xs)
    if np.issubdtype(x.dtype, np.datetime64):
        x = x.astype("datetime64[ms]").astype(np.int64).astype(np.float64)
        bounds = [_as_ms(v) if isinstance(v, str) else float(v) for v in (lo, hi)]
    else:
        if isinstance(lo, str) or isinstance(hi, str):
            return None
        x = x.astype(np.float64)
        bounds = [float(lo), float(hi)]
    ok = np.isfinite(x)
    steps, x = steps[ok], x[ok]
    if not len(steps):
        return None
    order = np.argsort(x, kind="stable")
    x, steps = x[order], steps[order]
    i = max(int(np.searchsorted(x, bounds[0], side="right")) - 1, 0)
    j = min(int(np.searchsorted(x, bounds[1], side="left")), len(x) - 1)
    a, b = int(steps[i]), int(steps[j])
    return (min(a, b), max(a, b))
