"""Pure frame shaping for the figures: metric frames to numpy columns, the x mapping
(step, day, time), smoothing and downsampled points. No plotly, no Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from babysit.ui.downsample import downsample_indices
from babysit.ui.fmt import _as_int, _finite, _iso, _utc_offset

XAxis = Literal["step", "day", "time"]


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



def metrics_csv(df: pd.DataFrame | None, names: Sequence[str] | None = None, *,
                superseded: bool = False) -> bytes:
    """The metric rows shown (``names``, live branch unless ``superseded``) as CSV bytes.

    >>> df = pd.DataFrame({"step": [0, 1], "name": "loss", "value": [2.0, 1.0]})
    >>> metrics_csv(df).decode().splitlines()
    ['step,name,value', '0,loss,2.0', '1,loss,1.0']
    """
    if df is None or len(df) == 0:
        return b"step,name,value\n"
    if names:
        df = df[df["name"].isin(list(names))]
    if not superseded and "superseded" in df.columns:
        df = df[~df["superseded"].eq(True)]
    columns = [c for c in ("step", "day", "time", "name", "value", "branch", "superseded")
               if c in df.columns]
    return df[columns].sort_values(["name", "step"], kind="stable").to_csv(index=False).encode()


def filter_runs(df: pd.DataFrame, text: str = "", *, hp: str | None = None,
                low: float | None = None, high: float | None = None) -> pd.DataFrame:
    """Runs whose name, project or tags contain ``text`` (any word, case-insensitive) and
    whose hyperparameter ``hp`` lies in [low, high] (runs without it are left out).

    >>> df = pd.DataFrame({"name": ["base", "warm"], "project": "p", "hp": [{"lr": 0.1}, {"lr": 0.01}]})
    >>> list(filter_runs(df, "WARM")["name"]), list(filter_runs(df, hp="lr", low=0.05)["name"])
    (['warm'], ['base'])
    """
    keep = np.ones(len(df), dtype=bool)
    words = [w for w in str(text or "").lower().split() if w]
    if words:
        tags = df["tags"] if "tags" in df.columns else pd.Series([[]] * len(df), index=df.index)
        hay = [" ".join([str(n), str(p), *map(str, t if isinstance(t, list) else [])]).lower()
               for n, p, t in zip(df["name"], df["project"], tags, strict=True)]
        keep &= np.array([all(w in h for w in words) for h in hay], dtype=bool)
    if hp:
        values = np.array([_hp_number(h, hp) for h in df["hp"]], dtype=np.float64)
        inside = np.isfinite(values)
        if low is not None:
            inside &= values >= low
        if high is not None:
            inside &= values <= high
        keep &= inside
    return df[keep]


def _hp_number(hp: Any, key: str) -> float:
    value = hp.get(key) if isinstance(hp, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)
