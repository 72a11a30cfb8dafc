"""Command handlers: what the loop thread does with a command at a step boundary.

Each handler validates the command again (it may have been written into the store by anyone),
changes the live state, and queues its outcome: a ``CommandOutcome`` whose effects (the event,
the run update) are written only if the command was still pending. A handler that raises a
BabysitError (or ValueError, TypeError, KeyError) leaves the run as it was and the command is
``rejected`` with the reason.

Rollback, exploit and the guard's rollback share one restore path (``restore_to``): load and
verify the checkpoint (the loop thread waits on the disk here), check that it fits the attached
objects before touching any of them, restore, and record the jump. Only these handlers wait on
the disk or the store; nudge, pause, resume and stop never do.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch

from babysit import checkpoint as ckpt
from babysit.errors import BabysitError, CheckpointError, InvalidValue
from babysit.hparams import check_nudge, check_updates, user_changes
from babysit.store import (
    CheckpointRecord,
    CommandOutcome,
    CommandRecord,
    Record,
    RunUpdate,
    Supersede,
)
from babysit.trainer import knobs
from babysit.trainer.saver import snapshot
from babysit.trainer.state import LoopState


def apply(loop: LoopState, command: CommandRecord) -> None:
    """Apply one command (or reject it, changing nothing)."""
    try:
        handler = _HANDLERS.get(command.kind)
        if handler is None:
            raise InvalidValue(f"unknown command {command.kind!r}")
        handler(loop, command)
    except (BabysitError, ValueError, TypeError, KeyError) as exc:
        reject(loop, command, str(exc))


def reject(loop: LoopState, command: CommandRecord, reason: str) -> None:
    """Refuse ``command``, changing nothing: its outcome and a ``rejected`` event say why."""
    detail = {"command": command.kind, "args": command.args, "error": reason}
    loop.outbox.put(CommandOutcome(command.id, "rejected", loop.step, reason,
                                   (loop.event("rejected", command.source, detail),)))


def _applied(loop: LoopState, command: CommandRecord, *effects: Record) -> None:
    loop.outbox.put(CommandOutcome(command.id, "applied", loop.step, None, effects))


def apply_nudge(loop: LoopState, args: Mapping[str, Any], *, new: bool = False
                ) -> dict[str, dict[str, Any]]:
    """Validate a nudge's args (``hp``, ``scale``, ``scale_1m``, ``group``, ``new``) against
    the live run, then apply it, all or nothing; returns the nudge event's detail,
    ``{key: {"old", "new", "op", "arg"[, "groups"]}}`` in effective values.

    The one place a nudge reaches the optimizer knobs (``knobs.nudge``: relative moves are
    computed on what the optimizer uses at this step, schedule included) and the user's values
    (``hparams.user_changes``). ``loop.hp`` keeps the configured values: a user key takes its
    new value; an optimizer key takes the value the nudge gave param group 0 (exactly the value
    of an absolute nudge; the effective value it produced for a relative one), which the
    schedule then moves on from. ``new=True`` lets a restart or fork bring back keys that were
    validated when they were stored.
    """
    keys = knobs.optimizer_keys(loop.optimizers)
    n_groups = len(knobs.groups(loop.optimizers)) or None
    if new:
        args = {**args, "new": True}
    clean = check_nudge(args, loop.hp, strict=loop.strict, optimizer_keys=keys,
                        n_groups=n_groups)
    parts = {"hp": clean["hp"], "scale": clean["scale"], "scale_1m": clean["scale_1m"]}
    users = user_changes(loop.hp, **parts, skip=keys)     # computed, checked, nothing changed
    optimizer = knobs.nudge(loop.optimizers, loop.schedulers, **parts, group=clean["group"])
    # nothing below can fail: the nudge is in
    for key, change in users.items():
        loop.hp[key] = change["new"]
    for key, change in optimizer.items():
        first = change["groups"][0][1] if change["groups"] else None
        loop.hp[key] = change["new"] if first is None else first
    return {**users, **optimizer}


def set_hp(loop: LoopState, updates: Mapping[str, Any], *, new: bool = False
           ) -> dict[str, dict[str, Any]]:
    """Absolute values (overrides), as a nudge: ``apply_nudge(loop, {"hp": updates})``."""
    return apply_nudge(loop, {"hp": dict(updates)}, new=new)


# ---------------------------------------------------------------------------- simple commands
def nudge(loop: LoopState, command: CommandRecord) -> None:
    """A nudge command: absolute ``hp``, relative ``scale`` / ``scale_1m``, ``group``, ``new``
    (see ``apply_nudge``); replies with the event's detail and the effective values."""
    changes = apply_nudge(loop, command.args)
    effective = loop.effective()
    loop.trace_hp()
    _applied(loop, command, loop.event("nudge", command.source, changes),
             RunUpdate(loop.run_id, {"hp": dict(loop.hp), "effective": effective}))


def pause(loop: LoopState, command: CommandRecord) -> None:
    if loop.paused:
        raise InvalidValue(f"run {loop.run_id} is already paused")
    loop.paused, loop.status = True, "paused"
    _applied(loop, command, loop.event("pause", command.source, {}),
             RunUpdate(loop.run_id, {"status": "paused"}))


def resume(loop: LoopState, command: CommandRecord) -> None:
    if not loop.paused:
        raise InvalidValue(f"run {loop.run_id} is not paused")
    loop.paused, loop.status = False, "running"
    _applied(loop, command, loop.event("resume", command.source, {}),
             RunUpdate(loop.run_id, {"status": "running"}))


def stop(loop: LoopState, command: CommandRecord) -> None:
    reason = command.args.get("reason")
    loop.stopping, loop.paused = True, False
    _applied(loop, command, loop.event(
        "stop", command.source, {"reason": reason} if isinstance(reason, str) and reason else {}))


# ------------------------------------------------------------------------- the restore path
def _whole_number(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidValue(f"{name} must be a whole number >= 0, got {value!r}")
    return value


def load(loop: LoopState, record: CheckpointRecord) -> dict[str, Any]:
    """Read and verify a listed checkpoint (on the loop thread: it waits on the disk)."""
    return loop.checkpoints.load(record.path, record.sha256)


def check_fits(loop: LoopState, payload: dict[str, Any], whose: str) -> None:
    """Refuse a checkpoint before any of it is loaded if it cannot fit this run (other objects,
    layer shapes or param groups, no RNG or data position): a half-loaded state is worse."""
    state = payload.get("state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{whose} checkpoint has no state")
    for key in ("step", "day", "epoch", "batch"):
        if isinstance(payload.get(key), bool) or not isinstance(payload.get(key), int):
            raise CheckpointError(f"{whose} checkpoint has no {key}")
    if not isinstance(payload.get("hp"), dict):
        raise CheckpointError(f"{whose} checkpoint has no hyperparameters")
    if not isinstance(payload.get("rng"), dict):
        raise CheckpointError(f"{whose} checkpoint has no RNG state")
    for name, obj in loop.objects.items():
        theirs = state.get(name)
        if theirs is None:
            raise CheckpointError(f"{whose} checkpoint has no {name} state")
        if isinstance(obj, torch.nn.Module):
            mine = obj.state_dict()
            if set(mine) != set(theirs) or any(
                    tuple(mine[k].shape) != tuple(getattr(theirs[k], "shape", ())) for k in mine):
                raise CheckpointError(f"{whose} {name} does not have this run's layers and "
                                      "shapes")
        elif isinstance(obj, torch.optim.Optimizer):
            sizes = [len(g["params"]) for g in obj.state_dict()["param_groups"]]
            if sizes != [len(g["params"]) for g in theirs.get("param_groups", [])]:
                raise CheckpointError(f"{whose} {name} has other param groups")


def restore(loop: LoopState, payload: dict[str, Any], whose: str = "the") -> list[str]:
    """Put every attached object, the RNGs, the counters, the hyperparameters and the data
    position back as ``payload`` has them (checked first). Returns the RNGs the checkpoint
    had no state for. Not atomic by itself: a command restores through ``restore_to``."""
    check_fits(loop, payload, whose)
    state = payload["state"]
    for name, obj in loop.objects.items():
        obj.load_state_dict(state[name])
    not_restored = ckpt.restore_rng(payload["rng"])
    loop.step, loop.day = int(payload["step"]), int(payload["day"])
    loop.hp.clear()
    loop.hp.update(payload["hp"])
    loop.guard.forget()
    loop.position.restore(payload)
    return not_restored


class _Before:
    """The live state before a restore, to put back if any part of it fails: a rollback is
    all or nothing. Costs a copy of the attached objects' state on the CPU, once a rollback."""

    def __init__(self, loop: LoopState):
        self.objects = {name: snapshot(obj.state_dict()) for name, obj in loop.objects.items()}
        self.rng = ckpt.capture_rng()
        self.counters = (loop.step, loop.day, loop.branch, loop.paused, loop.status)
        self.hp = dict(loop.hp)
        self.position = loop.position.memo()
        guard = loop.guard
        self.guard = (guard.best, guard.limit, guard.tripped)

    def put_back(self, loop: LoopState) -> None:
        for name, obj in loop.objects.items():
            obj.load_state_dict(self.objects[name])
        ckpt.restore_rng(self.rng)
        loop.step, loop.day, loop.branch, loop.paused, loop.status = self.counters
        loop.hp.clear()
        loop.hp.update(self.hp)
        loop.position.recall(self.position)
        loop.guard.best, loop.guard.limit, loop.guard.tripped = self.guard


def restore_to(loop: LoopState, payload: dict[str, Any], *, kind: str, source: str,
               detail: dict[str, Any], command: CommandRecord | None = None,
               nudge_args: Mapping[str, Any] | None = None, keep_step: bool = False,
               whose: str = "the") -> None:
    """The one restore path of rollback, exploit and the guard's rollback.

    Restores ``payload``, applies the nudge ``nudge_args`` on top (an lr override rescales
    the restored schedule), and records the jump as a ``kind`` event. A rollback
    (``keep_step=False``) always starts a new branch from the checkpoint's step; an exploit
    keeps the run's own step counter unless the run is already past the checkpoint's step, in
    which case what it did since is superseded, as in a rollback.

    All or nothing: the checkpoint is checked against the attached objects first, and if
    loading it or applying the nudge still fails, the live state is put back as it was and
    the error raised (the command is rejected; the run goes on exactly as before).
    """
    check_fits(loop, payload, whose)
    before = _Before(loop)
    origin = where_from(loop)
    try:
        not_restored = restore(loop, payload, whose)
        rewound = not keep_step or loop.step < origin[0]
        land(loop, origin, rewound=rewound)
        changes = apply_nudge(loop, nudge_args) if nudge_args else {}
    except Exception as exc:
        before.put_back(loop)
        if isinstance(exc, BabysitError):
            raise
        raise CheckpointError(f"{whose} checkpoint could not be restored "
                              f"({type(exc).__name__}: {exc}); the run goes on as before"
                              ) from exc
    if not_restored:
        loop.mark_not_reproducible(f"RNG states missing from the checkpoint: {not_restored}")
    record_jump(loop, kind=kind, source=source, detail=detail, changes=changes,
                command=command, rewound=rewound)


# A framework's integration (babysit/integrations) loads a day's state itself, then goes on
# through the same steps: where_from before, land and record_jump after.
Origin = tuple[int, int, int, bool]


def where_from(loop: LoopState) -> Origin:
    """Before a restore: (step, day, branch, paused by the user). A paused run stays paused
    after it; a diverged one goes on."""
    return loop.step, loop.day, loop.branch, loop.paused and loop.status == "paused"


def land(loop: LoopState, origin: Origin, *, rewound: bool, keep_step: bool = True) -> None:
    """After a restore has put a day's counters in: a ``rewound`` run goes on from the day's
    step on a new branch (what it did since is superseded); otherwise (an exploit of a day at
    or after the run's step) it keeps its own day, and its own step unless ``keep_step`` is
    False (a framework's step counter is the day's: its schedule and data follow it)."""
    from_step, from_day, from_branch, user_paused = origin
    if rewound:
        loop.branch = from_branch + 1
    else:
        loop.day = from_day
        if keep_step:
            loop.step = from_step
    loop.paused = user_paused
    loop.status = "paused" if user_paused else "running"


def record_jump(loop: LoopState, *, kind: str, source: str, detail: dict[str, Any],
                changes: dict[str, Any], command: CommandRecord | None, rewound: bool) -> None:
    """Record a restore (``kind``: rollback or exploit) once the state is in: the superseded
    history, the event, the run's new counters and effective values, the nudge of its
    overrides (an exploit's are its ``explore``) and the command's outcome, in one rewind;
    then trace the hyperparameters again and count the day in progress from here."""
    records: list[Record] = [Supersede(loop.run_id, loop.step)] if rewound else []
    if kind == "exploit":
        detail = {**detail, "explore": changes}
    effective = loop.effective()
    records += [loop.event(kind, source, detail), RunUpdate(loop.run_id, {
        "branch": loop.branch, "step": loop.step, "day": loop.day, "hp": dict(loop.hp),
        "status": loop.status, "effective": effective})]
    if changes and kind != "exploit":
        records.append(loop.event("nudge", source, changes))
    if command is not None:
        loop.outbox.rewind(CommandOutcome(command.id, "applied", loop.step, None, tuple(records)))
    else:
        loop.outbox.rewind(*records)
    loop.traced = {}
    loop.trace_hp()
    loop.arm_day()


def roll_back(loop: LoopState, record: CheckpointRecord, nudge_args: Mapping[str, Any] | None,
              command: CommandRecord | None, source: str, reason: str | None = None) -> None:
    payload = load(loop, record)
    detail: dict[str, Any] = {"to_day": record.day, "to_step": record.step,
                              "from_step": loop.step, "from_branch": loop.branch}
    if reason:
        detail["reason"] = reason
    restore_to(loop, payload, kind="rollback", source=source, detail=detail, command=command,
               nudge_args=nudge_args)


def rollback_target(loop: LoopState, command: CommandRecord
                    ) -> tuple[CheckpointRecord, dict[str, Any]]:
    """A rollback command's day (listed) and its hp overrides (validated against the day's
    hyperparameters); raises, changing nothing, when either is wrong."""
    day = _whole_number("day", command.args.get("day"))
    overrides = dict(command.args.get("hp") or {})
    record = loop.store.checkpoint(loop.run_id, day)
    if record is None:
        raise InvalidValue(f"run {loop.run_id} has no checkpoint for day {day}")
    if overrides:   # validated before anything changes
        overrides = check_updates(overrides, dict(record.hp), strict=loop.strict,
                                  optimizer_keys=knobs.optimizer_keys(loop.optimizers))
    return record, overrides


def rollback(loop: LoopState, command: CommandRecord) -> None:
    record, overrides = rollback_target(loop, command)
    roll_back(loop, record, {"hp": overrides} if overrides else None, command, command.source)


def exploit_target(loop: LoopState, command: CommandRecord
                   ) -> tuple[CheckpointRecord, dict[str, Any]]:
    """An exploit command's donor day (listed) and its explore overrides (validated); raises,
    changing nothing, when any of its args is wrong."""
    args = command.args
    donor = args.get("donor", args.get("run"))      # "run": commands stored before v3
    day, reason = args.get("day"), args.get("reason")
    if isinstance(donor, bool) or not isinstance(donor, int) or donor == loop.run_id:
        raise InvalidValue(f"exploit needs the id of another run, got {donor!r}")
    _whole_number("day", day)
    if reason is not None and not isinstance(reason, str):
        raise InvalidValue(f"reason must be text, got {reason!r}")
    record = loop.store.checkpoint(donor, day)
    if record is None:
        raise InvalidValue(f"run {donor} has no checkpoint for day {day}")
    overrides = dict(args.get("hp") or {})
    clean = check_updates(overrides, dict(record.hp), strict=loop.strict,
                          optimizer_keys=knobs.optimizer_keys(loop.optimizers)) if overrides else {}
    return record, clean


def exploit_detail(loop: LoopState, command: CommandRecord, record: CheckpointRecord,
                   payload: dict[str, Any], clean: dict[str, Any]) -> dict[str, Any]:
    """The ``exploit`` event's detail before the restore (its ``explore`` is added after)."""
    detail: dict[str, Any] = {
        "from_run": record.run_id, "from_day": record.day, "from_step": record.step,
        "old": dict(loop.hp), "new": {**payload.get("hp", {}), **clean},
        "rewound_from_step": loop.step if record.step < loop.step else None}
    reason = command.args.get("reason")
    if reason:
        detail["reason"] = reason
    decision = command.args.get("decision")
    if isinstance(decision, int) and not isinstance(decision, bool):
        detail["decision"] = decision
    return detail


def exploit(loop: LoopState, command: CommandRecord) -> None:
    """Copy another run's (the donor's) day checkpoint into this run (PBT's exploit), with hp
    overrides (its explore)."""
    record, clean = exploit_target(loop, command)
    payload = load(loop, record)
    detail = exploit_detail(loop, command, record, payload, clean)
    restore_to(loop, payload, kind="exploit", source=command.source, detail=detail,
               command=command, nudge_args={"hp": clean} if clean else None, keep_step=True,
               whose=f"run {record.run_id}'s")


_HANDLERS: dict[str, Callable[[LoopState, CommandRecord], None]] = {
    "nudge": nudge, "pause": pause, "resume": resume, "stop": stop, "rollback": rollback,
    "exploit": exploit,
}


# ------------------------------------------------------------------------------ the guard
def on_diverged(loop: LoopState, name: str, value: float,
                roll_back_to: Callable[[CheckpointRecord, str], None] | None = None) -> None:
    """The guard tripped: record it, then roll back (policy "rollback") or pause.

    ``roll_back_to(record, reason)`` replaces babysit's own rollback to the last good day
    where a framework loads the day itself (it must apply the guard's lr factor); a
    CheckpointError or InvalidValue from it leaves the run paused."""
    guard = loop.guard
    step = loop.step
    loop.outbox.put(loop.event("diverged", "guard", {"metric": name, "value": value, "step": step}),
                    RunUpdate(loop.run_id, {"status": "diverged"}))
    has_lr = "lr" in knobs.optimizer_keys(loop.optimizers) or "lr" in loop.hp
    if guard.may_roll_back() and has_lr:
        record = last_good_day(loop)
        if record is not None:
            guard.rollbacks += 1
            reason = f"{name} was {value} at step {step}"
            try:
                if roll_back_to is not None:
                    roll_back_to(record, reason)
                else:
                    # lr × lr_factor on the restored day's live lr (schedule included)
                    roll_back(loop, record, {"scale": {"lr": guard.lr_factor}}, None, "guard",
                              reason=reason)
                return
            except (CheckpointError, InvalidValue) as exc:
                print(f"babysit: run {loop.run_id}: the guard could not roll back: {exc}",
                      file=sys.stderr)
    loop.paused, loop.status = True, "diverged"
    print(f"babysit: run {loop.run_id} diverged ({name}={value} at step {step}, day "
          f"{loop.day + 1}); paused: roll back or nudge, then resume", file=sys.stderr)


def last_good_day(loop: LoopState) -> CheckpointRecord | None:
    """The newest listed checkpoint that passes its checks; corrupt ones are reported."""
    for record in reversed(loop.store.checkpoint_records(loop.run_id)):
        try:
            loop.checkpoints.verify(record.path, record.sha256)
            return record
        except CheckpointError as exc:
            loop.outbox.put(loop.event("checkpoint_corrupt", "trainer",
                                       {"day": record.day, "error": str(exc)}))
    return None
