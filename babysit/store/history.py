"""Metric histories in SQL: packed blocks, a tail of recent rows, and the summary pyramid.

Every function takes a connection inside the caller's transaction (``Store.apply`` owns it) and
``sqlite`` (is the store a SQLite file?), which it hands to ``fastpaths``: the hot statements
(on SQLite through the driver's own cursor) live there, each beside its portable query.

A *trace* is one curve: a metric of a run on one branch, live or superseded. Points arrive in
``append``: fewer than a block wait as rows in ``metric_tail``; once a trace holds a block's
worth they are packed (``series.encode_block``) into ``metric_blocks``. In the same transaction
the buckets of every level that the new points fall in are merged with the stored ones, so the
pyramid is never stale. ``supersede`` (a rollback) moves what a trace logged from a step on
into a new superseded trace: blocks and whole buckets change owner, only the block and the one
bucket per level that straddle the step are recomputed.

``curve`` reads at most ``max_points`` buckets per trace from the one level that fits the range
(or the exact points when there are few), so its cost does not grow with the history.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from babysit.store import fastpaths, series
from babysit.store import schema as S
from babysit.store.series import BLOCK, LEVELS, Buckets, Points

MetricRow = tuple[int, int, str, float, float, int]    # step, day, name, value, time, branch
#: points per append call in bulk loads: bounds the memory of a pyramid build (~150 MB)
BULK_CHUNK = 1 << 20
#: a batch of at most this many points builds each level straight from its points
SMALL_MERGE = 4096

T, B, TL, K = S.metric_traces, S.metric_blocks, S.metric_tail, S.metric_buckets
_TRACE_COLS = ("id", "run_id", "name", "branch", "superseded", "count", "step_first",
               "step_last", "tail")


@dataclass(frozen=True)
class Trace:
    """One curve as stored: a metric of a run on one branch, live or superseded."""

    id: int
    run_id: int
    name: str
    branch: int
    superseded: bool
    count: int
    step_first: int | None
    step_last: int | None
    tail: int


def _trace(row: Any) -> Trace:
    return Trace(int(row[0]), int(row[1]), str(row[2]), int(row[3]), bool(row[4]), int(row[5]),
                 None if row[6] is None else int(row[6]), None if row[7] is None else int(row[7]),
                 int(row[8]))


# ------------------------------------------------------------------------------------ reads
def traces(conn: sa.Connection, run_id: int, names: Iterable[str] | None = None, *,
           include_superseded: bool = True) -> list[Trace]:
    """The run's traces by name, branch, superseded (live first), then id."""
    query = sa.select(*(T.c[c] for c in _TRACE_COLS)).where(T.c.run_id == run_id)
    if names is not None:
        query = query.where(T.c.name.in_([str(n) for n in names]))
    if not include_superseded:
        query = query.where(T.c.superseded == sa.false())
    query = query.order_by(T.c.name, T.c.branch, T.c.superseded, T.c.id)
    return [_trace(r) for r in conn.execute(query)]


def names(conn: sa.Connection, run_id: int) -> list[str]:
    query = sa.select(T.c.name).where(T.c.run_id == run_id).distinct().order_by(T.c.name)
    return [r[0] for r in conn.execute(query)]


def version(conn: sa.Connection, run_id: int) -> tuple[int, int, int]:
    """Changes whenever the run's curves change: (traces, newest trace id, points logged).
    A supersede makes a new trace; an append adds points. One indexed query over a few rows."""
    row = conn.execute(sa.select(sa.func.count(), sa.func.max(T.c.id), sa.func.sum(T.c.count))
                       .where(T.c.run_id == run_id)).one()
    return (int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))


def read_points(conn: sa.Connection, sqlite: bool, trace_id: int, lo: int | None = None,
                hi: int | None = None) -> Points:
    """The points of a trace with lo <= step <= hi, in step order (equal steps: arrival order)."""
    lo_ = -(2**63) if lo is None else int(lo)
    hi_ = 2**63 - 1 if hi is None else int(hi)
    blobs = fastpaths.block_data(conn, sqlite, trace_id, lo_, hi_)
    tail = fastpaths.tail_between(conn, sqlite, trace_id, lo_, hi_)
    parts = [series.decode_block(bytes(b[0])) for b in blobs]
    if tail:
        step, value, time, day = zip(*tail, strict=True)
        parts.append(Points.of(step, np.array(value, np.float64), time, day))   # None -> nan
    return Points.concat(parts).sorted().between(lo, hi)


def read_buckets(conn: sa.Connection, sqlite: bool, trace_id: int, level: int, lo: int,
                 hi: int) -> Buckets:
    """Stored buckets of one level covering steps lo..hi, in bucket order."""
    b_lo, b_hi = int(lo) >> level, int(hi) >> level
    return Buckets.from_rows(level, fastpaths.buckets(conn, sqlite, trace_id, level, b_lo, b_hi))


def trace_curve(conn: sa.Connection, sqlite: bool, trace: Trace, lo: int, hi: int,
                max_points: int) -> Buckets:
    """At most ``max_points`` buckets of ``trace`` over steps lo..hi: the exact points (level
    0) when there are that few, else the buckets of the finest level that fits."""
    if trace.count <= max_points:
        return series.points_as_buckets(read_points(conn, sqlite, trace.id, lo, hi))
    k = series.choose_level(hi - lo + 1, max_points)
    level = series.stored_level(k)
    if level is None:      # a narrow range: its points are few blocks away
        p = read_points(conn, sqlite, trace.id, lo, hi)
        b = series.points_as_buckets(p)
        return b if len(p) <= max_points else series.reduce(b, k)
    return read_buckets(conn, sqlite, trace.id, level, lo, hi)


#: columns of a curve frame (``curve``), in order
CURVE_COLUMNS = ("name", "branch", "superseded", "level", "step_lo", "step_hi", "count", "first",
                 "last", "min", "max", "step_min", "step_max", "nonfinite", "nan", "posinf",
                 "neginf", "step_nonfinite", "time", "day")


def curve(conn: sa.Connection, sqlite: bool, run_id: int, names: Iterable[str] | None = None, *,
          x_range: tuple[int | float | None, int | float | None] | None = None,
          max_points: int = 2000, include_superseded: bool = True) -> pd.DataFrame:
    """Bucket summaries of a run's curves (see ``Store.curve``)."""
    if isinstance(max_points, bool) or int(max_points) != max_points or max_points < 2:
        raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
    lo_want, hi_want = _range(x_range)
    frames = []
    for t in traces(conn, run_id, names, include_superseded=include_superseded):
        if t.count == 0 or t.step_first is None or t.step_last is None:
            continue
        lo = t.step_first if lo_want is None else max(lo_want, t.step_first)
        hi = t.step_last if hi_want is None else min(hi_want, t.step_last)
        if lo > hi:
            continue
        b = trace_curve(conn, sqlite, t, lo, hi, int(max_points))
        if len(b):
            frames.append(_frame(t, b))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=_DTYPES.get(c, "float64")) for c in CURVE_COLUMNS})
    return pd.concat(frames, ignore_index=True)


_DTYPES = {"name": "object", "branch": "int64", "superseded": "bool", "level": "int64",
           "step_lo": "int64", "step_hi": "int64", "count": "int64", "nonfinite": "int64",
           "nan": "int64", "posinf": "int64", "neginf": "int64", "day": "int64"}


def _range(x_range: Any) -> tuple[int | None, int | None]:
    if x_range is None:
        return None, None
    try:
        lo, hi = x_range
    except (TypeError, ValueError):
        raise ValueError(f"x_range must be (lo, hi) steps, got {x_range!r}") from None

    def bound(v: Any, up: bool) -> int | None:
        if v is None:
            return None
        f = float(v)
        if f != f:
            raise ValueError(f"x_range bounds must be numbers or None, got {x_range!r}")
        if f in (float("inf"), float("-inf")):
            return None
        return int(np.ceil(f)) if not up else int(np.floor(f))
    a, b = bound(lo, False), bound(hi, True)
    if a is not None and b is not None and a > b:
        a, b = b, a
    return a, b


def _frame(t: Trace, b: Buckets) -> pd.DataFrame:
    n = len(b)

    def opt_step(col: np.ndarray) -> np.ndarray:
        return np.where(col == series.NO_STEP, np.nan, col.astype(np.float64))
    return pd.DataFrame({
        "name": np.full(n, t.name, dtype=object), "branch": np.full(n, t.branch, np.int64),
        "superseded": np.full(n, t.superseded), "level": np.full(n, b.level, np.int64),
        "step_lo": b.step_first, "step_hi": b.step_last, "count": b.count, "first": b.first,
        "last": b.last, "min": b.min, "max": b.max, "step_min": opt_step(b.step_min),
        "step_max": opt_step(b.step_max), "nonfinite": b.nan + b.posinf + b.neginf,
        "nan": b.nan, "posinf": b.posinf, "neginf": b.neginf,
        "step_nonfinite": opt_step(b.step_nonfinite), "time": b.time, "day": b.day,
    })


def points_frame(conn: sa.Connection, sqlite: bool, run_id: int,
                 names: Iterable[str] | None = None, *, include_superseded: bool = False
                 ) -> pd.DataFrame:
    """Every point of a run's curves: step, day, name, value (NaN kept), time, branch,
    superseded; by name, then step. (A whole history: for export, not for drawing.)"""
    frames = []
    for t in traces(conn, run_id, names, include_superseded=include_superseded):
        p = read_points(conn, sqlite, t.id)
        n = len(p)
        frames.append(pd.DataFrame({
            "step": p.step, "day": p.day, "name": np.full(n, t.name, dtype=object),
            "value": p.value, "time": p.time, "branch": np.full(n, t.branch, np.int64),
            "superseded": np.full(n, t.superseded)}))
    cols = ["step", "day", "name", "value", "time", "branch", "superseded"]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object" if c == "name" else
                                          "bool" if c == "superseded" else
                                          "float64" if c in ("value", "time") else "int64")
                             for c in cols})
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["name", "step"], kind="stable", ignore_index=True)


def latest(conn: sa.Connection, sqlite: bool, run_id: int, name: str, *,
           include_superseded: bool = False) -> float | None:
    """The value at the largest step of ``name`` (NaN kept), or None if never logged."""
    best: tuple[int, float] | None = None
    for t in traces(conn, run_id, [name], include_superseded=include_superseded):
        if t.count == 0 or t.step_last is None:
            continue
        p = read_points(conn, sqlite, t.id, t.step_last, t.step_last)
        if len(p) and (best is None or t.step_last >= best[0]):
            best = (t.step_last, float(p.value[-1]))
    return None if best is None else best[1]


def latest_of(conn: sa.Connection, run_ids: Sequence[int], name: str) -> dict[int, float]:
    """``name`` at the latest live step of each run (NaN kept), in three queries whatever the
    number of runs (the Runs page): the live traces, then their tail rows at that step, then
    the last block of the traces whose last point is already packed."""
    ids = [int(i) for i in run_ids]
    if not ids:
        return {}
    rows = conn.execute(sa.select(T.c.id, T.c.run_id, T.c.step_last).where(
        T.c.run_id.in_(ids), T.c.name == name, T.c.superseded == sa.false(),
        T.c.step_last.is_not(None)).order_by(T.c.id)).all()
    last: dict[int, tuple[int, int]] = {}          # run -> (step_last, trace id), newest trace
    for trace_id, run_id, step in rows:
        if run_id not in last or step >= last[run_id][0]:
            last[int(run_id)] = (int(step), int(trace_id))
    if not last:
        return {}
    found: dict[int, float] = {}
    by_trace = {t: (run, step) for run, (step, t) in last.items()}
    for trace_id, step, value in conn.execute(sa.select(TL.c.trace_id, TL.c.step, TL.c.value)
                                              .where(TL.c.trace_id.in_(list(by_trace)))
                                              .order_by(TL.c.id)):
        run, want = by_trace[int(trace_id)]
        if int(step) == want:
            found[run] = math.nan if value is None else float(value)
    packed = [t for t, (run, _) in by_trace.items() if run not in found]
    if packed:
        inner = B.alias("newest")
        newest = sa.select(sa.func.max(inner.c.step_last)).where(
            inner.c.trace_id == B.c.trace_id).scalar_subquery()
        for trace_id, data in conn.execute(sa.select(B.c.trace_id, B.c.data).where(
                B.c.trace_id.in_(packed), B.c.step_last == newest).order_by(B.c.id)):
            run, want = by_trace[int(trace_id)]
            p = series.decode_block(bytes(data)).sorted().between(want, want)
            if len(p):
                found[run] = float(p.value[-1])
    return found


# ----------------------------------------------------------------------------------- writes
def new_trace(conn: sa.Connection, run_id: int, name: str, branch: int, superseded: bool
              ) -> Trace:
    result = conn.execute(sa.insert(T).values(
        run_id=run_id, name=name, branch=branch, superseded=superseded, count=0, tail=0))
    key = result.inserted_primary_key
    assert key is not None
    return Trace(int(key[0]), run_id, name, branch, superseded, 0,
                 None, None, 0)


def live_trace(conn: sa.Connection, run_id: int, name: str, branch: int) -> Trace:
    """The live trace of (run, name, branch), created if missing."""
    row = conn.execute(sa.select(*(T.c[c] for c in _TRACE_COLS)).where(
        T.c.run_id == run_id, T.c.name == name, T.c.branch == branch,
        T.c.superseded == sa.false()).order_by(T.c.id.desc()).limit(1)).first()
    return _trace(row) if row is not None else new_trace(conn, run_id, name, branch, False)


def _live_traces(conn: sa.Connection, sqlite: bool, run_id: int) -> dict[tuple[str, int], Trace]:
    """The run's live traces by (name, branch): one query for a whole batch."""
    rows = fastpaths.live_traces(conn, sqlite, run_id, _TRACE_COLS)
    return {(t.name, t.branch): t for t in map(_trace, rows)}


def append(conn: sa.Connection, sqlite: bool, run_id: int, rows: Sequence[MetricRow]) -> None:
    """Add (step, day, name, value, time, branch) rows: the trainer's write, one batch.

    The whole batch is one pass whatever the number of metrics in it: one trace lookup, one
    insert of tail rows, one pyramid reduction per level for all traces together, one read,
    delete and insert of the buckets it touches, one update of the traces."""
    if not rows:
        return
    n = len(rows)

    def column(i: int, dtype: type[np.generic]) -> np.ndarray:
        # a column at a time: zip(*rows) of 100k rows costs 5x more
        try:
            return np.fromiter(map(itemgetter(i), rows), dtype, n)
        except TypeError:       # a None (NULL) value among them: nan
            return np.array(list(map(itemgetter(i), rows)), dtype)
    p = Points(column(0, np.int64), column(3, np.float64), column(4, np.float64),
               column(1, np.int64))
    branches = column(5, np.int64)
    codes, uniques = pd.factorize(pd.Series(list(map(itemgetter(2), rows)), dtype=object),
                                  sort=False)
    key = codes.astype(np.int64)
    if not bool(np.all(branches == branches[0])):
        key = key * (int(branches.max()) + 1) + branches
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    starts = np.flatnonzero(series._edges(key_sorted))
    groups = [order[a:b] for a, b in zip(starts, np.append(starts[1:], n), strict=True)]
    known = _live_traces(conn, sqlite, run_id)
    traces_ = []
    for pos in groups:
        i = int(pos[0])
        name, branch = str(uniques[codes[i]]), int(branches[i])
        t = known.get((name, branch))
        traces_.append(t if t is not None else new_trace(conn, run_id, name, branch, False))
    _append_many(conn, sqlite, traces_, [p.take(pos) for pos in groups])


def append_points(conn: sa.Connection, sqlite: bool, trace: Trace, p: Points) -> Trace:
    """Add points to one trace (the bulk path: arrays in, no per-row Python), in chunks of
    ``BULK_CHUNK`` points. Returns the trace as it is now."""
    for start in range(0, len(p), BULK_CHUNK):
        trace = _append_many(conn, sqlite, [trace],
                             [p.take(slice(start, start + BULK_CHUNK))])[0]
    return trace


def _append_many(conn: sa.Connection, sqlite: bool, traces_: list[Trace], parts: list[Points]
                 ) -> list[Trace]:
    """Add ``parts[i]`` to ``traces_[i]``: points to the tail or packed into blocks, the
    buckets of every level merged, the traces' counts and extents updated."""
    tail_rows: list[tuple] = []
    out: list[Trace] = []
    for t, p in zip(traces_, parts, strict=True):
        p = p.sorted()
        total = t.tail + len(p)
        if total >= BLOCK:
            held = read_tail(conn, sqlite, t.id) if t.tail else None
            every = Points.concat([held, p]).sorted() if held is not None else p
            full = total // BLOCK * BLOCK
            _insert_blocks(conn, sqlite, t.id, [every.take(slice(i, i + BLOCK))
                                                 for i in range(0, full, BLOCK)])
            if t.tail:
                conn.execute(sa.delete(TL).where(TL.c.trace_id == t.id))
            rest = every.take(slice(full, None))
            tail = total - full
        else:
            rest, tail = p, total
        tail_rows += _tail_rows(t.id, rest)
        first = int(p.step[0]) if t.step_first is None else min(t.step_first, int(p.step[0]))
        last = int(p.step[-1]) if t.step_last is None else max(t.step_last, int(p.step[-1]))
        out.append(Trace(t.id, t.run_id, t.name, t.branch, t.superseded, t.count + len(p),
                         first, last, tail))
    fastpaths.insert(conn, sqlite, TL, ("trace_id", "step", "day", "value", "time"), tail_rows)
    _merge_buckets(conn, sqlite, [t.id for t in traces_], parts)
    updates = [(t.count, t.step_first, t.step_last, t.tail, t.id) for t in out]
    fastpaths.update_traces(conn, sqlite, updates)
    return out


def read_tail(conn: sa.Connection, sqlite: bool, trace_id: int) -> Points:
    rows = fastpaths.tail_all(conn, sqlite, trace_id)
    if not rows:
        return Points.of([], [])
    step, value, time, day = zip(*rows, strict=True)
    return Points.of(step, np.array(value, np.float64), time, day)     # None (NULL) -> nan


def _tail_rows(trace_id: int, p: Points) -> list[tuple]:
    value = [None if v != v else v for v in p.value.tolist()]      # NaN is NULL
    return list(zip([trace_id] * len(p), p.step.tolist(), p.day.tolist(), value,
                    p.time.tolist(), strict=True))


def _insert_tail(conn: sa.Connection, sqlite: bool, trace_id: int, p: Points) -> None:
    fastpaths.insert(conn, sqlite, TL, ("trace_id", "step", "day", "value", "time"),
            _tail_rows(trace_id, p))


def _insert_blocks(conn: sa.Connection, sqlite: bool, trace_id: int, blocks: list[Points]
                   ) -> None:
    rows = [(trace_id, int(b.step[0]), int(b.step[-1]), len(b), series.encode_block(b))
            for b in blocks if len(b)]
    fastpaths.insert(conn, sqlite, B, ("trace_id", "step_first", "step_last", "count", "data"), rows)


def _merge_buckets(conn: sa.Connection, sqlite: bool, trace_ids: list[int],
                   parts: list[Points]) -> None:
    """Fold the buckets of new points (``parts[i]`` for trace ``trace_ids[i]``) into the stored
    ones: read the few stored rows the new buckets overlap (the open bucket of each level,
    when steps arrive in order), combine, and write back. The stored rows read are exactly
    those deleted and written again.

    Every level merges in one reduction: each row's key is (level, trace, bucket), so a batch
    costs a fixed number of numpy calls whatever the number of levels and traces (a loop over
    the eleven levels was most of the trainer's writer CPU)."""
    if len(parts) > MAX_OWNERS:
        for a in range(0, len(parts), MAX_OWNERS):
            _merge_buckets(conn, sqlite, trace_ids[a:a + MAX_OWNERS], parts[a:a + MAX_OWNERS])
        return
    owner = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
    p = Points.concat(parts)
    if len(p) == 0:
        return
    if int(p.step.min()) < 0 or int(p.step.max()) >= series.STEP_LIMIT:
        for trace_id, part in zip(trace_ids, parts, strict=True):   # steps beyond 2^40
            _merge_one(conn, sqlite, trace_id, series.pyramid(part))
        return
    if len(p) <= SMALL_MERGE:
        # A trainer's batch (a few rows a metric): the finest level from the points; every
        # coarser level takes those buckets as they are (bucket keys shifted), and the one
        # reduction below merges them (buckets combine associatively).
        order = np.lexsort((p.step, owner))
        p, owner = p.take(order), owner[order]
        finest = series.reduce_by(series.points_as_buckets(p, 0),
                                  series.owned_key(owner, p.step >> LEVELS[0]), LEVELS[0])
        new = {level: finest for level in LEVELS}
    else:
        # A bulk load: each level from the one below (a pyramid), then merged.
        new = series.owned_pyramid(owner, p)
    spans = {}
    for level, b in new.items():
        low, _ = series.split_key(b.bucket)
        spans[level] = (int(low.min()) >> (level - b.level), int(low.max()) >> (level - b.level))
    code_of = {trace_id: i for i, trace_id in enumerate(trace_ids)}
    stored = fastpaths.take_buckets(conn, sqlite, sorted(set(trace_ids)), spans)
    index = {level: i for i, level in enumerate(LEVELS)}
    pieces, keys = [], []
    if stored:             # stored rows first: on equal steps they arrived earlier
        old = series.Buckets.from_rows(0, [r[2:] for r in stored])
        pieces.append(old)
        keys.append(_level_key(np.array([index[int(r[1])] for r in stored], np.int64),
                               series.owned_key(np.array([code_of[int(r[0])] for r in stored]),
                                                old.bucket)))
    for level, b in new.items():
        low, codes = series.split_key(b.bucket)
        pieces.append(b)
        keys.append(_level_key(index[level], series.owned_key(codes, low >> (level - b.level))))
    merged = series.reduce_by(series.concat_buckets(*pieces), np.concatenate(keys), 0)
    level_index = merged.bucket >> LEVEL_SHIFT
    low, codes = series.split_key(merged.bucket & ((1 << LEVEL_SHIFT) - 1))
    merged = series.Buckets(0, **{**merged.columns(), "bucket": low})
    tids = np.asarray(trace_ids, np.int64)[codes].tolist()
    levels = np.asarray(LEVELS, np.int64)[level_index].tolist()
    fastpaths.insert(conn, sqlite, K, ("trace_id", "level", *series.COLUMNS),
                     [(tid, level, *r) for tid, level, r in
                      zip(tids, levels, merged.rows(), strict=True)])


#: a merge key is (level index << LEVEL_SHIFT) | (trace << OWNER_SHIFT) | bucket: 4 bits of
#: level index, so at most MAX_OWNERS traces merge at once (more are merged in chunks)
LEVEL_SHIFT = 59
MAX_OWNERS = 1 << (LEVEL_SHIFT - series.OWNER_SHIFT)


def _level_key(level_index: int | np.ndarray, owned: np.ndarray) -> np.ndarray:
    return (np.asarray(level_index, np.int64) << LEVEL_SHIFT) | owned


def _merge_one(conn: sa.Connection, sqlite: bool, trace_id: int,
               new: dict[int, Buckets]) -> None:
    """``_merge_buckets`` for one trace whose steps do not fit owned keys (< 0 or >= 2^40)."""
    spans = {level: (int(b.bucket[0]), int(b.bucket[-1])) for level, b in new.items() if len(b)}
    if not spans:
        return
    old: dict[int, list[tuple]] = {}
    for r in fastpaths.take_buckets(conn, sqlite, [trace_id], spans):
        old.setdefault(int(r[1]), []).append(tuple(r[2:]))
    out: list[tuple] = []
    for level, b in new.items():
        if level in old:
            b = series.merge(Buckets.from_rows(level, sorted(old[level])), b)
        out += [(trace_id, level, *r) for r in b.rows()]
    fastpaths.insert(conn, sqlite, K, ("trace_id", "level", *series.COLUMNS), out)


# -------------------------------------------------------------------------------- rollback
def supersede(conn: sa.Connection, sqlite: bool, run_id: int, from_step: int) -> None:
    """What the run logged from ``from_step`` on becomes an abandoned branch: kept, never
    deleted. Each live trace with points there hands them to a new superseded trace (same
    name and branch): blocks and whole buckets change owner, the block and the one bucket per
    level that straddle ``from_step`` are recomputed. Cost: the rows after the step, not the
    history before it."""
    s = int(from_step)
    for t in traces(conn, run_id, include_superseded=False):
        if t.count == 0 or t.step_last is None or t.step_last < s:
            continue
        _split_trace(conn, sqlite, t, s)


def _split_trace(conn: sa.Connection, sqlite: bool, t: Trace, s: int) -> None:
    old = new_trace(conn, t.run_id, t.name, t.branch, True)
    # blocks wholly at or after s change owner; one that straddles s is cut in two
    moved = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(B.c.count), 0)).where(
        B.c.trace_id == t.id, B.c.step_first >= s)).scalar_one()
    conn.execute(sa.update(B).where(B.c.trace_id == t.id, B.c.step_first >= s)
                 .values(trace_id=old.id))
    straddling = list(conn.execute(sa.select(B.c.id, B.c.data).where(
        B.c.trace_id == t.id, B.c.step_first < s, B.c.step_last >= s)))
    for block_id, data in straddling:
        p = series.decode_block(bytes(data))
        cut = int(np.searchsorted(p.step, s, side="left"))
        before, after = p.take(slice(0, cut)), p.take(slice(cut, None))
        conn.execute(sa.update(B).where(B.c.id == block_id).values(
            step_last=int(before.step[-1]), count=len(before), data=series.encode_block(before)))
        _insert_blocks(conn, sqlite, old.id, [after])
        moved += len(after)
    tail_moved = conn.execute(sa.select(sa.func.count()).where(
        TL.c.trace_id == t.id, TL.c.step >= s)).scalar_one()
    conn.execute(sa.update(TL).where(TL.c.trace_id == t.id, TL.c.step >= s)
                 .values(trace_id=old.id))
    moved += tail_moved
    # buckets wholly at or after s change owner; the straddling one of each level is rebuilt,
    # finest first, each from the level below (the finest from the points themselves)
    for level in LEVELS:
        first_whole = (s + (1 << level) - 1) >> level
        conn.execute(sa.update(K).where(K.c.trace_id == t.id, K.c.level == level,
                                        K.c.bucket >= first_whole).values(trace_id=old.id))
    for level in LEVELS:
        if s % (1 << level) == 0:
            continue
        b = s >> level
        conn.execute(sa.delete(K).where(K.c.trace_id == t.id, K.c.level == level,
                                        K.c.bucket == b))
        for trace_id in (t.id, old.id):
            lo, hi = b << level, ((b + 1) << level) - 1
            if level == LEVELS[0]:
                part = series.reduce(series.points_as_buckets(
                    read_points(conn, sqlite, trace_id, lo, hi)), level)
            else:
                below = LEVELS[LEVELS.index(level) - 1]
                part = series.reduce(read_buckets(conn, sqlite, trace_id, below, lo, hi), level)
            fastpaths.insert(conn, sqlite, K, ("trace_id", "level", *series.COLUMNS),
                    [(trace_id, level, *r) for r in part.rows()])
    # the two traces' extents
    for trace_id, count, tail in ((t.id, t.count - moved, t.tail - tail_moved),
                                  (old.id, moved, tail_moved)):
        lo_hi = conn.execute(sa.select(sa.func.min(K.c.step_first), sa.func.max(K.c.step_last))
                             .where(K.c.trace_id == trace_id, K.c.level == LEVELS[-1])).one()
        conn.execute(sa.update(T).where(T.c.id == trace_id).values(
            count=count, tail=tail, step_first=lo_hi[0] if count else None,
            step_last=lo_hi[1] if count else None))


# ------------------------------------------------------------------------------- migration
def build_from_rows(conn: sa.Connection, sqlite: bool, *, batch: int = BULK_CHUNK) -> int:
    """Pack the rows of the v3 ``metrics`` table into traces (schema v4's migration); returns
    the number of rows packed. Streams one (run, name, branch, superseded) at a time."""
    m = S.metrics_v3.c
    groups = list(conn.execute(sa.select(m.run_id, m.name, m.branch, m.superseded).distinct()
                               .order_by(m.run_id, m.name, m.branch, m.superseded)))
    done = 0
    for run_id, name, branch, superseded in groups:
        trace = new_trace(conn, int(run_id), str(name), int(branch), bool(superseded))
        query = sa.select(m.step, m.value, m.time, m.day).where(
            m.run_id == run_id, m.name == name, m.branch == branch,
            m.superseded == superseded).order_by(m.step, m.id)
        result = conn.execution_options(yield_per=batch).execute(query)
        for chunk in result.partitions(batch):
            step, value, time, day = zip(*chunk, strict=True)
            p = Points.of(step, np.array(value, np.float64), time, day)
            trace = append_points(conn, sqlite, trace, p)
            done += len(p)
    return done
