"""What the loop thread owns: the run's counters, flags, hyperparameters and attached objects,
with the collaborators the step boundary talks to. Shared by the Run facade, the command
handlers and resume; only the loop thread changes it (the writer reads ``where()``)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from babysit.day import DaySpec
from babysit.hparams import OPTIMIZER_KEYS
from babysit.storage import CheckpointStorage
from babysit.store import EventRow, RunUpdate, Store
from babysit.trainer import knobs
from babysit.trainer.guard import Guard
from babysit.trainer.outbox import Outbox
from babysit.trainer.position import DataPosition
from babysit.trainer.saver import Saver


@dataclass(eq=False)
class LoopState:
    """What the loop thread owns (see the module docstring).

    A framework's integration (babysit/integrations), whose framework runs the loop, reads and
    changes the run through this and ``Run.state`` / ``drive`` / ``take_start`` /
    ``day_saved`` / ``end``: the counters (``step``, ``day``, ``branch``), the flags
    (``paused``, ``stopping``, ``status``), ``hp``, ``day_spec`` with ``next_day_step`` /
    ``day_deadline`` (``arm_day``), ``position.epoch``, ``guard``, ``optimizers``,
    ``schedulers``, ``traced`` / ``seen`` (``trace_hp``, ``effective``), ``store``, ``folder``,
    ``outbox`` (``queue``: metric tuples, ``commands``, ``put``, ``rewind``, ``day_end``) and
    ``saver`` (``submit``, ``wait_idle``). Names with a leading underscore are not part of it.
    """

    run_id: int
    store: Store
    folder: Path                       # the run's folder (checkpoints, logs)
    hp: dict[str, Any]                 # the run's hyperparameters (what run.hp shows)
    day_spec: DaySpec
    strict: bool
    reproducible: bool
    branch: int
    guard: Guard
    checkpoints: CheckpointStorage     # where day checkpoints live ($BABYSIT_CHECKPOINTS)
    outbox: Outbox = field(init=False)
    saver: Saver = field(init=False)
    position: DataPosition = field(default_factory=DataPosition)
    step: int = 0
    day: int = 0                       # the last completed day (its checkpoint); 0 = the start
    status: str = "running"
    paused: bool = False
    stopping: bool = False
    objects: dict[str, Any] = field(default_factory=dict)
    optimizers: list[Any] = field(default_factory=list)
    plain_optimizers: list[Any] = field(default_factory=list)   # unwrapped, float knobs
    tensor_optimizers: list[Any] = field(default_factory=list)  # unwrapped, a tensor knob
    schedulers: list[Any] = field(default_factory=list)
    traced: dict[str, float] = field(default_factory=dict)   # hp/<key> values last logged
    # Effective values. The loop thread compares ``knob_key`` (a cheap copy of every group's
    # values) at each step boundary; when it changed, ``seen`` becomes (step, fingerprint),
    # replaced whole so that the writer thread can read it at any time (effective_report).
    knob_key: list[Any] = field(default_factory=list)
    seen: tuple[int, tuple[float | None, ...]] = (0, ())
    reads: dict[str, int] = field(default_factory=dict)     # user key -> last step it was read
    _reported: tuple[Any, dict[str, int]] | None = None      # the writer's: last report sent
    next_day_step: float = math.inf    # a day of steps ends when step reaches this
    day_deadline: float = math.inf     # a day of seconds ends at this time.monotonic()

    def where(self) -> tuple[int, int, int]:
        """(step, day in progress, branch): where rows and events logged now belong."""
        return self.step, self.day + 1, self.branch

    def event(self, kind: str, source: str, detail: dict[str, Any]) -> EventRow:
        """An event at the current step."""
        return EventRow(self.run_id, self.step, self.day + 1, kind, source, detail, self.branch)

    def arm_day(self) -> None:
        """Start counting the day in progress from the current step (or now)."""
        spec = self.day_spec
        if spec.unit == "steps":
            done = self.step % int(spec.amount)
            self.next_day_step = self.step + (int(spec.amount) - done)
        elif spec.unit == "seconds":
            self.day_deadline = time.monotonic() + spec.amount

    def current(self, key: str) -> Any:
        """The value in use for ``key``: the optimizer's for its keys, else the run's hp."""
        return knobs.current(self.optimizers, self.hp, key)

    # ------------------------------------------------------------------ effective values
    def _knob_key(self) -> list[Any]:
        # What the step boundary compares, ~1 us a group where knobs.fingerprint costs ~10:
        # the raw entries, each a float or a tuple of floats (a tensor lr changes in place,
        # so attach() keeps such optimizers out of this list and they are always fingerprinted).
        return [(g["lr"], g.get("momentum"), g.get("betas"), g.get("weight_decay"))
                for opt in self.plain_optimizers for g in opt.param_groups]

    def knobs_moved(self) -> bool:
        """At a step boundary: did any param group's lr, momentum or weight_decay change since
        the last call (the schedule, a nudge, the user's code)? Then ``seen`` is brought up to
        date and the ``hp/<key>`` lines get a point."""
        key = self._knob_key()
        if key == self.knob_key and not self.tensor_optimizers:
            return False
        self.knob_key = key
        fingerprint = knobs.fingerprint(self.optimizers)
        if fingerprint == self.seen[1]:
            return False
        self.seen = (self.step, fingerprint)
        self.trace_hp()
        return True

    def effective(self) -> dict[str, Any]:
        """``runs.effective`` as of now (the loop thread's view): what the optimizers use,
        with the steps at which the loop last read each user key."""
        self.knob_key = self._knob_key()
        self.seen = (self.step, knobs.fingerprint(self.optimizers))
        return {"step": self.step, **effective_of(self.seen[1]), "reads": self._user_reads()}

    def _user_reads(self) -> dict[str, int]:
        reads = dict(self.reads)            # one C-level copy: safe beside the loop thread
        for key in OPTIMIZER_KEYS if self.optimizers else ():
            reads.pop(key, None)            # those are applied through the optimizer
        return reads

    def effective_report(self) -> dict[str, Any] | None:
        """For the writer thread's heartbeat: ``runs.effective`` if it changed since the last
        report (so at most once a heartbeat, about once a second), else None."""
        seen, reads = self.seen, self._user_reads()
        if self._reported is not None and self._reported[0] is seen and \
                self._reported[1] == reads:
            return None
        self._reported = (seen, reads)
        return {"step": seen[0], **effective_of(seen[1]), "reads": reads}

    def trace_hp(self) -> None:
        """Log hyperparameters as ``hp/<key>`` metrics when they change (a step line): the
        configured value of a user key, the effective value (group 0's) of an optimizer key."""
        step, day, branch = self.where()
        now = time.time()
        values = dict(self.hp)
        values.update({k: v for k, v in effective_of(self.seen[1]).items() if k != "groups"})
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if self.traced.get(key) != value:
                self.traced[key] = value
                self.outbox.queue.append((step, day, f"hp/{key}", float(value), now, branch))

    def mark_not_reproducible(self, why: str) -> None:
        """Say once (a warning and a ``not_reproducible`` event) that the run can no longer be
        replayed exactly, and why; later calls do nothing."""
        if not self.reproducible:
            return
        self.reproducible = False
        print(f"babysit: WARNING run {self.run_id} is no longer exactly reproducible: {why}",
              file=sys.stderr)
        self.outbox.put(self.event("not_reproducible", "trainer", {"reason": why}),
                        RunUpdate(self.run_id, {"reproducible": False}))


def effective_of(fingerprint: tuple[float | None, ...]) -> dict[str, Any]:
    """``knobs.effective`` rebuilt from ``knobs.fingerprint`` (every group's lr, momentum,
    weight_decay in a row), so the writer thread never touches the optimizer."""
    n = len(OPTIMIZER_KEYS)
    per_group = [{k: v for k, v in zip(OPTIMIZER_KEYS, fingerprint[i:i + n], strict=True)
                  if v is not None} for i in range(0, len(fingerprint), n)]
    return {**per_group[0], "groups": per_group} if per_group else {}


class HpView(Mapping[str, Any]):
    """``run.hp``: the run's hyperparameters, read-only (change them with nudges). Each read of
    a key records the step, so the dashboard can say that a knob the loop stopped reading (a
    batch size read once, before the loop) does nothing any more."""

    __slots__ = ("_state",)

    def __init__(self, state: LoopState):
        self._state = state

    def __getitem__(self, key: str) -> Any:
        state = self._state
        value = state.hp[key]
        state.reads[key] = state.step
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._state.hp

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.hp)

    def __len__(self) -> int:
        return len(self._state.hp)

    def __repr__(self) -> str:
        return f"HpView({self._state.hp!r})"


def has_tensor_knob(optimizer: Any) -> bool:
    """Does a param group keep lr / momentum / weight_decay as a tensor (changed in place)?"""
    return any(isinstance(v, Tensor) or (isinstance(v, tuple) and any(
        isinstance(b, Tensor) for b in v)) for g in optimizer.param_groups
        for v in (g.get("lr"), g.get("momentum"), g.get("betas"), g.get("weight_decay")))
