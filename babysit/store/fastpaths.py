"""Where the store knows it speaks SQLite: each fast path beside the portable query it replaces.

This is the one module of ``babysit.store`` that writes SQL text or touches the driver: every
function takes ``sqlite`` (is the store a SQLite file?) and does the same thing either way, the
raw-cursor statement first and the portable SQLAlchemy statement it stands for right below it.
Nothing outside ``babysit.store`` asks which database it is. The fast paths exist because the
trainer writes metric rows and polls for commands many times a second, and the dashboard reads
curves of 100k points and more: there, SQLAlchemy's per-row work is most of the cost.

    engines      sqlite_engine (WAL, busy timeout, BEGIN IMMEDIATE), sqlite_file
    commands     PendingCommands (the writer's command poll), CommandProbe,
                 LoopProbe (the training loop's own ask, SQLite only: never waits)
    histories    block_data, tail_between, tail_all, buckets, live_traces   (reads)
                 insert, update_traces, take_buckets                         (writes)
    upkeep       integrity_check
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event

from babysit.errors import StoreError
from babysit.store import schema as S
from babysit.store import series

MetricRow = tuple[int, int, str, float, float, int]    # step, day, name, value, time, branch
#: what the WAL file is truncated to after a checkpoint
WAL_LIMIT_BYTES = 64 << 20

T, B, TL, K = S.metric_traces, S.metric_blocks, S.metric_tail, S.metric_buckets
_BUCKET_COLS = ", ".join(series.COLUMNS)


def sqlite_engine(url: str, begin: str, busy_ms: int) -> sa.Engine:
    """An engine on a SQLite file: WAL, a busy timeout, and ``begin`` ("BEGIN IMMEDIATE" for the
    writer) starting every transaction. (Other databases: ``sa.create_engine(url)``.)"""
    engine = sa.create_engine(url, connect_args={"timeout": busy_ms / 1000})

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
        # The WAL is folded back every 1000 pages (the default autocheckpoint) and truncated to
        # this size after, so it stays tens of MB at any logging rate; the writer also keeps
        # each transaction bounded (trainer/outbox.py), since one transaction's pages must all
        # sit in the WAL at once.
        cur.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        cur.close()

    @sa_event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(begin)

    return engine


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None: in memory)."""
    database = sa.engine.make_url(url).database
    return Path(database).resolve() if database and database != ":memory:" else None


# ----------------------------------------------------------------------------------- commands
class PendingCommands:
    """The pending commands of one run, asked by its trainer's writer (20 times a second on
    databases other than SQLite, where the loop's ``LoopProbe`` asks instead).

    On SQLite a prepared statement on a connection of its own costs tens of microseconds where
    a full SQLAlchemy query costs about half a millisecond, which on a small model is a visible
    share of the training loop. Other databases take the ordinary query. Use one from one
    thread; ``close()`` releases its connection (safe to call twice).
    """

    def __init__(self, engine: sa.Engine, sqlite: bool, run_id: int):
        self._engine, self._sqlite, self._run_id = engine, sqlite, run_id
        self._raw: Any = None

    def ids(self) -> set[int]:
        """The ids of the run's pending commands."""
        c = S.commands.c
        return {int(r[0]) for r in self._rows(
            "SELECT id FROM commands WHERE run_id = ? AND status = 'pending'", (self._run_id,),
            lambda: sa.select(c.id).where(c.run_id == self._run_id, c.status == "pending"))}

    def any_after(self, after_id: int) -> bool:
        """Is a command newer than ``after_id`` pending?"""
        c = S.commands.c
        return bool(self._rows(
            "SELECT 1 FROM commands WHERE run_id = ? AND status = 'pending' AND id > ? LIMIT 1",
            (self._run_id, after_id),
            lambda: sa.select(c.id).where(c.run_id == self._run_id, c.status == "pending",
                                          c.id > after_id).limit(1)))

    def _rows(self, sql: str, params: tuple[Any, ...], portable: Callable[[], sa.Select]
              ) -> list[Any]:
        try:
            if not self._sqlite:
                with self._engine.connect() as conn:
                    return list(conn.execute(portable()))
            if self._raw is None:
                self._raw = self._connect()
            cursor = self._raw.cursor()
            try:
                # fetchall() ends the statement, so no read snapshot stays open to hold the WAL
                return cursor.execute(sql, params).fetchall()
            finally:
                cursor.close()
        except Exception as exc:
            self.close()
            raise StoreError(f"store read failed: {exc}") from exc

    def _connect(self) -> Any:
        return self._engine.raw_connection()

    def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.close()


class LoopProbe(PendingCommands):
    """The ids of a run's pending commands, asked by the training loop's own thread (SQLite).

    The loop asks every ``poll_s`` at a step boundary, so the writer thread need not wake 20
    times a second to ask for it (each wakeup of a second thread costs about 0.1 ms of CPU
    on a busy machine, more than the query). The loop thread must never wait on the store, so
    this is a connection of its own with no busy timeout: a database that is busy at that
    instant answers with a StoreError at once, and the loop asks again at its next poll.
    SQLite only: on other databases a query is a network round trip, and the writer thread
    asks (``Store.loop_probe`` gives None).
    """

    def __init__(self, file: Path, run_id: int):
        super().__init__(None, True, run_id)    # type: ignore[arg-type]  # a file, no engine
        self._file = file

    def _connect(self) -> sqlite3.Connection:
        # timeout=0: SQLITE_BUSY at once instead of waiting; the loop's thread may close it at
        # the end and another thread of the process may have opened it
        return sqlite3.connect(self._file, timeout=0, isolation_level=None,
                               check_same_thread=False)


class CommandProbe(PendingCommands):
    """``probe(after_id)``: is a command newer than ``after_id`` pending for this run?
    E.g. ``probe = store.command_probe(run_id)``, then ``probe(0)``, ``probe.close()``."""

    __call__ = PendingCommands.any_after


# ---------------------------------------------------------------------- histories: reads
def _fetch(conn: sa.Connection, sql: str, params: Sequence[Any]) -> list[tuple]:
    """Rows of ``sql`` through the driver's cursor, in the caller's transaction."""
    cursor = conn.connection.cursor()
    try:
        return cursor.execute(sql, params).fetchall()
    finally:
        cursor.close()


def block_data(conn: sa.Connection, sqlite: bool, trace_id: int, lo: int, hi: int
               ) -> list[tuple]:
    """``(data,)`` of the trace's packed blocks that overlap steps lo..hi, by first step."""
    if sqlite:
        return _fetch(conn, "SELECT data FROM metric_blocks WHERE trace_id = ? AND"
                            " step_last >= ? AND step_first <= ? ORDER BY step_first, id",
                      (trace_id, lo, hi))
    return list(conn.execute(sa.select(B.c.data).where(
        B.c.trace_id == trace_id, B.c.step_last >= lo, B.c.step_first <= hi)
        .order_by(B.c.step_first, B.c.id)))


def tail_between(conn: sa.Connection, sqlite: bool, trace_id: int, lo: int, hi: int
                 ) -> list[tuple]:
    """``(step, value, time, day)`` of the trace's unpacked rows at steps lo..hi, in step
    order (equal steps: arrival order)."""
    if sqlite:
        return _fetch(conn, "SELECT step, value, time, day FROM metric_tail WHERE trace_id = ?"
                            " AND step BETWEEN ? AND ? ORDER BY step, id", (trace_id, lo, hi))
    return list(conn.execute(sa.select(TL.c.step, TL.c.value, TL.c.time, TL.c.day).where(
        TL.c.trace_id == trace_id, TL.c.step.between(lo, hi)).order_by(TL.c.step, TL.c.id)))


def tail_all(conn: sa.Connection, sqlite: bool, trace_id: int) -> list[tuple]:
    """``(step, value, time, day)`` of all the trace's unpacked rows, in arrival order."""
    if sqlite:
        return _fetch(conn, "SELECT step, value, time, day FROM metric_tail WHERE trace_id = ?"
                            " ORDER BY id", (trace_id,))
    return list(conn.execute(sa.select(TL.c.step, TL.c.value, TL.c.time, TL.c.day)
                             .where(TL.c.trace_id == trace_id).order_by(TL.c.id)))


def buckets(conn: sa.Connection, sqlite: bool, trace_id: int, level: int, b_lo: int, b_hi: int
            ) -> list[tuple]:
    """The ``series.COLUMNS`` of the trace's buckets of one level, b_lo..b_hi, in order."""
    if sqlite:
        return _fetch(conn, f"SELECT {_BUCKET_COLS} FROM metric_buckets WHERE trace_id = ? AND"
                            " level = ? AND bucket BETWEEN ? AND ? ORDER BY bucket",
                      (trace_id, level, b_lo, b_hi))
    return [tuple(r) for r in conn.execute(
        sa.select(*(K.c[c] for c in series.COLUMNS)).where(
            K.c.trace_id == trace_id, K.c.level == level, K.c.bucket.between(b_lo, b_hi))
        .order_by(K.c.bucket))]


def live_traces(conn: sa.Connection, sqlite: bool, run_id: int, cols: Sequence[str]
                ) -> list[tuple]:
    """``cols`` of the run's live (not superseded) traces, by id: one query for a batch."""
    if sqlite:
        return _fetch(conn, f"SELECT {', '.join(cols)} FROM metric_traces"
                            " WHERE run_id = ? AND superseded = 0 ORDER BY id", (run_id,))
    return list(conn.execute(sa.select(*(T.c[c] for c in cols)).where(
        T.c.run_id == run_id, T.c.superseded == sa.false()).order_by(T.c.id)))


# --------------------------------------------------------------------- histories: writes
def insert(conn: sa.Connection, sqlite: bool, table: sa.Table, cols: Sequence[str],
           rows: Sequence[tuple]) -> None:
    """Insert tuples of ``cols`` (the driver's executemany of tuples on SQLite)."""
    if not rows:
        return
    if sqlite:
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES"
                             f" ({', '.join('?' * len(cols))})", list(rows))
    else:
        conn.execute(sa.insert(table), [dict(zip(cols, r, strict=True)) for r in rows])


def update_traces(conn: sa.Connection, sqlite: bool,
                  updates: Sequence[tuple[int, int | None, int | None, int, int]]) -> None:
    """Set (count, step_first, step_last, tail) of each trace id: tuples in that order, id last."""
    if sqlite:
        conn.exec_driver_sql("UPDATE metric_traces SET count = ?, step_first = ?, step_last = ?,"
                             " tail = ? WHERE id = ?", list(updates))
        return
    for count, lo, hi, tail_n, trace_id in updates:
        conn.execute(sa.update(T).where(T.c.id == trace_id).values(
            count=count, step_first=lo, step_last=hi, tail=tail_n))


def take_buckets(conn: sa.Connection, sqlite: bool, trace_ids: Sequence[int],
                 spans: dict[int, tuple[int, int]]) -> list[tuple]:
    """Read and delete the buckets of these traces in these ranges (level -> (first, last)
    bucket): ``(trace_id, level, *series.COLUMNS)`` rows, to be merged and written again.

    Each OR term names the whole primary key (trace, level, bucket range), so SQLite probes
    each range; "trace_id IN (...) AND (level ... OR ...)" would scan every bucket of those
    traces: a cost that grows with the history."""
    if not spans:
        return []
    ids = list(trace_ids)
    if sqlite:
        in_ids = f"trace_id IN ({', '.join('?' * len(ids))})"
        cond = " OR ".join(f"({in_ids} AND level = ? AND bucket BETWEEN ? AND ?)"
                           for _ in spans)
        params: list[Any] = []
        for level, (lo, hi) in spans.items():
            params += [*ids, level, lo, hi]
        rows = _fetch(conn, f"SELECT trace_id, level, {_BUCKET_COLS} FROM metric_buckets"
                            f" WHERE {cond}", params)
        if rows:
            conn.exec_driver_sql(f"DELETE FROM metric_buckets WHERE {cond}", tuple(params))
        return rows
    where = sa.or_(*(sa.and_(K.c.trace_id.in_(ids), K.c.level == level,
                             K.c.bucket.between(lo, hi)) for level, (lo, hi) in spans.items()))
    rows = [tuple(r) for r in conn.execute(
        sa.select(K.c.trace_id, K.c.level, *(K.c[c] for c in series.COLUMNS)).where(where))]
    if rows:
        conn.execute(sa.delete(K).where(where))
    return rows


# --------------------------------------------------------------------------------- upkeep
def integrity_check(conn: sa.Connection, sqlite: bool) -> str:
    """"ok", or what SQLite's ``PRAGMA integrity_check`` found (other databases: "ok")."""
    if not sqlite:
        return "ok"
    return str(conn.exec_driver_sql("PRAGMA integrity_check").scalar())
