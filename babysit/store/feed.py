"""Which commands are new for a run's trainer, without trusting the order of their ids.

On PostgreSQL ids are handed out when a row is inserted, not when it commits: a command that
got id 10 can commit after one that got id 11. A trainer that asks "pending commands with
id > the last I saw" after seeing 11 never sees 10. So the feed remembers which pending commands
it has already handed over (at most the few waiting for the next step boundary) and hands over
every other pending one, in id order. A command leaves that set once it is no longer pending
(applied, rejected or cancelled), so the set stays as small as the trainer's inbox.

The poll is one cheap query for the pending ids; only when one is new does the feed read the
commands themselves. On SQLite the ids come from a prepared statement on a connection of the
feed's own (tens of microseconds, asked 20 times a second).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from babysit.errors import StoreError
from babysit.store import schema as S
from babysit.store.records import CommandRecord

_PENDING_IDS = "SELECT id FROM commands WHERE run_id = ? AND status = 'pending'"


class CommandFeed:
    """Hands each pending command of one run over once. Use one feed from one thread.

    >>> feed = store.command_feed(run_id)
    >>> for command in feed.poll(): inbox.append(command)     # new pending commands, by id
    >>> feed.close()
    """

    def __init__(self, engine: sa.Engine, sqlite: bool, run_id: int,
                 read_pending: Callable[[], list[CommandRecord]]):
        self._engine, self._sqlite, self._run_id = engine, sqlite, run_id
        self._read_pending = read_pending
        self._handed: set[int] = set()      # pending commands already handed over
        self._raw: Any = None

    def poll(self) -> list[CommandRecord]:
        """The pending commands not handed over before, oldest id first (StoreError if the
        store cannot be read: nothing is lost, the next poll sees them)."""
        ids = self._pending_ids()
        if ids <= self._handed:
            self._handed &= ids          # what was closed meanwhile leaves the set
            return []
        commands = self._read_pending()
        fresh = [c for c in commands if c.id not in self._handed]
        self._handed = {c.id for c in commands}
        return fresh

    def _pending_ids(self) -> set[int]:
        try:
            if not self._sqlite:
                c = S.commands.c
                query = sa.select(c.id).where(c.run_id == self._run_id, c.status == "pending")
                with self._engine.connect() as conn:
                    return {int(r[0]) for r in conn.execute(query)}
            if self._raw is None:
                self._raw = self._engine.raw_connection()
            cursor = self._raw.cursor()
            try:
                # fetchall() ends the statement, so no read snapshot stays open to hold the WAL
                return {int(r[0]) for r in cursor.execute(_PENDING_IDS, (self._run_id,)).fetchall()}
            finally:
                cursor.close()
        except Exception as exc:
            self.close()
            raise StoreError(f"store read failed: {exc}") from exc

    def close(self) -> None:
        """Release the feed's connection; safe to call twice."""
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.close()
