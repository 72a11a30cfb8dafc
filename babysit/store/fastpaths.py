"""Where the store knows it speaks SQLite: each fast path beside the portable query it replaces.

Everything here takes ``sqlite`` (is the store a SQLite file?) and does the same thing either
way; nothing outside ``babysit.store`` asks which database it is. The fast paths exist because the
trainer writes metric rows and polls for commands many times a second, and the dashboard reads
curves of 100k rows and more: there, SQLAlchemy's per-row work is most of the cost.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event

from babysit.errors import StoreError
from babysit.store import schema as S

MetricRow = tuple[int, int, str, float, float, int]    # step, day, name, value, time, branch
#: what the WAL file is truncated to after a checkpoint
WAL_LIMIT_BYTES = 64 << 20


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


# ------------------------------------------------------------------------------ command probe
_PROBE_COMMANDS = ("SELECT 1 FROM commands WHERE run_id = ? AND status = 'pending' AND id > ?"
                   " LIMIT 1")


class CommandProbe:
    """Asks "is a command newer than ``after_id`` pending for this run?" as cheaply as possible.

    The trainer asks 20 times a second. On SQLite one prepared statement on a connection of its
    own costs tens of microseconds where a full SQLAlchemy query costs about half a millisecond,
    which on a small model is a visible share of the training loop. Other databases take the
    ordinary query. Use one probe from one thread; ``close()`` releases its connection.
    """

    def __init__(self, engine: sa.Engine, sqlite: bool, run_id: int):
        self._engine, self._sqlite, self._run_id = engine, sqlite, run_id
        self._raw: Any = None

    def __call__(self, after_id: int) -> bool:
        try:
            if not self._sqlite:
                c = S.commands.c
                query = sa.select(c.id).where(c.run_id == self._run_id, c.status == "pending",
                                              c.id > after_id).limit(1)
                with self._engine.connect() as conn:
                    return conn.execute(query).first() is not None
            if self._raw is None:
                self._raw = self._engine.raw_connection()
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


# --------------------------------------------------------------------------------- upkeep
def integrity_check(conn: sa.Connection, sqlite: bool) -> str:
    """"ok", or what SQLite's ``PRAGMA integrity_check`` found (other databases: "ok")."""
    if not sqlite:
        return "ok"
    return str(conn.exec_driver_sql("PRAGMA integrity_check").scalar())
