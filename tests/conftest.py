"""Shared fixtures: a real store under tmp_path and real trainer subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import babysit

TRAINERS = Path(__file__).parent / "trainers"
REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Trainers:
    """Starts trainer scripts as real subprocesses against one store; kills them at the end."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.client = babysit.Client(root)

    def env(self) -> dict[str, str]:
        env = dict(os.environ, BABYSIT_ROOT=str(self.root), PYTHONUNBUFFERED="1")
        env.pop("BABYSIT_RUN_ID", None)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        return env

    def start(self, *args: str, script: str = "tiny.py", wait_running: bool = True,
              env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
        """Start a test trainer as a subprocess; ``env`` adds variables for this process only
        (a fork or restart the Client launches does not inherit them)."""
        before = set(self.client.runs()["id"])
        with open(self.root.parent / f"trainer-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, str(TRAINERS / script), *args],
                                    env={**self.env(), **(env or {})}, stdout=log,
                                    stderr=subprocess.STDOUT,
                                    cwd=self.root.parent)
        self.procs.append(proc)

        def new_run() -> int | None:
            ids = set(self.client.runs()["id"]) - before
            return ids.pop() if ids else None
        run_id = wait_for(new_run, 60, "the trainer to create its run")
        if wait_running:
            wait_for(lambda: self.client.run(run_id).step > 0, 60, "the first steps")
        return proc, run_id

    def step(self, run_id: int) -> int:
        return self.client.run(run_id).step

    def wait_step(self, run_id: int, step: int, timeout: float = 60.0) -> None:
        wait_for(lambda: self.client.store.metrics(run_id, ["loss"])["step"].max() >= step
                 if len(self.client.store.metrics(run_id, ["loss"])) else False,
                 timeout, f"run {run_id} to reach step {step}")

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        # processes launched by the client (forks, restarts) are not our children
        for record in self.client.store.list_runs():
            if record.pid and record.status in ("starting", "running", "paused", "diverged"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(record.pid, signal.SIGKILL)
        self.client.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def trainers(root: Path) -> Iterator[Trainers]:
    t = Trainers(root)
    yield t
    t.cleanup()
