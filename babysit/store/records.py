"""What the store hands out: frozen records of runs, commands, checkpoints, studies, decisions.

Nothing read from the store is mutated in place; a record is a snapshot of its row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

#: statuses with a process behind them (a diverged run waits, paused, for the user)
LIVE = ("starting", "running", "paused", "diverged")
STATUSES = ("starting", "running", "paused", "finished", "stopped", "crashed", "diverged")


def clean_json(value: Any) -> Any:
    """JSON has no NaN/inf: keep them readable as strings instead of dropping them."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        return clean_json(value.item())
    return value


@dataclass(frozen=True)
class RunRecord:
    """One run as stored. ``hp`` is the configured hyperparameters (nudges included);
    ``effective`` is what the trainer reports its optimizer uses (after the schedule)."""

    id: int
    project: str
    name: str
    status: str
    config: dict
    hp: dict
    strict: bool
    day_spec: str
    day: int
    step: int
    branch: int
    parent_id: int | None
    parent_day: int | None
    launch: dict | None
    start_from: dict | None    # the checkpoint the next process starts from (restart, fork)
    optimizer_keys: list | None
    pid: int | None
    pid_start: float | None
    host: str | None
    heartbeat: float | None
    created: float
    ended: float | None
    error: str | None
    reproducible: bool
    study_id: int | None
    trial: int | None          # the study's suggestion number, for a run its orchestrator launched
    max_days: int | None       # the run finishes by itself once this day is done
    effective: dict            # {"step", "lr", "momentum", "weight_decay", "groups", "reads"}
    note: str
    tags: list
    launcher: dict | None = None   # {"kind": "local"} or a Ray job (see babysit.launcher)

    @property
    def live(self) -> bool:
        return self.status in LIVE


@dataclass(frozen=True)
class CommandRecord:
    id: int
    run_id: int
    kind: str
    args: dict
    source: str
    status: str
    created: float
    done: float | None
    step: int | None
    error: str | None


@dataclass(frozen=True)
class CheckpointRecord:
    id: int
    run_id: int
    day: int
    step: int
    branch: int
    time: float
    path: str
    size: int
    sha256: str
    hp: dict
    metrics: dict
    superseded: bool


@dataclass(frozen=True)
class StudyRecord:
    """One study as stored: its objective, search space, strategy, budget and autopilot mode.

    ``pid``/``pid_start``/``host``/``heartbeat`` describe its orchestrator process, if any.
    """

    id: int
    name: str
    project: str
    objective: str
    direction: str
    space: dict
    strategy: dict
    budget: dict
    stopping: list
    autopilot: str
    command: dict
    status: str
    parent_id: int | None
    pid: int | None
    pid_start: float | None
    host: str | None
    heartbeat: float | None
    created: float
    ended: float | None


@dataclass(frozen=True)
class DecisionRecord:
    """One autopilot move (exploit, explore or stop) and what became of it."""

    id: int
    study_id: int
    run_id: int
    kind: str
    detail: dict
    status: str
    created: float
    decided: float | None
    decided_by: str | None
    error: str | None


#: columns a store written before v3 may hold as NULL, and what they mean then
_RUN_DEFAULTS: dict[str, Any] = {"effective": {}, "note": "", "tags": []}


def record(cls: type[T], row: Any) -> T:
    """A frozen record from a result row (by column name)."""
    data = row._mapping
    if cls is RunRecord:
        return cls(**{f.name: data[f.name] if data[f.name] is not None
                      else _RUN_DEFAULTS.get(f.name) for f in fields(cls)})  # type: ignore[arg-type]
    return cls(**{f.name: data[f.name] for f in fields(cls)})  # type: ignore[arg-type]
