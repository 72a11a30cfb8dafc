"""16 writers on PostgreSQL beside SQLite: metric rows per second and commit latency.

W processes (default 16), each a trainer's outbox for its own run, insert batches of B metric
rows (``Store.insert_metrics``, one transaction each) for D seconds, as fast as they can
(``--pace 0``) or one batch every ``--pace`` seconds (a trainer flushing every 50 ms). Reported
per backend: rows/s over all writers and the p50/p99 commit latency of one batch. SQLite is the
baseline, measured in the same run; PostgreSQL runs on a throwaway server started here (Debian's
binaries as the ``postgres`` user, fsync on).

    PYTHONPATH=$PWD python benchmarks/bench_cluster_writers.py --writers 16 --seconds 10
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _writer(url: str, root: str, run_id: int, rows: int, seconds: float, pace: float,
            start_at: float, out: mp.Queue) -> None:
    from babysit.store import Store

    store = Store.open(root, url=url)
    latencies: list[float] = []
    step = 0
    time.sleep(max(0.0, start_at - time.time()))
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        batch = [(step + i, 1, "loss", float(i), time.time(), 0) for i in range(rows)]
        t0 = time.perf_counter()
        store.insert_metrics(run_id, batch)
        latencies.append(time.perf_counter() - t0)
        step += rows
        if pace:
            time.sleep(max(0.0, pace - latencies[-1]))
    store.close()
    out.put(latencies)


def measure(url: str, root: str, writers: int, rows: int, seconds: float, pace: float
            ) -> tuple[float, float, float]:
    from babysit.store import Store

    store = Store.open(root, url=url)
    runs = [store.create_run(project="bench", name=f"w{i}", config={}, hp={}, strict=False,
                             day_spec="100 steps") for i in range(writers)]
    store.close()
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start_at = time.time() + 3.0 + 0.3 * writers      # after every writer's imports
    procs = [ctx.Process(target=_writer, args=(url, root, run, rows, seconds, pace, start_at,
                                               out)) for run in runs]
    for p in procs:
        p.start()
    latencies = [x for _ in procs for x in out.get(timeout=300)]
    for p in procs:
        p.join(60)
    latencies.sort()
    return (len(latencies) * rows / seconds, statistics.median(latencies) * 1000,
            latencies[int(0.99 * (len(latencies) - 1))] * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--rows", type=int, default=50, help="rows per batch (transaction)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pace", type=float, default=0.0,
                        help="seconds between a writer's batches (0: flat out)")
    args = parser.parse_args()

    from tests import servers

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-writers-") as tmp:
        results["sqlite (baseline)"] = measure(f"sqlite:///{tmp}/babysit.db", tmp, args.writers,
                                               args.rows, args.seconds, args.pace)
    bin_dir = servers.pg_bin()
    if bin_dir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    pg = servers.Postgres.start(bin_dir, durable=True)
    try:
        results["postgresql"] = measure(pg.create_database("bench"), str(pg.tmp / "root"),
                                        args.writers, args.rows, args.seconds, args.pace)
    finally:
        pg.stop()
    pace = "flat out" if not args.pace else f"a batch every {args.pace * 1000:.0f} ms"
    print(f"{args.writers} writers, {args.rows} rows per transaction, {pace}, "
          f"{args.seconds:.0f} s")
    print(f"    {'backend':<20} {'rows/s':>10} {'p50 commit':>12} {'p99 commit':>12}")
    for name, (rate, p50, p99) in results.items():
        print(f"    {name:<20} {rate:>10.0f} {p50:>10.1f}ms {p99:>10.1f}ms")


if __name__ == "__main__":
    main()
