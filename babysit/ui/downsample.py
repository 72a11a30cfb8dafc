"""Shrink long learning curves to a few thousand points without losing a single spike.

A browser chokes on a million-point line, and a line drawn from every 100th point hides
exactly what a babysitter looks for: the one step where the loss jumped. So the x range
is cut into buckets and each bucket keeps its first, last, lowest and highest point (the
"min-max-first-last" rule, also known as M4). A lone spike is the max (or min) of its
bucket and always survives. Non-finite values (nan, +inf, -inf) are never dropped nor
sampled at random: each kind keeps its own first and last point per bucket, and
``Downsampled.nonfinite`` marks them so the figure can draw them as markers.

>>> import numpy as np
>>> x = np.arange(1_000_000)
>>> y = np.zeros(1_000_000); y[123_457] = 50.0
>>> out = downsample(x, y, max_points=1500)
>>> len(out.x) <= 1500, 50.0 in out.y
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = ["Downsampled", "downsample", "downsample_frame", "downsample_indices"]

# Points kept per bucket for the finite values (first, last, min, max) and per non-finite
# kind present (first, last): the bucket count is chosen so the total stays <= max_points.
_FINITE_PER_BUCKET = 4
_NONFINITE_PER_BUCKET = 2


class Downsampled(NamedTuple):
    """The kept points, in x order, and a mask of those whose y is nan or ±inf."""

    x: np.ndarray
    y: np.ndarray
    nonfinite: np.ndarray


def _bucket_starts(x: np.ndarray, n_buckets: int) -> np.ndarray:
    """Start position of each non-empty bucket of sorted ``x``, buckets of equal x width.

    Equal widths cut a dense train curve and a sparse val curve the same way. Found by
    binary search on the bucket edges, so no per-point bucket array is ever built.
    """
    n = len(x)
    kind = x.dtype.kind
    xi = x.view(np.int64) if kind == "M" else x
    lo, hi = xi[0], xi[-1]
    if kind in "iuM" and not (kind == "M" and (np.isnat(x[0]) or np.isnat(x[-1]))) and hi > lo:
        # x >= edge  <=>  x >= ceil(edge) for integers: search integer edges, no float copy of x.
        edges = np.ceil(lo + (hi - lo) * (np.arange(1, n_buckets) / n_buckets)).astype(xi.dtype)
        cuts = np.searchsorted(xi, edges, side="left")
    elif kind == "f" and np.isfinite(lo) and np.isfinite(hi) and hi > lo:
        edges = lo + (hi - lo) * (np.arange(1, n_buckets) / n_buckets)
        cuts = np.searchsorted(xi, edges, side="left")
    else:  # constant or non-finite x: buckets of equal count instead
        cuts = (np.arange(1, n_buckets, dtype=np.int64) * n) // n_buckets
    starts = np.concatenate(([0], cuts))
    keep = np.ones(len(starts), dtype=bool)
    keep[:-1] = starts[1:] > starts[:-1]
    keep[-1] = starts[-1] < n
    return starts[keep]


def _first_hit_per_bucket(hit: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Position of the first True of ``hit`` in each bucket that has one."""
    pos = np.flatnonzero(hit)
    bucket = np.searchsorted(starts, pos, side="right")
    first = np.ones(len(pos), dtype=bool)
    first[1:] = bucket[1:] != bucket[:-1]
    return pos[first]


def _first_last_per_bucket(pos: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """First and last of the sorted positions ``pos`` in each bucket that has any."""
    if len(pos) == 0:
        return pos
    first = np.searchsorted(pos, starts, side="left")
    last = np.searchsorted(pos, ends, side="left") - 1
    has = (first < len(pos)) & (pos[np.minimum(first, len(pos) - 1)] < ends)
    return np.concatenate((pos[first[has]], pos[last[has]]))


def _select(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Kept positions of ``y`` along sorted ``x`` (unsorted result, may repeat)."""
    n = len(y)
    finite = np.isfinite(y)
    all_finite = bool(finite.all())
    kinds: list[np.ndarray] = []
    if not all_finite:
        kinds = [m for m in (np.isnan(y), y == np.inf, y == -np.inf) if m.any()]
    per_bucket = _FINITE_PER_BUCKET + _NONFINITE_PER_BUCKET * len(kinds)
    starts = _bucket_starts(x, max(1, max_points // per_bucket))
    ends = np.concatenate((starts[1:], [n]))
    counts = ends - starts

    if all_finite:
        parts = [starts, ends - 1]
        low_y = high_y = y
    else:
        parts = [_first_last_per_bucket(np.flatnonzero(finite), starts, ends)]
        parts += [_first_last_per_bucket(np.flatnonzero(m), starts, ends) for m in kinds]
        # nan/inf must not win a bucket's min or max: they have their own points above.
        low_y = np.where(finite, y, np.inf)
        high_y = np.where(finite, y, -np.inf)
    for values, reduce in ((low_y, np.minimum), (high_y, np.maximum)):
        hit = values == np.repeat(reduce.reduceat(values, starts), counts)
        if not all_finite:
            hit &= finite  # a bucket with no finite value would "hit" its fill everywhere
        parts.append(_first_hit_per_bucket(hit, starts))
    return np.concatenate(parts)


def downsample_indices(x: np.ndarray, y: np.ndarray, max_points: int | None = 1500) -> np.ndarray:
    """Positions of the points :func:`downsample` keeps, in x order.

    ``max_points=None`` keeps every point (only sorted by x). Input already sorted by x and
    no longer than ``max_points`` comes back as ``arange(len(x))``.

    >>> downsample_indices(np.array([0, 1, 2]), np.array([1.0, 5.0, 2.0])).tolist()
    [0, 1, 2]
    """
    xs = np.asarray(x)
    ys = np.asarray(y, dtype=np.float64)
    if xs.ndim != 1 or ys.ndim != 1 or len(xs) != len(ys):
        raise ValueError(
            f"x and y must be 1-d arrays of the same length, got shapes {xs.shape} and {ys.shape}"
        )
    if max_points is not None and (isinstance(max_points, bool) or int(max_points) != max_points or max_points < 4):
        raise ValueError(f"max_points must be an integer >= 4 or None, got {max_points!r}")
    n = len(ys)
    order: np.ndarray | None = None
    # NaN and NaT compare False, so x holding them counts as unsorted and goes to the end.
    if n > 1 and not bool(np.all(xs[1:] >= xs[:-1])):
        order = np.argsort(xs, kind="stable")
        xs, ys = xs[order], ys[order]
    if max_points is None or n <= max_points:
        keep = np.arange(n)
    else:
        keep = np.unique(_select(xs, ys, int(max_points)))
    return keep if order is None else order[keep]


def downsample(x: np.ndarray, y: np.ndarray, max_points: int | None = 1500) -> Downsampled:
    """Keep at most about ``max_points`` points of a curve, every spike and non-finite value included.

    The x range is cut into ``max_points // 4`` buckets of equal width (of equal count
    where x is constant or not finite); each bucket keeps its first, last, min and max point. When
    y holds nan or ±inf, each kind present costs two more points per bucket (its first and
    last) and the bucket count shrinks so the total stays at most ``max_points`` (for
    ``max_points >= 10``). The result is in x order; ``nonfinite`` marks kept nan/±inf values.
    Short input already in x order is returned unchanged. ``max_points=None`` keeps all.

    >>> out = downsample(np.arange(5), np.array([1.0, np.nan, 3.0, np.inf, 2.0]))
    >>> out.nonfinite.tolist()
    [False, True, False, True, False]
    """
    keep = downsample_indices(x, y, max_points)
    xs = np.asarray(x)
    ys = np.asarray(y, dtype=np.float64)
    if len(keep) == len(ys) and (len(keep) == 0 or bool(np.all(keep[1:] > keep[:-1]))):
        out_x, out_y = xs, ys
    else:
        out_x, out_y = xs[keep], ys[keep]
    return Downsampled(out_x, out_y, ~np.isfinite(out_y))


def downsample_frame(
    df: pd.DataFrame,
    max_points: int | None = 1500,
    *,
    x: str = "step",
    y: str = "value",
    by: Sequence[str] = ("name", "branch", "superseded"),
) -> pd.DataFrame:
    """Downsample a metrics frame curve by curve: one :func:`downsample` per (name, branch).

    Rows are grouped by the columns of ``by`` that the frame has (``superseded`` too, as a
    branch can be live up to a rollback point and abandoned after it); each group keeps
    whole rows, in x order, with its original index. Columns absent from ``by`` are ignored.

    >>> df = pd.DataFrame({"step": range(10_000), "name": "loss", "value": 1.0, "branch": 0})
    >>> len(downsample_frame(df, 400)) <= 400
    True
    """
    if df is None or len(df) == 0:
        return df
    for col in (x, y):
        if col not in df.columns:
            raise ValueError(f"metrics frame has no {col!r} column, columns are {list(df.columns)}")
    keys = [k for k in by if k in df.columns]
    xs = df[x].to_numpy()
    ys = pd.to_numeric(df[y], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if keys:
        groups = df.groupby(keys, sort=True, dropna=False).indices.values()
    else:
        groups = [np.arange(len(df))]
    kept = [pos[downsample_indices(xs[pos], ys[pos], max_points)] for pos in groups]
    return df.iloc[np.concatenate(kept)]
