"""Retest: which probes a run's hyperparameters get, the verdict, and real probes end to end."""

from __future__ import annotations

import math

import pytest

import babysit
from babysit.study.retest import (
    Probe,
    default_movers,
    probe_configs,
    space_movers,
    verdict,
)
from babysit.study.space import Space
from tests.conftest import wait_for
from tests.test_cli import cli


def test_probes_move_one_hyperparameter_at_a_time_on_its_own_scale():
    hp = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "clip": 1.0}
    assert probe_configs(hp, default_movers(), probes=4, factor=2.0) == \
        [{"lr": 0.2}, {"lr": 0.05}, {"momentum": 0.95}, {"momentum": 0.8}]
    # weight_decay 0 cannot move; with more probes asked, pairs of moves come next
    six = probe_configs(hp, default_movers(), probes=6, factor=2.0)
    assert six[4:] == [{"lr": 0.2, "momentum": 0.95}, {"lr": 0.2, "momentum": 0.8}]
    # momentum 0.3 on the 1-beta scale: /2 would be negative, so only the way up is probed
    assert probe_configs({"momentum": 0.3}, default_movers(), probes=4) == [{"momentum": 0.65}]
    # a study's space clips to its bounds and drops moves that change nothing
    space = Space.from_dict({"lr": {"scale": "log", "low": 1e-3, "high": 0.1},
                             "batch_size": {"scale": "pow2", "low": 16, "high": 256}})
    assert probe_configs({"lr": 0.1, "batch_size": 64}, space_movers(space), probes=4) == \
        [{"lr": 0.05}, {"batch_size": 128}, {"batch_size": 32}, {"lr": 0.05, "batch_size": 128}]
    for bad in ({"probes": 0}, {"probes": 17}, {"factor": 1.0}, {"factor": math.nan}):
        with pytest.raises(babysit.InvalidValue):
            probe_configs(hp, default_movers(), **bad)


def test_the_verdict_waits_for_every_probe_and_the_control_wins_ties():
    control = Probe(1, {}, True, "finished", 0.5)
    better = Probe(2, {"lr": 0.2}, False, "finished", 0.4)
    tie = Probe(3, {"lr": 0.05}, False, "finished", 0.5)
    running = Probe(4, {"momentum": 0.95}, False, "running", None)
    crashed = Probe(5, {"momentum": 0.8}, False, "crashed", None)
    assert verdict([control, better], "min")[:2] == (False, better)
    assert verdict([control, better], "max")[:2] == (True, control)
    assert verdict([control, tie], "min")[:2] == (True, control)
    assert verdict([control, better, running], "min") == (None, None, False)
    assert verdict([control, tie, crashed], "min") == (True, control, True)
    assert verdict([Probe(1, {}, True, "crashed", None), better], "min") == (None, None, True)


@pytest.mark.slow
def test_a_retest_forks_probes_and_reports_whether_the_setting_still_wins(trainers, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")     # the probes share 2 cores
    _, run_id = trainers.start("--pace", "0.01", "--day", "10 steps")
    c = trainers.client
    wait_for(lambda: c.store.checkpoint(run_id, 2) is not None, 60, "day 2")
    with pytest.raises(babysit.InvalidValue, match="days must be"):
        c.retest(run_id, days=0)
    out = cli(trainers, "retest", str(run_id), "--probes", "2", "--objective", "loss")
    assert "probes started" in out.stdout
    retest = c.events(run_id).query("kind == 'retest'").iloc[-1]
    day = retest.detail["day"]
    assert day >= 2 and retest.detail["target_day"] == day + 1
    report = wait_for(lambda: (r := c.retest_report(run_id)).done and r, 120, "the probes")
    assert [p.hp for p in report.probes] == [{}, {"lr": 0.1}, {"lr": 0.025}]
    values = {}
    for probe in report.probes:
        child = c.run(probe.run_id)
        assert (child.parent_id, child.parent_day, child.max_days) == (run_id, day, day + 1)
        assert (child.status, child.day) == ("finished", day + 1)
        values[probe.run_id] = c.store.checkpoint(child.id, day + 1).metrics["loss"]
        assert probe.value == values[probe.run_id]
    control = report.probes[0].run_id
    assert report.still_best == (min(values, key=values.get) == control)
    # the control is a fair one: it replays exactly what the run itself did on that day
    mine = c.metrics(run_id, ["loss"]).set_index("step").value
    theirs = c.metrics(control, ["loss"]).set_index("step").value
    assert len(theirs) == 10 and (theirs == mine[theirs.index]).all()
    shown = cli(trainers, "retest", str(run_id), "--report").stdout
    assert report.summary in shown and "control (unchanged)" in shown
