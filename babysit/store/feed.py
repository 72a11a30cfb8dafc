"""Which commands are new for a run's trainer, without trusting the order of their ids.

On PostgreSQL ids are handed out when a row is inserted, not when it commits: a command that
got id 10 can commit after one that got id 11. A trainer that asks "pending commands with
id > the last I saw" after seeing 11 never sees 10. So the feed remembers which pending commands
it has already handed over (at most the few waiting for the next step boundary) and hands over
every other pending one, in id order. A command leaves that set once it is no longer pending
(applied, rejected or cancelled), so the set stays as small as the trainer's inbox.

The poll is one cheap query for the pending ids; only when one is new does the feed read the
commands themselves. On SQLite the ids come from a prepared statement on a connection of the
feed's own (tens of microseconds, asked 20 times a second): ``fastpaths.PendingCommands``.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from babysit.store.fastpaths import PendingCommands
from babysit.store.records import CommandRecord


class CommandFeed:
    """Hands each pending command of one run over once. Use one feed from one thread.

    >>> feed = store.command_feed(run_id)
    >>> for command in feed.poll(): inbox.append(command)     # new pending commands, by id
    >>> feed.close()
    """

    def __init__(self, engine: sa.Engine, sqlite: bool, run_id: int,
                 read_pending: Callable[[], list[CommandRecord]]):
        self._pending = PendingCommands(engine, sqlite, run_id)
        self._read_pending = read_pending
        self._handed: set[int] = set()      # pending commands already handed over

    def poll(self) -> list[CommandRecord]:
        """The pending commands not handed over before, oldest id first (StoreError if the
        store cannot be read: nothing is lost, the next poll sees them)."""
        ids = self._pending.ids()
        if ids <= self._handed:
            self._handed &= ids          # what was closed meanwhile leaves the set
            return []
        commands = self._read_pending()
        fresh = [c for c in commands if c.id not in self._handed]
        self._handed = {c.id for c in commands}
        return fresh

    def close(self) -> None:
        """Release the feed's connection; safe to call twice."""
        self._pending.close()
