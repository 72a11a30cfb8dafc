"""The command API: the CLI, the dashboard and Python code all steer runs through ``Client``.

Commands travel through the store: the client validates, writes a command row, and (with
``wait=True``) watches it until the training process applied or rejected it at a step boundary.
"""

from __future__ import annotations

import math
import os
import re
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from babysit import checkpoint as ckpt
from babysit.errors import (
    CheckpointError,
    CommandRejected,
    CommandTimeout,
    InvalidValue,
    LaunchError,
    RunNotLive,
    UnknownDay,
)
from babysit.hparams import check_key, check_updates
from babysit.launcher import Launcher, LocalLauncher, terminate
from babysit.store import (
    LIVE,
    STATUSES,
    CheckpointRecord,
    EventRow,
    RunRecord,
    RunUpdate,
    Store,
    Supersede,
)
from babysit.study.commands import StudyCommands

SOURCES = ("api", "cli", "ui", "autopilot")
#: a run on another host is taken for crashed when its heartbeat is older than this
REMOTE_HEARTBEAT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class CommandResult:
    """What became of a command: ``status`` is applied, rejected, cancelled or pending."""

    id: int
    run_id: int
    kind: str
    status: str
    step: int | None
    error: str | None


def _merge(hp: Mapping[str, Any] | None, values: Mapping[str, Any]) -> dict[str, Any]:
    if hp is not None and not isinstance(hp, Mapping):
        raise InvalidValue(f"hyperparameters must be given as a mapping, got {hp!r}")
    merged = dict(hp or {})
    merged.update(values)
    return merged


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise InvalidValue(f"source must be one of {SOURCES}, got {source!r}")
    return source


def _check_day(day: object) -> int:
    if isinstance(day, bool) or not isinstance(day, int) or day < 0:
        raise InvalidValue(f"day must be a whole number >= 0, got {day!r}")
    return day


def _check_reason(reason: object) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > 2000:
        raise InvalidValue(f"reason must be text of at most 2000 characters, got {reason!r}")
    return reason.strip() or None


def _check_max_days(max_days: object, after_day: int = 0) -> int | None:
    if max_days is None:
        return None
    if isinstance(max_days, bool) or not isinstance(max_days, int) or max_days <= after_day:
        raise InvalidValue(f"max_days must be a whole number > {after_day}, got {max_days!r}")
    return max_days


def _check_launch_hp(hp: object) -> dict[str, Any]:
    """A launched run's starting hyperparameters: names like 'lr', JSON scalar values (a
    study's choice params are strings or booleans; numbers must be finite)."""
    if not isinstance(hp, Mapping):
        raise InvalidValue(f"hp must be a mapping of name to value, got {hp!r}")
    clean: dict[str, Any] = {}
    for key, value in hp.items():
        check_key(key)
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidValue(f"{key} must be a finite number, got {value!r}")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidValue(f"{key} must be a number, text, true/false or null, got {value!r}")
        clean[key] = value
    return clean

MAX_NOTE = 10_000
MAX_TAGS = 32
TAG_RE = re.compile(r"[\w.:-]{1,40}")


class Client(StudyCommands):
    """Steer and inspect runs from another process.

    The study commands (create_study, launch_study, approve, retest, ...) come from
    `babysit.study.commands.StudyCommands`.

    >>> c = babysit.Client()                   # ./checkpoints, like init()
    >>> c.nudge(3, lr=0.05, wait=True)
    >>> c.rollback(3, day=2)
    >>> child = c.fork(3, day=2, lr=0.02)
    >>> c.exploit(4, 3, day=2, lr=0.02)        # run 4 continues from run 3's day 2, with lr 0.02
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, store_url: str | None = None,
                 source: str = "api", launcher: Launcher | None = None,
                 store: Store | None = None, create: bool = True):
        self.store = store or Store.open(root, url=store_url, create=create)
        self.source = _check_source(source)
        self.launcher = launcher or LocalLauncher()
        self._store_url = self.store.external_url

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ reading
    def run(self, run: int | str) -> RunRecord:
        """One run, with its status brought up to date (a dead process shows as crashed)."""
        return self._refresh(self.store.get_run(run))

    def set_note(self, run: int | str, text: str) -> None:
        """Replace the run's free-text note ("" clears it).

        >>> c.set_note(3, "lr too high after day 2; forked #4 with lr=0.02")
        """
        if not isinstance(text, str):
            raise InvalidValue(f"a note must be text, got {type(text).__name__}")
        if len(text) > MAX_NOTE:
            raise InvalidValue(f"a note must be at most {MAX_NOTE} characters, got {len(text)}")
        if any(ord(ch) < 32 and ch not in "\n\t" for ch in text):
            raise InvalidValue(f"a note must not contain control characters, got {text[:40]!r}")
        self.store.set_note(self.store.get_run(run).id, text)

    def set_tags(self, run: int | str, tags: Iterable[str]) -> list[str]:
        """Replace the run's tags; returns them (order kept, duplicates dropped).

        >>> c.set_tags(3, ["baseline", "sgd"])
        ['baseline', 'sgd']
        """
        if isinstance(tags, str):
            raise InvalidValue(f"tags must be a list of words, got the text {tags!r}")
        clean: list[str] = []
        for tag in tags:
            if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
                raise InvalidValue(f"a tag is 1-40 letters, digits or . _ : - (no spaces), "
                                   f"got {tag!r}")
            if tag not in clean:
                clean.append(tag)
        if len(clean) > MAX_TAGS:
            raise InvalidValue(f"at most {MAX_TAGS} tags per run, got {len(clean)}")
        self.store.set_tags(self.store.get_run(run).id, clean)
        return clean

    def runs(self, project: str | None = None, status: str | None = None) -> pd.DataFrame:
        """All runs as a DataFrame: id, project, name, status, day, step, hp, parent, ..."""
        if status is not None and status not in STATUSES:
            raise InvalidValue(f"status must be one of {STATUSES}, got {status!r}")
        records = [self._refresh(r) for r in self.store.list_runs(project=project)]
        if status is not None:
            records = [r for r in records if r.status == status]
        now = time.time()
        rows = [{
            "id": r.id, "project": r.project, "name": r.name, "status": r.status,
            "day": r.day, "step": r.step, "hp": dict(r.hp), "parent_id": r.parent_id,
            "parent_day": r.parent_day, "branch": r.branch,
            "heartbeat_age": (now - r.heartbeat) if r.heartbeat else None,
            "created": r.created, "study_id": r.study_id, "reproducible": r.reproducible,
            "error": r.error, "effective": dict(r.effective or {}), "note": r.note or "",
            "tags": list(r.tags or []),
        } for r in records]
        columns = ["id", "project", "name", "status", "day", "step", "hp", "parent_id",
                   "parent_day", "branch", "heartbeat_age", "created", "study_id",
                   "reproducible", "error", "effective", "note", "tags"]
        return pd.DataFrame(rows, columns=columns)

    def metrics(self, run: int | str, names: list[str] | None = None, *,
                include_superseded: bool = False) -> pd.DataFrame:
        """Metric rows: step, day, name, value, time, branch, superseded."""
        record = self.store.get_run(run)
        return self.store.metrics(record.id, names, include_superseded=include_superseded) \
            .drop(columns=["id"])

    def events(self, run: int | str) -> pd.DataFrame:
        """Every intervention and lifecycle event: step, time, kind, source, detail (old/new)."""
        return self.store.events(self.store.get_run(run).id)

    def checkpoints(self, run: int | str, *, include_superseded: bool = False) -> pd.DataFrame:
        """Day checkpoints: day, step, time, path, size, metrics (means over that day)."""
        record = self.store.get_run(run)
        rows = [{"day": c.day, "step": c.step, "time": c.time, "path": c.path, "size": c.size,
                 "branch": c.branch, "superseded": c.superseded, "hp": c.hp, "metrics": c.metrics}
                for c in self.store.checkpoint_records(record.id,
                                                       include_superseded=include_superseded)]
        return pd.DataFrame(rows, columns=["day", "step", "time", "path", "size", "branch",
                                           "superseded", "hp", "metrics"])

    # ------------------------------------------------------------------ liveness
    def _refresh(self, record: RunRecord) -> RunRecord:
        if record.status not in LIVE or self._alive(record):
            return record
        reason = f"process {record.pid} on {record.host} is gone" if record.pid else \
            "the process never started"
        if self.store.update_run(record.id, only_if_status=LIVE, status="crashed", error=reason,
                                 ended=time.time()):
            self.store.add_event(record.id, record.step, record.day + 1, "crashed", "monitor",
                                 {"reason": reason}, record.branch)
        return self.store.get_run(record.id)

    @staticmethod
    def _alive(record: RunRecord) -> bool:
        if record.host and record.host != socket.gethostname():
            return record.heartbeat is not None and \
                time.time() - record.heartbeat < REMOTE_HEARTBEAT_TIMEOUT_S
        if record.pid is None:
            # launched but not yet reporting: give it a grace period to start
            return time.time() - (record.heartbeat or record.created) < 60
        try:
            proc = psutil.Process(record.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            return record.pid_start is None or abs(proc.create_time() - record.pid_start) < 1.0
        except psutil.Error:
            return False

    def _live(self, run: int | str, action: str) -> RunRecord:
        record = self.run(run)
        if record.status not in LIVE:
            hint = "restart it first (babysit restart)" if record.status in ("crashed", "stopped") \
                else "fork it to train further (babysit fork)"
            raise RunNotLive(f"cannot {action} run {record.id}: it is {record.status}; {hint}")
        return record

    # ------------------------------------------------------------------ commands
    def _post(self, record: RunRecord, kind: str, args: dict[str, Any], source: str | None,
              wait: bool, timeout: float) -> CommandResult:
        source = _check_source(self.source if source is None else source)
        command_id = self.store.post_command(record.id, kind, args, source)
        if not wait:
            return CommandResult(command_id, record.id, kind, "pending", None, None)
        return self.wait(command_id, timeout)

    def wait(self, command_id: int, timeout: float = 30.0) -> CommandResult:
        """Block until the command is applied; raise if it is rejected, cancelled or late."""
        deadline = time.monotonic() + timeout
        while True:
            command = self.store.get_command(command_id)
            result = CommandResult(command.id, command.run_id, command.kind, command.status,
                                   command.step, command.error)
            if command.status == "applied":
                return result
            if command.status == "rejected":
                raise CommandRejected(f"run {command.run_id} rejected the {command.kind}: "
                                      f"{command.error}")
            if command.status == "cancelled":
                raise RunNotLive(f"the {command.kind} was not applied: {command.error}")
            if time.monotonic() > deadline:
                status = self.run(command.run_id).status
                raise CommandTimeout(
                    f"run {command.run_id} ({status}) did not apply the {command.kind} within "
                    f"{timeout:g}s; it stays queued and applies when the run reaches a step")
            time.sleep(0.01)

    def nudge(self, run: int | str, hp: Mapping[str, Any] | None = None, /, *,
              wait: bool = True, timeout: float = 30.0, source: str | None = None,
              **values: Any) -> CommandResult:
        """Change hyperparameters of a running process at its next step boundary.

        ``lr``, ``momentum`` (SGD momentum, Adam beta1) and ``weight_decay`` go to the attached
        optimizer (an lr nudge rescales the LR schedule); other keys change ``run.hp[key]``.

        >>> c.nudge(3, lr=0.05, momentum=0.95)
        """
        updates = _merge(hp, values)
        record = self._live(run, "nudge")
        clean = check_updates(updates, record.hp, strict=record.strict,
                              optimizer_keys=record.optimizer_keys)
        return self._post(record, "nudge", {"hp": clean}, source, wait, timeout)

    def pause(self, run: int | str, *, wait: bool = True, timeout: float = 30.0,
              source: str | None = None) -> CommandResult:
        """Pause at the next step boundary; the process stays up and keeps taking commands."""
        record = self._live(run, "pause")
        if record.status == "paused":
            raise InvalidValue(f"run {record.id} is already paused")
        return self._post(record, "pause", {}, source, wait, timeout)

    def resume(self, run: int | str, *, wait: bool = True, timeout: float = 30.0,
               source: str | None = None) -> CommandResult:
        """Resume a paused (or diverged) run."""
        record = self._live(run, "resume")
        if record.status == "running":
            raise InvalidValue(f"run {record.id} is not paused")
        return self._post(record, "resume", {}, source, wait, timeout)

    def stop(self, run: int | str, *, wait: bool = True, timeout: float = 30.0,
             source: str | None = None, reason: str | None = None) -> CommandResult:
        """Stop at the next step boundary (restart later from the last day's checkpoint).

        With ``wait``, a process that does not stop in time gets SIGTERM, then SIGKILL.
        ``reason`` goes into the stop event (an early-stopping rule gives its own).
        """
        reason = _check_reason(reason)
        record = self._live(run, "stop")
        result = self._post(record, "stop", {"reason": reason} if reason else {}, source, False,
                            timeout)
        if not wait:
            return result
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run(record.id).status not in LIVE:
                return CommandResult(result.id, record.id, "stop", "applied", None, None)
            time.sleep(0.05)
        self._terminate(record)
        return CommandResult(result.id, record.id, "stop", "applied", None, "terminated")

    def _terminate(self, record: RunRecord) -> None:
        if record.pid is None or (record.host and record.host != socket.gethostname()):
            raise CommandTimeout(f"run {record.id} did not stop and runs on {record.host}")
        terminate(record.pid, lambda: self._alive(record))
        self.store.update_run(record.id, only_if_status=LIVE, status="stopped", ended=time.time())
        self.store.cancel_pending(record.id, f"run {record.id} was terminated")

    def rollback(self, run: int | str, day: int, *, hp: Mapping[str, Any] | None = None,
                 wait: bool = True, timeout: float = 60.0, source: str | None = None,
                 **values: Any) -> CommandResult:
        """Continue the same run from the end of ``day``, exactly as it was then.

        Weights, optimizer, scheduler, RNG, data position, step and hyperparameters come back
        (``hp``/keywords override some); what came after stays in the store as superseded.

        >>> c.rollback(3, day=2, lr=0.05)
        """
        overrides = _merge(hp, values)
        _check_day(day)
        record = self._live(run, "roll back")
        target = self._day_checkpoint(record, day)
        self._check_intact(target)
        if overrides:
            check_updates(overrides, target.hp, strict=record.strict,
                          optimizer_keys=record.optimizer_keys)
        return self._post(record, "rollback", {"day": day, "hp": overrides}, source, wait, timeout)

    def _day_checkpoint(self, record: RunRecord, day: int | None) -> CheckpointRecord:
        target = self.store.checkpoint(record.id, day)
        if target is None:
            days = [c.day for c in self.store.checkpoint_records(record.id)]
            what = "checkpoint yet" if day is None else f"checkpoint for day {day}"
            shown = f"{days[0]}..{days[-1]}" if len(days) > 8 else str(days)
            raise UnknownDay(f"run {record.id} has no {what}; days available: {shown}")
        return target

    def _check_intact(self, target: CheckpointRecord) -> None:
        """Refuse a day whose checkpoint file is missing, truncated or corrupted."""
        try:
            ckpt.verify(ckpt.safe_path(self.store.root, target.path), target.sha256)
        except CheckpointError as exc:
            raise CheckpointError(f"day {target.day} of run {target.run_id} cannot be used: "
                                  f"{exc}; choose another day") from None

    def _last_intact(self, record: RunRecord, source: str) -> CheckpointRecord | None:
        """The latest checkpoint that passes its checks; each bad one on the way is an event.

        None when the run has no checkpoint at all; CheckpointError when none is intact.
        """
        records = self.store.checkpoint_records(record.id)
        errors = []
        for target in reversed(records):
            try:
                self._check_intact(target)
            except CheckpointError as exc:
                errors.append(f"day {target.day}: {exc}")
                self.store.add_event(record.id, target.step, target.day + 1, "checkpoint_corrupt",
                                     source, {"day": target.day, "path": target.path,
                                              "error": str(exc)}, record.branch)
                continue
            return target
        if records:
            raise CheckpointError(f"run {record.id} has no intact checkpoint to restart from: "
                                  + "; ".join(errors))
        return None

    def exploit(self, target: int | str, source_run: int | str, day: int,
                hp: Mapping[str, Any] | None = None, *, wait: bool = True, timeout: float = 60.0,
                source: str | None = None, reason: str | None = None,
                decision: int | None = None) -> CommandResult:
        """Copy ``source_run``'s day-``day`` weights into the running ``target`` (PBT's exploit).

        The target's process loads that checkpoint (weights, optimizer, scheduler, data
        position), applies ``hp`` on top (the explore) and goes on; it keeps its own step
        counter unless it is already past the checkpoint's step, in which case what it did
        since is superseded, as in a rollback. Recorded as an ``exploit`` event on the target
        (from_run, from_day, old/new hp, ``reason``). ``decision`` links an autopilot decision.

        >>> c.exploit("b", "a", day=5, lr=0.02)    # run b continues from run a's day 5
        """
        _check_day(day)
        reason = _check_reason(reason)
        if decision is not None and (isinstance(decision, bool) or not isinstance(decision, int)):
            raise InvalidValue(f"decision must be a decision id, got {decision!r}")
        record = self._live(target, "exploit into")
        donor = self.store.get_run(source_run)
        if donor.id == record.id:
            raise InvalidValue(f"run {record.id} cannot exploit itself: roll it back instead")
        checkpoint = self._day_checkpoint(donor, day)
        self._check_intact(checkpoint)
        overrides = _merge(hp, {})
        clean = check_updates(overrides, checkpoint.hp, strict=record.strict,
                              optimizer_keys=record.optimizer_keys) if overrides else {}
        args: dict[str, Any] = {"run": donor.id, "day": day, "hp": clean}
        if reason:
            args["reason"] = reason
        if decision is not None:
            args["decision"] = decision
        return self._post(record, "exploit", args, source, wait, timeout)

    def fork(self, run: int | str, day: int | None = None, *, hp: Mapping[str, Any] | None = None,
             name: str | None = None, source: str | None = None, max_days: int | None = None,
             **values: Any) -> int:
        """Start a new run (a new process) from ``day``'s checkpoint of ``run``, with overrides.

        The parent keeps running; the child records (run, day) as its parent. Returns its id.
        With ``max_days`` the child finishes by itself once that day is done.

        >>> child = c.fork(3, day=2, lr=0.02)
        """
        overrides = _merge(hp, values)
        if day is not None:
            _check_day(day)
        parent = self.run(run)
        target = self._day_checkpoint(parent, day)
        self._check_intact(target)
        if overrides:
            check_updates(overrides, target.hp, strict=parent.strict,
                          optimizer_keys=parent.optimizer_keys)
        max_days = _check_max_days(max_days, target.day)
        if not parent.launch:
            raise LaunchError(f"run {parent.id} was started from an interactive session; "
                              "fork needs a run started from a script")
        source = _check_source(self.source if source is None else source)
        hp_child = {**target.hp, **overrides}
        child = self.store.create_run(
            project=parent.project, name=name or "", status="starting", config=hp_child,
            hp=hp_child, strict=parent.strict, day_spec=parent.day_spec, day=target.day,
            step=target.step, parent_id=parent.id, parent_day=target.day, launch=parent.launch,
            study_id=parent.study_id, optimizer_keys=parent.optimizer_keys, max_days=max_days,
            start_from={"path": target.path, "sha256": target.sha256, "day": target.day,
                    "supersede": False})
        if not name:
            self.store.update_run(child, name=f"{parent.project}-{child}")
        self.store.add_event(parent.id, target.step, target.day + 1, "fork", source,
                             {"child": child, "day": target.day, "overrides": overrides},
                             parent.branch)
        self._launch(child, parent.launch)
        return child

    def restart(self, run: int | str, *, day: int | None = None, source: str | None = None) -> int:
        """Start a new process for a crashed or stopped run, from its last (or ``day``'s)
        checkpoint. Commands queued while it was down are applied once it is up. Returns the pid.

        A truncated or corrupted latest day is skipped (a ``checkpoint_corrupt`` event says
        which and why) for the previous good one; a corrupt ``day`` raises CheckpointError.
        """
        if day is not None:
            _check_day(day)
        record = self.run(run)
        if record.status not in ("crashed", "stopped"):
            raise RunNotLive(f"only a crashed or stopped run can be restarted; run {record.id} "
                             f"is {record.status}")
        source = _check_source(self.source if source is None else source)
        if day is None:
            # the latest day that is intact: a truncated or corrupted one is skipped, loudly
            target = self._last_intact(record, source)
        else:
            target = self.store.checkpoint(record.id, day)
            if target is not None:
                self._check_intact(target)
        start_from = None
        if target is not None:
            start_from = {"path": target.path, "sha256": target.sha256, "day": target.day,
                      "supersede": True}
        elif day is not None:
            self._day_checkpoint(record, day)   # raises UnknownDay with the available days
        if not record.launch:
            raise LaunchError(f"run {record.id} was started from an interactive session; "
                              "restart needs a run started from a script")
        if not self.store.update_run(record.id, only_if_status=("crashed", "stopped"),
                                     status="starting", start_from=start_from, pid=None, pid_start=None,
                                     heartbeat=time.time(), error=None):
            raise RunNotLive(f"run {record.id} changed state meanwhile; try again")
        if target is not None:
            self.store.add_event(record.id, target.step, target.day + 1, "restarted", source,
                                 {"from_day": target.day}, record.branch)
        else:
            # No day was ever saved: the new process starts from scratch, so what the old one
            # logged becomes an abandoned branch instead of a second copy of steps 0, 1, ...
            self.store.apply([
                Supersede(record.id, 0),
                EventRow(record.id, 0, 1, "restarted", source, {"from_day": None},
                         record.branch + 1),
                RunUpdate(record.id, {"branch": record.branch + 1, "step": 0, "day": 0})])
        return self._launch(record.id, record.launch)

    def _launch(self, run_id: int, launch: dict[str, Any]) -> int:
        try:
            pid = self.launcher.start(run_id, launch, self.store.root, self._store_url)
        except LaunchError as exc:
            self.store.update_run(run_id, status="crashed", error=str(exc), ended=time.time())
            raise
        try:
            pid_start = psutil.Process(pid).create_time()
        except psutil.Error:
            pid_start = None
        self.store.update_run(run_id, only_if_status=("starting",), pid=pid, pid_start=pid_start,
                              host=socket.gethostname())
        return pid

    def launch(self, argv: list[str], *, project: str | None = None, name: str | None = None,
               day: str | None = None, cwd: str | None = None, detach: bool = True,
               hp: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None,
               study_id: int | None = None, max_days: int | None = None,
               trial: int | None = None) -> int:
        """Create a run for a script and (with ``detach``) start it in the background.

        The script's own ``babysit.init()`` binds to this run and fills in the project, day and
        config that were not given here; ``hp`` (or its other name ``config``) wins over the
        script's config. With ``max_days`` the run finishes by itself once that day is done.
        ``study_id``/``trial`` tie the run to a study. Returns the run id.

        >>> c.launch([sys.executable, "train.py"], hp={"lr": 0.01}, max_days=5)
        """
        from babysit.day import DaySpec

        if not argv or not all(isinstance(a, str) for a in argv):
            raise InvalidValue("babysit run needs a command (a list of strings), e.g. "
                               f"babysit run -- python train.py; got {argv!r}")
        if hp is not None and config is not None:
            raise InvalidValue("give the starting hyperparameters as hp= or config=, not both")
        start_hp = _check_launch_hp(hp if hp is not None else (config or {}))
        max_days = _check_max_days(max_days)
        for label, value in (("study_id", study_id), ("trial", trial)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                raise InvalidValue(f"{label} must be a whole number >= 0, got {value!r}")
        launch = {"executable": argv[0], "argv": list(argv[1:]),
                  "cwd": str(Path(cwd or os.getcwd()).resolve()), "env": {}}
        run_id = self.store.create_run(project=project or "", name=name or "", status="starting",
                                       config=start_hp, hp=start_hp, strict=False,
                                       day_spec=str(DaySpec.parse(day)) if day else "",
                                       launch=launch, study_id=study_id, trial=trial,
                                       max_days=max_days)
        if not name:
            # without a project this is a placeholder: the script's init() renames it
            self.store.update_run(run_id, name=f"{project or 'run'}-{run_id}")
        if detach:
            self._launch(run_id, launch)
        return run_id
