"""Nudge latency: wall time from ``Client.nudge(...)`` to its return (it waits until applied).

Starts a real trainer in a subprocess (the built-in demo at full speed:
``python -m babysit.demo --pace 0 --day "300 steps"`` with ``BABYSIT_ROOT`` set to a temp
dir), waits until it has logged ``--warm-steps`` steps, then sends nudges alternating lr between
two values and times each call. The baseline the latency is judged against is the trainer's
step time, read from the timestamps of its logged ``loss`` rows: before the first nudge and
over the whole run. The trainer is stopped with ``Client.stop`` at the end (killed if it does
not stop).

    python benchmarks/bench_nudge_latency.py
    python benchmarks/bench_nudge_latency.py --nudges 50 --pace 0.01

Target (issue): median latency under 100 ms plus one step.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TARGET_MS = 100.0


def _loss(client: Any, run_id: int) -> Any:
    return client.metrics(run_id, ["loss"]).sort_values("step")


def wait_for_steps(client: Any, proc: subprocess.Popen, steps: int, timeout: float = 120.0
                   ) -> int:
    """The run id once the trainer's ``loss`` rows of ``steps`` steps are in the store.

    Waiting on the rows themselves, not on the run's ``step`` column: the heartbeat that moves
    the step can be read before the rows it reports, and a step time needs rows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the trainer exited early with code {proc.returncode}: "
                               f"{proc.stderr.read() if proc.stderr else ''}")
        runs = client.runs(project="bench-nudge")
        if len(runs) and runs.iloc[0]["status"] == "running":
            run_id = int(runs.iloc[0]["id"])
            if len(_loss(client, run_id)) >= steps:
                return run_id
        time.sleep(0.2)
    raise RuntimeError(f"the trainer did not log {steps} steps within {timeout:.0f} s")


def step_time_ms(client: Any, run_id: int, before_step: int | None = None) -> float:
    """Median wall time per step from the ``loss`` rows' timestamps (those of steps below
    ``before_step`` only, if given): the gap between consecutive logged steps over the steps
    between them, so a step logged twice or a gap in the steps does not skew it."""
    loss = _loss(client, run_id)
    if "superseded" in loss:
        loss = loss[~loss["superseded"].astype(bool)]
    if before_step is not None:
        loss = loss[loss["step"] < before_step]
    loss = loss.drop_duplicates("step", keep="last")
    dt = np.diff(loss["time"].to_numpy(dtype=float))
    ds = np.diff(loss["step"].to_numpy(dtype=float))
    if len(dt) == 0:
        raise RuntimeError(f"run {run_id} has fewer than two logged steps"
                           + (f" before step {before_step}" if before_step is not None else ""))
    return float(np.median(dt / ds)) * 1000.0


def measure(nudges: int, pace: float = 0.0, warm_steps: int = 200, gap: float = 0.05
            ) -> dict[str, Any]:
    """Start the demo trainer of the ``babysit`` being imported, time ``nudges`` lr nudges.
    Public API only (``Client``: runs, metrics, nudge, stop), so that bench_vs_commit.py can
    run it against an older commit."""
    import babysit

    tree = Path(babysit.__file__).resolve().parent.parent   # the trainer runs the same tree
    with tempfile.TemporaryDirectory() as root:
        env = dict(os.environ, BABYSIT_ROOT=root, PYTHONPATH=str(tree))
        env.pop("BABYSIT_RUN_ID", None)
        cmd = [sys.executable, "-m", "babysit.demo", "--project", "bench-nudge", "--pace",
               str(pace), "--epochs", "100000", "--day", "300 steps"]
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        client = babysit.Client(root)
        latencies: list[float] = []
        applied_at: list[int] = []
        try:
            run_id = wait_for_steps(client, proc, warm_steps)
            values = (0.03, 0.02)
            for i in range(nudges):
                t0 = time.perf_counter()
                result = client.nudge(run_id, lr=values[i % 2], timeout=30.0)
                latencies.append((time.perf_counter() - t0) * 1000.0)
                if result.status != "applied":
                    raise RuntimeError(f"nudge {i} was {result.status}: {result.error}")
                applied_at.append(int(result.step))
                time.sleep(gap)   # let a few steps pass between nudges
            before_ms = step_time_ms(client, run_id, before_step=applied_at[0])
            step_ms = step_time_ms(client, run_id)
            client.stop(run_id, timeout=15.0)
        finally:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            client.close()
    lat = np.array(latencies)
    return {"median_ms": float(np.median(lat)), "p90_ms": float(np.percentile(lat, 90)),
            "min_ms": float(lat.min()), "max_ms": float(lat.max()), "step_ms": step_ms,
            "before_ms": before_ms, "first_step": applied_at[0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nudges", type=int, default=30)
    parser.add_argument("--pace", type=float, default=0.0, help="the demo's sleep per step (s)")
    parser.add_argument("--warm-steps", type=int, default=200,
                        help="logged steps to wait for before the first nudge")
    args = parser.parse_args(argv)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    r = measure(args.nudges, args.pace, args.warm_steps)
    limit = TARGET_MS + r["step_ms"]
    verdict = "PASS" if r["median_ms"] < limit else "MISS"
    print(f"demo trainer subprocess, pace {args.pace:g} s, {args.nudges} lr nudges (each waits "
          f"until applied); load average {load_before}")
    print(f"{'':34} {'ms':>8}")
    print(f"{'step time, median (baseline)':34} {r['step_ms']:8.2f}   (before the first nudge, "
          f"steps 0-{r['first_step'] - 1}: {r['before_ms']:.2f})")
    print(f"{'nudge latency, median':34} {r['median_ms']:8.1f}")
    print(f"{'nudge latency, p90':34} {r['p90_ms']:8.1f}")
    print(f"{'nudge latency, min / max':34} {r['min_ms']:8.1f} / {r['max_ms']:.1f}")
    print(f"target: median < {TARGET_MS:.0f} ms + one step = {limit:.1f} ms   {verdict}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
