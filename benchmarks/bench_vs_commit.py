"""Log cost, loop overhead and nudge latency of this checkout beside an earlier commit, same run.

Checks the base commit out in a detached ``git worktree`` in a temporary directory (removed at
the end), then runs the same measurement code for both trees, each in a fresh subprocess with
``PYTHONPATH`` pointing at that tree, in interleaved pairs (base then head, head then base, ...),
so that the machine's load drifts over both alike. The measurement code is this checkout's
(``bench_log.time_babysit``, ``bench_overhead.pair``, ``bench_nudge_latency.measure``) and uses
only the public API both trees have: ``babysit.init``, ``run.attach``, ``run.loop``, ``run.log``,
``run.finish`` and ``babysit.Client(root).nudge(run, lr=..., timeout=...)`` (the base commit has
no ``scale=``, so the nudges set absolute values). Imports happen before any clock starts.

For each figure it prints the median and the spread [min .. max] of base and head over the
pairs, and the median [min .. max] of the per-pair ratios head / base (below 1: head is faster).

    python benchmarks/bench_vs_commit.py --base c34d51b
    python benchmarks/bench_vs_commit.py --base c34d51b --which overhead --pairs 8 --steps 3000
    python benchmarks/bench_vs_commit.py --base c34d51b --pairs 2 --calls 20000 --steps 500 \\
        --nudges 5                                                    # a quick check

c34d51b is the commit just before the trainer/ package and the typed outbox (issue 14).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WHICH = ("log", "overhead", "nudge")

# per measurement: (figure key, label, unit)
FIGURES: dict[str, list[tuple[str, str, str]]] = {
    "log": [("ns_per_call", "run.log(loss=x), best of repeats", "ns"),
            ("finish_s", "run.finish() draining the queued rows", "s"),
            ("ns_per_row_stored", "first call to last row stored, per row", "ns")],
    "overhead": [("ours_ms", "babysat step, wall", "ms"),
                 ("bare_ms", "bare step, wall (same task)", "ms"),
                 ("ratio", "babysat / bare, wall", "x"),
                 ("ours_cpu_ms", "babysat step, process CPU", "ms"),
                 ("bare_cpu_ms", "bare step, process CPU", "ms"),
                 ("cpu_ratio", "babysat / bare, CPU", "x"),
                 ("machinery_us", "babysitting alone per step, wall", "us"),
                 ("machinery_cpu_us", "babysitting alone per step, CPU", "us")],
    "nudge": [("median_ms", "nudge latency, median", "ms"),
              ("p90_ms", "nudge latency, p90", "ms"),
              ("step_ms", "trainer step time (demo, pace 0)", "ms")],
}


# ------------------------------------------------------------------------- the child side
def child(which: str, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in this process, whose ``babysit`` is the tree on PYTHONPATH."""
    import torch

    import babysit

    torch.set_num_threads(1)
    out: dict[str, Any] = {"babysit": str(Path(babysit.__file__).resolve())}
    if which == "log":
        import bench_log
        with tempfile.TemporaryDirectory() as tmp:
            ns, finish_s, per_row = bench_log.time_babysit(tmp, args.calls, args.repeat)
        out.update(ns_per_call=ns, finish_s=finish_s, ns_per_row_stored=per_row)
    elif which == "overhead":
        import bench_overhead
        with tempfile.TemporaryDirectory() as tmp:
            bench_overhead.warm_up(tmp)
            out.update(bench_overhead.pair(args.steps, tmp, bare_first=args.bare_first))
    else:
        import bench_nudge_latency
        out.update(bench_nudge_latency.measure(args.nudges))
    return out


# ------------------------------------------------------------------------ the parent side
def git(*argv: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def run_child(tree: Path, which: str, args: argparse.Namespace, bare_first: bool
              ) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("BABYSIT_RUN_ID", None)
    env.pop("BABYSIT_ROOT", None)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", which,
            "--calls", str(args.calls), "--repeat", str(args.repeat), "--steps", str(args.steps),
            "--nudges", str(args.nudges)] + (["--bare-first"] if bare_first else [])
    with tempfile.TemporaryDirectory() as cwd:      # no stray files in either tree
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=args.child_timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{which} in {tree} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not Path(result["babysit"]).is_relative_to(tree.resolve()):
        raise RuntimeError(f"the child imported {result['babysit']}, not the tree {tree}")
    return result


def spread(values: list[float], unit: str) -> str:
    digits = {"ns": 0, "s": 2, "ms": 3, "us": 1, "x": 4}[unit]
    f = f"{{:.{digits}f}}"
    return f"{f.format(statistics.median(values))} [{f.format(min(values))} .. {f.format(max(values))}]"


def report(which: str, pairs: list[dict[str, dict[str, Any]]], base: str, head: str) -> None:
    print(f"\n{which}: {len(pairs)} interleaved pairs; median [min .. max]")
    print(f"  {'':40} {'base ' + base:>28} {'head ' + head:>28} {'head / base per pair':>26}")
    for key, label, unit in FIGURES[which]:
        b = [p["base"][key] for p in pairs]
        h = [p["head"][key] for p in pairs]
        ratios = [y / x for x, y in zip(b, h, strict=True) if x]
        print(f"  {label + ' (' + unit + ')':40} {spread(b, unit):>28} {spread(h, unit):>28} "
              f"{spread(ratios, 'x') if ratios else '-':>26}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="c34d51b", help="the commit to compare with")
    parser.add_argument("--which", default=",".join(WHICH),
                        help="comma-separated subset of " + ",".join(WHICH))
    parser.add_argument("--pairs", type=int, default=5, help="interleaved base/head pairs")
    parser.add_argument("--calls", type=int, default=100_000, help="log: run.log calls per repeat")
    parser.add_argument("--repeat", type=int, default=5, help="log: repeats (best of)")
    parser.add_argument("--steps", type=int, default=2000, help="overhead: steps per trial")
    parser.add_argument("--nudges", type=int, default=20, help="nudge: nudges per trainer")
    parser.add_argument("--child-timeout", type=float, default=600.0)
    parser.add_argument("--child", choices=WHICH, help=argparse.SUPPRESS)
    parser.add_argument("--bare-first", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    which = [w.strip() for w in args.which.split(",") if w.strip()]
    unknown = sorted(set(which) - set(WHICH))
    if unknown or not which or args.pairs < 1:
        parser.error(f"--which takes some of {','.join(WHICH)} (got {args.which!r}); "
                     f"--pairs >= 1 (got {args.pairs})")
    base_sha = git("rev-parse", "--verify", f"{args.base}^{{commit}}")
    head_sha = git("rev-parse", "HEAD")
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    base, head = base_sha[:7], head_sha[:7] + ("+" if dirty else "")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"base {base_sha[:10]} ({git('log', '-1', '--format=%s', base_sha)[:70]})")
    print(f"head {head_sha[:10]}{dirty} (this checkout, {REPO})")
    print(f"load average {load} at the start (1, 5, 15 min; {os.cpu_count()} CPUs)")

    with tempfile.TemporaryDirectory(prefix="babysit-base-") as tmp:
        base_tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(base_tree), base_sha)
        try:
            trees = {"base": base_tree, "head": REPO}
            for w in which:
                pairs: list[dict[str, dict[str, Any]]] = []
                for i in range(args.pairs):
                    order = ("base", "head") if i % 2 == 0 else ("head", "base")
                    results = {name: run_child(trees[name], w, args, bare_first=i % 2 == 0)
                               for name in order}
                    pairs.append(results)
                    print(f"  {w} pair {i + 1}/{args.pairs} done ({' then '.join(order)})",
                          file=sys.stderr, flush=True)
                report(w, pairs, base, head)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPO,
                           capture_output=True, check=False)
    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
