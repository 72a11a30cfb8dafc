"""Starting run processes. One small interface, so a cluster backend (Ray) can stand in later.

A launched process is the user's own command (recorded when the run first started) with
``BABYSIT_RUN_ID`` set: ``babysit.init()`` in it then binds to that run and resumes from the
checkpoint the run row names. Processes start from argument lists, never through a shell.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from babysit.errors import LaunchError


class Launcher(Protocol):
    def start(self, run_id: int, launch: dict[str, Any], root: Path, store_url: str | None) -> int:
        """Start the run's process; return its pid (or another handle number)."""


def process_env(run_id: int, launch: dict[str, Any], root: Path, store_url: str | None
                ) -> dict[str, str]:
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (launch.get("env") or {}).items()})
    env["BABYSIT_RUN_ID"] = str(run_id)
    env["BABYSIT_ROOT"] = str(root)
    if store_url:
        env["BABYSIT_STORE_URL"] = store_url
    else:
        env.pop("BABYSIT_STORE_URL", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def command_line(launch: dict[str, Any] | None, run_id: int) -> list[str]:
    if not launch or not launch.get("argv"):
        raise LaunchError(
            f"run {run_id} was started from an interactive session (no script to run again); "
            "start it from a script to fork or restart it")
    executable = launch.get("executable") or ""
    if not os.path.isabs(executable):
        executable = shutil.which(executable) or executable
    return [executable, *[str(a) for a in launch["argv"]]]


def start_detached(argv: list[str], *, cwd: str, env: dict[str, str], log_path: Path,
                   what: str) -> int:
    """Start ``argv`` in its own session (it outlives the dashboard or CLI that started it),
    output appended to ``log_path``; returns its pid. ``what`` names it in errors."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise LaunchError(f"could not start {what} ({argv[0]}): {exc}") from exc
    # Reap the child when it exits so it never lingers as a zombie that looks alive.
    threading.Thread(target=proc.wait, name=f"babysit-reap-{proc.pid}", daemon=True).start()
    return proc.pid


class LocalLauncher:
    """Start detached processes on this machine; their output goes to ``runs/<id>/process.log``."""

    def start(self, run_id: int, launch: dict[str, Any], root: Path, store_url: str | None) -> int:
        argv = command_line(launch, run_id)
        cwd = launch.get("cwd") or os.getcwd()
        if not Path(cwd).is_dir():
            raise LaunchError(f"run {run_id} was started in {cwd}, which no longer exists")
        return start_detached(argv, cwd=cwd, env=process_env(run_id, launch, root, store_url),
                              log_path=root / "runs" / str(run_id) / "process.log",
                              what=f"run {run_id}")


def terminate(pid: int, alive: Callable[[], bool], grace_s: tuple[float, float] = (10.0, 5.0)
              ) -> None:
    """SIGTERM, wait up to ``grace_s[0]``, then SIGKILL, wait up to ``grace_s[1]``.

    Returns as soon as ``alive()`` is False; a pid whose owner is gone is not signalled.
    """
    for sig, grace in zip((signal.SIGTERM, signal.SIGKILL), grace_s, strict=True):
        if not alive():
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and alive():
            time.sleep(0.05)
