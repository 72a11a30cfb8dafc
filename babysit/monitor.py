"""The monitor step: the one place where a run whose process is gone becomes ``crashed``.

Reading the store never writes to it. Whoever wants the statuses brought up to date calls
`check_runs` explicitly: every CLI command before it reads or steers, the dashboard on each
refresh of its run list, a study's orchestrator on each tick (``Client.check_runs()`` is the
same call). A run marked here gets a ``crashed`` event with source ``monitor`` and a reason
that says what is known (pid, host, exit code or signal when the caller saw it).

>>> check_runs(store)                   # doctest: +SKIP
[7]
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Iterable
from typing import Any

from babysit.errors import BabysitError
from babysit.launcher import LocalLauncher, process_alive
from babysit.launchers import launcher_for
from babysit.store import LIVE, RunRecord, Store

#: a launched run that has not reported its pid yet is given this long to start
START_GRACE_S = 60.0


def run_alive(record: RunRecord, now: float | None = None, launcher: Any = None) -> bool:
    """Whether the run's process may still be there (a launch still starting counts).

    A run started on Ray is asked about through Ray (its job pending or running), not by pid:
    the process may run on another machine. When the cluster cannot be reached, the trainer's
    heartbeat decides (a run is not declared dead because the dashboard's network hiccuped).
    """
    if is_ray(record):
        try:
            return bool(launcher_for(record, launcher).alive(record))
        except BabysitError:
            return process_alive(record.pid, record.pid_start, record.host, record.heartbeat) \
                if record.pid is not None else LocalLauncher().alive(record, now, START_GRACE_S)
    return LocalLauncher().alive(record, now, START_GRACE_S)


def is_ray(record: RunRecord) -> bool:
    """Whether the run's process was started as a Ray job (``runs.launcher``)."""
    handle = getattr(record, "launcher", None)
    return isinstance(handle, dict) and handle.get("kind") == "ray"


def exit_text(code: int) -> str:
    """``exit code 1`` or ``killed by SIGKILL`` for a Popen return code.

    >>> exit_text(-9), exit_text(3)
    ('killed by SIGKILL', 'exit code 3')
    """
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def gone_reason(record: RunRecord, now: float | None = None, exit_code: int | None = None,
                ray_status: str | None = None) -> str:
    """What is known about a run's process that is gone, never a guess ("on None").

    >>> gone_reason(record_with(pid=41, host="gpu1"))     # doctest: +SKIP
    'process 41 on gpu1 ended without finishing'
    """
    now = time.time() if now is None else now
    where = f" on {record.host}" if record.host else ""
    if is_ray(record) and exit_code is None:
        job = (record.launcher or {}).get("job")
        status = ray_status or "gone"
        return f"Ray job {job} is {status} and the run never finished"
    if exit_code is not None:
        who = f"process {record.pid}{where}" if record.pid else f"the process{where}"
        return f"{who} ended with {exit_text(exit_code)}"
    if record.pid is None:
        waited = now - (record.heartbeat or record.created)
        return f"the process never reported (launched {waited:.0f}s ago)"
    if record.host and record.host != socket.gethostname():
        age = now - record.heartbeat if record.heartbeat else None
        since = f" for {age:.0f}s" if age is not None else ""
        return f"no heartbeat from process {record.pid}{where}{since}"
    return f"process {record.pid}{where} ended without finishing"


def mark_crashed(store: Store, record: RunRecord, reason: str) -> bool:
    """Mark a live run crashed with ``reason`` (and its event); False if it had ended anyway."""
    if not store.update_run(record.id, only_if_status=LIVE, status="crashed", error=reason,
                            ended=time.time()):
        return False
    store.add_event(record.id, record.step, record.day + 1, "crashed", "monitor",
                    {"reason": reason}, record.branch)
    return True


def check_runs(store: Store, *, study_id: int | None = None,
               runs: Iterable[RunRecord] | None = None, launcher: Any = None) -> list[int]:
    """Mark each live run whose process is gone ``crashed``; return their ids.

    ``runs`` limits the check to those records (e.g. the one run a command is about),
    ``study_id`` to a study's runs; by default every run of the store is checked. Each run is
    asked about through the launcher that started it (``launcher``, the caller's, is reused
    for Ray runs on its cluster).
    """
    records = list(runs) if runs is not None else store.list_runs(study_id=study_id)
    now = time.time()
    marked = []
    for record in records:
        if record.status not in LIVE or run_alive(record, now, launcher):
            continue
        status = None
        if is_ray(record):
            with contextlib.suppress(BabysitError):
                status = launcher_for(record, launcher).status(record)
        if mark_crashed(store, record, gone_reason(record, now, ray_status=status)):
            marked.append(record.id)
    return marked
