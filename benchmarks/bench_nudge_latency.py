"""Nudge latency: wall time from ``Client.nudge(...)`` to its return (it waits until applied).

Starts a real trainer in a subprocess (the built-in demo at full speed:
``python -m babysit.demo --pace 0 --day "300 steps"`` with ``BABYSIT_ROOT`` set to a temp
dir), reads its step time from the timestamps of its logged ``loss`` rows (the baseline the
latency is judged against), then sends nudges alternating lr between two values and times each
call. The trainer is stopped with ``Client.stop`` at the end (killed if it does not stop).

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

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from babysit import Client  # noqa: E402

TARGET_MS = 100.0


def wait_for_run(client: Client, proc: subprocess.Popen, min_step: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the trainer exited early with code {proc.returncode}")
        runs = client.runs(project="bench-nudge")
        if len(runs) and runs.iloc[0]["status"] == "running" and int(runs.iloc[0]["step"]) >= min_step:
            return int(runs.iloc[0]["id"])
        time.sleep(0.2)
    raise RuntimeError("the trainer did not start in time")


def step_time_ms(client: Client, run_id: int) -> float:
    loss = client.metrics(run_id, ["loss"]).sort_values("step")
    t = loss["time"].to_numpy()
    # rows of one step share a timestamp taken in run.log; the median gap is the step time
    return float(np.median(np.diff(t))) * 1000.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nudges", type=int, default=30)
    parser.add_argument("--pace", type=float, default=0.0, help="the demo's sleep per step (s)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as root:
        env = dict(os.environ, BABYSIT_ROOT=root, PYTHONPATH=str(REPO))
        env.pop("BABYSIT_RUN_ID", None)
        cmd = [sys.executable, "-m", "babysit.demo", "--project", "bench-nudge", "--pace",
               str(args.pace), "--epochs", "1000", "--day", "300 steps"]
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        client = Client(root)
        latencies: list[float] = []
        steps_between: list[int] = []
        try:
            run_id = wait_for_run(client, proc, min_step=100)
            before_ms = step_time_ms(client, run_id)
            values = (0.03, 0.02)
            for i in range(args.nudges):
                t0 = time.perf_counter()
                result = client.nudge(run_id, lr=values[i % 2], timeout=30.0)
                latencies.append((time.perf_counter() - t0) * 1000.0)
                steps_between.append(result.step)
                time.sleep(0.05)   # let a step or two pass between nudges
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
    med, p90 = float(np.median(lat)), float(np.percentile(lat, 90))
    limit = TARGET_MS + step_ms
    verdict = "PASS" if med < limit else "MISS"
    print(f"demo trainer subprocess, pace {args.pace:g} s, {args.nudges} lr nudges (each waits until applied)")
    print(f"{'':34} {'ms':>8}")
    print(f"{'step time, median (baseline)':34} {step_ms:8.2f}   (before the nudges: {before_ms:.2f})")
    print(f"{'nudge latency, median':34} {med:8.1f}")
    print(f"{'nudge latency, p90':34} {p90:8.1f}")
    print(f"{'nudge latency, min / max':34} {lat.min():8.1f} / {lat.max():.1f}")
    print(f"target: median < {TARGET_MS:.0f} ms + one step = {limit:.1f} ms   {verdict}")


if __name__ == "__main__":
    main()
