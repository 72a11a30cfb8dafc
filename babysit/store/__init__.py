"""The store: the only module that speaks SQL.

SQLAlchemy Core over SQLite (WAL) by default, so the same tables and queries serve PostgreSQL.
Writes are short ``BEGIN IMMEDIATE`` transactions with a busy timeout and a bounded retry;
reads never hold a transaction open. What comes out is frozen (dataclasses or new DataFrames).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.exc import OperationalError

from babysit.errors import InvalidValue, StoreError, UnknownRun, UnknownStudy
from babysit.store import history, series
from babysit.store import schema as S

T = TypeVar("T")
STUDY_STATUSES = ("created", "running", "done", "stopped")
DECISION_STATUSES = ("proposed", "approved", "vetoed", "applied", "failed")
#: which status a decision may move to from which: it is decided once (approved or vetoed),
#: then an approved one is applied or fails; a proposal whose run ended fails unapplied.
_DECISION_FROM = {"approved": ("proposed",), "vetoed": ("proposed",),
                  "applied": ("approved",), "failed": ("proposed", "approved")}
#: statuses with a process behind them (a diverged run waits, paused, for the user)
LIVE = ("starting", "running", "paused", "diverged")
STATUSES = ("starting", "running", "paused", "finished", "stopped", "crashed", "diverged")
DB_NAME = "babysit.db"


def _clean_json(value: Any) -> Any:
    """JSON has no NaN/inf: keep them readable as strings instead of dropping them."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    if isinstance(value, np.generic):
        return _clean_json(value.item())
    return value


@dataclass(frozen=True)
class RunRecord:
    """One run as stored. ``hp`` is the current hyperparameters (nudges included)."""

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
    resume: dict | None
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


def _pk(result: Any) -> int:
    """The id an INSERT created."""
    return int(result.inserted_primary_key[0])


def _record(cls: type[T], row: Any) -> T:
    data = row._mapping
    return cls(**{f.name: data[f.name] for f in fields(cls)})  # type: ignore[arg-type]


_INSERT_METRICS = ("INSERT INTO metrics (run_id, step, day, name, value, time, branch, superseded)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, 0)")
_PROBE_COMMANDS = ("SELECT 1 FROM commands WHERE run_id = ? AND status = 'pending' AND id > ?"
                   " LIMIT 1")


class CommandProbe:
    """Asks "is a command newer than ``after_id`` pending for this run?" as cheaply as possible.

    The trainer asks 20 times a second. On SQLite one prepared statement on a connection of its
    own costs tens of microseconds where a full SQLAlchemy query costs about half a millisecond,
    which on a small model is a visible share of the training loop. Other databases take the
    ordinary query. Use one probe from one thread; ``close()`` releases its connection.
    """

    def __init__(self, store: Store, run_id: int):
        self._store, self._run_id = store, run_id
        self._raw: Any = None

    def __call__(self, after_id: int) -> bool:
        if not self._store.is_sqlite:
            return bool(self._store.pending_commands(self._run_id, after_id))
        try:
            if self._raw is None:
                self._raw = self._store._read_engine.raw_connection()
            cursor = self._raw.cursor()
            try:
                # fetchall() ends the statement, so no read snapshot stays open to hold the WAL
                return bool(cursor.execute(_PROBE_COMMANDS, (self._run_id, after_id)).fetchall())
            finally:
                cursor.close()
        except Exception as exc:
            self.close()
            raise StoreError(f"store read failed: {exc}") from exc

    def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.close()


class Store:
    """A babysit store: a SQLite file under ``root`` (default) or any SQLAlchemy URL.

    >>> store = Store.open("/tmp/bs")            # /tmp/bs/babysit.db, created if missing
    >>> store.list_runs()
    []
    """

    def __init__(self, url: str, root: Path, *, create: bool = True, busy_timeout_s: float = 5.0):
        self.url = url
        self.root = root
        self.is_sqlite = url.startswith("sqlite")
        self._busy_ms = int(busy_timeout_s * 1000)
        if self.is_sqlite:
            self._write_engine = self._sqlite_engine(url, "BEGIN IMMEDIATE")
            self._read_engine = self._sqlite_engine(url, "BEGIN")
        else:
            self._write_engine = sa.create_engine(url, pool_pre_ping=True)
            self._read_engine = self._write_engine
        self._ensure_schema(create)

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None, *, url: str | None = None,
             create: bool = True) -> Store:
        """Open the store at ``root`` (default ``$BABYSIT_ROOT`` or ``./checkpoints``).

        ``url`` (or ``$BABYSIT_STORE_URL``) selects another database, e.g. PostgreSQL; the
        checkpoint files still live under ``root``.
        """
        root_path = Path(root or os.environ.get("BABYSIT_ROOT") or "checkpoints").resolve()
        url = url or os.environ.get("BABYSIT_STORE_URL")
        if url is None:
            if not create and not (root_path / DB_NAME).exists():
                raise StoreError(f"no babysit store at {root_path} (no {DB_NAME} there)")
            root_path.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{root_path / DB_NAME}"
        return cls(url, root_path, create=create)

    def _sqlite_engine(self, url: str, begin: str) -> sa.Engine:
        engine = sa.create_engine(url, connect_args={"timeout": self._busy_ms / 1000})
        busy_ms = self._busy_ms

        @sa_event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event, not the driver, decide how transactions start.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a killed process loses no committed row; only a power cut can
            # lose the last transactions, and never corrupts the file.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @sa_event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql(begin)

        return engine

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
                    S.MIGRATIONS[version](conn)
                    version += 1
                    conn.execute(sa.update(S.meta).where(S.meta.c.key == "schema_version")
                                 .values(value=str(version)))
        except sa.exc.DatabaseError as exc:   # locked, unreadable, or not a database at all
            raise StoreError(f"cannot open the store at {self.url}: {exc.orig}") from exc

    def close(self) -> None:
        """Release connections; safe to call twice."""
        self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            self._read_engine.dispose()

    # -------------------------------------------------------------- plumbing
    def write(self, fn: Callable[[sa.Connection], T], *, attempts: int = 8) -> T:
        """Run ``fn`` in one short write transaction, retrying a locked database a few times."""
        delay = 0.02
        for attempt in range(attempts):
            try:
                with self._write_engine.begin() as conn:
                    return fn(conn)
            except OperationalError as exc:
                locked = "locked" in str(exc.orig) or "busy" in str(exc.orig)
                if not locked or attempt == attempts - 1:
                    raise StoreError(f"store write failed: {exc.orig}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def read(self, fn: Callable[[sa.Connection], T]) -> T:
        try:
            with self._read_engine.connect() as conn:
                return fn(conn)
        except OperationalError as exc:
            raise StoreError(f"store read failed: {exc.orig}") from exc

    # ------------------------------------------------------------------ runs
    def create_run(self, **values: Any) -> int:
        values.setdefault("created", time.time())
        values.setdefault("status", "starting")
        for key in ("config", "hp", "launch", "resume"):
            if key in values:
                values[key] = _clean_json(values[key])
        return self.write(lambda c: _pk(c.execute(sa.insert(S.runs).values(**values))))

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
        return _record(RunRecord, rows[0])

    def list_runs(self, project: str | None = None, status: str | None = None,
                  study_id: int | None = None) -> list[RunRecord]:
        query = sa.select(S.runs).order_by(S.runs.c.id)
        if project is not None:
            query = query.where(S.runs.c.project == project)
        if status is not None:
            query = query.where(S.runs.c.status == status)
        if study_id is not None:
            query = query.where(S.runs.c.study_id == study_id)
        return self.read(lambda c: [_record(RunRecord, r) for r in c.execute(query)])

    def update_run(self, run_id: int, *, only_if_status: Sequence[str] | None = None,
                   conn: sa.Connection | None = None, **values: Any) -> bool:
        """Set columns of a run; with ``only_if_status`` only if its status is one of those."""
        for key in ("config", "hp", "launch", "resume"):
            if key in values:
                values[key] = _clean_json(values[key])
        query = sa.update(S.runs).where(S.runs.c.id == run_id).values(**values)
        if only_if_status is not None:
            query = query.where(S.runs.c.status.in_(list(only_if_status)))
        if conn is not None:
            return conn.execute(query).rowcount > 0
        return self.write(lambda c: c.execute(query).rowcount > 0)

    # --------------------------------------------------------------- metrics
    def insert_metrics(self, run_id: int, rows: Sequence[tuple[int, int, str, float, float, int]],
                       conn: sa.Connection | None = None) -> None:
        """Insert (step, day, name, value, time, branch) rows in one transaction."""
        if not rows:
            return
        if conn is not None:
            self._insert_metric_rows(conn, run_id, rows)
        else:
            self.write(lambda c: self._insert_metric_rows(c, run_id, rows))

    def _insert_metric_rows(self, conn: sa.Connection, run_id: int,
                            rows: Sequence[tuple[int, int, str, float, float, int]]) -> None:
        # the curves the dashboard reads (until schema v4 retires the rows below)
        history.append(conn, self.is_sqlite, run_id, rows)
        if self.is_sqlite:
            # The trainer's hot write: a plain executemany skips SQLAlchemy's per-row work and
            # costs about a third as much for a batch of a few hundred rows.
            conn.exec_driver_sql(_INSERT_METRICS, [
                (run_id, s, d, n, (v if v == v else None), t, b) for s, d, n, v, t, b in rows])
        else:
            conn.execute(sa.insert(S.metrics), [
                {"run_id": run_id, "step": s, "day": d, "name": n,
                 "value": (v if v == v else None), "time": t, "branch": b, "superseded": False}
                for s, d, n, v, t, b in rows])

    def metrics(self, run_id: int, names: Iterable[str] | None = None, *,
                include_superseded: bool = False, since_id: int = 0) -> pd.DataFrame:
        """A run's metric rows: step, day, name, value (NaN kept), time, branch, superseded."""
        cols = ["id", "step", "day", "name", "value", "time", "branch", "superseded"]
        names = None if names is None else list(names)
        if self.is_sqlite:
            # Curves are read in bulk (100k rows and more): the driver's own cursor returns
            # plain tuples about 10x faster than SQLAlchemy's result rows.
            sql = ("SELECT id, step, day, name, value, time, branch, superseded FROM metrics"
                   " WHERE run_id = ?")
            params: list[Any] = [int(run_id)]
            if names is not None:
                sql += f" AND name IN ({', '.join('?' * len(names))})"
                params += [str(n) for n in names]
            if not include_superseded:
                sql += " AND superseded = 0"
            if since_id:
                # "+run_id" keeps SQLite off the (run_id, name, step) index, which would scan the
                # run's whole history; the rowid range reads only the new rows.
                sql = sql.replace("WHERE run_id = ?", "WHERE id > ? AND +run_id = ?")
                params.insert(0, int(since_id))
            sql += " ORDER BY name, step, id"

            def fetch(c: sa.Connection) -> list[tuple]:
                cursor = c.connection.cursor()
                try:
                    return cursor.execute(sql, params).fetchall()
                finally:
                    cursor.close()
            rows = self.read(fetch)
        else:
            m = S.metrics.c
            query = sa.select(m.id, m.step, m.day, m.name, m.value, m.time, m.branch,
                              m.superseded).where(m.run_id == run_id).order_by(m.name, m.step, m.id)
            if names is not None:
                query = query.where(m.name.in_(names))
            if not include_superseded:
                query = query.where(m.superseded == sa.false())
            if since_id:
                query = query.where(m.id > since_id)
            rows = self.read(lambda c: [tuple(r) for r in c.execute(query)])
        df = pd.DataFrame.from_records(rows, columns=cols)
        df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)  # NULL -> NaN
        df["superseded"] = df["superseded"].astype(bool)
        return df

    def latest_metric(self, run_id: int, name: str, *, include_superseded: bool = False
                      ) -> float | None:
        """The value of ``name`` at the run's latest step (NaN kept), or None if never logged."""
        m = S.metrics.c
        query = sa.select(m.value).where(m.run_id == run_id, m.name == name) \
            .order_by(m.step.desc(), m.id.desc()).limit(1)
        if not include_superseded:
            query = query.where(m.superseded == sa.false())
        row = self.read(lambda c: c.execute(query).first())
        if row is None:
            return None
        return math.nan if row[0] is None else float(row[0])

    def metric_names(self, run_id: int) -> list[str]:
        m = S.metrics.c
        query = sa.select(m.name).where(m.run_id == run_id).distinct().order_by(m.name)
        return self.read(lambda c: [r[0] for r in c.execute(query)])

    # ------------------------------------------------------ curves (histories)
    def curve(self, run_id: int, names: Iterable[str] | None = None, *,
              x_range: tuple[float | None, float | None] | None = None, max_points: int = 2000,
              include_superseded: bool = True) -> pd.DataFrame:
        """A run's curves as at most ``max_points`` buckets per trace over ``x_range`` (steps,
        inclusive; None: the whole curve), whatever the history's length.

        One row per bucket, by name, branch, superseded, step: ``level`` (0: an exact point,
        k: a bucket 2^k steps wide), ``step_lo``/``step_hi`` (its first and last logged step),
        ``count``, ``first``/``last`` (values at those steps, NaN kept), ``min``/``max`` of its
        finite values and ``step_min``/``step_max`` where they were reached (NaN: no finite
        value), ``nonfinite`` = ``nan`` + ``posinf`` + ``neginf`` counts and ``step_nonfinite``
        (the first such step), ``time`` and ``day`` of its last point. A trace of at most
        ``max_points`` points, or a range holding that few, comes back exactly (level 0).

        >>> store.curve(3, ["loss"], x_range=(10_000, 20_000), max_points=1000)
        """
        return self.read(lambda c: history.curve(
            c, self.is_sqlite, run_id, names, x_range=x_range, max_points=max_points,
            include_superseded=include_superseded))

    def curve_version(self, run_id: int) -> tuple[int, int, int]:
        """A token that changes whenever the run's curves change (points added, a rollback):
        a dashboard re-reads a curve only when it moved. One query over a few rows."""
        return self.read(lambda c: history.version(c, run_id))

    def append_points(self, run_id: int, name: str, steps: Any, values: Any, times: Any = None,
                      days: Any = None, *, branch: int = 0) -> None:
        """The bulk path: add a whole array of points to a run's live curve ``name`` in one
        transaction, packed and summarised without a Python object per point (imports,
        benchmarks, migrations).

        >>> store.append_points(run_id, "loss", np.arange(10**6), losses, times)
        """
        p = series.Points.of(steps, values, times, days)

        def write(c: sa.Connection) -> None:
            trace = history.live_trace(c, run_id, name, branch)
            history.append_points(c, self.is_sqlite, trace, p)
        self.write(write)

    # ---------------------------------------------------------------- events
    @staticmethod
    def event_values(run_id: int, step: int, day: int, kind: str, source: str, detail: dict,
                     branch: int) -> dict[str, Any]:
        return {"run_id": run_id, "step": step, "day": day, "time": time.time(), "kind": kind,
                "source": source, "detail": _clean_json(detail), "branch": branch,
                "superseded": False}

    def add_event(self, run_id: int, step: int, day: int, kind: str, source: str,
                  detail: dict, branch: int, conn: sa.Connection | None = None) -> int:
        values = self.event_values(run_id, step, day, kind, source, detail, branch)
        if conn is not None:
            return _pk(conn.execute(sa.insert(S.events).values(**values)))
        return self.write(lambda c: self.add_event(run_id, step, day, kind, source, detail,
                                                   branch, conn=c))

    def events(self, run_id: int, *, include_superseded: bool = True) -> pd.DataFrame:
        e = S.events.c
        query = sa.select(e.id, e.step, e.day, e.time, e.kind, e.source, e.detail, e.branch,
                          e.superseded).where(e.run_id == run_id).order_by(e.id)
        if not include_superseded:
            query = query.where(e.superseded == sa.false())
        rows = self.read(lambda c: c.execute(query).all())
        df = pd.DataFrame(rows, columns=["id", "step", "day", "time", "kind", "source", "detail",
                                         "branch", "superseded"])
        df["superseded"] = df["superseded"].astype(bool)
        return df

    # -------------------------------------------------------------- commands
    def post_command(self, run_id: int, kind: str, args: dict, source: str) -> int:
        values = {"run_id": run_id, "kind": kind, "args": _clean_json(args), "source": source,
                  "status": "pending", "created": time.time()}
        return self.write(lambda c: _pk(c.execute(sa.insert(S.commands).values(**values))))

    def pending_commands(self, run_id: int, after_id: int = 0) -> list[CommandRecord]:
        c_ = S.commands.c
        query = sa.select(S.commands).where(
            c_.run_id == run_id, c_.status == "pending", c_.id > after_id).order_by(c_.id)
        return self.read(lambda c: [_record(CommandRecord, r) for r in c.execute(query)])

    def command_probe(self, run_id: int) -> CommandProbe:
        """A cheap check for the trainer's poll: is a command newer than some id pending?"""
        return CommandProbe(self, run_id)

    def get_command(self, command_id: int) -> CommandRecord:
        query = sa.select(S.commands).where(S.commands.c.id == command_id)
        row = self.read(lambda c: c.execute(query).first())
        if row is None:
            raise LookupError(f"no command {command_id}")
        return _record(CommandRecord, row)

    def close_command(self, conn: sa.Connection, command_id: int, status: str, step: int | None,
                      error: str | None = None) -> bool:
        """Mark a pending command applied/rejected/cancelled; False if it was not pending."""
        query = sa.update(S.commands).where(
            S.commands.c.id == command_id, S.commands.c.status == "pending",
        ).values(status=status, done=time.time(), step=step, error=error)
        return conn.execute(query).rowcount > 0

    def cancel_pending(self, run_id: int, reason: str) -> int:
        """Close every pending command of a run that has ended, so no waiter hangs."""
        query = sa.update(S.commands).where(
            S.commands.c.run_id == run_id, S.commands.c.status == "pending",
        ).values(status="cancelled", done=time.time(), error=reason)
        return self.write(lambda c: c.execute(query).rowcount)

    # ----------------------------------------------------------- checkpoints
    def add_checkpoint(self, conn: sa.Connection, **values: Any) -> int:
        values["hp"] = _clean_json(values.get("hp", {}))
        values["metrics"] = _clean_json(values.get("metrics", {}))
        values.setdefault("superseded", False)
        return _pk(conn.execute(sa.insert(S.checkpoints).values(**values)))

    def checkpoint_records(self, run_id: int, *, include_superseded: bool = False
                           ) -> list[CheckpointRecord]:
        k = S.checkpoints.c
        query = sa.select(S.checkpoints).where(k.run_id == run_id).order_by(k.day, k.id)
        if not include_superseded:
            query = query.where(k.superseded == sa.false())
        return self.read(lambda c: [_record(CheckpointRecord, r) for r in c.execute(query)])

    def checkpoint(self, run_id: int, day: int | None = None) -> CheckpointRecord | None:
        """The live branch's checkpoint of ``day`` (default: the latest), or None."""
        records = self.checkpoint_records(run_id)
        if day is None:
            return records[-1] if records else None
        matches = [r for r in records if r.day == day]
        return matches[-1] if matches else None

    def supersede(self, conn: sa.Connection, run_id: int, from_step: int, before_event: int
                  ) -> None:
        """Mark what came after ``from_step`` as an abandoned branch: kept, never deleted."""
        history.supersede(conn, self.is_sqlite, run_id, from_step)
        conn.execute(sa.update(S.metrics).where(
            S.metrics.c.run_id == run_id, S.metrics.c.step >= from_step,
            S.metrics.c.superseded == sa.false()).values(superseded=True))
        conn.execute(sa.update(S.checkpoints).where(
            S.checkpoints.c.run_id == run_id, S.checkpoints.c.step > from_step,
            S.checkpoints.c.superseded == sa.false()).values(superseded=True))
        conn.execute(sa.update(S.events).where(
            S.events.c.run_id == run_id, S.events.c.step >= from_step,
            S.events.c.id < before_event, S.events.c.superseded == sa.false(),
        ).values(superseded=True))

    def checkpoints_of(self, run_ids: Sequence[int]) -> list[CheckpointRecord]:
        """The live branch's checkpoints of several runs in one query, by run then day."""
        if not run_ids:
            return []
        k = S.checkpoints.c
        query = sa.select(S.checkpoints).where(
            k.run_id.in_(list(run_ids)), k.superseded == sa.false()).order_by(k.run_id, k.day, k.id)
        return self.read(lambda c: [_record(CheckpointRecord, r) for r in c.execute(query)])

    # --------------------------------------------------------------- studies
    def create_study(self, **values: Any) -> int:
        """Insert a study (values already validated); a taken name is an InvalidValue."""
        values.setdefault("created", time.time())
        values.setdefault("status", "created")
        for key in ("space", "strategy", "budget", "stopping", "command"):
            values[key] = _clean_json(values[key])

        def insert(c: sa.Connection) -> int:
            taken = c.execute(sa.select(S.studies.c.id).where(S.studies.c.name == values["name"]))
            if taken.first() is not None:
                raise InvalidValue(f"a study named {values['name']!r} already exists")
            return _pk(c.execute(sa.insert(S.studies).values(**values)))
        return self.write(insert)

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
        return _record(StudyRecord, row)

    def list_studies(self) -> list[StudyRecord]:
        query = sa.select(S.studies).order_by(S.studies.c.id)
        return self.read(lambda c: [_record(StudyRecord, r) for r in c.execute(query)])

    def update_study(self, study_id: int, *, only_if_status: Sequence[str] | None = None,
                     only_if_pid: tuple[int | None] | None = None, **values: Any) -> bool:
        """Set columns of a study; with ``only_if_status`` only if its status is one of those,
        with ``only_if_pid=(pid,)`` only if its orchestrator pid is still that one."""
        for key in ("space", "strategy", "budget", "stopping", "command"):
            if key in values:
                values[key] = _clean_json(values[key])
        query = sa.update(S.studies).where(S.studies.c.id == study_id).values(**values)
        if only_if_status is not None:
            query = query.where(S.studies.c.status.in_(list(only_if_status)))
        if only_if_pid is not None:
            pid = only_if_pid[0]
            query = query.where(S.studies.c.pid.is_(None) if pid is None
                                else S.studies.c.pid == pid)
        return self.write(lambda c: c.execute(query).rowcount > 0)

    # ------------------------------------------------------------- decisions
    def add_decision(self, study_id: int, run_id: int, kind: str, detail: dict, *,
                     status: str = "proposed", decided_by: str | None = None) -> int:
        values = {"study_id": study_id, "run_id": run_id, "kind": kind,
                  "detail": _clean_json(detail), "status": status, "created": time.time(),
                  "decided": time.time() if decided_by else None, "decided_by": decided_by}
        return self.write(lambda c: _pk(c.execute(sa.insert(S.decisions).values(**values))))

    def get_decision(self, decision_id: int) -> DecisionRecord:
        query = sa.select(S.decisions).where(S.decisions.c.id == decision_id)
        row = self.read(lambda c: c.execute(query).first())
        if row is None:
            raise InvalidValue(f"no decision {decision_id!r} in the store at {self.root}")
        return _record(DecisionRecord, row)

    def decisions(self, study_id: int, status: str | None = None,
                  run_id: int | None = None) -> list[DecisionRecord]:
        d = S.decisions.c
        query = sa.select(S.decisions).where(d.study_id == study_id).order_by(d.id)
        if status is not None:
            query = query.where(d.status == status)
        if run_id is not None:
            query = query.where(d.run_id == run_id)
        return self.read(lambda c: [_record(DecisionRecord, r) for r in c.execute(query)])

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
        changed = self.write(lambda c: c.execute(query).rowcount > 0)
        record = self.get_decision(decision_id)
        if not changed:
            who = f" by {record.decided_by}" if record.decided_by else ""
            raise InvalidValue(f"decision {decision_id} is already {record.status}{who}; "
                               f"it cannot become {status}")
        return record

    # ------------------------------------------------------------ upkeep
    def integrity_check(self) -> str:
        if not self.is_sqlite:
            return "ok"
        return str(self.read(lambda c: c.exec_driver_sql("PRAGMA integrity_check").scalar()))

    def wal_checkpoint(self) -> None:
        """Fold the WAL back into the database so it stays bounded (SQLite only)."""
        if self.is_sqlite:
            raw = self._write_engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                raw.close()

