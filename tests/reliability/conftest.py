"""Fixtures for the reliability tests: a fork server for starting many trainer processes fast.

Importing torch costs seconds of CPU per process; a test that starts 30 or 16 trainers on two
shared cores would spend minutes on imports alone. The zygote (tests/trainers/zygote.py) imports
torch and babysit once and forks each trainer from there: every trainer is still its own
process, running its script from the top, with its own store connections, killed like any other.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import babysit
from babysit.launcher import process_env
from tests.conftest import REPO, TRAINERS, Trainers, wait_for


class Zygote:
    """Forks trainer processes from a process that has imported torch and babysit already."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, str(TRAINERS / "zygote.py")], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the zygote did not start")
        self.lock = threading.Lock()
        self.pids: list[int] = []

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str | Path, log: str | Path
              ) -> int:
        """Start ``python argv...`` (argv[0] is the script) as a new process; returns its pid."""
        request = {"argv": [str(a) for a in argv], "env": env, "cwd": str(cwd), "log": str(log)}
        with self.lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            pid = int(self.proc.stdout.readline())
        self.pids.append(pid)
        return pid

    def close(self) -> None:
        for pid in self.pids:          # whatever a failed test left running
            with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                if psutil.Process(pid).ppid() == self.proc.pid:    # still ours, not a reused pid
                    os.kill(pid, signal.SIGKILL)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


class ForkLauncher:
    """A babysit launcher (see babysit.launcher) that forks the run's process from the zygote,
    with the argv, working folder and environment ``LocalLauncher`` would give it."""

    def __init__(self, zygote: Zygote):
        self.zygote = zygote

    def start(self, run_id: int, launch: dict[str, Any], root: Path, store_url: str | None
              ) -> int:
        log = root / "runs" / str(run_id) / "process.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        return self.zygote.spawn(launch["argv"], process_env(run_id, launch, root, store_url),
                                 launch["cwd"], log)


class Forked:
    """Like the ``trainers`` fixture, with trainers forked from the zygote: ``start`` returns
    (pid, run id), and ``client`` restarts and forks runs through the zygote too."""

    def __init__(self, trainers: Trainers, zygote: Zygote):
        self.trainers, self.zygote = trainers, zygote
        self.client = babysit.Client(trainers.root, launcher=ForkLauncher(zygote))

    def start(self, *args: str, script: str = "tiny.py", wait_running: bool = True
              ) -> tuple[int, int]:
        before = set(self.client.runs()["id"])
        folder = self.trainers.root.parent
        pid = self.zygote.spawn([TRAINERS / script, *args], self.trainers.env(), folder,
                                folder / f"trainer-forked-{len(self.zygote.pids)}.log")

        def new_run() -> int | None:
            ids = set(self.client.runs()["id"]) - before
            return ids.pop() if ids else None
        run_id = wait_for(new_run, 60, "the trainer to create its run")
        if wait_running:
            wait_for(lambda: self.client.run(run_id).step > 0, 60, "the first steps")
        return pid, run_id

    def kill(self, pid: int, run_id: int) -> None:
        """SIGKILL the process; return once the store shows the run as crashed."""
        os.kill(pid, signal.SIGKILL)
        # the monitor step (reading never writes) marks the dead run crashed
        wait_for(lambda: self.client.check_runs(run_id) or
                 self.client.run(run_id).status == "crashed", 15, "crashed")


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    """One per session: each child gets its own environment (store, run id) with its request."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BABYSIT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    z = Zygote(env)
    yield z
    z.close()


@pytest.fixture
def forked(trainers, zygote) -> Iterator[Forked]:
    f = Forked(trainers, zygote)
    yield f
    f.client.close()
