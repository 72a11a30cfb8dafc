"""The store's schema, in one place, with its version.

A store records its schema version in ``meta``; ``MIGRATIONS[v]`` upgrades a store from version
``v`` to ``v + 1``. Opening a store newer than this code refuses with a clear message instead of
guessing, so an old dashboard never corrupts a new store.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

SCHEMA_VERSION = 1

metadata = sa.MetaData()

meta = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),      # hyperparameters as launched
    sa.Column("hp", sa.JSON, nullable=False),          # hyperparameters now (nudges included)
    sa.Column("strict", sa.Boolean, nullable=False, default=False),
    sa.Column("day_spec", sa.String(40), nullable=False),
    sa.Column("day", sa.Integer, nullable=False, default=0),
    sa.Column("step", sa.Integer, nullable=False, default=0),
    sa.Column("branch", sa.Integer, nullable=False, default=0),
    sa.Column("parent_id", sa.Integer, nullable=True),
    sa.Column("parent_day", sa.Integer, nullable=True),
    sa.Column("launch", sa.JSON, nullable=True),       # executable, argv, cwd: forks need nothing else
    sa.Column("resume", sa.JSON, nullable=True),       # the checkpoint the next process starts from
    sa.Column("optimizer_keys", sa.JSON, nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("pid_start", sa.Float, nullable=True),    # process start time: pids get reused
    sa.Column("host", sa.String(200), nullable=True),
    sa.Column("heartbeat", sa.Float, nullable=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("ended", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("reproducible", sa.Boolean, nullable=False, default=True),
    sa.Column("study_id", sa.Integer, nullable=True),
)

metrics = sa.Table(
    "metrics", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("day", sa.Integer, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("value", sa.Float, nullable=True),       # NULL is NaN: SQLite cannot store NaN
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("branch", sa.Integer, nullable=False),
    sa.Column("superseded", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_metrics_run_name_step", "run_id", "name", "step"),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("day", sa.Integer, nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("source", sa.String(40), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("branch", sa.Integer, nullable=False),
    sa.Column("superseded", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_events_run", "run_id", "id"),
)

commands = sa.Table(
    "commands", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("args", sa.JSON, nullable=False),
    sa.Column("source", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending | applied | rejected | cancelled
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("done", sa.Float, nullable=True),
    sa.Column("step", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_commands_pending", "run_id", "status"),
)

checkpoints = sa.Table(
    "checkpoints", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("day", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("branch", sa.Integer, nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("path", sa.Text, nullable=False),         # relative to the store root
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("hp", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),      # mean of each metric over that day
    sa.Column("superseded", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_checkpoints_run_day", "run_id", "day"),
)

#: MIGRATIONS[v](connection) upgrades a store at version v to v + 1 (none yet).
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {}
