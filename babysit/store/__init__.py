"""The store: the only module that speaks SQL.

SQLAlchemy Core over SQLite (WAL) by default, so the same tables and queries serve PostgreSQL.
Writes are short ``BEGIN IMMEDIATE`` transactions with a busy timeout and a bounded retry;
reads never hold a transaction open. What comes out is frozen (dataclasses or new DataFrames).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import sqlalchemy as sa

from babysit.errors import InvalidValue, StoreError, UnknownRun, UnknownStudy
from babysit.store import fastpaths, history, migrations, series
from babysit.store import schema as S
from babysit.store.fastpaths import CommandProbe, LoopProbe
from babysit.store.feed import CommandFeed, ListeningFeed, command_channel
from babysit.store.outbox import (
    JSON_RUN_COLUMNS,
    CheckpointRow,
    CommandOutcome,
    EventRow,
    MetricRows,
    Record,
    RecordRefused,
    Refused,
    RunUpdate,
    Supersede,
    event_values,
    write_batch,
)
from babysit.store.records import (
    LIVE,
    STATUSES,
    CheckpointRecord,
    CommandRecord,
    DecisionRecord,
    RunRecord,
    StudyRecord,
    clean_json,
    record,
)

__all__ = [
    "LIVE", "STATUSES", "CheckpointRecord", "CheckpointRow", "CommandFeed", "CommandOutcome",
    "CommandProbe",
    "LoopProbe",
    "CommandRecord", "DecisionRecord", "EventRow", "MetricRows", "Record", "Refused",
    "RunRecord", "RunUpdate", "Store", "StudyRecord", "Supersede",
]

T = TypeVar("T")
STUDY_STATUSES = ("created", "running", "done", "stopped")
DECISION_STATUSES = ("proposed", "approved", "vetoed", "applied", "failed")
#: which status a decision may move to from which: it is decided once (approved or vetoed),
#: then an approved one is applied or fails; a proposal whose run ended fails unapplied.
_DECISION_FROM = {"approved": ("proposed",), "vetoed": ("proposed",),
                  "applied": ("approved",), "failed": ("proposed", "approved")}
DB_NAME = "babysit.db"


def _file_identity(path: Path | None) -> tuple[int, int] | None:
    """(device, inode) of a file, None when it is missing."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _pk(result: Any) -> int:
    """The id an INSERT created."""
    return int(result.inserted_primary_key[0])


#: the PostgreSQL advisory lock held while a store's schema is created or migrated ("baby")
_SCHEMA_LOCK = 0x62616279
#: SQLSTATEs worth a retry: serialization failure, deadlock, lock not available, connection lost
_RETRY_SQLSTATES = ("40001", "40P01", "55P03")


def _retryable(exc: sa.exc.OperationalError) -> bool:
    """Will the same transaction likely succeed if tried again? PostgreSQL says so with its
    SQLSTATE (a deadlock victim, a serialization failure, a dropped connection); SQLite only
    in its message (locked, busy)."""
    code = getattr(exc.orig, "sqlstate", None)
    if code:
        return code in _RETRY_SQLSTATES or code.startswith("08")
    text = str(exc.orig)
    return "locked" in text or "busy" in text


class Store:
    """A babysit store: a SQLite file under ``root`` (default) or any SQLAlchemy URL.

    Writes go through ``apply(batch)`` (typed records, one transaction) or the single-purpose
    methods below, each one short transaction of its own; no caller holds a connection.

    >>> store = Store.open("/tmp/bs")            # /tmp/bs/babysit.db, created if missing
    >>> store.list_runs()
    []
    """

    def __init__(self, url: str, root: Path, *, create: bool = True, busy_timeout_s: float = 5.0):
        self.url = url
        self.root = root
        self._sqlite = url.startswith("sqlite")
        busy_ms = int(busy_timeout_s * 1000)
        try:
            if self._sqlite:
                self._write_engine = fastpaths.sqlite_engine(url, "BEGIN IMMEDIATE", busy_ms)
                self._read_engine = fastpaths.sqlite_engine(url, "BEGIN", busy_ms)
            else:
                self._write_engine = sa.create_engine(url, pool_pre_ping=True)
                self._read_engine = self._write_engine
        except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open the store at {url}: {exc}") from exc
        self._ensure_schema(create)
        self._file = fastpaths.sqlite_file(url) if self._sqlite else None
        self._identity = _file_identity(self._file)

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None, *, url: str | None = None,
             create: bool = True) -> Store:
        """Open the store at ``root`` (default ``$BABYSIT_ROOT`` or ``./checkpoints``).

        ``url`` (or ``$BABYSIT_STORE_URL``) selects another database, e.g. PostgreSQL; the
        checkpoint files still live under ``root``. With ``create=False`` (readers: the CLI's
        read commands, the dashboard) a missing store is a StoreError, never a new empty one.
        """
        root_path = Path(root or os.environ.get("BABYSIT_ROOT") or "checkpoints").resolve()
        url = url or os.environ.get("BABYSIT_STORE_URL")
        if url is None:
            if not create and not (root_path / DB_NAME).exists():
                raise StoreError(f"no babysit store at {root_path} (no {DB_NAME} there)")
            root_path.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{root_path / DB_NAME}"
        return cls(url, root_path, create=create)

    @property
    def external_url(self) -> str | None:
        """The database URL a process started on this store must be given; None when the store
        is the default SQLite file under ``root`` (the root alone finds it)."""
        return None if self._sqlite else self.url

    def _current_version(self) -> int | None:
        """The store's schema version read without a write lock (None: no babysit tables)."""
        with self._read_engine.connect() as conn:
            if not sa.inspect(conn).has_table("meta"):
                return None
            row = conn.execute(sa.select(S.meta.c.value).where(
                S.meta.c.key == "schema_version")).first()
            return int(row[0]) if row else 0

    def _ensure_schema(self, create: bool) -> None:
        try:
            # The common case (an up-to-date store) needs no write lock: a dashboard opening a
            # store whose writer holds a long transaction still shows the data.
            version = self._current_version()
            if version is not None and version >= S.SCHEMA_VERSION:
                if version > S.SCHEMA_VERSION:
                    raise StoreError(
                        f"this store has schema version {version}, newer than this babysit "
                        f"understands ({S.SCHEMA_VERSION}); upgrade babysit to open it")
                return
            with self._write_engine.begin() as conn:
                if not self._sqlite:
                    # Two processes opening a new store at once would both CREATE TABLE (and
                    # one fail): the first takes this lock, the second then finds the tables.
                    # SQLite's BEGIN IMMEDIATE serialises them already. Released at commit.
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": _SCHEMA_LOCK})
                inspector = sa.inspect(conn)
                if not inspector.has_table("meta"):
                    if not create:
                        raise StoreError(f"{self.url} is not a babysit store (no meta table)")
                    S.metadata.create_all(conn)
                    conn.execute(sa.insert(S.meta).values(key="schema_version",
                                                          value=str(S.SCHEMA_VERSION)))
                    return
                row = conn.execute(sa.select(S.meta.c.value).where(
                    S.meta.c.key == "schema_version")).first()
                version = int(row[0]) if row else 0
                if version > S.SCHEMA_VERSION:
                    raise StoreError(
                        f"this store has schema version {version}, newer than this babysit "
                        f"understands ({S.SCHEMA_VERSION}); upgrade babysit to open it")
                while version < S.SCHEMA_VERSION:
                    migrations.MIGRATIONS[version](conn)
                    version += 1
                    conn.execute(sa.update(S.meta).where(S.meta.c.key == "schema_version")
                                 .values(value=str(version)))
        except sa.exc.SQLAlchemyError as exc:   # locked, unreadable, or not a database at all
            self.close()
            why = str(getattr(exc, "orig", None) or exc)
            hint = ""
            if "not a database" in why or "malformed" in why:
                hint = ("; the file is damaged or is not a babysit store: move it away (a new "
                        "store is created in its place) or put back a copy")
            raise StoreError(f"cannot open the store at {self.url}: {why}{hint}") from exc

    def identity_changed(self) -> str | None:
        """Why the database file this store opened is no longer the file at its path (removed,
        or replaced by another file), or None while it is. A writer that kept writing to a
        removed SQLite file would write into the void: its rows reach no reader. Other
        databases: always None.

        >>> store.identity_changed()
        """
        if self._file is None:
            return None
        now = _file_identity(self._file)
        if now == self._identity:
            return None
        if now is None:
            return f"the store's database {self._file} was removed"
        return f"the store's database {self._file} was replaced by another file"

    def close(self) -> None:
        """Release connections; safe to call twice."""
        self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            self._read_engine.dispose()

    # -------------------------------------------------------------- plumbing
    def _write(self, fn: Callable[[sa.Connection], T], *, attempts: int = 8) -> T:
        """Run ``fn`` in one short write transaction, retrying a locked database a few times.
        Every driver error leaves as a StoreError; other exceptions of ``fn`` pass through."""
        delay = 0.02
        for attempt in range(attempts):
            try:
                with self._write_engine.begin() as conn:
                    return fn(conn)
            except sa.exc.OperationalError as exc:
                if not _retryable(exc) or attempt == attempts - 1:
                    raise StoreError(f"store write failed: {exc.orig}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"store write failed: {getattr(exc, 'orig', None) or exc}"
                                 ) from exc
        raise AssertionError("unreachable")

    def read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` on a read connection (no transaction is held open); a StoreError if the
        database fails."""
        try:
            with self._read_engine.connect() as conn:
                if not self._sqlite:
                    # One snapshot for the whole read, as SQLite's read transaction gives: a
                    # curve is read in several statements (blocks, then tail), and under
                    # PostgreSQL's READ COMMITTED a block packed between them hides points.
                    conn.execution_options(isolation_level="REPEATABLE READ")
                return fn(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"store read failed: {getattr(exc, 'orig', None) or exc}") from exc

    def apply(self, batch: Sequence[Record], *, attempts: int = 8) -> list[Refused]:
        """Write ``batch`` (see ``babysit.store.outbox``) in one transaction, in order.

        Returns the records the database refused (a bad value): they are skipped, and the rest
        of the batch is written all the same. A store that fails as a whole (locked too long,
        gone, malformed) raises StoreError and writes nothing, so the caller can retry the batch.

        >>> store.apply([EventRow(run_id, step, day, "nudge", "ui", {"lr": ...}, branch),
        ...              RunUpdate(run_id, {"hp": hp})])
        []
        """
        if not batch:
            return []
        try:
            return self._write(lambda c: write_batch(c, self._sqlite, batch, careful=False),
                               attempts=attempts)
        except RecordRefused:
            return self._write(lambda c: write_batch(c, self._sqlite, batch, careful=True),
                               attempts=attempts)

    # ------------------------------------------------------------------ runs
    def create_run(self, **values: Any) -> int:
        values.setdefault("created", time.time())
        values.setdefault("status", "starting")
        values.setdefault("effective", {})
        values.setdefault("note", "")
        values.setdefault("tags", [])
        for key in JSON_RUN_COLUMNS:
            if key in values:
                values[key] = clean_json(values[key])
        return self._write(lambda c: _pk(c.execute(sa.insert(S.runs).values(**values))))

    def get_run(self, run: int | str) -> RunRecord:
        """The run with this id (int or digits) or unique name; UnknownRun otherwise."""
        def query(c: sa.Connection) -> list[Any]:
            if (isinstance(run, int) and not isinstance(run, bool)) or \
                    (isinstance(run, str) and run.strip().isascii() and run.strip().isdigit()):
                number = int(run)
                if not 0 < number < 2**63:      # SQLite integers are 64-bit: no such id
                    return []
                cond = S.runs.c.id == number
            elif isinstance(run, str) and run.strip():
                cond = S.runs.c.name == run.strip()
            else:
                raise UnknownRun(f"no run {run!r}: give a run id (a number) or a run name")
            return list(c.execute(sa.select(S.runs).where(cond).order_by(S.runs.c.id)))
        rows = self.read(query)
        if not rows:
            raise UnknownRun(f"no run {run!r} in the store at {self.root}")
        if len(rows) > 1:
            raise UnknownRun(f"{len(rows)} runs are named {run!r}; use its id "
                             f"({', '.join(str(r.id) for r in rows)})")
        return record(RunRecord, rows[0])

    def list_runs(self, project: str | None = None, status: str | None = None,
                  study_id: int | None = None) -> list[RunRecord]:
        query = sa.select(S.runs).order_by(S.runs.c.id)
        if project is not None:
            query = query.where(S.runs.c.project == project)
        if status is not None:
            query = query.where(S.runs.c.status == status)
        if study_id is not None:
            query = query.where(S.runs.c.study_id == study_id)
        return self.read(lambda c: [record(RunRecord, r) for r in c.execute(query)])

    def update_run(self, run_id: int, *, only_if_status: Sequence[str] | None = None,
                   **values: Any) -> bool:
        """Set columns of a run; with ``only_if_status`` only if its status is one of those."""
        for key in JSON_RUN_COLUMNS:
            if key in values:
                values[key] = clean_json(values[key])
        query = sa.update(S.runs).where(S.runs.c.id == run_id).values(**values)
        if only_if_status is not None:
            query = query.where(S.runs.c.status.in_(list(only_if_status)))
        return self._write(lambda c: c.execute(query).rowcount > 0)

    def set_note(self, run_id: int, note: str) -> None:
        """Replace a run's free-text note (validated by the Client)."""
        if not self.update_run(int(run_id), note=str(note)):
            raise UnknownRun(f"no run {run_id}")

    def set_tags(self, run_id: int, tags: Sequence[str]) -> None:
        """Replace a run's tags (validated by the Client)."""
        if not self.update_run(int(run_id), tags=[str(t) for t in tags]):
            raise UnknownRun(f"no run {run_id}")

    # --------------------------------------------------------------- metrics
    def insert_metrics(self, run_id: int, rows: Sequence[tuple[int, int, str, float, float, int]]
                       ) -> None:
        """Insert (step, day, name, value, time, branch) rows in one transaction."""
        if rows:
            self._write(lambda c: history.append(c, self._sqlite, run_id, rows))

    def append_points(self, run_id: int, name: str, steps: Any, values: Any, times: Any = None,
                      days: Any = None, *, branch: int = 0) -> None:
        """The bulk path: add whole arrays of points to a run's live curve ``name`` in one
        transaction, packed and summarised without a Python object per point (imports,
        benchmarks). ``times`` default to 0, ``days`` to 0.

        >>> store.append_points(run_id, "loss", np.arange(10**6), losses, times)
        """
        p = series.Points.of(steps, values, times, days)

        def write(c: sa.Connection) -> None:
            trace = history.live_trace(c, run_id, name, branch)
            history.append_points(c, self._sqlite, trace, p)
        self._write(write)

    def metrics(self, run_id: int, names: Iterable[str] | None = None, *,
                include_superseded: bool = False) -> pd.DataFrame:
        """Every point of a run's metrics: id (an ordinal), step, day, name, value (NaN kept),
        time, branch, superseded; by name then step. A whole history, for export and tests:
        the dashboard reads ``curve`` instead."""
        df = self.read(lambda c: history.points_frame(
            c, self._sqlite, run_id, names, include_superseded=include_superseded))
        df.insert(0, "id", range(1, len(df) + 1))
        return df

    def latest_metric(self, run_id: int, name: str, *, include_superseded: bool = False
                      ) -> float | None:
        """The value of ``name`` at the run's latest step (NaN kept), or None if never logged."""
        return self.read(lambda c: history.latest(c, self._sqlite, run_id, name,
                                                  include_superseded=include_superseded))

    def metric_names(self, run_id: int) -> list[str]:
        """The names the run has logged, sorted."""
        return self.read(lambda c: history.names(c, run_id))

    def curve(self, run_id: int, names: Iterable[str] | None = None, *,
              x_range: tuple[float | None, float | None] | None = None, max_points: int = 2000,
              include_superseded: bool = True) -> pd.DataFrame:
        """A run's curves as at most ``max_points`` buckets per trace over ``x_range`` (steps,
        inclusive; None or a None bound: to the curve's end), whatever the history's length.

        One row per bucket, by name, branch, superseded (a trace), then step: ``level`` (0: an
        exact point; k: a bucket of the steps [b * 2^k, (b + 1) * 2^k)), ``step_lo``/``step_hi``
        (its first and last logged step), ``count``, ``first``/``last`` (the values there, NaN
        kept), ``min``/``max`` of its finite values and ``step_min``/``step_max`` where they were
        first reached (NaN: no finite value), ``nonfinite`` = ``nan`` + ``posinf`` + ``neginf``
        counts and ``step_nonfinite`` (the first such step, NaN: none), ``time`` and ``day`` of
        its last point. A trace of at most ``max_points`` points, or a range holding that few,
        comes back exactly (level 0, one row per point). Buckets at the range's edges come back
        whole. Cost: one indexed read of at most ``max_points`` rows per trace.

        >>> store.curve(3, ["loss"], x_range=(10_000, 20_000), max_points=1000)
        """
        return self.read(lambda c: history.curve(
            c, self._sqlite, run_id, names, x_range=x_range, max_points=max_points,
            include_superseded=include_superseded))

    def curve_version(self, run_id: int) -> tuple[int, int, int]:
        """A token that changes whenever the run's curves change (points added, a rollback):
        a dashboard re-reads a curve only when it moved. One query over a few rows."""
        return self.read(lambda c: history.version(c, run_id))

    def latest_metric_of(self, run_ids: Sequence[int], name: str) -> dict[int, float]:
        """``name`` at the latest live step of each of several runs, in a fixed number of
        queries (the Runs page: 500 runs, not 500 queries). Runs that never logged it are
        absent; NaN kept."""
        return self.read(lambda c: history.latest_of(c, run_ids, name))

    # ---------------------------------------------------------------- events
    def add_event(self, run_id: int, step: int, day: int, kind: str, source: str,
                  detail: dict, branch: int) -> int:
        """Record one event in a transaction of its own; returns its id."""
        values = event_values(EventRow(run_id, step, day, kind, source, detail, branch))
        return self._write(lambda c: _pk(c.execute(sa.insert(S.events).values(**values))))

    def events(self, run_id: int, *, include_superseded: bool = True, kind: str | None = None,
               step: int | None = None) -> pd.DataFrame:
        """The run's events in order; only those of ``kind`` and / or at ``step`` if given
        (what a client reads to confirm one command: a few rows, not the whole history)."""
        e = S.events.c
        query = sa.select(e.id, e.step, e.day, e.time, e.kind, e.source, e.detail, e.branch,
                          e.superseded).where(e.run_id == run_id).order_by(e.id)
        if not include_superseded:
            query = query.where(e.superseded == sa.false())
        if kind is not None:
            query = query.where(e.kind == kind)
        if step is not None:
            query = query.where(e.step == step)
        rows = self.read(lambda c: c.execute(query).all())
        df = pd.DataFrame(rows, columns=["id", "step", "day", "time", "kind", "source", "detail",
                                         "branch", "superseded"])
        df["superseded"] = df["superseded"].astype(bool)
        return df

    # -------------------------------------------------------------- commands
    def post_command(self, run_id: int, kind: str, args: dict, source: str) -> int:
        values = {"run_id": run_id, "kind": kind, "args": clean_json(args), "source": source,
                  "status": "pending", "created": time.time()}

        def post(c: sa.Connection) -> int:
            command_id = _pk(c.execute(sa.insert(S.commands).values(**values)))
            if self._write_engine.dialect.name == "postgresql":
                # Delivered at commit, so the row is visible when the trainer wakes (feed.py)
                c.execute(sa.text("SELECT pg_notify(:channel, '')"),
                          {"channel": command_channel(run_id)})
            return command_id
        return self._write(post)

    def pending_commands(self, run_id: int, after_id: int = 0) -> list[CommandRecord]:
        c_ = S.commands.c
        query = sa.select(S.commands).where(
            c_.run_id == run_id, c_.status == "pending", c_.id > after_id).order_by(c_.id)
        return self.read(lambda c: [record(CommandRecord, r) for r in c.execute(query)])

    def command_feed(self, run_id: int) -> CommandFeed:
        """The trainer's poll: each pending command of the run once, whatever order their ids
        commit in (PostgreSQL commits ids out of order; see store/feed.py). On PostgreSQL it
        queries only when ``post_command``'s NOTIFY (or a slow fallback) says so."""
        if self._read_engine.dialect.name == "postgresql":     # LISTEN/NOTIFY (feed.py)
            return ListeningFeed(self._read_engine, self._sqlite, run_id,
                                 lambda: self.pending_commands(run_id))
        return CommandFeed(self._read_engine, self._sqlite, run_id,
                           lambda: self.pending_commands(run_id))

    def loop_probe(self, run_id: int) -> LoopProbe | None:
        """The pending command ids of a run, asked from the training loop's thread: on SQLite a
        connection that never waits (see ``fastpaths.LoopProbe``); None on other databases,
        where the trainer's writer thread asks instead."""
        return LoopProbe(self._file, run_id) if self._file is not None else None

    def command_probe(self, run_id: int) -> CommandProbe:
        """A cheap check for the trainer's poll: is a command newer than some id pending?"""
        return CommandProbe(self._read_engine, self._sqlite, run_id)

    def get_command(self, command_id: int) -> CommandRecord:
        query = sa.select(S.commands).where(S.commands.c.id == command_id)
        row = self.read(lambda c: c.execute(query).first())
        if row is None:
            raise LookupError(f"no command {command_id}")
        return record(CommandRecord, row)

    def cancel_pending(self, run_id: int, reason: str) -> int:
        """Close every pending command of a run that has ended, so no waiter hangs."""
        query = sa.update(S.commands).where(
            S.commands.c.run_id == run_id, S.commands.c.status == "pending",
        ).values(status="cancelled", done=time.time(), error=reason)
        return self._write(lambda c: c.execute(query).rowcount)

    # ----------------------------------------------------------- checkpoints
    def checkpoint_records(self, run_id: int, *, include_superseded: bool = False
                           ) -> list[CheckpointRecord]:
        k = S.checkpoints.c
        query = sa.select(S.checkpoints).where(k.run_id == run_id).order_by(k.day, k.id)
        if not include_superseded:
            query = query.where(k.superseded == sa.false())
        return self.read(lambda c: [record(CheckpointRecord, r) for r in c.execute(query)])

    def checkpoint(self, run_id: int, day: int | None = None) -> CheckpointRecord | None:
        """The live branch's checkpoint of ``day`` (default: the latest), or None."""
        records = self.checkpoint_records(run_id)
        if day is None:
            return records[-1] if records else None
        matches = [r for r in records if r.day == day]
        return matches[-1] if matches else None

    def checkpoints_of(self, run_ids: Sequence[int]) -> list[CheckpointRecord]:
        """The live branch's checkpoints of several runs in one query, by run then day."""
        if not run_ids:
            return []
        k = S.checkpoints.c
        query = sa.select(S.checkpoints).where(
            k.run_id.in_(list(run_ids)), k.superseded == sa.false()).order_by(k.run_id, k.day, k.id)
        return self.read(lambda c: [record(CheckpointRecord, r) for r in c.execute(query)])

    # --------------------------------------------------------------- studies
    def create_study(self, **values: Any) -> int:
        """Insert a study (values already validated); a taken name is an InvalidValue."""
        values.setdefault("created", time.time())
        values.setdefault("status", "created")
        for key in ("space", "strategy", "budget", "stopping", "command"):
            values[key] = clean_json(values[key])

        def insert(c: sa.Connection) -> int:
            taken = c.execute(sa.select(S.studies.c.id).where(S.studies.c.name == values["name"]))
            if taken.first() is not None:
                raise InvalidValue(f"a study named {values['name']!r} already exists")
            return _pk(c.execute(sa.insert(S.studies).values(**values)))
        return self._write(insert)

    def get_study(self, study: int | str) -> StudyRecord:
        """The study with this id (int or digits) or name; UnknownStudy otherwise."""
        if isinstance(study, int) and not isinstance(study, bool):
            cond = S.studies.c.id == study
        elif isinstance(study, str) and study.strip().isdigit():
            cond = S.studies.c.id == int(study)
        elif isinstance(study, str) and study.strip():
            cond = S.studies.c.name == study.strip()
        else:
            raise UnknownStudy(f"no study {study!r}: give a study id (a number) or a study name")
        row = self.read(lambda c: c.execute(sa.select(S.studies).where(cond)).first())
        if row is None:
            raise UnknownStudy(f"no study {study!r} in the store at {self.root}")
        return record(StudyRecord, row)

    def list_studies(self) -> list[StudyRecord]:
        query = sa.select(S.studies).order_by(S.studies.c.id)
        return self.read(lambda c: [record(StudyRecord, r) for r in c.execute(query)])

    def update_study(self, study_id: int, *, only_if_status: Sequence[str] | None = None,
                     only_if_pid: tuple[int | None] | None = None, **values: Any) -> bool:
        """Set columns of a study; with ``only_if_status`` only if its status is one of those,
        with ``only_if_pid=(pid,)`` only if its orchestrator pid is still that one."""
        for key in ("space", "strategy", "budget", "stopping", "command"):
            if key in values:
                values[key] = clean_json(values[key])
        query = sa.update(S.studies).where(S.studies.c.id == study_id).values(**values)
        if only_if_status is not None:
            query = query.where(S.studies.c.status.in_(list(only_if_status)))
        if only_if_pid is not None:
            pid = only_if_pid[0]
            query = query.where(S.studies.c.pid.is_(None) if pid is None
                                else S.studies.c.pid == pid)
        return self._write(lambda c: c.execute(query).rowcount > 0)

    # ------------------------------------------------------------- decisions
    def add_decision(self, study_id: int, run_id: int, kind: str, detail: dict, *,
                     status: str = "proposed", decided_by: str | None = None) -> int:
        values = {"study_id": study_id, "run_id": run_id, "kind": kind,
                  "detail": clean_json(detail), "status": status, "created": time.time(),
                  "decided": time.time() if decided_by else None, "decided_by": decided_by}
        return self._write(lambda c: _pk(c.execute(sa.insert(S.decisions).values(**values))))

    def get_decision(self, decision_id: int) -> DecisionRecord:
        query = sa.select(S.decisions).where(S.decisions.c.id == decision_id)
        row = self.read(lambda c: c.execute(query).first())
        if row is None:
            raise InvalidValue(f"no decision {decision_id!r} in the store at {self.root}")
        return record(DecisionRecord, row)

    def decisions(self, study_id: int, status: str | None = None,
                  run_id: int | None = None) -> list[DecisionRecord]:
        d = S.decisions.c
        query = sa.select(S.decisions).where(d.study_id == study_id).order_by(d.id)
        if status is not None:
            query = query.where(d.status == status)
        if run_id is not None:
            query = query.where(d.run_id == run_id)
        return self.read(lambda c: [record(DecisionRecord, r) for r in c.execute(query)])

    def decide(self, decision_id: int, status: str, by: str, error: str | None = None
               ) -> DecisionRecord:
        """Move a decision to ``status`` (see ``_DECISION_FROM``); a decision is decided once,
        so approving a vetoed one (or vetoing an applied one) is an InvalidValue."""
        if status not in _DECISION_FROM:
            raise InvalidValue(f"a decision can become {sorted(_DECISION_FROM)}, got {status!r}")
        d = S.decisions.c
        values: dict[str, Any] = {"status": status, "decided": time.time(), "decided_by": by,
                                  "error": error}
        if status in ("applied", "failed"):   # keep who decided it and when (person or autopilot)
            values["decided"] = sa.func.coalesce(d.decided, values["decided"])
            values["decided_by"] = sa.func.coalesce(d.decided_by, by)
        query = sa.update(S.decisions).where(
            d.id == decision_id, d.status.in_(_DECISION_FROM[status])).values(**values)
        changed = self._write(lambda c: c.execute(query).rowcount > 0)
        record = self.get_decision(decision_id)
        if not changed:
            who = f" by {record.decided_by}" if record.decided_by else ""
            raise InvalidValue(f"decision {decision_id} is already {record.status}{who}; "
                               f"it cannot become {status}")
        return record

    # ------------------------------------------------------------ upkeep
    def integrity_check(self) -> str:
        """"ok", or what the database's own check found."""
        return self.read(lambda c: fastpaths.integrity_check(c, self._sqlite))
