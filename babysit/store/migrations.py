"""Schema migrations, one function a version: ``MIGRATIONS[v](conn)`` upgrades a store at
version ``v`` to ``v + 1`` inside the transaction that opened it, so a failed upgrade leaves
the store as it was. Apart from ``schema`` (the tables), since v4 builds on ``history``.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from babysit.store import history
from babysit.store.schema import (
    decisions,
    events,
    metric_blocks,
    metric_buckets,
    metric_tail,
    metric_traces,
    metrics_v3,
    runs,
    studies,
)


def _v1_to_v2(conn: sa.Connection) -> None:
    """Studies (caviar): the studies and decisions tables; runs learn their trial and max_days."""
    studies.create(conn)
    decisions.create(conn)
    for column in ("trial", "max_days"):
        conn.execute(sa.text(f"ALTER TABLE runs ADD COLUMN {column} INTEGER"))


#: event kinds renamed in v3: lifecycle events are past tense, like "stopped" and "diverged"
RENAMED_EVENT_KINDS = {"start": "started", "restart": "restarted", "finish": "finished",
                       "crash": "crashed"}


def _v2_to_v3(conn: sa.Connection) -> None:
    """Effective values, notes and tags on runs; ``resume`` (a checkpoint to start from) is
    ``start_from``, since "resume" means un-pause; lifecycle event kinds in the past tense."""
    conn.execute(sa.text("ALTER TABLE runs RENAME COLUMN resume TO start_from"))
    for column, kind in (("effective", "JSON"), ("note", "TEXT"), ("tags", "JSON")):
        conn.execute(sa.text(f"ALTER TABLE runs ADD COLUMN {column} {kind}"))
    conn.execute(sa.update(runs).values(effective={}, note="", tags=[]))
    for old, new in RENAMED_EVENT_KINDS.items():
        conn.execute(sa.update(events).where(events.c.kind == old).values(kind=new))


#: MIGRATIONS[v](connection) upgrades a store at version v to v + 1, inside the transaction that
#: opened the store, so a failed upgrade leaves the store as it was.
def _v3_to_v4(conn: sa.Connection) -> None:
    """Metric histories: each metric's rows are packed into blocks with a summary pyramid
    beside them (``babysit.store.history``), and the ``metrics`` table of rows is dropped."""
    for table in (metric_traces, metric_blocks, metric_tail, metric_buckets):
        table.create(conn, checkfirst=True)
    if sa.inspect(conn).has_table("metrics"):
        history.build_from_rows(conn, conn.dialect.name == "sqlite")
        metrics_v3.drop(conn)


def _v4_to_v5(conn: sa.Connection) -> None:
    """Runs record the launcher that started their process (local, or a Ray job), so liveness,
    stop and console output ask the launcher that launched the run. Old runs: NULL (local)."""
    if "launcher" not in {c["name"] for c in sa.inspect(conn).get_columns("runs")}:
        conn.execute(sa.text("ALTER TABLE runs ADD COLUMN launcher JSON"))


MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3,
                                                          3: _v3_to_v4, 4: _v4_to_v5}
