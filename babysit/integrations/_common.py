"""What both framework integrations share: the Run's hooks for a loop that babysit does not own.

A framework (the Hugging Face Trainer, Lightning) runs its own loop; its callback calls:

- ``FrameworkRun.boundary(step)`` after each optimizer step (``step`` = steps done): commands
  are applied there (nudge, pause, resume, stop; a rollback is *requested*, see below) and it
  says whether the day ends at this step;
- ``FrameworkRun.log(step, metrics)`` with what the framework logged, at babysit's step (the
  0-based index of the step that produced it, as ``run.log`` inside babysit's own loop);
- ``FrameworkRun.save_day(folder)`` once the framework has written its own checkpoint for the
  day: the folder moves into the run's directory and a small babysit day file lists every file
  in it with its size and sha256 (that day file has its own manifest and its row in the store);
- ``FrameworkRun.restored(restore)`` once the framework has loaded a day (after a rollback, a
  restart or a fork): babysit's counters, branch, events and overrides follow.

A rollback cannot be applied inside a framework's loop without copying it: the boundary returns
a ``Restore`` (the verified day), the callback stops the fit at that boundary and the wrapper
(``huggingface.train`` / ``lightning.fit``) enters the fit again from the day's checkpoint.

Everything that reaches into the Run is in ``FrameworkRun``: these are the hooks the trainer
package should expose (see the report of the integrations branch).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babysit import checkpoint as ckpt
from babysit.errors import BabysitError, CheckpointError, InvalidValue
from babysit.hparams import check_updates
from babysit.store import CheckpointRecord, CommandRecord

_DAY_FOLDER = re.compile(r"^(day\d{4,}\.b\d+)\.([a-z]+)$")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_manifest(folder: Path) -> dict[str, list[Any]]:
    """Every file under ``folder``: relative path -> [size, sha256]. Links are refused."""
    files: dict[str, list[Any]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise CheckpointError(f"{path} is a symbolic link: a day folder holds plain files")
        if path.is_file():
            files[str(path.relative_to(folder))] = [path.stat().st_size, _sha256(path)]
    return files


def verify_folder(folder: Path, files: dict[str, list[Any]]) -> None:
    """Check a day folder against its manifest before the framework reads a byte of it.

    Every listed file must be there with its size and hash, and nothing else may be: a file
    slipped in later (a pickle the framework would load) is refused like a changed one.
    """
    if not folder.is_dir() or folder.is_symlink():
        raise CheckpointError(f"{folder.name} is missing")
    actual = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
    extra = sorted(actual - set(files))
    if extra:
        raise CheckpointError(f"{folder.name} holds files its manifest does not list: {extra}")
    for rel, (size, sha) in files.items():
        path = folder / rel
        if path.is_symlink() or not path.is_file():
            raise CheckpointError(f"{folder.name}/{rel} is missing")
        if path.stat().st_size != size:
            raise CheckpointError(f"{folder.name}/{rel} is {path.stat().st_size} bytes, "
                                  f"its manifest says {size}")
        if _sha256(path) != sha:
            raise CheckpointError(f"{folder.name}/{rel} fails its sha256 check: the file is corrupted")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Copy a day folder: hard links where possible (day folders are never written again)."""
    dst.mkdir(parents=True)
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


@dataclass
class Restore:
    """A day the framework must go back to: a rollback, the guard's rollback, a restart or fork."""

    kind: str                        # "rollback" | "start" (a restart or a fork's first process)
    payload: dict[str, Any]          # babysit's day file (counters, hp, the folder's manifest)
    folder: Path                     # the framework's checkpoint, verified
    record: CheckpointRecord | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)    # factors of the day's live values
    command: CommandRecord | None = None
    source: str = "trainer"
    reason: str | None = None
    corrupt: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Boundary:
    """What a step boundary asks of the framework."""

    day_due: bool = False
    stop: bool = False
    restore: Restore | None = None


class FrameworkRun:
    """A babysit ``Run`` driven by a framework's callback instead of ``run.loop``.

    ``framework`` names the checkpoint kind (``"transformers"``, ``"lightning"``) and ``suffix``
    the day folders (``day0003.b0.hf``).
    """

    def __init__(self, run: Any, framework: str, suffix: str, version: str):
        self.run = run
        self.framework, self.suffix, self.version = framework, suffix, version
        self.restore: Restore | None = None
        self._deferred = False
        self._next_day_step = float("inf")
        self._deadline = float("inf")
        self._bound = False
        self._clean_folders()

    # ------------------------------------------------------------------ setup
    def _clean_folders(self) -> None:
        """Remove day folders a killed process left without their listed day file."""
        run = self.run
        try:
            listed = {Path(r.path).stem for r in
                      run.store.checkpoint_records(run.id, include_superseded=True)}
        except BabysitError:
            return
        for entry in run._dir.iterdir():
            match = _DAY_FOLDER.match(entry.name)
            if match and entry.is_dir() and not entry.is_symlink() and match.group(1) not in listed:
                shutil.rmtree(entry, ignore_errors=True)
        shutil.rmtree(run._dir / ".staging", ignore_errors=True)

    def bind(self, optimizers: list[Any], schedulers: list[Any]) -> None:
        """Point nudges at the framework's optimizers and schedulers (wrappers included)."""
        run = self.run
        run._optimizers[:] = [o for o in optimizers if o is not None]
        run._schedulers[:] = [s for s in schedulers if s is not None]
        run._in_loop = True         # SIGTERM stops at the next boundary instead of raising
        if run._optimizers and not self._bound:
            self._bound = True
            run._sync_hp_from_optimizer()
            run._trace_hp()

    def start(self) -> Restore | None:
        """The day a restarted or forked process starts from (verified), or None."""
        run = self.run
        if not run._resume or run._resumed:
            return None
        run._resumed = True
        payload, corrupt = run._load_resume(run._resume)
        folder = self._folder(payload)
        overrides = {k: v for k, v in run._hp.items() if payload["hp"].get(k) != v}
        return Restore("start", payload, folder, overrides=overrides, corrupt=corrupt)

    def _folder(self, payload: dict[str, Any]) -> Path:
        info = payload.get("framework")
        if not isinstance(info, dict) or info.get("name") != self.framework:
            got = info.get("name") if isinstance(info, dict) else "babysit's own loop"
            raise CheckpointError(f"this day was saved by {got}, not by {self.framework}")
        folder = ckpt.safe_path(self.run.store.root, info["dir"])
        verify_folder(folder, info["files"])
        return folder

    def load_day(self, record: CheckpointRecord) -> tuple[dict[str, Any], Path]:
        payload = ckpt.load(ckpt.safe_path(self.run.store.root, record.path), record.sha256)
        return payload, self._folder(payload)

    def arm_day(self) -> None:
        spec, step = self.run.day_spec, self.run._step
        if spec.unit == "steps":
            amount = int(spec.amount)
            self._next_day_step = step + amount - step % amount
        elif spec.unit == "seconds":
            self._deadline = time.monotonic() + spec.amount

    # ------------------------------------------------------------------ the step boundary
    def boundary(self, step: int) -> Boundary:
        """Call after each optimizer step with the number of steps done.

        When the day ends here, commands wait until the day is saved (``after_save``), so a
        nudge at a day's last step is not in that day's checkpoint, as in babysit's own loop.
        """
        run = self.run
        run._step = step
        spec = run.day_spec
        due = (spec.unit == "steps" and step >= self._next_day_step) or (
            spec.unit == "seconds" and time.monotonic() >= self._deadline)
        if due:
            self._deferred = True
            return Boundary(day_due=True)
        return self.commands()

    def commands(self) -> Boundary:
        """Apply queued commands; wait here while paused. A rollback is returned, not applied."""
        run = self.run
        self._deferred = False
        if run._diverged is not None:
            self._on_diverged()
        while True:
            while run._inbox and self.restore is None and not run._stopping:
                self._apply(run._inbox.popleft())
            if self.restore is not None or run._stopping or not run._paused:
                break
            time.sleep(0.02)
        if run._optimizers and run._optimizers[0].param_groups[0]["lr"] != run._traced.get("lr"):
            run._trace_hp()
        return Boundary(stop=run._stopping, restore=self.restore)

    @property
    def deferred(self) -> bool:
        return self._deferred

    def _apply(self, command: CommandRecord) -> None:
        run = self.run
        if command.kind == "rollback":
            try:
                self._cmd_rollback(command)
            except (BabysitError, ValueError, TypeError, KeyError) as exc:
                run._reject(command, str(exc))
        elif command.kind == "exploit":
            run._reject(command, f"exploit is not supported by the {self.framework} integration "
                                 "yet: fork from the donor's day instead")
        else:
            run._apply_command(command)

    def _cmd_rollback(self, command: CommandRecord) -> None:
        run = self.run
        day = command.args.get("day")
        overrides = dict(command.args.get("hp") or {})
        if isinstance(day, bool) or not isinstance(day, int) or day < 0:
            raise InvalidValue(f"day must be a whole number >= 0, got {day!r}")
        record = run.store.checkpoint(run.id, day)
        if record is None:
            raise InvalidValue(f"run {run.id} has no checkpoint for day {day}")
        if overrides:
            overrides = check_updates(overrides, dict(record.hp), strict=run._strict,
                                      optimizer_keys=run._optimizer_keys())
        payload, folder = self.load_day(record)
        self.restore = Restore("rollback", payload, folder, record, overrides=overrides,
                               command=command, source=command.source)

    def _on_diverged(self) -> None:
        """The guard saw a non-finite (or too large) value: pause, or roll back and halve lr."""
        run = self.run
        name, value = run._diverged
        run._diverged = None
        guard, step = run._guard, run._step
        run._record(None, "diverged", "trainer", {"metric": name, "value": value, "step": step},
                    {"status": "diverged"})
        if guard.policy == "rollback" and run._guard_rollbacks < guard.max_rollbacks \
                and "lr" in run._hp:
            record = run._last_good_day()
            if record is not None:
                try:
                    payload, folder = self.load_day(record)
                except CheckpointError as exc:
                    print(f"babysit: cannot roll back to day {record.day}: {exc}", file=sys.stderr)
                else:
                    run._guard_rollbacks += 1
                    # the day's lr x lr_factor, computed once the day is loaded
                    self.restore = Restore(
                        "rollback", payload, folder, record, scale={"lr": guard.lr_factor},
                        source="autopilot", reason=f"{name} was {value} at step {step}")
                    return
        run._paused = True
        run._status = "diverged"
        print(f"babysit: run {run.id} diverged ({name}={value} at step {step}); paused: roll "
              "back or nudge, then resume", file=sys.stderr)

    # ------------------------------------------------------------------ metrics
    def log(self, step: int, metrics: dict[str, Any]) -> bool:
        """Record what the framework logged at babysit's ``step``; returns False when the guard
        saw it diverge (the caller must not save a day with that state)."""
        run = self.run
        values = {k: float(v) for k, v in metrics.items()
                  if isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)}
        if not values:
            return run._diverged is None
        here = run._step
        run._step = step
        try:
            run.log(**values)
        finally:
            run._step = here
        return run._diverged is None

    # ------------------------------------------------------------------ days
    def staging(self) -> Path:
        """A folder the framework may write a day's checkpoint into before it is listed."""
        path = self.run._dir / ".staging"
        path.mkdir(exist_ok=True)
        return path

    def save_day(self, folder: Path, *, move: bool, drop: tuple[str, ...] = ()) -> None:
        """The framework wrote the day's checkpoint in ``folder``: list it as the next day.

        ``move`` renames the folder into the run's directory (babysit asked for this save);
        otherwise it is linked or copied (the user's own checkpoint stays where it is).
        """
        run = self.run
        run._day += 1
        self._write_day(run._day, folder, move=move, drop=drop)
        self.arm_day()
        if run._max_days is not None and run._day >= run._max_days:
            run._days_done = True
            run._stopping = True

    def _write_day(self, day: int, folder: Path, *, move: bool, drop: tuple[str, ...] = ()
                   ) -> None:
        run = self.run
        step, branch = run._step, run._branch
        name = ckpt.checkpoint_name(day, branch)
        dest = run._dir / f"{Path(name).stem}.{self.suffix}"
        if dest.exists():
            shutil.rmtree(dest)     # a leftover of a killed process: never listed
        if move:
            os.replace(folder, dest)
        else:
            _link_or_copy(folder, dest)
        for unused in drop:     # files the framework does not need to resume (pickles)
            (dest / unused).unlink(missing_ok=True)
        root = run.store.root
        payload = {
            "format": ckpt.FORMAT, "run_id": run.id, "day": day, "step": step, "branch": branch,
            "epoch": run._epoch, "batch": run._batch, "epoch_rng": None, "hp": dict(run._hp),
            "rng": ckpt.capture_rng(), "time": time.time(), "state": {},
            "framework": {"name": self.framework, "version": self.version,
                          "dir": str(dest.relative_to(root)), "files": folder_manifest(dest)},
        }
        path = run._dir / name
        rel = str(path.relative_to(root))
        hp = dict(run._hp)
        from babysit.run import _Op, _Save
        job = _Save(path, payload)

        def op(conn: Any, means: dict[str, float]) -> None:
            if job.error:
                run._store.add_event(run.id, step, day, "checkpoint_failed", "trainer",
                                     {"day": day, "error": job.error}, branch, conn=conn)
                return
            run._store.add_checkpoint(conn, run_id=run.id, day=day, step=step, branch=branch,
                                      time=time.time(), path=rel, size=job.size, sha256=job.sha,
                                      hp=hp, metrics=means)
            run._store.update_run(run.id, conn=conn, day=day, step=step)
        run._queue.append(_Op(op, "checkpoint", job))
        run._saver.jobs.put(job)

    # ------------------------------------------------------------------ after a restore
    def restored(self, restore: Restore) -> None:
        """The framework has loaded ``restore``'s day: counters, branch, events, overrides.

        Call it before the first step of the re-entered fit, after the framework loaded the
        optimizer and scheduler (overrides are nudges of those).
        """
        self.restore = None
        if restore.kind == "rollback":
            self._rolled_back(restore)
        else:
            self._started(restore)
        self.arm_day()
        self.commands()             # a paused run waits here, before its first step

    def _take_counters(self, payload: dict[str, Any]) -> None:
        run = self.run
        run._step, run._day = int(payload["step"]), int(payload["day"])
        run._epoch = int(payload.get("epoch", 0))
        run._hp.clear()
        run._hp.update(payload["hp"])
        run._guard_best = run._guard_limit = float("inf")

    def _rolled_back(self, restore: Restore) -> None:
        run = self.run
        record, command = restore.record, restore.command
        assert record is not None
        from_step, from_branch = run._step, run._branch
        user_paused = run._paused and run._status == "paused"
        self._take_counters(restore.payload)
        run._branch = from_branch + 1
        run._paused = user_paused
        run._diverged = None
        detail: dict[str, Any] = {"to_day": record.day, "to_step": record.step,
                                  "from_step": from_step, "from_branch": from_branch}
        if restore.reason:
            detail["reason"] = restore.reason
        step, day, branch, hp = run._step, run._day + 1, run._branch, dict(run._hp)
        status = "paused" if user_paused else "running"
        store = run._store

        def op(conn: Any, writer: Any) -> None:
            if command is not None and not store.close_command(conn, command.id, "applied", step):
                return
            event_id = store.add_event(run.id, step, day, "rollback", restore.source, detail,
                                       branch, conn=conn)
            store.supersede(conn, run.id, record.step, event_id)
            store.update_run(run.id, conn=conn, branch=branch, step=step, day=run._day, hp=hp,
                             status=status)
        from babysit.run import _Op
        run._queue.append(_Op(op, "rollback"))
        run._writer.wake.set()
        run._status = status
        run._traced = {}
        run._trace_hp()
        overrides = dict(restore.overrides)
        for key, factor in restore.scale.items():
            overrides[key] = run._current(key) * factor
        if overrides:
            changes = run._nudge(overrides)
            run._record(None, "nudge", restore.source, changes, {"hp": dict(run._hp)})

    def _started(self, restore: Restore) -> None:
        run = self.run
        self._take_counters(restore.payload)
        supersede = bool((run._resume or {}).get("supersede"))
        if supersede:
            run._branch += 1
        overrides = restore.overrides
        if overrides:
            run._nudge(overrides)
        step, day, branch, hp = run._step, run._day, run._branch, dict(run._hp)
        kind, detail = run._start_event or ("restart", {})
        detail = {**detail, "from_day": day, "overrides": overrides}
        store = run._store

        def op(conn: Any, writer: Any) -> None:
            event_id = store.add_event(run.id, step, day + 1, kind, "trainer", detail, branch,
                                       conn=conn)
            if supersede:
                store.supersede(conn, run.id, step, event_id)
            store.update_run(run.id, conn=conn, branch=branch, step=step, day=day, hp=hp,
                             resume=None)
        from babysit.run import _Op
        run._queue.append(_Op(op, "rollback"))
        run._traced = {}
        run._trace_hp()
        for bad in restore.corrupt:
            run._queue.append(_Op(lambda conn, w, bad=bad: store.add_event(
                run.id, step, day + 1, "checkpoint_corrupt", "trainer", bad, branch, conn=conn)))
        run._writer.wake.set()
        if store.checkpoint(run.id, day) is None:
            # a fork keeps its own copy of its first day, to roll back to
            self._write_day(day, restore.folder, move=False)

    def not_reproducible(self, why: str) -> None:
        self.run._mark_not_reproducible(why)

    # ------------------------------------------------------------------ the end
    def close(self, exc: BaseException | None = None) -> None:
        """End the run: finished or stopped, crashed with the exception, stopped on Ctrl-C."""
        run = self.run
        run._in_loop = False
        if exc is None:
            run.finish()
        else:
            run.__exit__(type(exc), exc, exc.__traceback__)
