"""Training-loop overhead of full babysitting on the built-in demo task, beside the bare loop.

The demo task: 5 spirals, 4096 points, batch 64, ``babysit.demo.model()``, SGD (lr 0.02,
momentum 0.5), cross-entropy, no pacing, one thread. Babysat: ``run.loop(loader, steps=N)``,
``run.log(loss=...)`` every step, command polling (every 50 ms), a day checkpoint every
300 steps. Bare: the same loop as a plain ``for`` over the DataLoader. Each measurement times
the loop itself (first batch to last step); ``init``/``finish`` are reported apart. Bare and
babysat runs alternate (after one untimed warm-up of each) and the medians are compared.

    python benchmarks/bench_overhead.py
    python benchmarks/bench_overhead.py --steps 1000 --pairs 3

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

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import babysit  # noqa: E402
from babysit.demo import model, spirals  # noqa: E402

TARGET_PCT = 2.0
DAY = os.environ.get("BENCH_DAY", "300 steps")


def setup(seed: int = 0) -> tuple[DataLoader, nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    x, y = spirals(4096, seed=seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.5)
    return loader, net, opt


def bare(steps: int) -> tuple[float, float, float]:
    loader, net, opt = setup()
    loss_fn = nn.CrossEntropyLoss()
    done = 0
    c0, t0 = time.process_time(), time.perf_counter()
    while done < steps:
        for xb, yb in loader:
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            _ = loss.item()
            done += 1
            if done >= steps:
                break
    return time.perf_counter() - t0, time.process_time() - c0, 0.0


def babysat(steps: int, root: str) -> tuple[float, float, float]:
    loader, net, opt = setup()
    loss_fn = nn.CrossEntropyLoss()
    run = babysit.init(project="bench-overhead", config={"lr": 0.02, "momentum": 0.5},
                       day=DAY, root=root)
    run.attach(model=net, optimizer=opt)
    c0, t0 = time.process_time(), time.perf_counter()
    for xb, yb in run.loop(loader, steps=steps):
        loss = loss_fn(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        run.log(loss=loss.item())
    loop_s, loop_cpu = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    run.finish()
    assert run.step == steps, run.step
    return loop_s, loop_cpu, time.perf_counter() - t1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=4, help="timed bare/babysat pairs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    wall: dict[str, list[float]] = {"bare": [], "ours": []}
    cpu: dict[str, list[float]] = {"bare": [], "ours": []}
    finish_s: list[float] = []
    with tempfile.TemporaryDirectory() as root:
        bare(min(args.steps, 300))               # warm-up, untimed
        babysat(min(args.steps, 300), root)
        for i in range(args.pairs):
            # alternate which goes first so a drift in machine speed hits both alike
            for which in (("bare", "ours"), ("ours", "bare"))[i % 2]:
                w, c, fin = bare(args.steps) if which == "bare" else babysat(args.steps, root)
                wall[which].append(w)
                cpu[which].append(c)
                if which == "ours":
                    finish_s.append(fin)

    med = {k: {"wall": statistics.median(wall[k]), "cpu": statistics.median(cpu[k])} for k in wall}
    overhead = (med["ours"]["wall"] / med["bare"]["wall"] - 1.0) * 100.0
    cpu_overhead = (med["ours"]["cpu"] / med["bare"]["cpu"] - 1.0) * 100.0
    best_overhead = (min(wall["ours"]) / min(wall["bare"]) - 1.0) * 100.0
    verdict = "PASS" if overhead <= TARGET_PCT else "MISS"
    print(f"demo task, {args.steps} steps/run, {args.pairs} alternating pairs, 1 thread, day = {DAY}")
    print(f"{'':22} {'median s':>9} {'steps/s':>8} {'cpu s':>7}   wall of each run (s)")
    for key, label in (("bare", "bare loop (baseline)"), ("ours", "babysat loop")):
        print(f"{label:22} {med[key]['wall']:9.3f} {args.steps / med[key]['wall']:8.0f} "
              f"{med[key]['cpu']:7.3f}   " + " ".join(f"{t:.3f}" for t in wall[key]))
    print(f"overhead (median wall): {overhead:+.2f}%   target <= +{TARGET_PCT:.0f}%   {verdict}")
    print(f"  also: best-of wall {best_overhead:+.2f}%, median process CPU time {cpu_overhead:+.2f}% "
          "(CPU time includes the writer thread)")
    print(f"(not in the loop time: run.finish() took median {statistics.median(finish_s) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
