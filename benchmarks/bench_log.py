"""Per-call cost of ``run.log(loss=x)`` beside TensorBoard's ``SummaryWriter.add_scalar``.

Both are timed in this process with ``time.perf_counter_ns`` around a tight loop of calls
(best of 5 repeats). babysit's calls are made inside ``run.loop(steps=...)``, one repeat per
step, with the background writer running (it drains the queue into the store meanwhile, as it
would in training). The cost of the empty Python ``for`` loop is measured too and shown; it is
included in both figures.

    python benchmarks/bench_log.py
    python benchmarks/bench_log.py --calls 100000 --tb-calls 20000 --repeat 3

Target (issue): babysit <= 1/20 of add_scalar per call.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

TARGET_RATIO = 20.0


def time_empty(n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        x = 0.5
        t0 = time.perf_counter_ns()
        for _ in range(n):
            pass
        best = min(best, (time.perf_counter_ns() - t0) / n)
    del x
    return best


def time_babysit(root: str, n: int, repeat: int) -> tuple[float, float, float]:
    """(best ns per ``run.log(loss=x)``, s of ``run.finish()``, ns per row from the first call
    until every row is in the store). The writer drains the queue while the loop logs, so the
    per-call figure includes its competition for the interpreter; the last figure counts the
    whole cost of a row, whenever it is paid. Public API only, so that bench_vs_commit.py can
    run it against an older commit."""
    import babysit

    run = babysit.init(project="bench-log", config={"lr": 0.1}, day="1000 steps", root=root)
    best = float("inf")
    log = run.log
    x = 0.5
    with run:
        start = time.perf_counter_ns()
        for _step in run.loop(steps=repeat):
            t0 = time.perf_counter_ns()
            for _ in range(n):
                log(loss=x)
            best = min(best, (time.perf_counter_ns() - t0) / n)
        t1 = time.perf_counter_ns()
    end = time.perf_counter_ns()
    return best, (end - t1) / 1e9, (end - start) / (n * repeat)


def time_tensorboard(logdir: str, n: int, repeat: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(logdir)
    add = writer.add_scalar
    x = 0.5
    best = float("inf")
    step = 0
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            add("loss", x, step)
        best = min(best, (time.perf_counter_ns() - t0) / n)
        step += 1  # noqa: SIM113 - one step per repeat, as measured before
    writer.close()
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000, help="run.log calls per repeat")
    parser.add_argument("--tb-calls", type=int, default=50_000, help="add_scalar calls per repeat")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        empty = time_empty(args.calls, args.repeat)
        ours, finish_s, per_row = time_babysit(str(Path(tmp) / "store"), args.calls, args.repeat)
        tb = time_tensorboard(str(Path(tmp) / "tb"), args.tb_calls, args.repeat)

    ratio = tb / ours
    verdict = "PASS" if ratio >= TARGET_RATIO else "MISS"
    print(f"per-call cost of one scalar (best of {args.repeat}; empty for-loop = {empty:.0f} ns/iter, included)")
    print(f"{'':34} {'ns/call':>10}")
    print(f"{'babysit run.log(loss=x)':34} {ours:10.0f}   ({args.calls} calls/repeat)")
    print(f"{'tensorboard add_scalar (baseline)':34} {tb:10.0f}   ({args.tb_calls} calls/repeat)")
    print(f"ratio add_scalar / run.log: {ratio:.1f}x   target >= {TARGET_RATIO:.0f}x   {verdict}")
    print(f"(run.finish() drained {args.calls * args.repeat} queued rows to the store in {finish_s:.1f} s; "
          f"first call to the last row stored: {per_row:.0f} ns a row)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
