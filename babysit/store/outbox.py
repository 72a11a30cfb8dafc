"""The store's write vocabulary: frozen records, and the one place that turns them into SQL.

A writer (the trainer's outbox thread, or a Client) builds records and hands a batch of them to
``Store.apply(batch)``, which writes the whole batch in one short transaction, in order:

- ``MetricRows``: metric rows of one run (step, day, name, value, time, branch).
- ``EventRow``: one event (nudge, rollback, started, diverged, ...).
- ``RunUpdate``: set columns of a run (status, heartbeat, hp, effective, ...).
- ``CheckpointRow``: list a day checkpoint whose file is complete; the run's day becomes its day.
- ``Supersede``: what the run logged from a step on (written before this record) becomes an
  abandoned branch: kept, never deleted. Put it before the event that explains it.
- ``CommandOutcome``: close a pending command (applied / rejected) and, only if it was still
  pending, write its ``effects`` (its event, the run update): a command is applied once.

A record the store refuses (a value the database will not take) is skipped and reported back by
``apply``; it never blocks the records behind it nor drops those beside it.
"""

from __future__ import annotations

import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from babysit.store import fastpaths, history
from babysit.store import schema as S
from babysit.store.records import clean_json

MetricRow = fastpaths.MetricRow
#: run columns that hold JSON
JSON_RUN_COLUMNS = ("config", "hp", "launch", "start_from", "effective", "tags", "launcher")


def _frozen(values: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(clean_json(dict(values)))


@dataclass(frozen=True)
class MetricRows:
    run_id: int
    rows: tuple[MetricRow, ...]


@dataclass(frozen=True)
class EventRow:
    run_id: int
    step: int
    day: int
    kind: str
    source: str
    detail: Mapping[str, Any]
    branch: int
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", _frozen(self.detail))


@dataclass(frozen=True)
class RunUpdate:
    run_id: int
    values: Mapping[str, Any]

    def __post_init__(self) -> None:
        values = dict(self.values)
        for key in JSON_RUN_COLUMNS:
            if key in values:
                values[key] = clean_json(values[key])
        object.__setattr__(self, "values", types.MappingProxyType(values))


@dataclass(frozen=True)
class CheckpointRow:
    run_id: int
    day: int
    step: int
    branch: int
    time: float
    path: str          # relative to the store root
    size: int
    sha256: str
    hp: Mapping[str, Any]
    metrics: Mapping[str, float]     # mean of each metric over the day

    def __post_init__(self) -> None:
        object.__setattr__(self, "hp", _frozen(self.hp))
        object.__setattr__(self, "metrics", _frozen(self.metrics))


@dataclass(frozen=True)
class Supersede:
    run_id: int
    from_step: int


@dataclass(frozen=True)
class CommandOutcome:
    command_id: int
    status: str                   # applied | rejected
    step: int | None
    error: str | None = None
    effects: tuple[Record, ...] = ()


Record = MetricRows | EventRow | RunUpdate | CheckpointRow | Supersede | CommandOutcome


@dataclass(frozen=True)
class Refused:
    """A record the store would not write, and why; the rest of its batch was written."""

    record: Record
    error: str


def is_refusal(exc: BaseException) -> bool:
    """Did the database refuse this record (bad value), rather than fail as a whole (locked,
    gone, full, malformed)? Only a refusal is skipped; anything else is retried later."""
    if isinstance(exc, sa.exc.DBAPIError):
        return isinstance(exc, sa.exc.IntegrityError | sa.exc.DataError | sa.exc.ProgrammingError)
    return isinstance(exc, Exception)


def event_values(e: EventRow) -> dict[str, Any]:
    return {"run_id": e.run_id, "step": e.step, "day": e.day, "time": e.time, "kind": e.kind,
            "source": e.source, "detail": dict(e.detail), "branch": e.branch, "superseded": False}


def write_record(conn: sa.Connection, sqlite: bool, record: Record) -> None:
    """The SQL of one record (inside the caller's transaction)."""
    if isinstance(record, MetricRows):
        if record.rows:
            history.append(conn, sqlite, record.run_id, record.rows)
    elif isinstance(record, EventRow):
        conn.execute(sa.insert(S.events).values(**event_values(record)))
    elif isinstance(record, RunUpdate):
        if record.values:
            conn.execute(sa.update(S.runs).where(S.runs.c.id == record.run_id)
                         .values(**record.values))
    elif isinstance(record, CheckpointRow):
        conn.execute(sa.insert(S.checkpoints).values(
            run_id=record.run_id, day=record.day, step=record.step, branch=record.branch,
            time=record.time, path=record.path, size=record.size, sha256=record.sha256,
            hp=dict(record.hp), metrics=dict(record.metrics), superseded=False))
        conn.execute(sa.update(S.runs).where(S.runs.c.id == record.run_id).values(day=record.day))
    elif isinstance(record, Supersede):
        supersede(conn, sqlite, record.run_id, record.from_step)
    elif isinstance(record, CommandOutcome):
        if close_command(conn, record):
            for effect in record.effects:
                write_record(conn, sqlite, effect)
    else:
        raise TypeError(f"not a store record: {record!r}")


def close_command(conn: sa.Connection, outcome: CommandOutcome) -> bool:
    """Mark a pending command applied/rejected; False if it was not pending any more."""
    c = S.commands.c
    query = sa.update(S.commands).where(c.id == outcome.command_id, c.status == "pending") \
        .values(status=outcome.status, done=time.time(), step=outcome.step, error=outcome.error)
    return conn.execute(query).rowcount > 0


def supersede(conn: sa.Connection, sqlite: bool, run_id: int, from_step: int) -> None:
    """Mark what the run logged from ``from_step`` on as an abandoned branch."""
    history.supersede(conn, sqlite, run_id, from_step)
    conn.execute(sa.update(S.checkpoints).where(
        S.checkpoints.c.run_id == run_id, S.checkpoints.c.step > from_step,
        S.checkpoints.c.superseded == sa.false()).values(superseded=True))
    conn.execute(sa.update(S.events).where(
        S.events.c.run_id == run_id, S.events.c.step >= from_step,
        S.events.c.superseded == sa.false()).values(superseded=True))


class RecordRefused(Exception):
    """Raised inside a fast (all-in-one) pass: roll back and write record by record."""


def write_batch(conn: sa.Connection, sqlite: bool, batch: Sequence[Record], careful: bool
                ) -> list[Refused]:
    """Write ``batch`` in order. Fast pass: all at once, raising RecordRefused at the first
    refusal. Careful pass: each record in a savepoint, refusals skipped and returned."""
    if not careful:
        for record in batch:
            try:
                write_record(conn, sqlite, record)
            except Exception as exc:
                if is_refusal(exc):
                    raise RecordRefused(str(exc)) from exc
                raise
        return []
    refused: list[Refused] = []
    for record in batch:
        _write_carefully(conn, sqlite, record, refused)
    return refused


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}"[:500]


def _write_carefully(conn: sa.Connection, sqlite: bool, record: Record,
                     refused: list[Refused]) -> None:
    try:
        with conn.begin_nested():
            if isinstance(record, CommandOutcome):
                if not close_command(conn, record):
                    return
            else:
                write_record(conn, sqlite, record)
                return
    except Exception as exc:
        if not is_refusal(exc):
            raise
        if isinstance(record, MetricRows) and len(record.rows) > 1:
            bad = []        # find the rows it will not take; keep the others
            error = _error(exc)
            for row in record.rows:
                try:
                    with conn.begin_nested():
                        history.append(conn, sqlite, record.run_id, [row])
                except Exception as row_exc:
                    if not is_refusal(row_exc):
                        raise
                    bad.append(row)
                    error = _error(row_exc)
            if bad:
                refused.append(Refused(MetricRows(record.run_id, tuple(bad)), error))
        else:
            refused.append(Refused(record, _error(exc)))
        return
    # the command was pending and is closed: each of its effects on its own
    for effect in record.effects:
        _write_carefully(conn, sqlite, effect, refused)
