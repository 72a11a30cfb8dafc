"""The arithmetic of long curves, in numpy: bucket summaries and packed blocks of points.

A metric's history is kept twice over, both small (see docs/history.md):

- **blocks**: its points, ``BLOCK`` at a time, packed as columns (step, value, time, day), each
  column delta-encoded where that helps, byte-shuffled and zlib-compressed: about 8 bytes a
  point for a noisy float64 loss, against 46 for TensorBoard's event file.
- **buckets**: a summary pyramid. At level ``k`` a bucket covers the steps
  ``[b * 2**k, (b + 1) * 2**k)`` and keeps count, the nan/+inf/-inf counts, first and last
  (value and step), min and max (value and the step where it was reached), the first step of a
  non-finite value, and the time and day of its last point. Levels are ``LEVELS`` (2^6 .. 2^26,
  a factor of 4 apart), so any range of steps is covered by at most ``max_points`` buckets
  of one level and a read costs what is shown, not what was logged.

Buckets combine associatively (``reduce``), so the pyramid is kept up to date as points arrive
(the open bucket of each level merges with the new points' buckets) and a coarser level is built
from a finer one. Everything here is pure: arrays in, arrays out; the SQL lives in ``history``.

>>> b = summarize(np.arange(10), np.r_[np.zeros(9), 5.0], level=2)
>>> b.count.tolist(), b.max.tolist(), b.step_max.tolist()
([4, 4, 2], [0.0, 0.0, 5.0], [0, 4, 9])
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

#: points per packed block (a block is written once it is full; the rest waits as tail rows)
BLOCK = 1024
#: summary levels kept in the store: bucket widths 2^6 .. 2^26 steps, a factor of 4 apart
LEVELS: tuple[int, ...] = tuple(range(6, 27, 2))
#: "no such step" (no finite value for a min, no non-finite value) inside arrays; NULL in SQL
NO_STEP = np.iinfo(np.int64).max

#: bucket columns, in the order the store keeps them (after trace_id and level)
COLUMNS = ("bucket", "count", "nan", "posinf", "neginf", "step_first", "step_last", "first",
           "last", "min", "step_min", "max", "step_max", "step_nonfinite", "time", "day")
_INT = ("bucket", "count", "nan", "posinf", "neginf", "step_first", "step_last", "step_min",
        "step_max", "step_nonfinite", "day")
_STEP_OR_NONE = ("step_min", "step_max", "step_nonfinite")
_INT_POSITIONS = [COLUMNS.index(c) for c in _INT]


@dataclass(frozen=True)
class Points:
    """Points of one curve, as columns: step (int64), value, time (float64), day (int64)."""

    step: np.ndarray
    value: np.ndarray
    time: np.ndarray
    day: np.ndarray

    @classmethod
    def of(cls, step, value, time=None, day=None) -> Points:
        step = np.asarray(step, dtype=np.int64)
        n = len(step)
        return cls(step, np.asarray(value, dtype=np.float64).reshape(n),
                   np.zeros(n) if time is None else np.asarray(time, dtype=np.float64),
                   np.zeros(n, np.int64) if day is None else np.asarray(day, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.step)

    def take(self, index: np.ndarray | slice) -> Points:
        return Points(self.step[index], self.value[index], self.time[index], self.day[index])

    def sorted(self) -> Points:
        """In step order; equal steps keep their order of arrival (a stable sort)."""
        s = self.step
        if len(s) < 2 or bool(np.all(s[1:] >= s[:-1])):
            return self
        return self.take(np.argsort(s, kind="stable"))

    def between(self, lo: int | None, hi: int | None) -> Points:
        """The points with lo <= step <= hi (self sorted by step)."""
        a = 0 if lo is None else int(np.searchsorted(self.step, lo, side="left"))
        b = len(self) if hi is None else int(np.searchsorted(self.step, hi, side="right"))
        return self if (a, b) == (0, len(self)) else self.take(slice(a, b))

    @staticmethod
    def concat(parts: list[Points]) -> Points:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Points.of(np.zeros(0, np.int64), np.zeros(0))
        if len(parts) == 1:
            return parts[0]
        return Points(*(np.concatenate([getattr(p, f) for p in parts])
                        for f in ("step", "value", "time", "day")))


@dataclass(frozen=True)
class Buckets:
    """Bucket summaries of one curve at one level, sorted by ``bucket``; columns as COLUMNS.

    ``level`` 0 with one point per row is how exact points are handed out: then count is 1
    (or 0 nan/inf...) and min == max == first == last is the point's value.
    """

    level: int
    bucket: np.ndarray
    count: np.ndarray
    nan: np.ndarray
    posinf: np.ndarray
    neginf: np.ndarray
    step_first: np.ndarray
    step_last: np.ndarray
    first: np.ndarray
    last: np.ndarray
    min: np.ndarray
    step_min: np.ndarray
    max: np.ndarray
    step_max: np.ndarray
    step_nonfinite: np.ndarray
    time: np.ndarray
    day: np.ndarray

    def __len__(self) -> int:
        return len(self.bucket)

    def columns(self) -> dict[str, np.ndarray]:
        return {c: getattr(self, c) for c in COLUMNS}

    def take(self, index: np.ndarray | slice) -> Buckets:
        return Buckets(self.level, **{c: v[index] for c, v in self.columns().items()})

    @classmethod
    def empty(cls, level: int) -> Buckets:
        return cls(level, **{c: np.zeros(0, np.int64 if c in _INT else np.float64)
                             for c in COLUMNS})

    @classmethod
    def from_rows(cls, level: int, rows: list[tuple] | np.ndarray) -> Buckets:
        """From rows (tuples in COLUMNS order) as SQL returns them: NULL is None."""
        if len(rows) == 0:
            return cls.empty(level)
        # one conversion of the whole result (NULL -> NaN), not a Python loop per column:
        # exact while every integer fits a double's 53 bits, as steps and counts do
        table = np.array(rows, dtype=np.float64)
        if table.ndim == 2 and table.shape[1] == len(COLUMNS):
            ints = table[:, _INT_POSITIONS]
            if not (np.abs(ints[np.isfinite(ints)]) >= 2.0**53).any():
                out: dict[str, np.ndarray] = {}
                for i, name in enumerate(COLUMNS):
                    col = table[:, i]
                    if name in _STEP_OR_NONE:
                        none = np.isnan(col)
                        out[name] = np.where(none, 0.0, col).astype(np.int64)
                        out[name][none] = NO_STEP
                    elif name in _INT:
                        out[name] = col.astype(np.int64)
                    else:
                        out[name] = col
                return cls(level, **out)
        cols = list(zip(*rows, strict=True))
        out = {}
        for name, values in zip(COLUMNS, cols, strict=True):
            if name in _STEP_OR_NONE:
                out[name] = np.array([NO_STEP if v is None else v for v in values],
                                     dtype=np.int64)
            elif name in _INT:
                out[name] = np.array(values, dtype=np.int64)
            else:   # NULL is NaN: no finite value (min/max) or a nan (first/last)
                out[name] = np.array(values, dtype=np.float64)
        return cls(level, **out)

    def rows(self) -> list[tuple]:
        """Rows in COLUMNS order for SQL: NaN and NO_STEP become None (NULL)."""
        cols = []
        for name in COLUMNS:
            v = getattr(self, name)
            if name in _STEP_OR_NONE:
                cols.append([None if x == NO_STEP else x for x in v.tolist()])
            elif name in _INT:
                cols.append(v.tolist())
            else:
                cols.append([None if x != x else x for x in v.tolist()])
        return list(zip(*cols, strict=True))


def points_as_buckets(p: Points, level: int = 0) -> Buckets:
    """One bucket per point (bucket = step >> level): the input of ``reduce``."""
    v = p.value
    finite = np.isfinite(v)
    n = len(p)
    step_if_finite = np.where(finite, p.step, NO_STEP)
    return Buckets(
        level, bucket=p.step >> level, count=np.ones(n, np.int64),
        nan=np.isnan(v).astype(np.int64), posinf=(v == np.inf).astype(np.int64),
        neginf=(v == -np.inf).astype(np.int64), step_first=p.step, step_last=p.step,
        first=v, last=v, min=np.where(finite, v, np.nan), step_min=step_if_finite,
        max=np.where(finite, v, np.nan), step_max=step_if_finite,
        step_nonfinite=np.where(finite, NO_STEP, p.step), time=p.time, day=p.day)


def _edges(keys: np.ndarray) -> np.ndarray:
    """True where a run of equal keys starts (np.r_ would cost 50 us a call: it is hot here)."""
    out = np.empty(len(keys), dtype=bool)
    if len(keys):
        out[0] = True
        np.not_equal(keys[1:], keys[:-1], out=out[1:])
    return out


def _group_starts(keys: np.ndarray) -> np.ndarray:
    starts = np.flatnonzero(_edges(keys))
    return starts


def reduce(parts: Buckets, level: int) -> Buckets:
    """Combine bucket rows into buckets of ``level`` (>= parts.level): rows that fall in one
    bucket merge. Rows later in ``parts`` arrived later: on equal steps their first/last lose
    to earlier/later rows accordingly, and the earliest step wins a tied min or max."""
    return reduce_by(parts, parts.bucket >> (level - parts.level), level)


def reduce_by(parts: Buckets, keys: np.ndarray, level: int) -> Buckets:
    """``reduce`` with the rows' new bucket keys given (rows with equal keys merge)."""
    n = len(parts)
    if n == 0:
        return Buckets.empty(level)
    # Rows come in key order nearly always (appended in step order): sort only when needed.
    if bool(np.all(keys[1:] >= keys[:-1])):
        order = None
    else:
        order = np.argsort(keys, kind="stable")
        parts, keys = parts.take(order), keys[order]
    starts = _group_starts(keys)
    if len(starts) == n:
        return Buckets(level, **{**parts.columns(), "bucket": keys})
    ends = np.append(starts[1:], n)
    counts = ends - starts
    g = np.repeat(np.arange(len(starts)), counts)

    def add(col: np.ndarray) -> np.ndarray:
        return np.add.reduceat(col, starts)

    def least(col: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(col, starts)

    # first: the row with the smallest step_first (stable: the earliest row on a tie)
    first_pos = _arg_extreme(parts.step_first, g, starts, counts, smallest=True)
    last_pos = _arg_extreme(parts.step_last, g, starts, counts, smallest=False)
    mn = np.fmin.reduceat(parts.min, starts)            # NaN only where no finite value
    mx = np.fmax.reduceat(parts.max, starts)
    step_min = least(np.where(parts.min == np.repeat(mn, counts), parts.step_min, NO_STEP))
    step_max = least(np.where(parts.max == np.repeat(mx, counts), parts.step_max, NO_STEP))
    return Buckets(
        level, bucket=keys[starts], count=add(parts.count), nan=add(parts.nan),
        posinf=add(parts.posinf), neginf=add(parts.neginf),
        step_first=parts.step_first[first_pos], step_last=parts.step_last[last_pos],
        first=parts.first[first_pos], last=parts.last[last_pos], min=mn, step_min=step_min,
        max=mx, step_max=step_max, step_nonfinite=least(parts.step_nonfinite),
        time=parts.time[last_pos], day=parts.day[last_pos])


def _arg_extreme(col: np.ndarray, g: np.ndarray, starts: np.ndarray, counts: np.ndarray, *,
                 smallest: bool) -> np.ndarray:
    """Per group, the position of its smallest (earliest on ties) or largest (latest on ties)
    value of ``col``; groups are consecutive runs of rows."""
    if smallest:
        best = np.minimum.reduceat(col, starts)
        hit = col == np.repeat(best, counts)
        pos = np.flatnonzero(hit)
        first_of_group = _edges(g[pos])
        return pos[first_of_group]
    best = np.maximum.reduceat(col, starts)
    hit = col == np.repeat(best, counts)
    pos = np.flatnonzero(hit)
    gp = g[pos]
    last_of_group = np.append(gp[1:] != gp[:-1], True)
    return pos[last_of_group]


def summarize(step, value, time=None, day=None, *, level: int) -> Buckets:
    """Buckets of ``level`` over points (in any order; equal steps keep arrival order).

    >>> summarize([0, 1, 2, 3], [1.0, np.nan, 3.0, 0.5], level=1).nan.tolist()
    [1, 0]
    """
    p = Points.of(step, value, time, day).sorted()
    return reduce(points_as_buckets(p, 0), level)


def pyramid(p: Points, levels: tuple[int, ...] = LEVELS) -> dict[int, Buckets]:
    """The buckets of every level over ``p``, each level built from the one below it."""
    out: dict[int, Buckets] = {}
    below = points_as_buckets(p.sorted(), 0)
    for level in levels:
        below = out[level] = reduce(below, level)
    return out


#: buckets of several traces at once carry the key (owner << OWNER_SHIFT) | bucket; their steps
#: must be in [0, STEP_LIMIT) (2^40: a trillion steps)
OWNER_SHIFT = 40
STEP_LIMIT = 1 << OWNER_SHIFT
_LOW = STEP_LIMIT - 1


def owned_pyramid(owner: np.ndarray, p: Points, levels: tuple[int, ...] = LEVELS
                  ) -> dict[int, Buckets]:
    """The pyramids of several traces in one pass: ``owner[i]`` (a small int) says whose point
    ``i`` is. Keys are ``(owner << OWNER_SHIFT) | bucket`` (see ``split_key``), so a batch of
    rows of ten metrics costs one reduction per level, not ten.

    >>> b = owned_pyramid(np.array([0, 1, 0]), Points.of([0, 0, 70], [1.0, 2.0, 3.0]))[6]
    >>> bucket, owner = split_key(b.bucket)
    >>> bucket.tolist(), owner.tolist(), b.max.tolist()
    ([0, 1, 0], [0, 0, 1], [1.0, 3.0, 2.0])
    """
    order = np.lexsort((p.step, owner))         # stable: equal steps keep arrival order
    p, owner = p.take(order), np.asarray(owner, np.int64)[order]
    below = points_as_buckets(p, 0)
    below = Buckets(0, **{**below.columns(), "bucket": (owner << OWNER_SHIFT) | p.step})
    out: dict[int, Buckets] = {}
    for level in levels:
        shift = level - below.level
        keys = ((below.bucket >> OWNER_SHIFT) << OWNER_SHIFT) | ((below.bucket & _LOW) >> shift)
        below = out[level] = reduce_by(below, keys, level)
    return out


def split_key(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bucket, owner) of owned keys."""
    return key & _LOW, key >> OWNER_SHIFT


def owned_key(owner: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    return (np.asarray(owner, np.int64) << OWNER_SHIFT) | np.asarray(bucket, np.int64)


def concat_buckets(*parts: Buckets) -> Buckets:
    """The rows of each part in turn (the level of the last), unreduced."""
    return Buckets(parts[-1].level, **{c: np.concatenate([getattr(p, c) for p in parts])
                                       for c in COLUMNS})


def merge(old: Buckets, new: Buckets) -> Buckets:
    """Buckets of ``old`` (stored) and ``new`` (arrived since), same level, combined."""
    if len(old) == 0:
        return new
    if len(new) == 0:
        return old
    return reduce(concat_buckets(old, new), new.level)


def choose_level(span: int, max_points: int) -> int:
    """The smallest bucket width 2^k such that ``span`` steps fit in ``max_points`` buckets
    (k = 0: every step its own bucket). ``span`` is hi - lo + 1."""
    k = 0
    while (span + (1 << k) - 1) >> k > max_points - 1 and k < 62:
        k += 1
    return k


def stored_level(k: int, levels: tuple[int, ...] = LEVELS) -> int | None:
    """The stored level to read for a wanted width 2^k: the smallest stored one >= k (None:
    finer than the finest, so read the points themselves)."""
    if k < levels[0]:
        return None
    for level in levels:
        if level >= k:
            return level
    return levels[-1]


# ---------------------------------------------------------------------------- packed blocks
_HEADER = struct.Struct("<BI")        # format version, number of points
_FORMAT = 1


def _shuffle(a: np.ndarray) -> bytes:
    """Byte planes one after another (all first bytes, then all second bytes...): the sign and
    exponent bytes of floats, and the high bytes of small deltas, then compress to nearly nothing."""
    return np.ascontiguousarray(a).view(np.uint8).reshape(len(a), a.itemsize).T.tobytes()


def _unshuffle(raw: bytes, n: int, dtype: type[np.generic]) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(size, n)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(n)


def encode_block(p: Points) -> bytes:
    """Pack points (sorted by step) into bytes: step and day deltas, values as float64,
    times as microsecond deltas, each byte-shuffled, all zlib'd together.

    >>> p = Points.of([5, 6, 9], [1.0, np.nan, -np.inf], [10.0, 10.5, 11.0], [0, 0, 1])
    >>> decode_block(encode_block(p)).value.tolist()
    [1.0, nan, -inf]
    """
    n = len(p)
    us = np.round(p.time * 1e6).astype(np.int64)
    body = b"".join((
        _shuffle(np.diff(p.step, prepend=np.int64(0))),
        _shuffle(p.value.astype(np.float64, copy=False)),
        _shuffle(np.diff(us, prepend=np.int64(0))),
        _shuffle(np.diff(p.day, prepend=np.int64(0))),
    ))
    return _HEADER.pack(_FORMAT, n) + zlib.compress(body, 1)


def decode_block(data: bytes) -> Points:
    version, n = _HEADER.unpack_from(data)
    if version != _FORMAT:
        raise ValueError(f"unknown metric block format {version}")
    body = zlib.decompress(memoryview(data)[_HEADER.size:])
    w = 8 * n
    step = np.cumsum(_unshuffle(body[0:w], n, np.int64))
    value = _unshuffle(body[w:2 * w], n, np.float64)
    time = np.cumsum(_unshuffle(body[2 * w:3 * w], n, np.int64)) / 1e6
    day = np.cumsum(_unshuffle(body[3 * w:4 * w], n, np.int64))
    return Points(step, value, time, day)
