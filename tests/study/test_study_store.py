"""Studies and decisions in the store: round trips, decide-once, the v1 -> v2 migration, and
the Client's checks on a study definition (no processes here: fast)."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import sqlalchemy as sa

import babysit
from babysit.store import Store
from babysit.store import schema as S

SPACE = {"lr": {"scale": "log", "low": 1e-4, "high": 1.0},
         "momentum": {"scale": "one_minus_log", "low": 0.5, "high": 0.99}}
COMMAND = [sys.executable, "-c", "pass"]


def _study(client: babysit.Client, name: str = "s", **kwargs) -> int:
    values = {"objective": "val_loss", "space": SPACE, "command": COMMAND, **kwargs}
    return client.create_study(name, **values)


def test_a_study_round_trips(root):
    c = babysit.Client(root)
    study_id = _study(c, "lr-search", strategy={"kind": "random", "seed": 7},
                      budget={"runs": 4, "parallel": 2}, stopping=["patience:2", "median"],
                      autopilot="supervised", project="digits")
    record = c.study("lr-search")
    assert c.study(study_id) == record == c.study(str(study_id))
    assert (record.name, record.project, record.objective, record.direction) == \
        ("lr-search", "digits", "val_loss", "min")
    assert record.space == SPACE
    assert record.strategy == {"kind": "random", "seed": 7}
    assert record.budget == {"runs": 4, "days": 5, "parallel": 2}
    assert record.stopping == [{"rule": "patience", "days": 2}, {"rule": "median"}]
    assert record.autopilot == "supervised" and record.status == "created"
    assert record.command["executable"] == sys.executable and record.command["argv"] == ["-c", "pass"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = "done"  # type: ignore[misc]
    child = _study(c, "lr-fine", parent="lr-search", strategy="pbt")
    assert c.study(child).parent_id == study_id
    assert c.study(child).strategy["quantile"] == 0.25      # PBT's defaults are stored
    assert c.study(child).budget["runs"] == c.study(child).budget["parallel"] == 2
    c.set_autopilot("lr-search", "off")
    assert c.study(study_id).autopilot == "off"
    listed = c.studies()
    assert listed.name.tolist() == ["lr-search", "lr-fine"]
    assert listed.runs.tolist() == [0, 0] and listed.orchestrator.tolist() == [False, False]
    assert c.study_runs("lr-search").empty
    assert list(c.study_runs("lr-search").columns[:8]) == \
        ["id", "name", "status", "trial", "day", "step", "lr", "momentum"]
    with pytest.raises(babysit.UnknownStudy):
        c.study("nope")


def test_decisions_are_decided_once(root):
    c = babysit.Client(root)
    study_id = _study(c)
    store = c.store
    first = store.add_decision(study_id, 3, "exploit", {"source_run": 2, "source_day": 1,
                                                        "reason": "run 3 in bottom 25%"})
    second = store.add_decision(study_id, 4, "stop", {"reason": "no progress"})
    assert c.decisions(study_id).status.tolist() == ["proposed", "proposed"]
    # a decision stored before the rename (source_run) reads as its donor
    assert c.decisions(study_id).donor.tolist() == [2, None]
    vetoed = c.veto(first, source="ui")
    assert (vetoed.status, vetoed.decided_by) == ("vetoed", "ui")
    with pytest.raises(babysit.InvalidValue, match="already vetoed by ui"):
        c.approve(first)
    with pytest.raises(babysit.InvalidValue, match="already vetoed"):
        store.decide(first, "applied", "autopilot")
    approved = c.approve(str(second), source="cli")
    assert approved.status == "approved" and approved.decided is not None
    with pytest.raises(babysit.InvalidValue, match="already approved"):
        c.veto(second)
    applied = store.decide(second, "applied", "autopilot")
    # who decided (a person) and when stay on record once the autopilot has applied it
    assert (applied.status, applied.decided_by, applied.decided) == \
        ("applied", "cli", approved.decided)
    with pytest.raises(babysit.InvalidValue, match="already applied"):
        store.decide(second, "failed", "autopilot")
    assert c.decisions(study_id, status="vetoed").id.tolist() == [first]
    for bad in (0, -1, True, "x", 1.5):
        with pytest.raises(babysit.InvalidValue):
            c.approve(bad)  # type: ignore[arg-type]
    with pytest.raises(babysit.InvalidValue, match="no decision 99"):
        c.approve(99)
    with pytest.raises(babysit.InvalidValue, match="status must be one of"):
        c.decisions(study_id, status="maybe")


def _v1_store(path) -> None:
    """A store as babysit 0.1 (schema version 1) wrote it, with one run in it."""
    engine = sa.create_engine(f"sqlite:///{path}")
    v1 = [t for name, t in S.metadata.tables.items()
          if name not in ("studies", "decisions") and not name.startswith("metric_")]
    with engine.begin() as conn:
        S.metadata.create_all(conn, tables=v1)
        S.metrics_v3.create(conn)                 # metric rows, as stores before v4 kept them
        for column in ("trial", "max_days"):      # columns version 2 added to runs
            conn.exec_driver_sql(f"ALTER TABLE runs DROP COLUMN {column}")
        for column in ("effective", "note", "tags"):   # and version 3
            conn.exec_driver_sql(f"ALTER TABLE runs DROP COLUMN {column}")
        conn.exec_driver_sql("ALTER TABLE runs RENAME COLUMN start_from TO resume")
        conn.execute(sa.insert(S.meta).values(key="schema_version", value="1"))
        conn.exec_driver_sql(
            "INSERT INTO runs (project, name, status, config, hp, strict, day_spec, day, step, "
            "branch, created, reproducible) VALUES ('old', 'old-1', 'finished', '{}', "
            "'{\"lr\": 0.1}', 0, '20 steps', 3, 60, 0, 1.0, 1)")
        conn.exec_driver_sql(
            "INSERT INTO metrics (run_id, step, day, name, value, time, branch, superseded) "
            "VALUES (1, 5, 1, 'loss', 0.5, 1.0, 0, 0)")
    engine.dispose()


def _columns(path, table: str) -> list[str]:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        return [c["name"] for c in sa.inspect(engine).get_columns(table)]
    finally:
        engine.dispose()


def test_a_v1_store_is_upgraded_in_place_and_keeps_its_runs(root):
    _v1_store(root / "babysit.db")
    assert "max_days" not in _columns(root / "babysit.db", "runs")
    c = babysit.Client(root)
    run = c.run(1)
    assert (run.name, run.hp, run.day, run.max_days, run.trial) == ("old-1", {"lr": 0.1}, 3,
                                                                     None, None)
    assert c.metrics(1).value.tolist() == [0.5]
    version = c.store.read(lambda conn: conn.exec_driver_sql(
        "SELECT value FROM meta WHERE key = 'schema_version'").scalar())
    assert version == str(S.SCHEMA_VERSION) == "5"
    assert _study(c) == 1                        # the new tables work
    c.close()
    Store.open(root).close()                     # opening again changes nothing


def test_a_failed_upgrade_leaves_the_v1_store_as_it_was(root):
    _v1_store(root / "babysit.db")
    engine = sa.create_engine(f"sqlite:///{root / 'babysit.db'}")
    with engine.begin() as conn:                 # something in the way of the migration
        conn.exec_driver_sql("CREATE TABLE decisions (x INTEGER)")
    engine.dispose()
    with pytest.raises(babysit.StoreError, match="decisions already exists"):
        Store.open(root)
    assert "max_days" not in _columns(root / "babysit.db", "runs")
    assert "studies" not in sa.inspect(sa.create_engine(f"sqlite:///{root / 'babysit.db'}")
                                       ).get_table_names()


def test_a_store_newer_than_this_code_is_refused(root):
    store = Store.open(root)
    store.close()
    engine = sa.create_engine(f"sqlite:///{root / 'babysit.db'}")
    with engine.begin() as conn:                 # as a later babysit would have written it
        conn.execute(sa.update(S.meta).values(value=str(S.SCHEMA_VERSION + 1)))
    engine.dispose()
    with pytest.raises(babysit.StoreError, match=f"schema version {S.SCHEMA_VERSION + 1}, newer"):
        Store.open(root)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "", "a study name must be non-empty"),
    ("name", "123", "must not be only digits"),
    ("objective", " ", "objective (a metric name) must be non-empty"),
    ("direction", "down", "direction: direction must be"),
    ("space", {"lr": {"scale": "log", "low": 0, "high": 1}}, "space: "),
    ("space", {"lr": {"scale": "log", "low": 1, "high": 0.1}}, "space: "),
    ("space", {"lr": {"scale": "warp", "low": 1, "high": 2}}, "space: "),
    ("space", "missing.yaml", "space: "),
    ("space", {"day": {"scale": "int", "low": 1, "high": 2}}, "clash with the study's run table"),
    ("space", {"learning rate": [0.1, 0.2]}, "space: hyperparameter names are identifiers"),
    ("strategy", "annealing", "strategy: unknown strategy 'annealing'"),
    ("strategy", {"kind": "grid", "n_per_param": 0}, "strategy: "),
    ("strategy", {"kind": "pbt", "quantile": 0.9}, "strategy: quantile must be in"),
    ("budget", {"runs": 0}, "budget: budget runs must be a whole number >= 1"),
    ("budget", {"parallel": 2.5}, "budget: budget parallel"),
    ("budget", {"gpus": 2}, "budget: budget takes runs, days and parallel"),
    ("stopping", ["patience"], "stopping: stopping rule 'patience' needs days"),
    ("stopping", ["nope:1"], "stopping: unknown stopping rule"),
    ("stopping", [{"rule": "walltime", "seconds": -5}], "stopping: max_seconds must be > 0"),
    ("autopilot", "maybe", "autopilot must be one of"),
    ("command", [], "command must be the trial's argument list"),
    ("command", "python train.py", "command must be the trial's argument list"),
    ("command", ["no-such-program-here", "x"], "cannot find the program"),
    ("project", "", "project must be non-empty"),
])
def test_a_bad_study_field_is_refused_by_name_and_nothing_is_written(root, field, value, message):
    c = babysit.Client(root)
    values = {"objective": "val_loss", "space": SPACE, "command": COMMAND, field: value}
    name = values.pop("name", "s")
    with pytest.raises(babysit.InvalidValue, match=message.replace("(", r"\(").replace(")", r"\)")):
        c.create_study(name, **values)
    assert c.store.list_studies() == []


def test_pbt_needs_numbers_it_can_nudge_and_names_are_unique(root):
    c = babysit.Client(root)
    with pytest.raises(babysit.InvalidValue, match="PBT cannot change the choice param 'opt'"):
        _study(c, space={**SPACE, "opt": ["sgd", "adam"]}, strategy="pbt")
    with pytest.raises(babysit.InvalidValue, match="population .* at least 2"):
        _study(c, strategy="pbt", budget={"parallel": 1})
    _study(c, "taken")
    with pytest.raises(babysit.InvalidValue, match="a study named 'taken' already exists"):
        _study(c, "taken")
    with pytest.raises(babysit.UnknownStudy):
        _study(c, "orphan", parent="no-such-study")
    assert [s.name for s in c.store.list_studies()] == ["taken"]


def test_launch_takes_a_trials_hyperparameters_and_max_days(root):
    c = babysit.Client(root)
    run_id = c.launch(COMMAND, hp={"lr": 0.01, "opt": "adam"}, max_days=3, study_id=1, trial=0,
                      detach=False)
    record = c.run(run_id)
    assert (record.hp, record.config, record.max_days, record.study_id, record.trial) == \
        ({"lr": 0.01, "opt": "adam"}, {"lr": 0.01, "opt": "adam"}, 3, 1, 0)
    for kwargs, message in [
        ({"hp": {"lr": float("nan")}}, "lr must be a finite number"),
        ({"hp": {"bad key": 1}}, "hyperparameter names"),
        ({"hp": {"lr": [1, 2]}}, "must be a number, text"),
        ({"hp": {"lr": 0.1}, "config": {"lr": 0.1}}, "not both"),
        ({"max_days": 0}, "max_days must be a whole number > 0"),
        ({"trial": -1}, "trial must be"),
    ]:
        with pytest.raises(babysit.InvalidValue, match=message):
            c.launch(COMMAND, detach=False, **kwargs)
    assert len(c.runs()) == 1
