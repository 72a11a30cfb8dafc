"""Starting run processes, and telling whether a recorded process still runs.

One small interface, so a cluster backend (Ray) can stand in later. A launched process is the
user's own command (recorded when the run first started) with ``BABYSIT_RUN_ID`` set:
``babysit.init()`` in it then binds to that run and starts from the checkpoint the run row
names. Processes start from argument lists, never through a shell.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import psutil

from babysit.checkpoint import refuse_symlinks
from babysit.errors import CheckpointError, LaunchError

#: a process on another host is taken for gone when its heartbeat is older than this
REMOTE_HEARTBEAT_TIMEOUT_S = 15.0


def process_alive(pid: int | None, pid_start: float | None, host: str | None,
                  heartbeat: float | None, *,
                  remote_timeout_s: float = REMOTE_HEARTBEAT_TIMEOUT_S) -> bool:
    """Whether a process recorded in the store (a run's trainer, a study's orchestrator) runs.

    On this host: the pid exists, is no zombie, and started when recorded (a reused pid is
    another process). On another host only its heartbeat can tell.

    >>> process_alive(os.getpid(), None, socket.gethostname(), None)
    True
    """
    if pid is None:
        return False
    if host and host != socket.gethostname():
        return heartbeat is not None and time.time() - heartbeat < remote_timeout_s
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return pid_start is None or abs(proc.create_time() - pid_start) < 1.0
    except psutil.Error:
        return False


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started (to recognise it later), or None if it is already gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def resolve_executable(executable: str) -> str:
    """The absolute path of a command's program, so a fork started later from a shell without
    the same PATH (a venv not activated) runs the same interpreter.

    A bare name (``python``) is looked up on PATH now; a relative path (``./train``) is made
    absolute; an absolute path stays. Symlinks are kept as they are: a venv's ``bin/python``
    is a link whose location selects the venv. A program that cannot be found is left as given
    (starting it fails with a clear LaunchError).

    >>> resolve_executable("/usr/bin/env")
    '/usr/bin/env'
    """
    if not executable or os.path.isabs(executable):
        return executable
    if os.sep in executable or (os.altsep and os.altsep in executable):
        return os.path.abspath(executable)
    return shutil.which(executable) or executable


class Launcher(Protocol):
    """Starts a run's process. A launcher may also have ``check(run_id, launch)``, raising
    LaunchError before anything is written when the process could not start (see
    `LocalLauncher.check`).

    ``start`` returns the pid of a local process, or a handle with ``to_json()`` (a Ray job)
    that the store keeps in ``runs.launcher``; the launcher that started a run is asked about
    it later (`launcher_for`): ``alive``, ``stop`` and ``console`` take the run's record.
    """

    def start(self, run_id: int, launch: Mapping[str, Any], root: Path, store_url: str | None
              ) -> Any:
        """Start the run's process; return its pid or its handle (``to_json()``)."""


def process_env(run_id: int, launch: Mapping[str, Any], root: Path, store_url: str | None
                ) -> dict[str, str]:
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (launch.get("env") or {}).items()})
    env["BABYSIT_RUN_ID"] = str(run_id)
    env.update(store_env(root, store_url))
    if not store_url:
        env.pop("BABYSIT_STORE_URL", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def store_env(root: Path, store_url: str | None) -> dict[str, str]:
    """What a child process needs to open the same store."""
    env = {"BABYSIT_ROOT": str(root)}
    if store_url:
        env["BABYSIT_STORE_URL"] = store_url
    return env


def command_line(launch: Mapping[str, Any] | None, run_id: int) -> list[str]:
    """The argument list that starts the run's process again; LaunchError if there is none."""
    if not launch or not launch.get("argv"):
        raise LaunchError(
            f"run {run_id} was started from an interactive session (no script to run again); "
            "start it from a script to fork or restart it")
    return [resolve_executable(launch.get("executable") or ""),
            *[str(a) for a in launch["argv"]]]


def start_detached(argv: list[str], *, cwd: str, env: dict[str, str], log_path: Path,
                   what: str) -> int:
    """Start ``argv`` in its own session (it outlives the dashboard or CLI that started it),
    output appended to ``log_path``; returns its pid. ``what`` names it in errors."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:        # never write through a link planted in the run folder (or as the log itself)
        refuse_symlinks(log_path)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    except (CheckpointError, OSError) as exc:
        raise LaunchError(f"could not open the log of {what} at {log_path}: {exc}") from exc
    with os.fdopen(fd, "ab") as log:
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise LaunchError(f"could not start {what} ({argv[0]}): {exc}") from exc
    # Reap the child when it exits so it never lingers as a zombie that looks alive.
    threading.Thread(target=proc.wait, name=f"babysit-reap-{proc.pid}", daemon=True).start()
    return proc.pid


LOG_NAME = "process.log"


def read_log_tail(path: Path, *, lines: int = 200, max_bytes: int = 64_000) -> str | None:
    """The last ``lines`` lines of a process log (read-only, bounded to its last
    ``max_bytes``, never through a symlink); None when there is no such file."""
    try:
        # O_NOFOLLOW: a run folder's log replaced by a link to another file is not shown
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - max_bytes))
        data = f.read(max_bytes)
    text = data.decode("utf-8", errors="replace")
    if size > max_bytes:
        text = text.partition("\n")[2]       # the first line read is cut
    return tail_lines(text, lines)


def tail_lines(text: str, lines: int) -> str:
    """The last ``lines`` lines of console output, carriage-return progress bars reduced to
    what a terminal would show last.

    >>> tail_lines("a\\nb 10%\\rb 100%\\nc\\n", 2)
    'b 100%\\nc'
    """
    out = [line.rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n")]
    return "\n".join(out[-lines:])


#: what ``runs.launcher`` holds for a run started as a local process (pid/host in their columns)
LOCAL = {"kind": "local"}


class LocalLauncher:
    """Start detached processes on this machine; their output goes to ``runs/<id>/process.log``."""

    kind = "local"

    def alive(self, record: Any, now: float | None = None, start_grace_s: float = 60.0) -> bool:
        """Whether the run's process may still be there (a launch still starting counts)."""
        if record.pid is None:
            now = time.time() if now is None else now
            return now - (record.heartbeat or record.created) < start_grace_s
        return process_alive(record.pid, record.pid_start, record.host, record.heartbeat)

    def stop(self, record: Any, grace_s: tuple[float, float] = (10.0, 5.0)) -> None:
        """SIGTERM, then SIGKILL, the run's process (on this host only)."""
        if record.pid is None or (record.host and record.host != socket.gethostname()):
            where = f"runs on {record.host}" if record.host else "has no process id yet"
            raise LaunchError(f"run {record.id} {where}: it cannot be signalled from here")
        terminate(record.pid, lambda: process_alive(record.pid, record.pid_start, record.host,
                                                    record.heartbeat), grace_s)

    def console(self, record: Any, root: Path, lines: int = 200) -> str | None:
        """The tail of the run's console output (``runs/<id>/process.log``), None if none."""
        return read_log_tail(Path(root) / "runs" / str(int(record.id)) / LOG_NAME, lines=lines)

    def check(self, run_id: int, launch: Mapping[str, Any] | None) -> None:
        argv = command_line(launch, run_id)
        assert launch is not None
        cwd = launch.get("cwd") or os.getcwd()
        if not Path(cwd).is_dir():
            raise LaunchError(f"run {run_id} was started in {cwd}, which no longer exists")
        program = argv[0]
        if not (os.path.isabs(program) and os.access(program, os.X_OK)):
            raise LaunchError(f"run {run_id}'s program {program!r} is not an executable file "
                              "any more")

    def start(self, run_id: int, launch: Mapping[str, Any], root: Path, store_url: str | None
              ) -> int:
        self.check(run_id, launch)
        return start_detached(command_line(launch, run_id), cwd=launch.get("cwd") or os.getcwd(),
                              env=process_env(run_id, launch, root, store_url),
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


# ----------------------------------------------------------------------------- choosing one
