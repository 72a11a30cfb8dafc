"""Sustained logging: a tight loop logging 10 scalars a step for 60 s (issue 13, item 3).

A real ``babysit.init`` run on a fresh SQLite store; the loop does nothing but ``run.log`` ten
values a step inside ``run.loop`` (the worst case: no model to hide the writer behind). Reports:
rows logged, rows/s the store took (rows in it / time until ``finish()`` returned), how long
``finish()`` took, the most items the queue held and their memory (bytes per queued row measured
with tracemalloc), the loop's throttled time, the process's peak RSS and the WAL's peak size,
and whether the store holds exactly the rows logged. Baselines in the same run: the same loop
appending the same tuples to a list (what the loop could produce with no store at all) and
TensorBoard's ``SummaryWriter.add_scalar`` for the same ten values a step.

    python benchmarks/bench_logging.py                 # 60 s + 2 x 10 s of baselines
    python benchmarks/bench_logging.py --seconds 10
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import babysit  # noqa: E402
from babysit.store import Store  # noqa: E402

NAMES = [f"m{i}" for i in range(10)]


def bytes_per_queued_row() -> float:
    """What one queued row costs: the tuple, its floats; the step int and name are shared."""
    rows = []
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for step in range(10_000):
        now = time.time()
        for i, name in enumerate(NAMES):
            rows.append((step, 1, name, float(step + i), now, 0))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / len(rows)


def baseline_list(seconds: float) -> float:
    """Rows/s the loop produces into a plain list (no store, no thread)."""
    rows: list[tuple] = []
    put = rows.append
    n = 0
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    step = 0
    while True:
        now = time.time()
        for i, name in enumerate(NAMES):
            put((step, 1, name, float(step + i), now, 0))
        n += 10
        step += 1
        if len(rows) > 1_000_000:
            rows.clear()
        if step % 1000 == 0 and time.monotonic() > deadline:
            break
    return n / (time.monotonic() - started)


def baseline_tensorboard(seconds: float, logdir: Path) -> float:
    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(str(logdir))
    n = 0
    step = 0
    started = time.monotonic()
    deadline = started + seconds
    while True:
        for i, name in enumerate(NAMES):
            writer.add_scalar(name, float(step + i), step)
        n += 10
        step += 1
        if step % 100 == 0 and time.monotonic() > deadline:
            break
    rate = n / (time.monotonic() - started)
    writer.close()
    return rate


def sample(stop: threading.Event, root: Path, out: dict) -> None:
    proc = psutil.Process()
    wal = root / "babysit.db-wal"
    while not stop.is_set():
        out["rss"] = max(out.get("rss", 0), proc.memory_info().rss)
        with contextlib.suppress(FileNotFoundError):
            out["wal"] = max(out.get("wal", 0), wal.stat().st_size)
        stop.wait(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--baseline-seconds", type=float, default=10.0)
    args = ap.parse_args()
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores)")
    per_row = bytes_per_queued_row()
    list_rate = baseline_list(args.baseline_seconds)
    with tempfile.TemporaryDirectory(prefix="bench-logging-") as d:
        root = Path(d) / "store"
        tb_rate = baseline_tensorboard(args.baseline_seconds, Path(d) / "tb")
        rss0 = psutil.Process().memory_info().rss
        run = babysit.init(project="bench", day="1000000 steps", root=root)
        outbox = run._state.outbox
        peaks: dict = {}
        stop = threading.Event()
        sampler = threading.Thread(target=sample, args=(stop, root, peaks), daemon=True)
        sampler.start()
        logged = 0
        started = time.monotonic()
        deadline = started + args.seconds
        for step in run.loop(steps=10**12):
            run.log(m0=float(step), m1=float(step + 1), m2=float(step + 2), m3=float(step + 3),
                    m4=float(step + 4), m5=float(step + 5), m6=float(step + 6),
                    m7=float(step + 7), m8=float(step + 8), m9=float(step + 9))
            logged += 10
            if step % 1000 == 0 and time.monotonic() > deadline:
                break
        loop_s = time.monotonic() - started
        finish_started = time.monotonic()
        run.finish()
        finish_s = time.monotonic() - finish_started
        total_s = time.monotonic() - started
        stop.set()
        sampler.join()
        store = Store.open(root, create=False)
        stored = sum(len(store.metrics(run.id, [n])) for n in NAMES)
        events = store.events(run.id)
        throttled = events[events.kind == "throttled"]
        store.close()
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print(f"{'':38}{'rows/s':>12}")
    print(f"{'loop into a plain list (baseline)':38}{list_rate:12,.0f}")
    print(f"{'TensorBoard add_scalar (baseline)':38}{tb_rate:12,.0f}")
    print(f"{'babysit: logged by the loop':38}{logged / loop_s:12,.0f}   "
          f"({logged:,} rows in {loop_s:.1f} s)")
    print(f"{'babysit: written to the store':38}{stored / total_s:12,.0f}   "
          f"(until finish() returned)")
    print()
    print(f"finish() took {finish_s:.2f} s; rows in the store {stored:,} = rows logged "
          f"{logged:,}: {'PASS' if stored == logged and outbox.unwritten == 0 else 'MISS'}")
    print(f"peak queue: {outbox.peak_queued:,} items x {per_row:.0f} B = "
          f"{outbox.peak_queued * per_row / 1e6:.1f} MB (bound {outbox.max_queued:,} items); "
          f"peak RSS growth {(peaks.get('rss', rss0) - rss0) / 1e6:.0f} MB")
    print(f"loop throttled {outbox.throttled_s:.1f} s of {loop_s:.1f} s; {len(throttled)} "
          f"throttled event(s), {sum(d['seconds'] for d in throttled.detail):.1f} s recorded")
    print(f"peak WAL size {peaks.get('wal', 0) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
