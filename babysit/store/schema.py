"""The store's schema, in one place, with its version.

A store records its schema version in ``meta``; ``MIGRATIONS[v]`` upgrades a store from version
``v`` to ``v + 1``. Opening a store newer than this code refuses with a clear message instead of
guessing, so an old dashboard never corrupts a new store.
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = 5

metadata = sa.MetaData()

#: ids and byte sizes: 64-bit on PostgreSQL (an int4 metrics.id overflows at 2.1e9 rows, an int4
#: size at a 2 GiB checkpoint); INTEGER on SQLite, whose integers are 64-bit already and where
#: only "INTEGER PRIMARY KEY" is the autoincrementing rowid. SQLite's DDL is unchanged.
BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

meta = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", BIG, primary_key=True, autoincrement=True),
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
    sa.Column("parent_id", BIG, nullable=True),
    sa.Column("parent_day", sa.Integer, nullable=True),
    sa.Column("launch", sa.JSON, nullable=True),       # executable, argv, cwd: forks need nothing else
    sa.Column("start_from", sa.JSON, nullable=True),   # the checkpoint a restart/fork starts from (v3)
    sa.Column("optimizer_keys", sa.JSON, nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("pid_start", sa.Float, nullable=True),    # process start time: pids get reused
    sa.Column("host", sa.String(200), nullable=True),
    sa.Column("heartbeat", sa.Float, nullable=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("ended", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("reproducible", sa.Boolean, nullable=False, default=True),
    sa.Column("study_id", BIG, nullable=True),
    sa.Column("trial", sa.Integer, nullable=True),      # the study's suggestion number (v2)
    sa.Column("max_days", sa.Integer, nullable=True),   # finishes by itself after that day (v2)
    sa.Column("effective", sa.JSON, nullable=True),     # what the optimizer uses now (v3)
    sa.Column("note", sa.Text, nullable=True),          # free text (v3)
    sa.Column("tags", sa.JSON, nullable=True),          # list of strings (v3)
    # which launcher started the run's process and how to find it again: {"kind": "local"} or
    # a Ray job {"kind": "ray", "address", "job", "run_id"} (v5); the monitor asks that launcher
    sa.Column("launcher", sa.JSON, nullable=True),
)

#: Until v4 a metric point was a row of ``metrics``; v4 packs them (``metric_*`` below) and
#: drops it. Kept outside ``metadata`` (new stores never get it) for the migration.
legacy = sa.MetaData()
metrics_v3 = sa.Table(
    "metrics", legacy,
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
    sa.Column("id", BIG, primary_key=True, autoincrement=True),
    sa.Column("run_id", BIG, nullable=False),
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
    sa.Column("id", BIG, primary_key=True, autoincrement=True),
    sa.Column("run_id", BIG, nullable=False),
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
    sa.Column("id", BIG, primary_key=True, autoincrement=True),
    sa.Column("run_id", BIG, nullable=False),
    sa.Column("day", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("branch", sa.Integer, nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("path", sa.Text, nullable=False),         # relative to the store root
    sa.Column("size", BIG, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("hp", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),      # mean of each metric over that day
    sa.Column("superseded", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_checkpoints_run_day", "run_id", "day"),
)

studies = sa.Table(
    "studies", metadata,
    sa.Column("id", BIG, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("objective", sa.String(200), nullable=False),   # a metric name, read at day ends
    sa.Column("direction", sa.String(3), nullable=False),     # min | max
    sa.Column("space", sa.JSON, nullable=False),              # Space.to_dict()
    sa.Column("strategy", sa.JSON, nullable=False),           # {"kind": ..., options}
    sa.Column("budget", sa.JSON, nullable=False),             # {"runs", "days", "parallel"}
    sa.Column("stopping", sa.JSON, nullable=False),           # [{"rule": ..., options}, ...]
    sa.Column("autopilot", sa.String(20), nullable=False),    # auto | supervised | off
    sa.Column("command", sa.JSON, nullable=False),            # a trial's launch record
    sa.Column("status", sa.String(20), nullable=False),       # created | running | done | stopped
    sa.Column("parent_id", BIG, nullable=True),        # a coarse-to-fine follow-up's parent
    sa.Column("pid", sa.Integer, nullable=True),              # the orchestrator's process
    sa.Column("pid_start", sa.Float, nullable=True),
    sa.Column("host", sa.String(200), nullable=True),
    sa.Column("heartbeat", sa.Float, nullable=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("ended", sa.Float, nullable=True),
)

decisions = sa.Table(
    "decisions", metadata,
    sa.Column("id", BIG, primary_key=True, autoincrement=True),
    sa.Column("study_id", BIG, nullable=False),
    sa.Column("run_id", BIG, nullable=False),          # the run the move acts on
    sa.Column("kind", sa.String(20), nullable=False),         # exploit | explore | stop
    sa.Column("detail", sa.JSON, nullable=False),             # source_run, source_day, hp, reason
    sa.Column("status", sa.String(20), nullable=False),       # proposed | approved | vetoed | applied | failed
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("decided", sa.Float, nullable=True),
    sa.Column("decided_by", sa.String(40), nullable=True),    # api | cli | ui | autopilot
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_decisions_study_status", "study_id", "status"),
)


# ------------------------------------------------------------------ metric histories (v4)
# A metric's points live packed in blocks (babysit.store.series) with a summary pyramid beside
# them, so that a curve's read costs what is drawn, not what was logged (docs/history.md).
# Keys are 64-bit everywhere; SQLite's INTEGER PRIMARY KEY is its 64-bit rowid.
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

metric_traces = sa.Table(
    "metric_traces", metadata,   # one curve: a metric of a run on one branch, live or superseded
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.BigInteger, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("branch", sa.Integer, nullable=False),
    sa.Column("superseded", sa.Boolean, nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),        # points in blocks and tail
    sa.Column("step_first", sa.BigInteger, nullable=True),
    sa.Column("step_last", sa.BigInteger, nullable=True),
    sa.Column("tail", sa.Integer, nullable=False),            # points still in metric_tail
    sa.Index("ix_metric_traces_run", "run_id", "name", "branch"),
)

metric_blocks = sa.Table(
    "metric_blocks", metadata,   # series.BLOCK points of a trace, packed (series.encode_block)
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("trace_id", sa.BigInteger, nullable=False),
    sa.Column("step_first", sa.BigInteger, nullable=False),
    sa.Column("step_last", sa.BigInteger, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Index("ix_metric_blocks_trace", "trace_id", "step_last", "step_first"),
)

metric_tail = sa.Table(
    "metric_tail", metadata,     # a trace's newest points, fewer than a block, one row each
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("trace_id", sa.BigInteger, nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("day", sa.Integer, nullable=False),
    sa.Column("value", sa.Float, nullable=True),              # NULL is NaN
    sa.Column("time", sa.Float, nullable=False),
    sa.Index("ix_metric_tail_trace", "trace_id", "step"),
)

metric_buckets = sa.Table(
    "metric_buckets", metadata,  # the summary pyramid: steps [bucket << level, (bucket+1) << level)
    sa.Column("trace_id", sa.BigInteger, primary_key=True),
    sa.Column("level", sa.SmallInteger, primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("nan", sa.BigInteger, nullable=False),
    sa.Column("posinf", sa.BigInteger, nullable=False),
    sa.Column("neginf", sa.BigInteger, nullable=False),
    sa.Column("step_first", sa.BigInteger, nullable=False),
    sa.Column("step_last", sa.BigInteger, nullable=False),
    sa.Column("first", sa.Float, nullable=True),              # NULL is NaN
    sa.Column("last", sa.Float, nullable=True),
    sa.Column("min", sa.Float, nullable=True),                # NULL: no finite value
    sa.Column("step_min", sa.BigInteger, nullable=True),
    sa.Column("max", sa.Float, nullable=True),
    sa.Column("step_max", sa.BigInteger, nullable=True),
    sa.Column("step_nonfinite", sa.BigInteger, nullable=True),   # first nan/inf, NULL: none
    sa.Column("time", sa.Float, nullable=False),              # of the last point
    sa.Column("day", sa.Integer, nullable=False),
    sqlite_with_rowid=False,
)
