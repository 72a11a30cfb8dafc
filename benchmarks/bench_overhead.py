"""Training-loop overhead of full babysitting on a small MLP step, beside the bare loop.

The task: an MLP 64 -> 256 -> 256 -> 10 (ReLU) on 8192 synthetic points, batch 64, SGD (lr 0.05,
momentum 0.9), cross-entropy, one torch thread: about 1.3 ms a step on the 2-core development
machine (the bare step time is printed). Babysat: ``run.loop(loader, steps=N)``, ``run.log(loss=
loss.item())`` every step, command polling, a day checkpoint every 3000 steps (``$BENCH_DAY``).
Bare: the same loop as a plain ``for`` over the DataLoader, also calling ``loss.item()``.

Each trial times its loop (first batch to last step) in wall time and in process CPU time (CPU
includes babysit's writer and saver threads); imports, ``init``/``attach`` and ``finish`` are
outside the clock (``finish`` is reported apart). After one untimed warm-up of each, ``--pairs``
bare/babysat pairs run interleaved, the order alternating, and the figure is the median of the
per-pair ratios babysat / bare, with their min and max: a drift in machine speed hits both
halves of a pair alike, and one disturbed pair cannot move the median.

    python benchmarks/bench_overhead.py
    python benchmarks/bench_overhead.py --steps 1000 --pairs 4      # quick check

Target (issue): babysitting makes the loop at most 2% slower.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_PCT = 2.0
# A day of 3000 of these 1 ms steps is 3 s, far shorter than the minutes to hours people
# choose, yet long enough that the figure is the loop's cost rather than the checkpoints'.
# A day checkpoint of this ~1 MB state costs about 10 ms of the loop's time (mostly the saver
# thread beside it): BENCH_DAY="300 steps" shows it, at one every 0.3 s.
DAY = os.environ.get("BENCH_DAY", "3000 steps")
TASK = "MLP 64-256-256-10, batch 64, SGD momentum 0.9, 1 torch thread"


def setup(seed: int = 0) -> tuple[Any, Any, Any]:
    """The task's loader, model and optimizer, the same for every trial."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    centers = torch.randn(10, 64) * 2.0
    y = torch.randint(0, 10, (8192,))
    x = centers[y] + torch.randn(8192, 64)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        nn.Linear(256, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    return loader, net, opt


def bare(steps: int) -> tuple[float, float, float]:
    """(wall s, process CPU s, loop thread CPU s) of ``steps`` plain steps."""
    from torch import nn

    loader, net, opt = setup()
    loss_fn = nn.CrossEntropyLoss()
    done = 0
    c0, t0, m0 = time.process_time(), time.perf_counter(), time.thread_time()
    while done < steps:
        for xb, yb in loader:
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            _ = loss.item()
            done += 1
            if done >= steps:
                break
    return time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0


def babysat(steps: int, root: str) -> tuple[float, float, float, float]:
    """(wall s, process CPU s) of ``steps`` babysat steps, the wall s of ``run.finish()``, and
    the loop thread's CPU s. Public API only, so that bench_vs_commit.py can run it against an
    older commit."""
    from torch import nn

    import babysit

    loader, net, opt = setup()
    loss_fn = nn.CrossEntropyLoss()
    run = babysit.init(project="bench-overhead", config={"lr": 0.05, "momentum": 0.9},
                       day=DAY, root=root)
    run.attach(model=net, optimizer=opt)
    c0, t0, m0 = time.process_time(), time.perf_counter(), time.thread_time()
    for xb, yb in run.loop(loader, steps=steps):
        loss = loss_fn(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log(loss=loss.item())
    wall, cpu, main = (time.perf_counter() - t0, time.process_time() - c0,
                       time.thread_time() - m0)
    t1 = time.perf_counter()
    run.finish()
    if run.step != steps:
        raise RuntimeError(f"the babysat loop made {run.step} steps, not {steps}")
    return wall, cpu, time.perf_counter() - t1, main


def machinery(steps: int, root: str, rounds: int = 3) -> tuple[float, float, float]:
    """(wall us, CPU us, loop thread CPU us) per step of babysitting alone: ``run.loop`` over
    the task's batches with the same model and optimizer attached, ``run.log`` each step and a
    day every ``DAY``, but no forward or backward pass; minus the same batches iterated bare.
    What babysit adds to each step, the writer and saver threads included (their wall-clock
    paced work, polls and flushes, spreads over more steps here than in training: a lower
    bound for that part).

    The batches are the DataLoader's, taken once into a list: iterating the DataLoader itself
    costs ~200 us a step and varies by more than 50 us from one second to the next on this
    machine, so a difference of two DataLoader loops was mostly noise (once 21.8 us where the
    quiet periods give 2-3). The two loops alternate ``rounds`` times and each figure is the
    least of its rounds: interference only ever adds time."""
    import babysit

    loader, net, opt = setup()
    batches = list(loader)
    run = babysit.init(project="bench-machinery", config={"lr": 0.05, "momentum": 0.9},
                       day=DAY, root=root)
    run.attach(model=net, optimizer=opt)
    bare_t: list[tuple[float, float, float]] = []
    ours_t: list[tuple[float, float, float]] = []
    for _ in range(rounds):
        done = 0
        c0, t0, m0 = time.process_time(), time.perf_counter(), time.thread_time()
        while done < steps:
            for _batch in batches:
                done += 1
                if done >= steps:
                    break
        bare_t.append((time.perf_counter() - t0, time.process_time() - c0,
                       time.thread_time() - m0))
        c0, t0, m0 = time.process_time(), time.perf_counter(), time.thread_time()
        for _batch in run.loop(batches, steps=run.step + steps):
            run.log(loss=0.5)
        ours_t.append((time.perf_counter() - t0, time.process_time() - c0,
                       time.thread_time() - m0))
    run.finish()
    return tuple((min(o[i] for o in ours_t) - min(b[i] for b in bare_t)) / steps * 1e6
                 for i in range(3))     # type: ignore[return-value]


def pair(steps: int, root: str, bare_first: bool) -> dict[str, float]:
    """One bare and one babysat trial (in the order given): per-step figures and the ratios."""
    out: dict[str, float] = {}
    for which in (("bare", "ours") if bare_first else ("ours", "bare")):
        if which == "bare":
            wall, cpu, main = bare(steps)
        else:
            wall, cpu, out["finish_s"], main = babysat(steps, root)
        out[f"{which}_ms"], out[f"{which}_cpu_ms"] = wall / steps * 1e3, cpu / steps * 1e3
        # CPU of the threads beside the loop: babysit's writer and saver (the bare loop has
        # none of its own: one torch thread, no DataLoader workers)
        out[f"{which}_threads_us"] = (cpu - main) / steps * 1e6
    (out["machinery_us"], out["machinery_cpu_us"],
     out["machinery_hooks_us"]) = machinery(steps, root)
    out["ratio"] = out["ours_ms"] / out["bare_ms"]
    out["cpu_ratio"] = out["ours_cpu_ms"] / out["bare_cpu_ms"]
    return out


def warm_up(root: str, steps: int = 300) -> None:
    bare(steps)
    babysat(steps, root)


def spread(values: list[float], fmt: str = "{:.3f}") -> str:
    """"median [min .. max]" of the values."""
    return (fmt.format(statistics.median(values)) + " [" + fmt.format(min(values)) + " .. "
            + fmt.format(max(values)) + "]")


def pct(ratios: list[float]) -> str:
    """Ratios as "+m.mm% [min .. max]" over 1."""
    return spread([(r - 1.0) * 100.0 for r in ratios], "{:+.2f}%")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="steps per trial")
    parser.add_argument("--pairs", type=int, default=24, help="timed bare/babysat pairs")
    args = parser.parse_args(argv)
    import torch

    import babysit  # noqa: F401 - imported before any clock starts

    torch.set_num_threads(1)
    load_before = load()
    pairs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as root:
        warm_up(root)
        for i in range(args.pairs):
            pairs.append(pair(args.steps, root, bare_first=i % 2 == 0))

    def col(key: str) -> list[float]:
        return [p[key] for p in pairs]

    ratio = statistics.median(col("ratio"))
    verdict = "PASS" if (ratio - 1.0) * 100.0 <= TARGET_PCT else "MISS"
    print(f"task: {TASK}; day = {DAY}")
    print(f"{args.pairs} interleaved pairs x {args.steps} steps; load average {load_before} "
          f"before, {load()} after (1, 5, 15 min; {os.cpu_count()} CPUs)")
    print(f"{'ms per step, median [min .. max]':34} {'wall':>24}   {'process CPU':>24}")
    print(f"{'bare loop (baseline)':34} {spread(col('bare_ms')):>24}   "
          f"{spread(col('bare_cpu_ms')):>24}")
    print(f"{'babysat loop':34} {spread(col('ours_ms')):>24}   {spread(col('ours_cpu_ms')):>24}")
    print(f"{'overhead, per-pair ratio':34} {pct(col('ratio')):>24}   {pct(col('cpu_ratio')):>24}")
    mach, mach_cpu = col("machinery_us"), col("machinery_cpu_us")
    print(f"{'babysitting alone, us (no model)':34} {spread(mach, '{:.1f}'):>24}   "
          f"{spread(mach_cpu, '{:.1f}'):>24}")
    share = statistics.median(mach_cpu) / 1e3 / statistics.median(col("bare_cpu_ms")) * 100
    print(f"  = {share:.2f}% of the bare step's CPU time (babysat loop with no model work minus "
          "the bare batches; writer and saver threads included; its ~0.2 ms steps end a day "
          "5x as often a second, so this is not the target's figure: the line below is)")
    # babysit's own CPU in the babysat trials, measured directly rather than as a difference of
    # two noisy trials: its hooks on the loop thread (the no-model loop's thread CPU over the
    # bare batches', least of 3 alternated rounds each) plus its threads (process CPU minus the loop thread's, net of the same in
    # the bare trials)
    bare_ms = statistics.median(col("bare_cpu_ms"))
    hooks = statistics.median(col("machinery_hooks_us"))
    threads = [o - b for o, b in zip(col("ours_threads_us"), col("bare_threads_us"),
                                     strict=True)]
    own = hooks + statistics.median(threads)
    own_pct = own / 1e3 / bare_ms * 100
    print(f"{'babysit own CPU, us per step':34} hooks {hooks:.1f} + threads "
          f"{spread(threads, '{:.1f}')} = {own:.1f} us = {own_pct:.2f}% of a bare step   "
          f"{'PASS' if own_pct <= TARGET_PCT else 'MISS'}")
    print(f"overhead (median of per-pair wall ratios): {(ratio - 1) * 100:+.2f}%   "
          f"target <= +{TARGET_PCT:.0f}%   {verdict}")
    print(f"(outside the clock: run.finish() took median "
          f"{statistics.median(col('finish_s')) * 1000:.0f} ms)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
