"""The store: the only module that speaks SQL.

SQLAlchemy Core over SQLite (WAL) by default, so the same tables and queries serve PostgreSQL.
Writes are short ``BEGIN IMMEDIATE`` transactions with a busy timeout and a bounded retry;
reads never hold a transaction open. What comes out is frozen (dataclasses or new DataFrames).
"""

from __future__ import annotations

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

from babysit.errors import StoreError, UnknownRun
from babysit.store import schema as S

T = TypeVar("T")
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


def _pk(result: Any) -> int:
    """The id an INSERT created."""
    return int(result.inserted_primary_key[0])


def _record(cls: type[T], row: Any) -> T:
    data = row._mapping
    return cls(**{f.name: data[f.name] for f in fields(cls)})  # type: ignore[arg-type]


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

    def _ensure_schema(self, create: bool) -> None:
        try:
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
        except OperationalError as exc:
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
            if isinstance(run, int) and not isinstance(run, bool):
                cond = S.runs.c.id == run
            elif isinstance(run, str) and run.strip().isdigit():
                cond = S.runs.c.id == int(run)
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
        payload = [
            {"run_id": run_id, "step": s, "day": d, "name": n,
             "value": (v if v == v else None), "time": t, "branch": b, "superseded": False}
            for s, d, n, v, t, b in rows
        ]
        stmt = sa.insert(S.metrics)
        if conn is not None:
            conn.execute(stmt, payload)
        else:
            self.write(lambda c: c.execute(stmt, payload))

    def metrics(self, run_id: int, names: Iterable[str] | None = None, *,
                include_superseded: bool = False, since_id: int = 0) -> pd.DataFrame:
        """A run's metric rows: step, day, name, value (NaN kept), time, branch, superseded."""
        m = S.metrics.c
        query = sa.select(m.id, m.step, m.day, m.name, m.value, m.time, m.branch, m.superseded) \
            .where(m.run_id == run_id).order_by(m.name, m.step, m.id)
        if names is not None:
            query = query.where(m.name.in_(list(names)))
        if not include_superseded:
            query = query.where(m.superseded == sa.false())
        if since_id:
            query = query.where(m.id > since_id)
        rows = self.read(lambda c: c.execute(query).all())
        cols = ["id", "step", "day", "name", "value", "time", "branch", "superseded"]
        df = pd.DataFrame(rows, columns=cols)
        df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)  # NULL -> NaN
        df["superseded"] = df["superseded"].astype(bool)
        return df

    def metric_names(self, run_id: int) -> list[str]:
        m = S.metrics.c
        query = sa.select(m.name).where(m.run_id == run_id).distinct().order_by(m.name)
        return self.read(lambda c: [r[0] for r in c.execute(query)])

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

