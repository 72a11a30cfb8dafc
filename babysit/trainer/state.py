"""What the loop thread owns: the run's counters, flags, hyperparameters and attached objects,
with the collaborators the step boundary talks to. Shared by the Run facade, the command
handlers and resume; only the loop thread changes it (the writer reads ``where()``)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babysit.day import DaySpec
from babysit.storage import CheckpointStorage
from babysit.store import EventRow, RunUpdate, Store
from babysit.trainer import knobs
from babysit.trainer.guard import Guard
from babysit.trainer.outbox import Outbox
from babysit.trainer.position import DataPosition
from babysit.trainer.saver import Saver


@dataclass(eq=False)
class LoopState:
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
    schedulers: list[Any] = field(default_factory=list)
    traced: dict[str, float] = field(default_factory=dict)   # hp/<key> values last logged
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

    def trace_hp(self) -> None:
        """Log hyperparameters as ``hp/<key>`` metrics when they change (a step line)."""
        step, day, branch = self.where()
        now = time.time()
        values = {key: self.current(key) for key in self.hp}
        for key in knobs.optimizer_keys(self.optimizers) or []:
            values[key] = self.current(key)
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if self.traced.get(key) != value:
                self.traced[key] = value
                self.outbox.queue.append((step, day, f"hp/{key}", float(value), now, branch))

    def mark_not_reproducible(self, why: str) -> None:
        if not self.reproducible:
            return
        self.reproducible = False
        print(f"babysit: WARNING run {self.run_id} is no longer exactly reproducible: {why}",
              file=sys.stderr)
        self.outbox.put(self.event("not_reproducible", "trainer", {"reason": why}),
                        RunUpdate(self.run_id, {"reproducible": False}))
