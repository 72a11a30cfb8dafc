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
An exploit (PBT's copy of another run's day, the donor's) takes the same way, once the donor's
day is known to fit: saved by the same framework, intact, and holding the live model's keys with
their shapes (``FrameworkRun.fits``, checked before the framework loads a byte of it: the HF
Trainer loads weights non-strictly, so a misfit would otherwise half-load).

Everything that reaches into the Run is in ``FrameworkRun``, through the Run's public surface
for framework loops (``run.state``, ``drive``, ``take_start``, ``day_saved``, ``end``), the
``LoopState``'s documented fields and methods, and the command handlers' shared steps: a
rollback and an exploit are checked by ``commands.rollback_target`` / ``exploit_target`` and
recorded by ``commands.where_from`` / ``land`` / ``record_jump``, the guard's rollback is
``commands.on_diverged``'s, a start is ``resume.record_start``'s, as in babysit's own loop; only
the loading differs, because the framework, not babysit, loads the state (and its RNG) back.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babysit import checkpoint as ckpt
from babysit.errors import BabysitError, CheckpointError, InvalidValue
from babysit.store import CheckpointRecord, CheckpointRow, CommandRecord
from babysit.trainer import commands, knobs, resume
from babysit.trainer.saver import SaveJob

_DAY_FOLDER = re.compile(r"^(day\d{4,}\.b\d+)\.([a-z]+)$")


def folder_manifest(folder: Path) -> dict[str, list[Any]]:
    """Every file under ``folder``: relative path -> [size, sha256]. Links are refused."""
    files: dict[str, list[Any]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise CheckpointError(f"{path} is a symbolic link: a day folder holds plain files")
        if path.is_file():
            files[str(path.relative_to(folder))] = [path.stat().st_size, ckpt.file_sha256(path)]
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
        if ckpt.file_sha256(path) != sha:
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


def check_weights(model: Any, saved: dict[str, tuple[int, ...]]) -> None:
    """Refuse weights ``saved`` (key -> shape) that do not fit ``model``: a key the model does
    not have, another shape, or a model key left out unless it shares its tensor with a saved
    one (tied weights are saved once). Raises CheckpointError naming the first few."""
    state = model.state_dict()
    problems = [f"{k} is not in the model" for k in sorted(set(saved) - set(state))]
    problems += [f"{k} is {list(saved[k])} there, {list(state[k].shape)} here"
                 for k in sorted(set(saved) & set(state)) if tuple(saved[k]) != tuple(state[k].shape)]
    saved_ptrs = {state[k].data_ptr() for k in saved if k in state}
    problems += [f"{k} is missing" for k in sorted(set(state) - set(saved))
                 if state[k].data_ptr() not in saved_ptrs]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError("its weights do not fit the model: " + "; ".join(problems[:3]) + more)


@dataclass
class Restore:
    """A day the framework must go back to: a rollback, the guard's rollback, a restart or fork."""

    kind: str                        # "rollback" | "exploit" | "start" (a restart or a fork)
    payload: dict[str, Any]          # babysit's day file (counters, hp, the folder's manifest)
    folder: Path                     # the framework's checkpoint, verified
    record: CheckpointRecord | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)    # factors of the day's live values
    command: CommandRecord | None = None
    start_from: dict[str, Any] | None = None                # a start's: runs.start_from ...
    event: tuple[str, dict[str, Any]] = ("restarted", {})   # ... and its event: restarted, forked
    source: str = "trainer"
    reason: str | None = None
    corrupt: list[dict[str, Any]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)     # the event's (an exploit's donor)


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
        self.loop = run.state               # LoopState: counters, flags, hp, outbox, saver
        self.framework, self.suffix, self.version = framework, suffix, version
        self.restore: Restore | None = None
        #: set by the callback: raises CheckpointError when a day folder's weights do not fit
        #: the live model (keys and shapes); an exploit is refused before anything is loaded
        self.fits: Callable[[Path], None] | None = None
        self._deferred = False
        self._effective_due = 0.0
        self._first: Any = None         # the first optimizer, unwrapped: its group 0 is traced
        self._others: tuple[Any, ...] | None = None     # group 0's momentum/betas, weight decay
        self._clean_folders()

    # ------------------------------------------------------------------ setup
    def _clean_folders(self) -> None:
        """Remove day folders a killed process left without their listed day file."""
        loop = self.loop
        try:
            listed = {Path(r.path).stem for r in
                      loop.store.checkpoint_records(loop.run_id, include_superseded=True)}
        except BabysitError:
            return
        for entry in loop.folder.iterdir():
            match = _DAY_FOLDER.match(entry.name)
            if match and entry.is_dir() and not entry.is_symlink() and match.group(1) not in listed:
                shutil.rmtree(entry, ignore_errors=True)
        shutil.rmtree(loop.folder / ".staging", ignore_errors=True)

    def bind(self, optimizers: list[Any], schedulers: list[Any]) -> None:
        """Point nudges at the framework's optimizers and schedulers (wrappers included)."""
        loop = self.loop
        self.run.drive(optimizers, schedulers)
        self._first = knobs.unwrap(loop.optimizers[0]) if loop.optimizers else None
        self._others = None

    def start(self) -> Restore | None:
        """The day a restarted or forked process starts from (verified), or None."""
        start = self.run.take_start()
        if start is None:
            return None
        start_from, event = start
        payload, corrupt = resume.load_start(self.loop, start_from)
        folder = self._folder(payload)
        overrides = {k: v for k, v in self.loop.hp.items() if payload["hp"].get(k) != v}
        return Restore("start", payload, folder, overrides=overrides, corrupt=corrupt,
                       start_from=start_from, event=event)

    def _folder(self, payload: dict[str, Any]) -> Path:
        info = payload.get("framework")
        if not isinstance(info, dict) or info.get("name") != self.framework:
            got = info.get("name") if isinstance(info, dict) else "babysit's own loop"
            raise CheckpointError(f"this day was saved by {got}, not by {self.framework}")
        folder = ckpt.safe_path(self.loop.store.root, info["dir"])
        verify_folder(folder, info["files"])
        return folder

    def load_day(self, record: CheckpointRecord) -> tuple[dict[str, Any], Path]:
        payload = commands.load(self.loop, record)
        return payload, self._folder(payload)

    # ------------------------------------------------------------------ small facts and acts
    @property
    def day_spec(self) -> Any:
        return self.loop.day_spec

    @property
    def step(self) -> int:
        return self.loop.step

    @property
    def starts_from_checkpoint(self) -> bool:
        """A restart or a fork: the framework must be entered from a day (train / fit)."""
        return self.run.starts_from_checkpoint

    def begin(self, step: int) -> None:
        """A fit starts at the framework's ``step`` (not from a babysit day): count days on."""
        self.loop.step = step
        self.loop.arm_day()

    def set_epoch(self, epoch: int) -> None:
        """Epochs done (a day of epochs ends when it divides by the day's length)."""
        self.loop.position.epoch = epoch

    def weights_diverged(self) -> None:
        """The weights are not finite at a day's end: the day is not saved, the guard acts."""
        self.loop.guard.trip("weights", float("nan"))

    def refuse(self, restore: Restore, reason: str) -> None:
        """A restore the framework cannot carry out: its command is rejected, nothing changes."""
        self.restore = None
        if restore.command is not None:
            commands.reject(self.loop, restore.command, reason)

    # ------------------------------------------------------------------ the step boundary
    def boundary(self, step: int) -> Boundary:
        """Call after each optimizer step with the number of steps done.

        When the day ends here, commands wait until the day is saved (``commands()`` after
        ``save_day``), so a nudge at a day's last step is not in that day's checkpoint, as in
        babysit's own loop.
        """
        loop = self.loop
        loop.step = step
        if step >= loop.next_day_step or (
                loop.day_deadline != float("inf") and time.monotonic() >= loop.day_deadline):
            self._deferred = True
            return Boundary(day_due=True)
        if loop.outbox.inbox() or loop.paused or loop.guard.tripped is not None:
            return self.commands()
        self._trace()
        return _GO_ON

    def _trace(self, now: bool = False) -> None:
        """Trace what a schedule moved, at every step: cheap, since it runs at every step.

        A schedule moves group 0's lr (HF's at every step): that one row is queued here. Only
        when something else moved (a command, a restore, a schedule of momentum) does the
        whole ``trace_hp`` walk every key and group.
        """
        first = self._first
        if first is None:
            return
        loop = self.loop
        group = first.param_groups[0]
        lr = group["lr"]
        others = (group.get("betas") or group.get("momentum"), group.get("weight_decay"))
        if now or others != self._others or type(lr) is not float:
            self._others = others
            loop.trace_hp()
        elif lr != loop.traced.get("lr"):
            loop.traced["lr"] = lr
            step, day, branch = loop.where()
            loop.outbox.queue.append((step, day, "hp/lr", lr, time.time(), branch))
        self._report_effective(now)

    def _report_effective(self, now: bool) -> None:
        """Bring the effective values up to date when the optimizer's changed: the writer's
        next heartbeat writes them to ``runs.effective`` (``LoopState.effective_report``, as
        in babysit's own loop). Compared at most twice a second (a schedule moves the lr at
        every step; comparing every group's values at every step was most of the hook's
        cost), at once after a command or a restore."""
        loop = self.loop
        clock = time.monotonic()
        if not now and clock < self._effective_due:
            return
        self._effective_due = clock + 0.5
        fingerprint = knobs.fingerprint(loop.optimizers)
        if fingerprint != loop.seen[1]:
            loop.seen = (loop.step, fingerprint)

    def commands(self) -> Boundary:
        """Apply queued commands; wait here while paused. A rollback is returned, not applied."""
        loop = self.loop
        self._deferred = False
        tripped = loop.guard.take()
        if tripped is not None:
            name, value = tripped
            commands.on_diverged(self.loop, name, value, roll_back_to=self._guard_rollback)
        while True:
            inbox = loop.outbox.inbox()
            while inbox and self.restore is None and not loop.stopping:
                self._apply(inbox.popleft())
            if self.restore is not None or loop.stopping or not loop.paused:
                break
            time.sleep(0.02)
        self._trace(now=True)
        return Boundary(stop=loop.stopping, restore=self.restore)

    @property
    def deferred(self) -> bool:
        """Commands wait for the day being saved (``commands()`` applies them after it)."""
        return self._deferred

    def day_ends(self) -> None:
        """A day ends here (a day of epochs, seen by the callback): commands wait for its save."""
        self._deferred = True

    def _apply(self, command: CommandRecord) -> None:
        loop = self.loop
        if command.kind in ("rollback", "exploit"):
            try:
                if command.kind == "rollback":
                    self._cmd_rollback(command)
                else:
                    self._cmd_exploit(command)
            except (BabysitError, ValueError, TypeError, KeyError) as exc:
                self.restore = None
                commands.reject(loop, command, str(exc))
        else:
            commands.apply(loop, command)

    def _cmd_rollback(self, command: CommandRecord) -> None:
        record, overrides = commands.rollback_target(self.loop, command)
        payload, folder = self.load_day(record)
        self.restore = Restore("rollback", payload, folder, record, overrides=overrides,
                               command=command, source=command.source)

    def _cmd_exploit(self, command: CommandRecord) -> None:
        """``commands.exploit`` for a state the framework loads: the donor's day is checked
        (its framework, manifest, and its weights' keys and shapes against the live model)
        before anything is loaded; a misfit raises, the command is rejected, the run goes on."""
        record, clean = commands.exploit_target(self.loop, command)
        try:
            payload, folder = self.load_day(record)
            if self.fits is not None:
                self.fits(folder)
        except CheckpointError as exc:
            raise CheckpointError(f"run {record.run_id}'s day {record.day} does not fit this "
                                  f"run: {exc}") from exc
        detail = commands.exploit_detail(self.loop, command, record, payload, clean)
        self.restore = Restore("exploit", payload, folder, record, overrides=clean,
                               command=command, source=command.source, detail=detail)

    def _guard_rollback(self, record: CheckpointRecord, reason: str) -> None:
        """The guard's rollback to its last good day: the framework loads it; the day's own lr
        times the guard's ``lr_factor`` is applied once it has (``_rolled_back``)."""
        payload, folder = self.load_day(record)
        self.restore = Restore("rollback", payload, folder, record,
                               scale={"lr": self.loop.guard.lr_factor}, source="guard",
                               reason=reason)

    # ------------------------------------------------------------------ metrics
    def log(self, step: int, metrics: dict[str, Any]) -> bool:
        """Record what the framework logged at babysit's ``step``; returns False when the guard
        saw it diverge (the caller must not save a day with that state)."""
        loop, guard = self.loop, self.loop.guard
        day, branch, now = loop.day + 1, loop.branch, time.time()
        put = loop.outbox.queue.append
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not isinstance(name, str):
                continue
            value = float(value)
            put((step, day, name, value, now, branch))
            if name == guard.metric:
                guard.observe(value)
        return guard.tripped is None

    # ------------------------------------------------------------------ days
    def staging(self) -> Path:
        """A folder the framework may write a day's checkpoint into before it is listed."""
        path = self.loop.folder / ".staging"
        path.mkdir(exist_ok=True)
        return path

    def save_day(self, folder: Path, *, move: bool, drop: tuple[str, ...] = (),
                 batch: int = 0) -> None:
        """The framework wrote the day's checkpoint in ``folder``: list it as the next day.

        ``move`` renames the folder into the run's directory (babysit asked for this save);
        otherwise it is linked or copied (the user's own checkpoint stays where it is).
        ``batch`` is the batch inside the epoch the day ends at (0: at an epoch's end).
        """
        self.loop.day += 1
        self._write_day(self.loop.day, folder, move=move, drop=drop, batch=batch)
        self.loop.arm_day()
        self.run.day_saved()

    def _write_day(self, day: int, folder: Path, *, move: bool, drop: tuple[str, ...] = (),
                   batch: int = 0) -> None:
        loop = self.loop
        loop.saver.wait_idle()      # the previous day's file first, as babysit's own loop does
        step, branch, root = loop.step, loop.branch, loop.store.root
        name = ckpt.checkpoint_name(day, branch)
        dest = loop.folder / f"{Path(name).stem}.{self.suffix}"
        if dest.exists():
            shutil.rmtree(dest)     # a leftover of a killed process: never listed
        if move:
            os.replace(folder, dest)
        else:
            _link_or_copy(folder, dest)
        for unused in drop:     # files the framework does not need to resume (pickles)
            (dest / unused).unlink(missing_ok=True)
        payload = {
            "format": ckpt.FORMAT, "run_id": loop.run_id, "day": day, "step": step,
            "branch": branch, "epoch": loop.position.epoch, "batch": batch, "epoch_rng": None,
            "hp": dict(loop.hp), "rng": ckpt.capture_rng(), "time": time.time(), "state": {},
            "framework": {"name": self.framework, "version": self.version,
                          "dir": str(dest.relative_to(root)), "files": folder_manifest(dest)},
        }
        path = loop.folder / name
        job = SaveJob(path, payload)
        loop.outbox.day_end(job, CheckpointRow(
            loop.run_id, day, step, branch, time.time(), str(path.relative_to(root)), 0, "",
            dict(loop.hp), {}))
        loop.saver.submit(job)

    # ------------------------------------------------------------------ after a restore
    def restored(self, restore: Restore) -> None:
        """The framework has loaded ``restore``'s day: counters, branch, events, overrides.

        Call it before the first step of the re-entered fit, after the framework loaded the
        optimizer and scheduler (overrides are nudges of those).
        """
        self.restore = None
        if restore.kind in ("rollback", "exploit"):
            self._rolled_back(restore)
        else:
            self._started(restore)
        self.loop.arm_day()
        self.commands()             # a paused run waits here, before its first step

    def _take_counters(self, payload: dict[str, Any]) -> None:
        loop = self.loop
        loop.step, loop.day = int(payload["step"]), int(payload["day"])
        loop.position.epoch = int(payload.get("epoch", 0))
        loop.hp.clear()
        loop.hp.update(payload["hp"])
        loop.guard.forget()

    def _rolled_back(self, restore: Restore) -> None:
        """``commands.restore_to`` for a state the framework loaded itself (a rollback or an
        exploit).

        The framework's step counter is the day's (its schedule and data position follow it):
        an exploit of a donor's day behind this run's step supersedes what the run did since,
        as a rollback does; a day at or after it goes on from there on the same branch.
        """
        loop = self.loop
        record = restore.record
        assert record is not None
        origin = commands.where_from(loop)
        self._take_counters(restore.payload)
        exploit = restore.kind == "exploit"
        rewound = not exploit or loop.step < origin[0]
        commands.land(loop, origin, rewound=rewound, keep_step=False)
        overrides = dict(restore.overrides)
        for key, factor in restore.scale.items():
            overrides[key] = loop.current(key) * factor
        changes = commands.set_hp(loop, overrides) if overrides else {}
        if exploit:
            detail: dict[str, Any] = dict(restore.detail)
        else:
            detail = {"to_day": record.day, "to_step": record.step,
                      "from_step": origin[0], "from_branch": origin[2]}
        if restore.reason:
            detail["reason"] = restore.reason
        commands.record_jump(loop, kind=restore.kind, source=restore.source, detail=detail,
                             changes=changes, command=restore.command, rewound=rewound)

    def _started(self, restore: Restore) -> None:
        """``resume.start_from_checkpoint`` for a state the framework loaded itself."""
        loop = self.loop
        target_hp = {**restore.payload["hp"], **restore.overrides}
        self._take_counters(restore.payload)
        assert restore.start_from is not None
        if resume.record_start(loop, restore.start_from, restore.event,
                               restore.payload, target_hp, restore.corrupt):
            # a fork keeps its own copy of its first day, to roll back to
            self._write_day(loop.day, restore.folder, move=False,
                            batch=int(restore.payload.get("batch", 0)))
        loop.trace_hp()

    def not_reproducible(self, why: str) -> None:
        self.loop.mark_not_reproducible(why)

    # ------------------------------------------------------------------ the end
    def close(self, exc: BaseException | None = None) -> None:
        """End the run: finished or stopped, crashed with the exception, stopped on Ctrl-C."""
        self.run.end(exc)


_GO_ON = Boundary()


class CallbackBase:
    """What both frameworks' ``BabysitCallback`` share: ``babysit.init``'s arguments, the run
    (made when the fit starts), and the restore (a rollback, an exploit, a restart or a fork)
    that the wrapper (``huggingface.train`` / ``lightning.fit``) enters the fit again for.

    A subclass sets ``FRAMEWORK`` (the checkpoint kind), ``SUFFIX`` (of the day folders),
    ``VERSION``, ``WRAPPER`` (what a user calls instead of the framework's fit) and ``PLAIN``
    (that fit)."""

    FRAMEWORK = SUFFIX = VERSION = WRAPPER = PLAIN = ""

    def _setup(self, *, day: str | int, project: str, config: dict[str, Any] | None,
               name: str | None, strict: bool, guard: Any, root: Any, store_url: str | None,
               run: Any) -> None:
        self._init_args = {"project": project, "config": dict(config or {}), "day": day,
                           "name": name, "strict": strict, "guard": guard, "root": root,
                           "store_url": store_url}
        self.run = run
        self.fw: FrameworkRun | None = None
        self._wrapped = False               # the wrapper re-enters the fit after a rollback
        self._restore: Restore | None = None
        self._leaving = False               # the fit stops for a restore

    def _framework_run(self, found: dict[str, Any]) -> FrameworkRun:
        """The FrameworkRun, made once: a new run's config is the user's, plus the values
        ``found`` in the framework's own arguments for keys the user did not give."""
        if self.fw is None:
            if self.run is None:
                from babysit.trainer import init
                kwargs = dict(self._init_args)
                config = kwargs.pop("config")
                config.update({k: v for k, v in found.items() if k not in config})
                self.run = init(config=config, **kwargs)
            self.fw = FrameworkRun(self.run, self.FRAMEWORK, self.SUFFIX, self.VERSION)
        return self.fw

    def _entered(self, step: int) -> Restore | None:
        """The fit starts at the framework's ``step``: the restore it was entered for (its step
        checked; the caller loads nothing more and calls ``fw.restored``), or None (a fit of
        its own: days are counted on from ``step``)."""
        fw = self.fw
        assert fw is not None
        self._leaving = False
        if self._restore is not None:
            restore, self._restore = self._restore, None
            if step != int(restore.payload["step"]):
                raise InvalidValue(f"{self.FRAMEWORK} resumed at step {step}, the day was "
                                   f"saved at step {restore.payload['step']}")
            return restore
        fw.begin(step)
        if not self._wrapped and fw.starts_from_checkpoint:
            raise InvalidValue("this run starts from a checkpoint (a fork or a restart): call "
                               f"{self.WRAPPER}")
        return None

    def _obey(self, boundary: Boundary) -> bool:
        """Does the fit have to stop at this boundary (a stop, or a restore for the wrapper)?
        A restore without the wrapper is refused (its command rejected)."""
        if boundary.restore is None:
            return boundary.stop
        if not self._wrapped:
            assert self.fw is not None
            self.fw.refuse(boundary.restore,
                           f"{boundary.restore.kind} needs {self.WRAPPER} instead of "
                           f"{self.PLAIN}")
            return False
        self._restore = boundary.restore
        self._leaving = True
        return True


def find_callback(callbacks: list[Any], cls: type) -> Any:
    """The one ``cls`` among a trainer's callbacks (the wrapper needs exactly one)."""
    found = [cb for cb in callbacks if isinstance(cb, cls)]
    if len(found) != 1:
        raise InvalidValue(f"the Trainer needs exactly one BabysitCallback in callbacks=, "
                           f"found {len(found)}")
    return found[0]
