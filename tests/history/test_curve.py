"""Curves read from a real store: bounded, exact when small, every spike at every zoom, and a
rollback that keeps both branches. Each test runs the SQLite fast path and the portable
SQLAlchemy statements (the ones PostgreSQL gets), on the same real SQLite file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from babysit.store import Store, history, series
from babysit.store import schema as S


@pytest.fixture(params=[True, False], ids=["sqlite-fast", "portable"])
def fast(request) -> bool:
    return request.param


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path)
    yield s
    s.close()


def new_run(store: Store) -> int:
    return store.create_run(project="p", name=f"r{np.random.randint(1 << 30)}", config={},
                            hp={}, day_spec="1000 steps")


def write(store: Store, fast: bool, fn):
    return store._write(lambda c: fn(c, store._sqlite and fast))


def read(store: Store, fast: bool, fn):
    return store.read(lambda c: fn(c, store._sqlite and fast))


def append(store, fast, run_id, name, steps, values, branch=0, times=None):
    p = series.Points.of(steps, values, times if times is not None else 1e9 + np.asarray(steps),
                         np.asarray(steps) // 1000)
    write(store, fast, lambda c, f: history.append_points(
        c, f, history.live_trace(c, run_id, name, branch), p))


def curve(store, fast, run_id, names=None, **kw) -> pd.DataFrame:
    return read(store, fast, lambda c, f: history.curve(c, f, run_id, names, **kw))


def test_small_curves_come_back_exactly(store, fast):
    run_id = new_run(store)
    rows = [(s, s // 1000, "loss", 1.0 / (s + 1), 100.0 + s, 0) for s in range(1500)]
    rows[700] = (700, 0, "loss", float("nan"), 800.0, 0)
    rows += [(s, s // 1000, "val", 2.0, 100.0 + s, 0) for s in range(0, 1500, 100)]
    write(store, fast, lambda c, f: history.append(c, f, run_id, rows))
    df = curve(store, fast, run_id)
    loss = df[df.name == "loss"]
    assert len(loss) == 1500 and (loss.level == 0).all() and (loss["count"] == 1).all()
    assert loss.step_lo.tolist() == list(range(1500))
    assert np.isnan(loss["last"].iloc[700]) and loss.nonfinite.iloc[700] == 1
    assert loss.step_nonfinite.iloc[700] == 700
    np.testing.assert_allclose(loss["last"].drop(index=700), [1.0 / (s + 1) for s in range(1500)
                                                             if s != 700])
    assert df[df.name == "val"]["last"].tolist() == [2.0] * 15
    # a range asks for just those steps
    part = curve(store, fast, run_id, ["loss"], x_range=(10, 19))
    assert part.step_lo.tolist() == list(range(10, 20))


def test_batches_of_any_size_give_the_same_curve(store, fast):
    """Rows arriving one batch at a time (tail rows, packing, bucket merges) read back like
    one bulk append."""
    rng = np.random.default_rng(3)
    n = 20_000
    values = rng.standard_normal(n)
    values[rng.integers(0, n, 20)] = np.nan
    a, b = new_run(store), new_run(store)
    append(store, fast, a, "loss", np.arange(n), values)
    start = 0
    for size in rng.integers(1, 3000, 100):
        stop = min(n, start + int(size))
        rows = [(s, s // 1000, "loss", float(values[s]), 1e9 + s, 0) for s in range(start, stop)]
        write(store, fast, lambda c, f, rows=rows: history.append(c, f, b, rows))
        start = stop
        if start == n:
            break
    assert start == n
    for kw in ({}, {"x_range": (5000, 5999)}, {"x_range": (123, 17_000), "max_points": 300}):
        left = curve(store, fast, a, **kw).drop(columns=["time"])
        right = curve(store, fast, b, **kw).drop(columns=["time"])
        pd.testing.assert_frame_equal(left, right)
    tail = read(store, fast, lambda c, f: history.traces(c, b)[0].tail)
    assert tail == n % series.BLOCK


def test_reads_are_bounded_whatever_the_history(store, fast):
    run_id = new_run(store)
    n = 300_000
    append(store, fast, run_id, "loss", np.arange(n), np.sin(np.arange(n) / 1000.0))
    for max_points in (10, 100, 2000):
        for x_range in (None, (0, 2 * max_points), (1000, 251_000), (n - 5000, n + 5000)):
            df = curve(store, fast, run_id, x_range=x_range, max_points=max_points)
            assert 0 < len(df) <= max_points, (x_range, max_points)
            lo = 0 if x_range is None else max(0, x_range[0])
            hi = n - 1 if x_range is None else min(n - 1, x_range[1])
            assert df.step_lo.iloc[0] <= lo + (1 << int(df.level.iloc[0]))
            assert df.step_hi.iloc[-1] >= hi - (1 << int(df.level.iloc[0]))
            assert df["count"].sum() >= hi - lo + 1 - 2 * (1 << int(df.level.iloc[0]))


def test_a_single_step_spike_is_visible_at_every_zoom_level(store, fast):
    """1e6 points through the bulk path (the benchmark checks 1e7): from the whole run down
    to the spike's own step, the bucket that holds it shows its value and its exact step."""
    run_id = new_run(store)
    n = 1_000_000
    rng = np.random.default_rng(0)
    values = 1.0 + 0.01 * rng.standard_normal(n)
    spike, dip, nan_at = 654_321, 98_765, 400_001
    values[spike], values[dip], values[nan_at] = 80.0, -5.0, np.nan
    append(store, fast, run_id, "loss", np.arange(n), values)
    lo, hi = 0, n - 1
    while True:
        df = curve(store, fast, run_id, ["loss"], x_range=(lo, hi))
        assert len(df) <= 2000
        assert df["max"].max() == 80.0 and df.step_max[df["max"].idxmax()] == spike
        if lo <= dip <= hi:
            assert df["min"].min() == -5.0 and df.step_min[df["min"].idxmin()] == dip
        if lo <= nan_at <= hi:
            assert df["nan"].sum() == 1 and df.step_nonfinite.min() == nan_at
        if hi == lo:
            assert df.level.tolist() == [0] and df["last"].tolist() == [80.0]
            break
        # zoom in 4x around the spike, off-centre so bucket edges move each time
        width = max(0, (hi - lo) // 4)
        lo = max(0, spike - width // 3)
        hi = min(n - 1, lo + width)
    # a pan that leaves the spike out draws it nowhere in view: an edge bucket comes back
    # whole, but its max sits at the spike's own step, outside the range
    df = curve(store, fast, run_id, ["loss"], x_range=(spike + 1, spike + 100_000))
    in_view = df.step_max.between(spike + 1, spike + 100_000)
    assert df["max"][in_view].max() < 2.0 and not in_view.all()


def test_a_rollback_keeps_both_branches_and_touches_only_what_follows(store, fast):
    """Branch 0 logs 0..199_999; a rollback to step 150_000 supersedes 150_000.. and branch 1
    logs 150_000..249_999. Both branches read back exactly, live and superseded, and the
    rollback changed only rows at or after its step (plus one bucket per level)."""
    run_id = new_run(store)
    steps0 = np.arange(200_000)
    values0 = np.cos(steps0 / 5000.0)
    values0[180_000] = 9.0                                  # a spike on the abandoned branch
    append(store, fast, run_id, "loss", steps0, values0, branch=0)
    append(store, fast, run_id, "acc", steps0[::10], np.ones(20_000), branch=0)
    s = 150_000 + 37                                        # not aligned to any bucket

    def rows_from(c, step):
        """(rows holding points at or after ``step``, all rows) of the run's traces."""
        ids = [t.id for t in history.traces(c, run_id)]
        q = ", ".join(map(str, ids))
        after = sum(c.exec_driver_sql(sql.format(q), (step,)).scalar() for sql in (
            "SELECT count(*) FROM metric_blocks WHERE trace_id IN ({}) AND step_last >= ?",
            "SELECT count(*) FROM metric_buckets WHERE trace_id IN ({}) AND step_last >= ?",
            "SELECT count(*) FROM metric_tail WHERE trace_id IN ({}) AND step >= ?"))
        total = sum(c.exec_driver_sql(sql.format(q)).scalar() for sql in (
            "SELECT count(*) FROM metric_blocks WHERE trace_id IN ({})",
            "SELECT count(*) FROM metric_buckets WHERE trace_id IN ({})",
            "SELECT count(*) FROM metric_tail WHERE trace_id IN ({})"))
        return after, total

    def count_changes(c, f):
        raw = c.connection.dbapi_connection
        before = raw.total_changes
        history.supersede(c, f, run_id, s)
        return raw.total_changes - before
    after, total = store.read(lambda c: rows_from(c, s))
    changes = write(store, fast, count_changes)
    # each row after the step changes owner once; per trace, each level's straddling bucket is
    # rebuilt on both sides, the straddling block cut in two, two trace rows written
    per_trace = 3 * len(series.LEVELS) + 6
    assert changes <= after + 2 * per_trace, (changes, after)
    assert after < total / 3
    steps1 = np.arange(s, 250_000)
    values1 = -np.ones(len(steps1))
    append(store, fast, run_id, "loss", steps1, values1, branch=1)

    live = curve(store, fast, run_id, ["loss"], include_superseded=False)
    everything = curve(store, fast, run_id, ["loss"])
    groups = {(b, sup): g for (b, sup), g in everything.groupby(["branch", "superseded"])}
    assert set(groups) == {(0, False), (0, True), (1, False)}
    assert groups[(0, False)].step_hi.max() == s - 1
    assert groups[(0, True)].step_lo.min() == s and groups[(0, True)].step_hi.max() == 199_999
    assert groups[(0, True)]["max"].max() == 9.0            # the spike stays, superseded
    assert groups[(1, False)].step_lo.min() == s
    assert live["max"].max() < 9.0 and set(live.branch) == {0, 1}
    # every level of every trace equals a summary built from scratch from its points
    for t in read(store, fast, lambda c, f: history.traces(c, run_id, ["loss"])):
        p = read(store, fast, lambda c, f, t=t: history.read_points(c, f, t.id))
        expect = series.pyramid(p)
        for level in series.LEVELS:
            got = read(store, fast, lambda c, f, t=t, level=level: history.read_buckets(
                c, f, t.id, level, 0, 1 << 40))
            for col in series.COLUMNS:
                np.testing.assert_array_equal(getattr(got, col), getattr(expect[level], col),
                                              err_msg=f"{t} level {level} {col}")
    # the exact points of both branches, and of the untouched metric
    pts = read(store, fast, lambda c, f: history.points_frame(c, f, run_id,
                                                              include_superseded=True))
    loss = pts[pts.name == "loss"]
    assert len(loss) == 200_000 + len(steps1)
    assert loss[loss.superseded].step.min() == s and loss[loss.branch == 1].step.min() == s
    acc = pts[pts.name == "acc"]
    assert len(acc) == 20_000 and acc[acc.superseded].step.min() == 150_040


def test_a_second_rollback_further_back_supersedes_the_earlier_branch_too(store, fast):
    run_id = new_run(store)
    append(store, fast, run_id, "loss", np.arange(3000), np.zeros(3000), branch=0)
    write(store, fast, lambda c, f: history.supersede(c, f, run_id, 2000))
    append(store, fast, run_id, "loss", np.arange(2000, 4000), np.ones(2000), branch=1)
    write(store, fast, lambda c, f: history.supersede(c, f, run_id, 1500))
    append(store, fast, run_id, "loss", np.arange(1500, 2500), np.full(1000, 2.0), branch=2)
    live = curve(store, fast, run_id, include_superseded=False, max_points=10_000)
    assert live.step_lo.tolist() == list(range(2500))
    assert live["last"].tolist() == [0.0] * 1500 + [2.0] * 1000
    gone = curve(store, fast, run_id, max_points=10_000)
    gone = gone[gone.superseded]
    assert sorted(gone[gone.branch == 0].step_lo) == list(range(1500, 3000))
    assert sorted(gone[gone.branch == 1].step_lo) == list(range(2000, 4000))


def test_store_curve_and_version(store):
    run_id = new_run(store)
    v0 = store.curve_version(run_id)
    store.append_points(run_id, "loss", np.arange(10), np.arange(10.0))
    v1 = store.curve_version(run_id)
    assert v1 != v0
    assert store.curve(run_id)["last"].tolist() == list(np.arange(10.0))
    assert store.curve_version(run_id) == v1               # a read changes nothing
    with pytest.raises(ValueError, match="max_points"):
        store.curve(run_id, max_points=1)
    assert store.curve(run_id, ["nope"]).empty


def test_migration_packs_existing_rows(tmp_path):
    """Schema v4's migration: a v3 store's metric rows become traces (branches and superseded
    rows included) that read back equal, and the rows table is gone."""
    path = tmp_path / "babysit.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    v3 = [t for name, t in S.metadata.tables.items() if not name.startswith("metric_")]
    rows = [(1, s, s // 1000, "loss", float(s % 7), 1e9 + s, 0, s >= 4000) for s in range(5000)]
    rows += [(1, s, s // 1000, "loss", None if s == 4100 else 1.0, 1e9 + s, 1, False)
             for s in range(4000, 6000)]
    rows += [(1, s, 0, "val", float("inf"), 1e9 + s, 0, False) for s in range(0, 4000, 500)]
    with engine.begin() as conn:
        S.metadata.create_all(conn, tables=v3)
        S.metrics_v3.create(conn)
        conn.execute(sa.insert(S.meta).values(key="schema_version", value="3"))
        conn.exec_driver_sql(
            "INSERT INTO runs (project, name, status, config, hp, strict, day_spec, day, step, "
            "branch, created, reproducible) VALUES ('p', 'r', 'finished', '{}', '{}', 0, "
            "'1000 steps', 5, 6000, 1, 1.0, 1)")
        conn.exec_driver_sql(
            "INSERT INTO metrics (run_id, step, day, name, value, time, branch, superseded)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    engine.dispose()
    store = Store.open(tmp_path)
    try:
        assert not store.read(lambda c: sa.inspect(c).has_table("metrics"))
        got = store.metrics(1, include_superseded=True)
        assert len(got) == len(rows)
        key = ["name", "branch", "superseded", "step"]
        expect = pd.DataFrame(rows, columns=["run_id", "step", "day", "name", "value", "time",
                                             "branch", "superseded"]).drop(columns=["run_id"])
        expect["value"] = expect["value"].astype(float)
        pd.testing.assert_frame_equal(got.drop(columns=["id"]).sort_values(key, ignore_index=True),
                                      expect.sort_values(key, ignore_index=True)[
                                          got.columns[1:]], check_dtype=False)
        live = store.curve(1, ["loss"], include_superseded=False, max_points=10_000)
        assert live.step_lo.tolist() == list(range(6000)) and live["nan"].sum() == 1
        assert store.latest_metric(1, "loss") == 1.0 and store.metric_names(1) == ["loss", "val"]
    finally:
        store.close()


def test_every_stored_level_is_the_summary_of_the_points(store, fast):
    """After many small batches (several metrics and branches in one batch, steps out of order
    and repeated, nan and inf among the values) and a bulk load, the buckets stored at every
    level are those of the trace's points summarized at once: the one-pass merge of all
    levels loses or doubles nothing."""
    rng = np.random.default_rng(11)
    run_id = new_run(store)
    step = 0
    for _ in range(60):
        rows = []
        for _ in range(int(rng.integers(1, 400))):
            step += int(rng.integers(0, 3))                   # repeated steps too
            s = step - int(rng.integers(0, 2) * rng.integers(0, 50))   # some arrive late
            v = float(rng.choice([rng.standard_normal(), np.nan, np.inf, -np.inf],
                                 p=[0.94, 0.02, 0.02, 0.02]))
            rows.append((s, s // 1000, str(rng.choice(["loss", "acc", "lr"])), v, 1e9 + s,
                         int(rng.integers(0, 2))))
        write(store, fast, lambda c, f, rows=rows: history.append(c, f, run_id, rows))
    bulk = np.arange(step, step + 300_000)
    append(store, fast, run_id, "loss", bulk, rng.standard_normal(len(bulk)))
    cols = ", ".join(series.COLUMNS)
    for t in read(store, fast, lambda c, f: history.traces(c, run_id)):
        p = read(store, fast, lambda c, f, t=t: history.read_points(c, f, t.id))
        assert len(p) == t.count
        want = series.pyramid(p)
        for level in series.LEVELS:
            rows = read(store, fast, lambda c, f, t=t, level=level: c.exec_driver_sql(
                f"SELECT {cols} FROM metric_buckets WHERE trace_id = ? AND level = ? "
                "ORDER BY bucket", (t.id, level)).all())
            got = series.Buckets.from_rows(level, rows)
            for name in series.COLUMNS:
                np.testing.assert_array_equal(getattr(got, name), getattr(want[level], name),
                                              err_msg=f"{t.name} b{t.branch} L{level} {name}")
