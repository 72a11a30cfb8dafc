"""Studies end to end: real trial processes, a real store, the orchestrator acting on them.

The orchestrator is ticked in the test process (so a test can act between two ticks), except
where its own process matters (killed and started again)."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import babysit
from babysit.store import CheckpointRecord
from babysit.study.objective import best, best_of, histories
from babysit.study.orchestrator import Orchestrator
from babysit.study.space import Space
from babysit.study.strategies import RandomStrategy
from tests.conftest import wait_for
from tests.study.test_exploit import weight_sum

TINY = str(Path(__file__).resolve().parents[1] / "trainers" / "tiny.py")


@pytest.fixture
def client(trainers, monkeypatch) -> Iterator[babysit.Client]:
    """The trainers fixture's client; trials run single-threaded (2 shared cores) and every
    orchestrator process left behind is killed at the end."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield trainers.client
    for study in trainers.client.store.list_studies():
        if study.pid and trainers.client.orchestrator_alive(study):
            with contextlib.suppress(ProcessLookupError):
                os.kill(study.pid, signal.SIGKILL)


def drive(orch: Orchestrator, until: Callable[[], object], timeout: float, what: str,
          every: Callable[[], None] | None = None) -> object:
    """Tick the orchestrator until ``until()`` is truthy (or the study ends)."""
    deadline = time.monotonic() + timeout
    while True:
        going = orch.tick()
        if every is not None:
            every()
        found = until()
        if found or not going:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def max_overlap(runs) -> int:
    """The most runs live at once, from each run's [created, ended] interval."""
    edges = sorted([(t, 1) for t in runs.created] + [(t, -1) for t in runs.ended])
    live = peak = 0
    for _, change in edges:
        live += change
        peak = max(peak, live)
    return peak


def test_histories_and_best_of_read_day_end_objectives():
    def record(run: int, day: int, metrics: dict) -> CheckpointRecord:
        return CheckpointRecord(0, run, day, day * 10, 0, 0.0, "x", 0, "", {}, metrics, False)

    got = histories([record(1, 0, {}), record(1, 1, {"val": 0.5}), record(1, 3, {"val": 0.3}),
                     record(2, 1, {"loss": 1.0}), record(2, 2, {"val": "nan"})], "val")
    assert got[1] == [0.5, 0.5, 0.3]          # day 2's checkpoint failed: day 1 carries over
    assert all(math.isnan(v) for v in got[2])  # no objective logged: NaN, the worst
    assert best_of(got[1], "min") == (0.3, 3) and best_of(got[1], "max") == (0.5, 1)
    assert math.isnan(best_of(got[2], "min")[0])


def test_one_best_rule_for_runs_days_and_rows():
    """The rule every "best run" uses: finite values only, the first on a tie, numpy too."""
    import numpy as np
    import pandas as pd

    from babysit.ui.study_actions import best_run

    assert best([("a", 0.4), ("b", 0.2), ("c", 0.2), ("d", float("nan"))], "min") == (0.2, "b")
    assert best([("a", np.float64(0.4)), ("b", np.int64(1))], "max") == (1.0, "b")
    assert best([("a", float("-inf")), ("b", None), ("c", "0.1")], "min")[1] is None
    frame = pd.DataFrame({"id": [4, 5, 6], "best": [0.3, float("nan"), 0.1]})
    assert best_run(frame, "min")["id"] == 6 and best_run(frame, "max")["id"] == 4


@pytest.mark.slow
def test_pbt_study_of_demo_runs_supervised_then_auto(client):
    c = client
    c.create_study(
        "pbt", objective="val_loss", strategy={"kind": "pbt", "seed": 3},
        space={"lr": {"scale": "log", "low": 1e-3, "high": 0.5},
               "momentum": {"scale": "one_minus_log", "low": 0.5, "high": 0.99}},
        budget={"parallel": 4, "days": 8}, autopilot="supervised",
        command=[sys.executable, "-m", "babysit.demo", "--pace", "0.005", "--day", "150 steps",
                 "--fingerprint"])
    orch = Orchestrator(c, "pbt", log=lambda line: None)

    def exploits() -> list:
        return [e for rid in c.study_runs("pbt").id
                for e in c.events(rid).query("kind == 'exploit'").itertuples()]

    def proposed() -> list[int]:
        return c.decisions("pbt", status="proposed").id.tolist()

    # Supervised: a PBT round proposes, and nothing is applied while it waits.
    first = drive(orch, proposed, 240, "a proposed exploit")[0]
    for _ in range(5):
        orch.tick()
        time.sleep(0.2)
    assert c.decisions("pbt", status="proposed").id.tolist() == [first]
    assert exploits() == []
    c.veto(first, source="ui")
    second = drive(orch, proposed, 120, "the next proposal")[0]
    assert exploits() == []
    c.approve(second, source="ui")
    drive(orch, lambda: c.store.get_decision(second).status != "approved", 60, "the approval")
    decision = c.store.get_decision(second)
    assert (decision.status, decision.decided_by) == ("applied", "ui")
    [event] = exploits()
    assert event.source == "autopilot" and event.detail["decision"] == second
    assert event.detail["reason"] == decision.detail["reason"]
    assert event.detail["from_run"] == decision.detail["donor"]
    assert {k: event.detail["new"][k] for k in ("lr", "momentum")} == decision.detail["new_hp"]

    # Auto: the next rounds apply at once.
    c.set_autopilot("pbt", "auto")
    drive(orch, lambda: c.decisions("pbt").decided_by.eq("autopilot").any(), 120,
          "an exploit by the autopilot alone")
    drive(orch, lambda: False, 240, "the study to finish")
    assert c.study("pbt").status == "done"
    runs = c.study_runs("pbt")
    assert runs.status.tolist() == ["finished"] * 4 and runs.day.tolist() == [8] * 4
    decisions = c.decisions("pbt")
    auto = decisions[decisions.decided_by == "autopilot"]
    assert (auto.status == "applied").any()
    assert decisions.set_index("id").status[first] == "vetoed"
    applied = exploits()
    assert first not in [e.detail.get("decision") for e in applied]
    assert len(applied) >= 2
    for e in applied:
        # the run that exploited started its next step from the source's day checkpoint
        run_id = int(c.store.get_decision(e.detail["decision"]).run_id)
        wsum = c.metrics(run_id, ["wsum"])
        assert wsum[wsum.step == e.step].value.tolist() == \
            [weight_sum(c, e.detail["from_run"], e.detail["from_day"])]
        assert e.detail["reason"].startswith(f"run {run_id} (val_loss")


@pytest.mark.slow
def test_a_stopping_rule_frees_a_slot_for_the_next_trial(client):
    c = client
    # a grid in this order: hopeless, good, hopeless; day-1 loss is ~0.67 at lr 1e-5, ~0.4 at 0.3
    c.create_study(
        "stops", objective="loss", space={"lr": {"choices": [1e-5, 0.3, 2e-5]}},
        strategy="grid", budget={"runs": 3, "days": 10, "parallel": 2},
        stopping=[{"rule": "threshold", "day": 1, "worse_than": 0.55}],
        command=[sys.executable, TINY, "--day", "20 steps", "--pace", "0.03"])
    orch = Orchestrator(c, "stops", log=lambda line: None)
    peak = [0]

    def count_live() -> None:
        peak[0] = max(peak[0], int(c.study_runs("stops").status.isin(babysit.store.LIVE).sum()))

    drive(orch, lambda: False, 240, "the study to finish", every=count_live)
    assert c.study("stops").status == "done"
    runs = c.study_runs("stops").set_index("trial")
    assert runs.lr.tolist() == [1e-5, 0.3, 2e-5]
    assert runs.status.tolist() == ["stopped", "finished", "stopped"]
    assert runs.day.tolist()[1] == 10
    for trial in (0, 2):
        stop = c.events(int(runs.id[trial])).query("kind == 'stop'").iloc[-1]
        assert stop.source == "autopilot"
        assert "at day 1 is worse than 0.55" in stop.detail["reason"]
    # the third trial took the slot of the stopped first one while the second still ran
    assert runs.created[2] > runs.ended[0] and runs.created[2] < runs.ended[1]
    assert peak[0] <= 2 and max_overlap(runs) == 2
    assert c.decisions("stops").kind.tolist() == ["stop", "stop"]
    assert c.study_best("stops")["trial"] == 1


@pytest.mark.slow
def test_a_killed_orchestrator_restarts_without_launching_twice(client):
    c = client
    space = {"lr": {"scale": "log", "low": 1e-3, "high": 0.5}}
    c.create_study("random", objective="loss", space=space,
                   strategy={"kind": "random", "seed": 11},
                   budget={"runs": 4, "days": 4, "parallel": 2},
                   command=[sys.executable, TINY, "--day", "20 steps", "--pace", "0.02"])
    first = c.launch_study("random")
    wait_for(lambda: len(c.study_runs("random")) == 2, 120, "the first two trials")
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not c.orchestrator_alive("random"), 10, "the orchestrator to die")
    second = c.launch_study("random")
    assert second != first
    with pytest.raises(babysit.BabysitError, match="already has an orchestrator"):
        c.launch_study("random")
    wait_for(lambda: c.study("random").status == "done", 240, "the study to finish")
    runs = c.study_runs("random").sort_values("trial")
    assert runs.trial.tolist() == [0, 1, 2, 3] and runs.name.is_unique
    assert runs.status.tolist() == ["finished"] * 4 and runs.day.tolist() == [4] * 4
    # the restarted orchestrator went on with the same random sequence: no config twice
    expected = [s.config["lr"] for s in RandomStrategy(Space.from_dict(space), seed=11).ask(4)]
    assert runs.lr.tolist() == expected
    assert max_overlap(runs) == 2
    log = (c.store.root / "studies" / str(c.study("random").id) / "orchestrator.log").read_text()
    assert "rebuilt the random strategy from 2 trial(s)" in log
    wait_for(lambda: c.study("random").pid is None, 30, "the orchestrator to leave")
    with pytest.raises(babysit.InvalidValue, match="is done"):
        c.launch_study("random")


@pytest.mark.slow
def test_each_tick_runs_the_monitor_step_a_dead_trial_is_crashed_and_replaced(client):
    """Reading never writes: the orchestrator's tick is one of the places that marks a trial
    whose process is gone crashed (source monitor), then gives its slot to the next trial."""
    c = client
    c.create_study("dead", objective="loss", space={"lr": {"choices": [0.01, 0.02]}},
                   strategy="grid", budget={"runs": 2, "days": 50, "parallel": 1},
                   command=[sys.executable, TINY, "--day", "20 steps", "--pace", "0.02"])
    orch = Orchestrator(c, "dead", log=lambda line: None)
    [first] = drive(orch, lambda: [r for r in c.store.list_runs() if r.pid], 60, "a trial")
    os.kill(first.pid, signal.SIGKILL)
    assert c.run(first.id).status == "starting"          # nobody has looked yet
    drive(orch, lambda: len(c.study_runs("dead")) == 2, 60, "the next trial")
    assert c.run(first.id).status == "crashed"
    assert c.events(first.id).query("kind == 'crashed'").source.tolist() == ["monitor"]
    c.stop_study("dead", timeout=30)
