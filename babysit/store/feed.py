"""Which commands are new for a run's trainer, without trusting the order of their ids.

On PostgreSQL ids are handed out when a row is inserted, not when it commits: a command that
got id 10 can commit after one that got id 11. A trainer that asks "pending commands with
id > the last I saw" after seeing 11 never sees 10. So the feed remembers which pending commands
it has already handed over (at most the few waiting for the next step boundary) and hands over
every other pending one, in id order. A command leaves that set once it is no longer pending
(applied, rejected or cancelled), so the set stays as small as the trainer's inbox.

The poll is one cheap query for the pending ids; only when one is new does the feed read the
commands themselves. On SQLite the ids come from a prepared statement on a connection of the
feed's own (``fastpaths.PendingCommands``), asked when the training loop's own probe saw a new
command and once a heartbeat (see trainer/outbox.py).

On PostgreSQL a query 20 times a second per run costs the server a core at a few hundred runs
(docs/cluster.md), so `ListeningFeed` asks only when told: ``Store.post_command`` sends
``NOTIFY babysit_commands_<run id>`` in the command's transaction (delivered at commit), a
thread of the feed LISTENs on that channel on a connection of its own, and ``poll`` queries
only after a notification, after (re)connecting, or every ``FALLBACK_POLL_S`` in case one was
lost. Between those a poll costs nothing but a flag test.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from babysit.errors import InvalidValue, StoreError
from babysit.store.fastpaths import PendingCommands
from babysit.store.records import CommandRecord

#: a listening trainer still asks this often: a notification sent while its listening
#: connection was down (a server restart, a network cut) is never delivered.
#: ``$BABYSIT_COMMAND_FALLBACK_S`` overrides it (tests set it high to prove NOTIFY alone works).
FALLBACK_POLL_S = 2.0


def fallback_poll_s() -> float:
    """The fallback poll period of a listening feed: ``$BABYSIT_COMMAND_FALLBACK_S`` or 2 s."""
    text = os.environ.get("BABYSIT_COMMAND_FALLBACK_S")
    try:
        value = float(text) if text else FALLBACK_POLL_S
    except ValueError:
        raise InvalidValue(f"BABYSIT_COMMAND_FALLBACK_S must be a number of seconds, "
                           f"got {text!r}") from None
    if not value > 0:
        raise InvalidValue(f"BABYSIT_COMMAND_FALLBACK_S must be > 0, got {text!r}")
    return value


def command_channel(run_id: int) -> str:
    """The PostgreSQL channel on which run ``run_id``'s new commands are announced.

    >>> command_channel(7)
    'babysit_commands_7'
    """
    return f"babysit_commands_{int(run_id)}"


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
        self.queries = 0                    # pending-id queries sent (benchmarks, tests)

    def poll(self) -> list[CommandRecord]:
        """The pending commands not handed over before, oldest id first (StoreError if the
        store cannot be read: nothing is lost, the next poll sees them)."""
        self.queries += 1
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


class ListeningFeed(CommandFeed):
    """A `CommandFeed` for PostgreSQL that queries only when a command was announced (see the
    module docstring). Its listening thread holds one connection straight to the server
    (PgBouncer in transaction mode does not carry LISTEN)."""

    def __init__(self, engine: sa.Engine, sqlite: bool, run_id: int,
                 read_pending: Callable[[], list[CommandRecord]], *,
                 fallback_s: float | None = None):
        super().__init__(engine, sqlite, run_id, read_pending)
        self._engine, self._run_id = engine, run_id     # for the LISTEN connection
        self.fallback_s = fallback_poll_s() if fallback_s is None else fallback_s
        self._notified = threading.Event()
        self._notified.set()                # the first poll reads what is already pending
        self._closed = threading.Event()
        self._next_poll = 0.0
        self.listening = threading.Event()  # set while the LISTEN connection is up
        self._thread = threading.Thread(target=self._listen, daemon=True,
                                        name=f"babysit-listen-{run_id}")
        self._thread.start()

    def poll(self) -> list[CommandRecord]:
        now = time.monotonic()
        if not self._notified.is_set() and now < self._next_poll:
            return []
        # cleared before the read: a notification arriving during it sets the flag again
        self._notified.clear()
        self._next_poll = now + self.fallback_s
        try:
            return super().poll()
        except StoreError:
            self._notified.set()            # ask again next time
            raise

    def _listen(self) -> None:
        import psycopg  # only on PostgreSQL: the single-machine path never imports it

        url = self._engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        while not self._closed.is_set():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                    # the channel name is built from an int: a safe identifier
                    conn.execute(f"LISTEN {command_channel(self._run_id)}")
                    self._notified.set()    # what was posted while nobody listened
                    self.listening.set()
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._notified.set()
            except Exception:  # noqa: BLE001 - server gone or restarting: retry, poll meanwhile
                self.listening.clear()
                self._notified.set()
                self._closed.wait(1.0)
        self.listening.clear()

    def close(self) -> None:
        self._closed.set()
        super().close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)      # its connection closes within a wait (0.5 s)
