"""Curves of long runs: what a view costs at 1e4 .. 1e7 logged points per metric (issue 13).

For each size, one run of ``--metrics`` metrics (a noisy decaying loss with spikes and a nan,
an accuracy, an lr schedule, a gradient norm) is written through the store's bulk path
(``Store.append_points``: the same packing and summaries as the trainer's writes), and the
same values into a parquet file, a TensorBoard event file and a table of rows like today's
``metrics`` (for the baselines). Then, medians of ``--repeat``:

- cold first view: a fresh store handle and an empty ``CurveCache``, the view of every metric
  (store read -> points), then ``run_figure`` on it (what the Run page draws);
- warm refresh: one more step logged (not timed: the trainer's write), then the same view
  again (re-read, since it moved);
- zoom: a 1 % range in the middle at full detail (``x_range``);
- baselines measured in the same run: today's path (every row read, then ``run_figure``
  downsampling them), the parquet read of the same values (+ the spike-keeping downsample),
  TensorBoard's ``EventAccumulator`` with its default reservoir and with every point;
- bytes on disk per logged scalar for babysit, today's rows, TensorBoard and parquet.

Then the Compare page: ``--compare-runs`` runs x ``--compare-points`` points, one metric, cold,
warm and a zoom into 1 % of the steps (views + ``compare_panels_figure``, the page's figure),
beside the parquet read of the same (data only). And at the largest size, a check that the one
spike is visible at every zoom level from the whole run down to its own step.

    python benchmarks/bench_history.py                       # 1e4..1e7, TB up to 1e5 (~15 min)
    python benchmarks/bench_history.py --sizes 1e4 1e5 --compare-runs 4 --repeat 3

Targets (issue 13): each view under 1 s at 1e7 (goal 300 ms), Compare 20 x 1e6 under 1 s,
bytes per scalar at most TensorBoard's.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babysit.store import Store  # noqa: E402
from babysit.ui.compare_figures import compare_panels_figure  # noqa: E402
from babysit.ui.curves import CurveCache  # noqa: E402
from babysit.ui.downsample import downsample  # noqa: E402
from babysit.ui.figures import run_figure  # noqa: E402

T0 = 1_700_000_000.0
NAMES = ("loss", "accuracy", "lr", "grad_norm")
TARGET_S, GOAL_S = 1.0, 0.3


def values_of(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / max(n, 1)
    if name == "loss":
        v = 0.3 + 2.0 * np.exp(-5 * t) + 0.05 * rng.standard_normal(n)
        v[rng.integers(0, n, 3)] *= 20.0                     # spikes
        v[n // 3] = np.nan                                   # a nan
        v[n // 2 + 7] = 97.0                                 # the spike checked at every zoom
        return v
    if name == "accuracy":
        return np.clip(0.5 + 0.45 * (1 - np.exp(-4 * t)) + 0.01 * rng.standard_normal(n), 0, 1)
    if name == "lr":
        return 0.1 * 0.5 * (1 + np.cos(np.pi * t))
    return np.abs(1.0 + 0.3 * rng.standard_normal(n))


def times_of(n: int, rng: np.random.Generator) -> np.ndarray:
    return T0 + np.cumsum(0.05 + 0.01 * rng.random(n))


def median_time(fn: Callable[[], object], repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


# ---------------------------------------------------------------------------------- writers
def write_babysit(root: Path, n: int, names: tuple[str, ...], seed: int = 0,
                  run_name: str = "run") -> tuple[Store, int, dict[str, np.ndarray]]:
    store = Store.open(root)
    run_id = store.create_run(project="bench", name=run_name, config={}, hp={},
                              day_spec="1000 steps")
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    times = times_of(n, rng)
    data = {}
    for name in names:
        data[name] = values_of(name, n, rng)
        store.append_points(run_id, name, steps, data[name], times, steps // 10_000)
    data["time"] = times
    return store, run_id, data


def store_bytes(root: Path) -> int:
    db = root / "babysit.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return sum(p.stat().st_size for p in root.iterdir() if p.name.startswith("babysit.db"))


def write_rows_table(path: Path, n: int, names: tuple[str, ...], data: dict) -> None:
    """Today's layout: one row per point in a table like schema v3's ``metrics``."""
    con = sqlite3.connect(path)
    con.executescript("""
        PRAGMA journal_mode=WAL;
        CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL,
            step INTEGER NOT NULL, day INTEGER NOT NULL, name VARCHAR(200) NOT NULL,
            value FLOAT, time FLOAT NOT NULL, branch INTEGER NOT NULL,
            superseded BOOLEAN NOT NULL);
        CREATE INDEX ix_metrics_run_name_step ON metrics (run_id, name, step);""")
    steps = np.arange(n)
    for name in names:
        v = data[name]
        rows = zip([1] * n, steps.tolist(), (steps // 10_000).tolist(), [name] * n,
                   [None if x != x else x for x in v.tolist()], data["time"].tolist(),
                   [0] * n, [0] * n, strict=True)
        con.executemany("INSERT INTO metrics (run_id, step, day, name, value, time, branch,"
                        " superseded) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def read_rows_table(path: Path) -> pd.DataFrame:
    """Today's read (``Store.metrics``'s SQLite fast path) of a whole run."""
    con = sqlite3.connect(path)
    rows = con.execute("SELECT id, step, day, name, value, time, branch, superseded FROM"
                       " metrics WHERE run_id = ? ORDER BY name, step, id", (1,)).fetchall()
    con.close()
    df = pd.DataFrame.from_records(rows, columns=["id", "step", "day", "name", "value", "time",
                                                  "branch", "superseded"])
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    df["superseded"] = df["superseded"].astype(bool)
    return df.drop(columns=["id"])


def write_parquet(path: Path, n: int, names: tuple[str, ...], data: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    steps = np.arange(n)
    table = pa.concat_tables([pa.table({
        "name": pa.array([name] * n).dictionary_encode(), "step": steps,
        "value": data[name], "time": data["time"]}) for name in names])
    pq.write_table(table, path, row_group_size=1 << 20)


def read_parquet(path: Path, names: tuple[str, ...], x_range=None) -> list:
    import pyarrow.parquet as pq
    filters = None if x_range is None else [("step", ">=", x_range[0]),
                                           ("step", "<=", x_range[1])]
    table = pq.read_table(path, columns=["name", "step", "value"], filters=filters)
    df = table.to_pandas()
    out = []
    for name in names:
        part = df[df["name"] == name]
        out.append(downsample(part["step"].to_numpy(), part["value"].to_numpy(), 2000))
    return out


def write_tensorboard(logdir: Path, n: int, names: tuple[str, ...], data: dict) -> Path:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    writer = EventFileWriter(str(logdir), max_queue_size=10_000, flush_secs=3600)
    times = data["time"]
    cols = [data[name] for name in names]
    for i in range(n):      # one event per scalar, as SummaryWriter.add_scalar writes them
        for name, col in zip(names, cols, strict=True):
            summary = Summary(value=[Summary.Value(tag=name, simple_value=float(col[i]))])
            writer.add_event(Event(wall_time=float(times[i]), step=i, summary=summary))
    writer.close()
    return logdir


def read_tensorboard(logdir: Path, names: tuple[str, ...], every_point: bool) -> int:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    guidance = {"scalars": 0} if every_point else None
    acc = EventAccumulator(str(logdir), size_guidance=guidance) if guidance else \
        EventAccumulator(str(logdir))
    acc.Reload()
    return sum(len(acc.Scalars(name)) for name in names)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------- the bench
def view(store: Store, run_id: int, cache: CurveCache, x_range=None):
    points = cache.metrics(store, run_id, x_range=x_range)
    return points


def bench_size(n: int, names: tuple[str, ...], args, tmp: Path) -> dict:
    root = tmp / f"babysit-{n}"
    t = time.perf_counter()
    store, run_id, data = write_babysit(root, n, names)
    write_s = time.perf_counter() - t
    points = n * len(names)
    r: dict = {"n": n, "write_s": write_s, "babysit_bps": store_bytes(root) / points}
    store.close()

    def cold():
        s = Store.open(root, create=False)
        try:
            pts = view(s, run_id, CurveCache())
            run_figure(pts)
        finally:
            s.close()
    r["cold"] = median_time(cold, args.repeat)

    def cold_data_only():
        s = Store.open(root, create=False)
        try:
            view(s, run_id, CurveCache())
        finally:
            s.close()
    r["cold_data"] = median_time(cold_data_only, args.repeat)

    store = Store.open(root, create=False)
    cache = CurveCache()
    view(store, run_id, cache)
    step = [n]

    def warm() -> float:
        # the trainer logs a step (its write is not the dashboard's time), then the refresh
        store.append_points(run_id, "loss", [step[0]], [1.0], [T0 + step[0]])
        step[0] += 1
        t = time.perf_counter()
        run_figure(view(store, run_id, cache))
        return time.perf_counter() - t
    r["warm"] = statistics.median(warm() for _ in range(args.repeat))
    r["warm_same"] = median_time(lambda: view(store, run_id, cache), args.repeat)
    lo = n // 2 - n // 200
    zoom_range = (lo, lo + max(n // 100, 1) - 1)
    r["zoom"] = median_time(lambda: run_figure(view(store, run_id, CurveCache(), zoom_range)),
                            args.repeat)
    zoomed = store.curve(run_id, ["loss"], x_range=zoom_range)
    r["zoom_level"] = int(zoomed.level.iloc[0])
    r["zoom_buckets"] = len(zoomed)
    if n == max(args.sizes):
        r["spike_ok"] = spike_visible(store, run_id, n)
    r["batch"] = trainer_batch_ms(store, run_id, names, args.repeat)
    fresh = store.create_run(project="bench", name=f"fresh-{n}", config={}, hp={},
                             day_spec="1000 steps")
    r["batch_fresh"] = trainer_batch_ms(store, fresh, names, args.repeat)
    store.close()

    pq_path = tmp / f"values-{n}.parquet"
    write_parquet(pq_path, n, names, data)
    r["parquet_bps"] = pq_path.stat().st_size / points
    r["parquet"] = median_time(lambda: read_parquet(pq_path, names), args.repeat)
    r["parquet_zoom"] = median_time(lambda: read_parquet(pq_path, names, zoom_range),
                                    args.repeat)
    if n <= args.rows_max:
        rows_path = tmp / f"rows-{n}.db"
        write_rows_table(rows_path, n, names, data)
        r["rows_bps"] = rows_path.stat().st_size / points
        reps = args.repeat if n <= 100_000 else 1
        r["rows"] = median_time(lambda: run_figure(read_rows_table(rows_path)), reps)
    if n <= args.tb_max:
        logdir = write_tensorboard(tmp / f"tb-{n}", n, names, data)
        r["tb_bps"] = dir_bytes(logdir) / points
        reps = args.repeat if n <= 10_000 else 1
        r["tb_default"] = median_time(lambda: read_tensorboard(logdir, names, False), reps)
        r["tb_all"] = median_time(lambda: read_tensorboard(logdir, names, True), reps)
    return r


def trainer_batch_ms(store: Store, run_id: int, names: tuple[str, ...], repeat: int) -> float:
    """What one writer transaction of a slow trainer costs: 5 steps of every metric, as
    ``Store.apply`` gets them (median of ``repeat`` x 4 batches)."""
    from babysit.store import MetricRows
    last = store.read(lambda c: c.exec_driver_sql(
        "SELECT max(step_last) FROM metric_traces WHERE run_id = ?", (run_id,)).scalar()) or 0
    times = []
    for k in range(repeat * 4):
        rows = tuple((last + 1 + 5 * k + s, 1, name, 1.0, T0, 0) for s in range(5)
                     for name in names)
        t = time.perf_counter()
        store.apply([MetricRows(run_id, rows)])
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def spike_visible(store: Store, run_id: int, n: int) -> bool:
    """The one spike at n//2 + 7 shows, at its own step, from the whole run to its step."""
    spike = n // 2 + 7
    lo, hi = 0, n - 1
    while True:
        df = store.curve(run_id, ["loss"], x_range=(lo, hi))
        at = df[df.step_max == spike]
        if len(df) > 2000 or at.empty or at["max"].max() != 97.0:
            print(f"  spike missing at zoom ({lo}, {hi})")
            return False
        if lo == hi:
            return True
        width = (hi - lo) // 4
        lo = max(0, spike - width // 3)
        hi = min(n - 1, lo + width)


def bench_compare(args, tmp: Path) -> dict:
    root = tmp / "compare"
    store = Store.open(root)
    rng = np.random.default_rng(1)
    n = args.compare_points
    run_ids = []
    t = time.perf_counter()
    for i in range(args.compare_runs):
        run_id = store.create_run(project="bench", name=f"c{i}", config={}, hp={},
                                  day_spec="1000 steps")
        store.append_points(run_id, "loss", np.arange(n), values_of("loss", n, rng),
                            times_of(n, rng))
        run_ids.append(run_id)
    write_s = time.perf_counter() - t
    store.close()

    def page(s: Store, cache: CurveCache, x_range=None):
        # what the Compare page draws: the chosen metric of every run, one panel
        return compare_panels_figure(
            {i: cache.metrics(s, i, names=["loss"], x_range=x_range) for i in run_ids},
            ["loss"])

    def cold():
        s = Store.open(root, create=False)
        try:
            page(s, CurveCache())
        finally:
            s.close()
    out = {"runs": args.compare_runs, "n": n, "write_s": write_s,
           "cold": median_time(cold, args.repeat)}
    store = Store.open(root, create=False)
    cache = CurveCache()
    page(store, cache)
    out["warm"] = median_time(lambda: page(store, cache), args.repeat)
    lo = n // 3
    window = (lo, lo + max(n // 100, 1) - 1)
    # a zoom into 1 % of the steps: a new range, so every run is re-read (store open)
    out["zoom"] = median_time(lambda: page(store, CurveCache(), window), args.repeat)
    out["cache_mb"] = cache.nbytes / 1e6
    store.close()
    paths = []
    for i in range(args.compare_runs):
        p = tmp / f"compare-{i}.parquet"
        write_parquet(p, n, ("loss",), {"loss": values_of("loss", n, rng),
                                        "time": times_of(n, rng)})
        paths.append(p)
    out["parquet"] = median_time(lambda: [read_parquet(p, ("loss",)) for p in paths],
                                 max(1, args.repeat // 2))   # data only, no figure
    return out


def fmt_s(v: float | None) -> str:
    if v is None:
        return "      -"
    return f"{v * 1000:7.0f}" if v < 100 else f"{v:6.0f}s"


def verdict(v: float) -> str:
    return "PASS (goal)" if v <= GOAL_S else "PASS" if v <= TARGET_S else "MISS"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e4, 1e5, 1e6, 1e7])
    ap.add_argument("--metrics", type=int, default=4, help="metrics per run (max 4)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tb-max", type=float, default=1e5, help="largest size for TensorBoard")
    ap.add_argument("--rows-max", type=float, default=1e6, help="largest size for today's rows")
    ap.add_argument("--compare-runs", type=int, default=20)
    ap.add_argument("--compare-points", type=float, default=1e6)
    args = ap.parse_args()
    args.sizes = [int(s) for s in args.sizes]
    args.compare_points = int(args.compare_points)
    names = NAMES[:max(1, min(4, args.metrics))]
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores); medians of {args.repeat}; {len(names)} metrics per run")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-history-") as d:
        tmp = Path(d)
        for n in args.sizes:
            r = bench_size(n, names, args, tmp)
            results.append(r)
            print(f"  size {n:>10,}: written in {r['write_s']:.1f} s", flush=True)
        compare = bench_compare(args, tmp) if args.compare_runs else None
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print("Run page, all metrics of one run (ms; view = store read + points + run_figure)")
    print("points/metric   cold   warm  (same)   zoom1%   |  today's rows  parquet(+ds) "
          "pq zoom  TB default  TB all")
    for r in results:
        print(f"{r['n']:>13,} {fmt_s(r['cold'])} {fmt_s(r['warm'])} {fmt_s(r['warm_same'])} "
              f"{fmt_s(r['zoom'])}   |  {fmt_s(r.get('rows'))}      {fmt_s(r['parquet'])}    "
              f"{fmt_s(r['parquet_zoom'])}   {fmt_s(r.get('tb_default'))}   "
              f"{fmt_s(r.get('tb_all'))}")
    print()
    print("bytes on disk per logged scalar")
    print("points/metric  babysit  today's rows  TensorBoard  parquet")
    for r in results:
        def b(key, r=r):
            return f"{r[key]:8.1f}" if key in r else "       -"
        print(f"{r['n']:>13,} {b('babysit_bps')}     {b('rows_bps')}     {b('tb_bps')}  "
              f"{b('parquet_bps')}")
    print()
    print("a trainer's batch (5 steps x every metric) into that run / into an empty run (ms)")
    for r in results:
        print(f"{r['n']:>13,} {r['batch'] * 1000:8.1f} {r['batch_fresh'] * 1000:8.1f}")
    big = results[-1]
    print()
    print(f"at {big['n']:,} points/metric: cold {verdict(big['cold'])}, "
          f"warm {verdict(big['warm'])}, zoom {verdict(big['zoom'])} "
          f"(zoom read level {big['zoom_level']}, {big['zoom_buckets']} buckets); "
          f"data only, cold: {fmt_s(big['cold_data']).strip()} ms")
    if "spike_ok" in big:
        print(f"single-step spike visible at every zoom level: {big['spike_ok']}")
    tb = [r for r in results if "tb_bps" in r]
    if tb:
        ok = all(r["babysit_bps"] <= r["tb_bps"] for r in tb)
        print(f"bytes per scalar at most TensorBoard's: {'PASS' if ok else 'MISS'}")
    if compare:
        print()
        print(f"Compare page: {compare['runs']} runs x {compare['n']:,} points, one metric: "
              f"cold {fmt_s(compare['cold']).strip()} ms ({verdict(compare['cold'])}), warm "
              f"{fmt_s(compare['warm']).strip()} ms, zoom 1% "
              f"{fmt_s(compare['zoom']).strip()} ms; parquet read of the same "
              f"{fmt_s(compare['parquet']).strip()} ms; cache {compare['cache_mb']:.1f} MB")


if __name__ == "__main__":
    main()
