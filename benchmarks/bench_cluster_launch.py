"""The cost of starting a run's process through Ray beside the local launcher.

Each launcher starts the same tiny command (``python -c "print('up')"``, a stand-in for a
trainer's first line) N times; reported: the time ``start()`` takes to return and the time
until the process's first output line is readable (the local launcher's ``process.log``, the
Ray job's logs through the Jobs API). Then the same through the wired-in path a user takes,
``Client(launcher="local"|"ray").launch(...)`` (a run row written, the launcher recorded with
it) and ``Client.console(run)`` for the output. The Ray head is started here (``ray start
--head``, 2 CPUs), as in the tests; the local launcher is the baseline.

    PYTHONPATH=$PWD python benchmarks/bench_cluster_launch.py --starts 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _time(start, first_output, starts: int) -> tuple[float, float]:  # noqa: ANN001
    returned, up = [], []
    for i in range(starts):
        t0 = time.perf_counter()
        handle = start(i)
        returned.append(time.perf_counter() - t0)
        deadline = time.monotonic() + 120
        while not first_output(handle, i):
            if time.monotonic() > deadline:
                raise RuntimeError("no output after 120 s")
            time.sleep(0.02)
        up.append(time.perf_counter() - t0)
    return statistics.median(returned), statistics.median(up)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()

    from babysit import Client
    from babysit.launcher import LocalLauncher
    from babysit.ray_launcher import RayLauncher
    from tests import servers

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-launch-") as tmp:
        root = Path(tmp)
        launch = {"executable": sys.executable, "argv": ["-c", "print('up', flush=True)"],
                  "cwd": tmp, "env": {}}
        command = [sys.executable, "-c", "print('up', flush=True)"]
        local = LocalLauncher()
        results["local (baseline)"] = _time(
            lambda i: local.start(i + 1, launch, root, None),
            lambda _pid, i: "up" in _read(root / "runs" / str(i + 1) / "process.log"),
            args.starts)
        t0 = time.perf_counter()
        head = servers.RayHead.start()
        head_s = time.perf_counter() - t0
        try:
            ray = RayLauncher(head.dashboard, num_cpus=1)
            results["ray job"] = _time(lambda i: ray.start(i + 1, launch, root, None),
                                       lambda job, _i: "up" in ray.logs(job), args.starts)
            for kind in ("local", "ray"):
                client = Client(root / f"client-{kind}", launcher=kind,
                                ray_address=head.dashboard if kind == "ray" else None)
                try:
                    results[f"Client, {kind}"] = _time(
                        lambda _i, c=client: c.launch(command, cwd=tmp, project="bench"),
                        lambda run_id, _i, c=client: "up" in (c.console(run_id) or ""),
                        args.starts)
                finally:
                    client.close()
        finally:
            head.stop()
    import os

    print(f"starting a process, median of {args.starts} (Ray head itself: up in {head_s:.1f} s; "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"    {'launcher':<18} {'start() returns':>16} {'first output':>14}")
    for name, (returned, up) in results.items():
        print(f"    {name:<18} {returned * 1000:>14.0f}ms {up * 1000:>12.0f}ms")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


if __name__ == "__main__":
    main()
