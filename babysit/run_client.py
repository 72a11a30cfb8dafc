"""The run half of the command API: read runs, steer them (nudge, pause, resume, stop,
rollback, exploit), start processes (launch, fork, restart).

Commands travel through the store: the client validates, writes a command row, and (with
``wait=True``) watches it until the training process applied or rejected it at a step boundary.
The result carries what the trainer reports it did (``CommandResult.detail``, e.g. a nudge's
effective old and new values) and the step at which it did it. `babysit.Client` adds the study
commands on top (`babysit.study.client.StudyClient`).

>>> c = RunClient()                        # ./checkpoints, like init()
>>> c.nudge(3, scale={"lr": 0.5}).detail   # doctest: +SKIP
{'lr': {'old': 0.0125, 'new': 0.00625, 'op': 'scale', 'arg': 0.5, 'groups': [[0.0125, 0.00625]]}}
"""

from __future__ import annotations

import math
import numbers
import os
import re
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from babysit import monitor
from babysit.errors import (
    CheckpointError,
    CommandRejected,
    CommandTimeout,
    InvalidValue,
    LaunchError,
    RunNotLive,
    UnknownDay,
    UnknownRun,
)
from babysit.hparams import check_key, check_nudge, check_updates
from babysit.launcher import (
    LOCAL,
    Launcher,
    command_line,
    process_start_time,
    resolve_executable,
)
from babysit.launchers import launcher_for, make_launcher
from babysit.storage import open_storage
from babysit.store import (
    LIVE,
    STATUSES,
    CheckpointRecord,
    CommandRecord,
    EventRow,
    RunRecord,
    RunUpdate,
    Store,
    Supersede,
)

#: who asked for a command, as recorded in its event (the trainer, the guard and the monitor
#: write their own events; they post no commands)
SOURCES = ("python", "cli", "ui", "autopilot")


@dataclass(frozen=True)
class CommandResult:
    """What became of a command: ``status`` is applied, rejected, cancelled or pending.

    ``step`` is the step at which the trainer applied it; ``detail`` is what the trainer
    reports it did (for a nudge ``{key: {"old", "new", "op", "arg", "groups"}}`` in effective
    values), the only source for a confirmation shown to a user.
    """

    id: int
    run_id: int
    kind: str
    status: str
    step: int | None
    error: str | None
    detail: dict = field(default_factory=dict)


# ------------------------------------------------------------------------- input checks
def run_key(run: object) -> int | str:
    """A run given by id or name, as the store looks it up: any integral id (a numpy integer
    from a DataFrame too) becomes a plain int.

    >>> run_key(np.int64(3)), run_key("baseline")
    (3, 'baseline')
    """
    if isinstance(run, bool):
        raise UnknownRun(f"no run {run!r}: give a run id (a number) or a run name")
    if isinstance(run, numbers.Integral):
        return int(run)
    if isinstance(run, str):
        return run
    raise UnknownRun(f"no run {run!r}: give a run id (a number) or a run name")


def whole(value: object, label: str, minimum: int = 0) -> int:
    """A whole number >= ``minimum`` (numpy integers accepted), as a plain int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InvalidValue(f"{label} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_name(name: object, label: str = "a run name") -> str | None:
    """A name given for a run or project: text of at most 200 printable characters (no
    control characters or terminal escapes), or None."""
    if name is None:
        return None
    if not isinstance(name, str) or len(name) > 200 or not name.isprintable():
        raise InvalidValue(f"{label} must be printable text of at most 200 characters, "
                           f"got {name!r}"[:300])
    return name


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise InvalidValue(f"source must be one of {SOURCES}, got {source!r}")
    return source


def _merge(hp: Mapping[str, Any] | None, values: Mapping[str, Any]) -> dict[str, Any]:
    if hp is not None and not isinstance(hp, Mapping):
        raise InvalidValue(f"hyperparameters must be given as a mapping, got {hp!r}")
    merged = dict(hp or {})
    merged.update(values)
    return merged


def _check_reason(reason: object) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > 2000:
        raise InvalidValue(f"reason must be text of at most 2000 characters, got {reason!r}")
    return reason.strip() or None


def _check_max_days(max_days: object, after_day: int = 0) -> int | None:
    if max_days is None:
        return None
    if isinstance(max_days, bool) or not isinstance(max_days, numbers.Integral) or \
            max_days <= after_day:
        raise InvalidValue(f"max_days must be a whole number > {after_day}, got {max_days!r}")
    return int(max_days)


def _plain_values(values: Mapping[str, Any] | None, label: str) -> dict[str, Any]:
    """A mapping of hyperparameter values with numpy scalars (from a DataFrame) made plain."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise InvalidValue(f"{label} must map hyperparameter names to numbers, got {values!r}")
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}


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


def effective_of(record: RunRecord) -> dict[str, Any]:
    """What the run's trainer last reported its optimizer uses (``{}`` before it reports)."""
    return dict(record.effective) if isinstance(record.effective, Mapping) else {}


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


MAX_NOTE = 10_000
MAX_TAGS = 32
TAG_RE = re.compile(r"[\w.:-]{1,40}")


class RunClient:
    """Read and steer runs from another process (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, store_url: str | None = None,
                 source: str = "python", launcher: Launcher | str | None = None,
                 ray_address: str | None = None, store: Store | None = None,
                 create: bool = True):
        # "local", "ray" or a launcher object; None: $BABYSIT_LAUNCHER (local by default)
        self.launcher = make_launcher(launcher, ray_address=ray_address)
        self.store = store or Store.open(root, url=store_url, create=create)
        self.source = check_source(source)
        self._store_url = self.store.external_url

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ reading
    def run(self, run: int | str) -> RunRecord:
        """One run as stored (by id, numpy id, or unique name). Reading writes nothing: call
        `check_runs` first to have a dead process show as crashed."""
        return self.store.get_run(run_key(run))

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
        self.store.set_note(self.run(run).id, text)

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
        self.store.set_tags(self.run(run).id, clean)
        return clean

    def runs(self, project: str | None = None, status: str | None = None) -> pd.DataFrame:
        """All runs as a DataFrame: id, project, name, status, day, step, hp (configured or
        last nudged), effective (what the optimizer uses now: lr, momentum, weight_decay,
        groups; ``{}`` until the trainer reports), parent, ... Plain Python values."""
        if status is not None and status not in STATUSES:
            raise InvalidValue(f"status must be one of {STATUSES}, got {status!r}")
        records = self.store.list_runs(project=project)
        if status is not None:
            records = [r for r in records if r.status == status]
        now = time.time()
        rows = [{
            "id": r.id, "project": r.project, "name": r.name, "status": r.status,
            "day": r.day, "step": r.step, "hp": dict(r.hp), "effective": effective_of(r),
            "parent_id": _optional_int(r.parent_id), "parent_day": _optional_int(r.parent_day),
            "branch": r.branch,
            "heartbeat_age": (now - r.heartbeat) if r.heartbeat else None,
            "created": r.created, "study_id": _optional_int(r.study_id),
            "reproducible": bool(r.reproducible), "error": r.error, "note": r.note or "",
            "tags": list(r.tags or []),
        } for r in records]
        columns = ["id", "project", "name", "status", "day", "step", "hp", "effective",
                   "parent_id", "parent_day", "branch", "heartbeat_age", "created", "study_id",
                   "reproducible", "error", "note", "tags"]
        # object columns keep None and plain ints where a float column would make 3 into 3.0
        return pd.DataFrame({c: pd.Series([row[c] for row in rows], dtype=object)
                             for c in columns}).astype(
            {"id": int, "day": int, "step": int, "branch": int, "created": float,
             "heartbeat_age": float})

    def metrics(self, run: int | str, names: list[str] | None = None, *,
                include_superseded: bool = False) -> pd.DataFrame:
        """Metric rows: step, day, name, value, time, branch, superseded."""
        record = self.run(run)
        return self.store.metrics(record.id, names, include_superseded=include_superseded) \
            .drop(columns=["id"])

    def events(self, run: int | str) -> pd.DataFrame:
        """Every intervention and lifecycle event: step, time, kind, source, detail (old/new)."""
        return self.store.events(self.run(run).id)

    def checkpoints(self, run: int | str, *, include_superseded: bool = False) -> pd.DataFrame:
        """Day checkpoints: day, step, time, path, size, metrics (means over that day)."""
        record = self.run(run)
        rows = [{"day": c.day, "step": c.step, "time": c.time, "path": c.path, "size": c.size,
                 "branch": c.branch, "superseded": c.superseded, "hp": c.hp, "metrics": c.metrics}
                for c in self.store.checkpoint_records(record.id,
                                                       include_superseded=include_superseded)]
        return pd.DataFrame(rows, columns=["day", "step", "time", "path", "size", "branch",
                                           "superseded", "hp", "metrics"])

    # ------------------------------------------------------------------ the monitor step
    def check_runs(self, run: int | str | None = None, *,
                   study: int | str | None = None) -> list[int]:
        """Mark runs whose process is gone ``crashed`` (a ``crashed`` event, source
        ``monitor``); returns their ids. All runs, one ``run``, or a ``study``'s runs.

        The one place a status is brought up to date: the CLI calls it before each command,
        the dashboard on each refresh, the orchestrator on each tick.

        >>> c.check_runs()          # doctest: +SKIP
        [7]
        """
        if run is not None:
            return monitor.check_runs(self.store, runs=[self.run(run)], launcher=self.launcher)
        study_id = None if study is None else self.store.get_study(
            int(study) if isinstance(study, numbers.Integral) else study).id
        return monitor.check_runs(self.store, study_id=study_id, launcher=self.launcher)

    def console(self, run: int | str, *, lines: int = 200) -> str | None:
        """The last ``lines`` lines of the run's console output (stdout and stderr), from the
        launcher that started it: ``runs/<id>/process.log`` for a local process, the job's
        logs for a Ray job. None when none was saved (a run started in a notebook).

        >>> print(c.console(3, lines=20))           # doctest: +SKIP
        """
        record = self.run(run)
        lines = whole(lines, "lines", 1)
        return launcher_for(record, self.launcher).console(record, self.store.root, lines)

    def _checked(self, run: int | str) -> RunRecord:
        """The run, its status brought up to date first (for commands, which write anyway)."""
        record = self.run(run)
        if monitor.check_runs(self.store, runs=[record], launcher=self.launcher):
            record = self.store.get_run(record.id)
        return record

    def _live(self, run: int | str, action: str) -> RunRecord:
        record = self._checked(run)
        if record.status not in LIVE:
            hint = "restart it first (babysit restart)" if record.status in ("crashed", "stopped") \
                else "fork it to train further (babysit fork)"
            raise RunNotLive(f"cannot {action} run {record.id}: it is {record.status}; {hint}")
        return record

    # ------------------------------------------------------------------ commands
    def _post(self, record: RunRecord, kind: str, args: dict[str, Any], source: str | None,
              wait: bool, timeout: float) -> CommandResult:
        source = check_source(self.source if source is None else source)
        command_id = self.store.post_command(record.id, kind, args, source)
        if not wait:
            return CommandResult(command_id, record.id, kind, "pending", None, None)
        return self.wait(command_id, timeout)

    def wait(self, command_id: int, timeout: float = 30.0) -> CommandResult:
        """Block until the command is applied; raise if it is rejected, cancelled or late."""
        command_id = whole(command_id, "command id", 1)
        deadline = time.monotonic() + timeout
        while True:
            command = self.store.get_command(command_id)
            if command.status == "applied":
                return CommandResult(command.id, command.run_id, command.kind, command.status,
                                     command.step, command.error, self._outcome(command))
            if command.status == "rejected":
                raise CommandRejected(f"run {command.run_id} rejected the {command.kind}: "
                                      f"{command.error}")
            if command.status == "cancelled":
                raise RunNotLive(f"the {command.kind} was not applied: {command.error}")
            if time.monotonic() > deadline:
                status = self.store.get_run(command.run_id).status
                raise CommandTimeout(
                    f"run {command.run_id} ({status}) did not apply the {command.kind} within "
                    f"{timeout:g}s; it stays queued and applies when the run reaches a step")
            time.sleep(0.01)

    def _outcome(self, command: CommandRecord) -> dict[str, Any]:
        """The detail of the event the trainer wrote when it applied ``command``.

        The trainer closes the command and adds its event in one transaction, at the same step
        and under the command's kind and source; of several such events (two commands applied
        at one boundary) the one written when the command was closed is taken. A store that
        keeps the link (a ``command_id`` column on events, or the detail on the command row as
        ``result``) makes it exact.
        """
        stored = getattr(command, "result", None)      # if the store keeps it on the command
        if isinstance(stored, Mapping):
            return dict(stored)
        events = self.store.events(command.run_id, kind=command.kind, step=command.step)
        same = events[(events["kind"] == command.kind) & (events["step"] == command.step)
                      & (events["source"] == command.source)
                      & (events["time"] >= command.created - 1.0)]
        if same.empty:
            return {}
        if "command_id" in same.columns:          # a store that links the event exactly
            linked = same[same["command_id"] == command.id]
            same = linked if not linked.empty else same
        done = command.done if command.done is not None else time.time()
        pick = (same["time"] - done).abs().idxmin()
        detail = same.loc[pick, "detail"]
        return dict(detail) if isinstance(detail, Mapping) else {}

    def nudge(self, run: int | str, hp: Mapping[str, Any] | None = None, /, *,
              scale: Mapping[str, Any] | None = None, scale_1m: Mapping[str, Any] | None = None,
              group: int | None = None, new: bool = False, wait: bool = True,
              timeout: float = 30.0, source: str | None = None, **values: Any) -> CommandResult:
        """Change hyperparameters of a running process at its next step boundary.

        ``hp``/keywords set absolute values: an lr nudge makes the optimizer's effective lr
        exactly that value and scales the schedule so it continues from there. ``scale``
        multiplies the live effective value at the applying step (``{"lr": 0.5}`` halves what
        the scheduler made of it, in every param group, keeping their ratios); ``scale_1m``
        multiplies 1 - value (``{"momentum": 0.5}`` is "more momentum": 0.9 → 0.95).
        ``group`` targets one param group (index over all attached optimizers' groups). A key
        neither in the run's config nor an optimizer key is refused unless ``new=True``.
        ``lr``, ``momentum`` (SGD momentum, Adam beta1) and ``weight_decay`` go to the
        optimizer; other keys change ``run.hp[key]``. The result's ``detail`` is the trainer's
        account: ``{key: {"old", "new", "op", "arg", "groups"}}``.

        >>> c.nudge(3, scale={"lr": 0.5}).detail["lr"]["new"]      # doctest: +SKIP
        0.00625
        >>> c.nudge(3, lr=0.05, momentum=0.95)                     # doctest: +SKIP
        """
        args = {"hp": _plain_values(_merge(hp, values), "hp"),
                "scale": _plain_values(scale, "scale"),
                "scale_1m": _plain_values(scale_1m, "scale_1m"),
                "group": None if group is None else whole(group, "group"), "new": new}
        record = self._live(run, "nudge")
        groups = effective_of(record).get("groups")
        clean = check_nudge(args, record.hp, strict=record.strict,
                            optimizer_keys=record.optimizer_keys,
                            n_groups=len(groups) if isinstance(groups, list) else None)
        return self._post(record, "nudge", clean, source, wait, timeout)

    def pause(self, run: int | str, *, wait: bool = True, timeout: float = 30.0,
              source: str | None = None) -> CommandResult:
        """Pause at the next step boundary; the process stays up and keeps taking commands."""
        record = self._live(run, "pause")
        if record.status == "paused":
            raise InvalidValue(f"run {record.id} is already paused")
        return self._post(record, "pause", {}, source, wait, timeout)

    def resume(self, run: int | str, *, wait: bool = True, timeout: float = 30.0,
               source: str | None = None) -> CommandResult:
        """Un-pause a paused (or diverged) run. (A stopped or crashed run is *restarted*.)"""
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
            if self._checked(record.id).status not in LIVE:
                return CommandResult(result.id, record.id, "stop", "applied", None, None)
            time.sleep(0.05)
        self.terminate(record.id)
        return CommandResult(result.id, record.id, "stop", "applied", None, "terminated")

    def terminate(self, run: int | str) -> None:
        """End the run's process through the launcher that started it (a local process:
        SIGTERM, then SIGKILL, on this host; a Ray job: ``stop_job``); the run ends
        ``stopped``."""
        record = self.run(run)
        try:
            launcher_for(record, self.launcher).stop(record)
        except LaunchError as exc:
            raise CommandTimeout(f"run {record.id} did not stop: {exc}") from None
        self.store.update_run(record.id, only_if_status=LIVE, status="stopped", ended=time.time())
        self.store.cancel_pending(record.id, f"run {record.id} was terminated")

    def rollback(self, run: int | str, day: int, *, hp: Mapping[str, Any] | None = None,
                 wait: bool = True, timeout: float = 60.0, source: str | None = None,
                 **values: Any) -> CommandResult:
        """Continue the same run from the end of ``day``, exactly as it was then.

        Weights, optimizer, scheduler, RNG, data position, step and hyperparameters come back
        (``hp``/keywords override some); what came after stays in the store as superseded.

        >>> c.rollback(3, day=2, lr=0.05)       # doctest: +SKIP
        """
        overrides = _merge(hp, values)
        day = whole(day, "day")
        record = self._live(run, "roll back")
        target = self._day_checkpoint(record, day)
        self._check_intact(target)
        if overrides:
            overrides = check_updates(overrides, target.hp, strict=record.strict,
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
            open_storage(root=self.store.root).verify(target.path, target.sha256)
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

    def exploit(self, target: int | str, donor: int | str, day: int,
                hp: Mapping[str, Any] | None = None, *, wait: bool = True, timeout: float = 60.0,
                source: str | None = None, reason: str | None = None,
                decision: int | None = None) -> CommandResult:
        """Copy the ``donor`` run's day-``day`` weights into the running ``target`` (PBT's
        exploit).

        The target's process loads that checkpoint (weights, optimizer, scheduler, data
        position), applies ``hp`` on top (the explore) and goes on; it keeps its own step
        counter unless it is already past the checkpoint's step, in which case what it did
        since is superseded, as in a rollback. Recorded as an ``exploit`` event on the target
        (from_run, from_day, old/new hp, ``reason``). ``decision`` links an autopilot decision.

        >>> c.exploit("b", "a", day=5, lr=0.02)    # doctest: +SKIP
        """
        day = whole(day, "day")
        reason = _check_reason(reason)
        if decision is not None:
            decision = whole(decision, "decision", 1)
        record = self._live(target, "exploit into")
        giver = self.run(donor)
        if giver.id == record.id:
            raise InvalidValue(f"run {record.id} cannot exploit itself: roll it back instead")
        checkpoint = self._day_checkpoint(giver, day)
        self._check_intact(checkpoint)
        overrides = _merge(hp, {})
        clean = check_updates(overrides, checkpoint.hp, strict=record.strict,
                              optimizer_keys=record.optimizer_keys) if overrides else {}
        args: dict[str, Any] = {"donor": giver.id, "day": day, "hp": clean}
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

        >>> child = c.fork(3, day=2, lr=0.02)      # doctest: +SKIP
        """
        overrides = _merge(hp, values)
        if day is not None:
            day = whole(day, "day")
        name = check_name(name)
        parent = self.run(run)
        target = self._day_checkpoint(parent, day)
        self._check_intact(target)
        if overrides:
            overrides = check_updates(overrides, target.hp, strict=parent.strict,
                                      optimizer_keys=parent.optimizer_keys)
        max_days = _check_max_days(max_days, target.day)
        self._check_launch(parent.id, parent.launch)
        assert parent.launch is not None
        source = check_source(self.source if source is None else source)
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
        # the command's name on the parent (like nudge, rollback); the child's own start is
        # its trainer's "forked" event
        self.store.add_event(parent.id, target.step, target.day + 1, "fork", source,
                             {"child": child, "day": target.day, "overrides": overrides},
                             parent.branch)
        self._launch(child, parent.launch)
        return child

    def _restart_point(self, record: RunRecord, day: int | None, source: str
                       ) -> CheckpointRecord | None:
        """Where a restart starts: the run's latest intact day (or ``day``); a fork that died
        before its own first day starts from its parent's fork-point checkpoint again."""
        if day is not None:
            target = self.store.checkpoint(record.id, day)
            if target is None and record.parent_id is not None and day == record.parent_day:
                target = self.store.checkpoint(record.parent_id, day)
            if target is None:
                self._day_checkpoint(record, day)   # raises UnknownDay with the available days
            assert target is not None
            self._check_intact(target)
            return target
        # the latest day that is intact: a truncated or corrupted one is skipped, loudly
        target = self._last_intact(record, source)
        if target is None and record.parent_id is not None and record.parent_day is not None:
            target = self.store.checkpoint(record.parent_id, record.parent_day)
            if target is not None:
                self._check_intact(target)
        return target

    def restart(self, run: int | str, *, day: int | None = None, source: str | None = None
                ) -> Any:
        """Start a new process for a crashed or stopped run, from its last (or ``day``'s)
        checkpoint. Commands queued while it was down are applied once it is up. Returns the pid
        (or the Ray job, for a Ray launcher).

        A truncated or corrupted latest day is skipped (a ``checkpoint_corrupt`` event says
        which and why) for the previous good one; a corrupt ``day`` raises CheckpointError. A
        fork that crashed before its first own day starts from its parent's fork point. A
        restart whose process cannot start (LaunchError) leaves the run as it was.
        """
        if day is not None:
            day = whole(day, "day")
        record = self._checked(run)
        if record.status not in ("crashed", "stopped"):
            raise RunNotLive(f"only a crashed or stopped run can be restarted; run {record.id} "
                             f"is {record.status}")
        source = check_source(self.source if source is None else source)
        target = self._restart_point(record, day, source)
        self._check_launch(record.id, record.launch)    # before anything is written
        start_from = None
        if target is not None:
            start_from = {"path": target.path, "sha256": target.sha256, "day": target.day,
                          "supersede": target.run_id == record.id}
        if not self.store.update_run(record.id, only_if_status=("crashed", "stopped"),
                                     status="starting", pid=None, pid_start=None,
                                     heartbeat=time.time(), error=None, launcher=None,
                                     start_from=start_from):
            raise RunNotLive(f"run {record.id} changed state meanwhile; try again")
        if target is not None:
            self.store.add_event(record.id, target.step, target.day + 1, "restarted", source,
                                 {"from_day": target.day, "from_run": target.run_id},
                                 record.branch)
        else:
            # No day was ever saved: the new process starts from scratch, so what the old one
            # logged becomes an abandoned branch instead of a second copy of steps 0, 1, ...
            self.store.apply([
                Supersede(record.id, 0),
                EventRow(record.id, 0, 1, "restarted", source, {"from_day": None},
                         record.branch + 1),
                RunUpdate(record.id, {"branch": record.branch + 1, "step": 0, "day": 0})])
        return self._launch(record.id, record.launch or {}, keep=record)

    def _check_launch(self, run_id: int, launch: Mapping[str, Any] | None) -> None:
        """LaunchError now if the run's process could not be started; a launcher that cannot
        tell in advance (no ``check``) is left to fail in ``start``."""
        if not launch:
            command_line(launch, run_id)       # raises: started from an interactive session
        check = getattr(self.launcher, "check", None)
        if check is not None:
            check(run_id, launch)

    def _launch(self, run_id: int, launch: Mapping[str, Any], keep: RunRecord | None = None
                ) -> Any:
        """Start the run's process and record it (its pid, or its Ray job in
        ``runs.launcher``); returns the pid or the job. On failure the run is ``crashed`` with
        the reason, and ``keep``'s day, step and branch are put back (a failed restart)."""
        try:
            handle = self.launcher.start(run_id, dict(launch), self.store.root, self._store_url)
        except LaunchError as exc:
            back: dict[str, Any] = (
                {"day": keep.day, "step": keep.step, "branch": keep.branch} if keep else {})
            self.store.update_run(run_id, status="crashed", error=str(exc), ended=time.time(),
                                  **back)
            raise
        if isinstance(handle, int):         # a local process: its pid tells whether it runs
            self.store.update_run(run_id, only_if_status=("starting",), pid=handle,
                                  pid_start=process_start_time(handle),
                                  host=socket.gethostname(), launcher=LOCAL)
            return handle
        # A job on a cluster: the store keeps how to find it; its trainer writes pid and host
        # (of the machine it runs on) when it starts. Written whatever the status: a trainer
        # quick enough to be running already must still be found through its job.
        self.store.update_run(run_id, launcher=handle.to_json())
        return handle

    def launch(self, argv: list[str], *, project: str | None = None, name: str | None = None,
               day: str | None = None, cwd: str | None = None, detach: bool = True,
               hp: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None,
               study_id: int | None = None, max_days: int | None = None,
               trial: int | None = None) -> int:
        """Create a run for a script and (with ``detach``) start it in the background.

        The script's own ``babysit.init()`` binds to this run and fills in the project, day and
        config that were not given here; ``hp`` (or its other name ``config``) wins over the
        script's config. The program is recorded with its absolute path (``python`` is looked
        up on PATH now), so a fork or restart runs the same interpreter from any shell. With
        ``max_days`` the run finishes by itself once that day is done. ``study_id``/``trial``
        tie the run to a study. Returns the run id.

        >>> c.launch([sys.executable, "train.py"], hp={"lr": 0.01}, max_days=5)  # doctest: +SKIP
        """
        from babysit.day import DaySpec

        if not argv or not all(isinstance(a, str) for a in argv):
            raise InvalidValue("babysit run needs a command (a list of strings), e.g. "
                               f"babysit run -- python train.py; got {argv!r}")
        if hp is not None and config is not None:
            raise InvalidValue("give the starting hyperparameters as hp= or config=, not both")
        start_hp = _check_launch_hp(hp if hp is not None else (config or {}))
        name, project = check_name(name), check_name(project, "a project name")
        max_days = _check_max_days(max_days)
        study_id = None if study_id is None else whole(study_id, "study_id")
        trial = None if trial is None else whole(trial, "trial")
        folder = Path(cwd or os.getcwd()).resolve()
        launch = {"executable": resolve_executable(argv[0]), "argv": list(argv[1:]),
                  "cwd": str(folder), "env": {}}
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
