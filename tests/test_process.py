"""The core, end to end with real trainer subprocesses and a real SQLite store."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import babysit
from tests.conftest import wait_for

pytestmark = pytest.mark.slow


def test_nudge_applies_at_a_step_boundary_and_is_recorded(trainers):
    _, run_id = trainers.start("--pace", "0.01")
    c = trainers.client
    result = c.nudge(run_id, lr=0.02, momentum=0.95, clip=0.5)
    assert result.status == "applied" and result.step is not None
    events = c.events(run_id)
    nudge = events[events.kind == "nudge"].iloc[-1]
    assert nudge.step == result.step and nudge.source == "python"
    assert nudge.detail["lr"] == {"old": 0.05, "new": 0.02, "op": "set", "arg": 0.02,
                                  "groups": [[0.05, 0.02]]}
    assert nudge.detail["momentum"] == {"old": 0.9, "new": 0.95, "op": "set", "arg": 0.95,
                                        "groups": [[0.9, 0.95]]}
    assert nudge.detail["clip"] == {"old": 1.0, "new": 0.5, "op": "set", "arg": 0.5}
    assert c.run(run_id).hp["lr"] == 0.02
    trainers.wait_step(run_id, result.step + 3)
    lr = c.metrics(run_id, ["hp/lr"])
    assert lr[lr.step >= result.step].value.tolist() == [0.02]
    assert lr[lr.step < result.step].value.tolist() == [0.05]


@pytest.mark.parametrize("scheduler", ["step", "lambda", "cosine"])
def test_lr_nudge_scales_the_schedule_instead_of_being_overwritten(trainers, scheduler):
    _, run_id = trainers.start("--pace", "0.01", "--scheduler", scheduler, "--lr", "0.1")
    c = trainers.client
    trainers.wait_step(run_id, 5)
    before = c.metrics(run_id, ["hp/lr"]).value.iloc[-1]
    result = c.nudge(run_id, lr=before * 2)
    trainers.wait_step(run_id, result.step + 30)
    lr = c.metrics(run_id, ["hp/lr"]).set_index("step").value
    # the schedule the optimizer would follow untouched, simulated here
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = {"step": lambda: torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5),
             "lambda": lambda: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.99 ** s),
             "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000,
                                                                         eta_min=0.001)}[scheduler]()
    plain = [0.1]
    for _ in range(int(lr.index.max()) + 1):
        opt.step()
        sched.step()
        plain.append(opt.param_groups[0]["lr"])
    factor = (before * 2) / plain[result.step]
    later = lr[(lr.index > result.step + 5)]
    assert len(later) > 0
    for step, value in later.items():
        assert value == pytest.approx(plain[step] * factor, rel=1e-6), (step, value)


def test_pause_and_resume(trainers):
    _, run_id = trainers.start("--pace", "0.01")
    c = trainers.client
    c.pause(run_id)
    assert c.run(run_id).status == "paused"
    frozen = c.metrics(run_id, ["loss"]).step.max()
    time.sleep(0.6)
    assert c.metrics(run_id, ["loss"]).step.max() == frozen
    c.nudge(run_id, lr=0.01)           # a paused run still takes nudges
    c.resume(run_id)
    assert c.run(run_id).status == "running"
    trainers.wait_step(run_id, frozen + 5)
    kinds = c.events(run_id).kind.tolist()
    assert kinds.index("pause") < kinds.index("nudge") < kinds.index("resume")


def test_rollback_restores_the_day_exactly_and_replays_the_same_curve(trainers):
    _, run_id = trainers.start("--pace", "0.005", "--day", "20 steps")
    c = trainers.client
    trainers.wait_step(run_id, 75)
    c.pause(run_id)
    paused_at = c.metrics(run_id, ["loss"]).step.max()
    result = c.rollback(run_id, day=1)
    assert result.status == "applied"
    c.resume(run_id)
    trainers.wait_step(run_id, paused_at + 2)
    c.pause(run_id)
    everything = c.metrics(run_id, ["loss", "wsum"], include_superseded=True)
    old = everything[everything.superseded].set_index(["name", "step"]).value
    new = everything[~everything.superseded].set_index(["name", "step"]).value
    assert old.index.get_level_values("step").min() == 20   # day 1 ended after 20 steps
    common = old.index.intersection(new.index)
    assert len(common) >= 2 * (paused_at - 20)
    np.testing.assert_array_equal(old[common].to_numpy(), new[common].to_numpy())
    # the history is kept, the live view is continuous, the rollback is an event
    live = c.metrics(run_id, ["loss"])
    assert live.step.is_unique and live.step.min() == 0
    rollback = c.events(run_id).query("kind == 'rollback'").iloc[-1]
    assert rollback.detail["to_day"] == 1 and rollback.detail["to_step"] == 20
    assert c.checkpoints(run_id).day.is_unique


def test_rollback_with_new_hyperparameters(trainers):
    _, run_id = trainers.start("--pace", "0.005", "--day", "20 steps")
    c = trainers.client
    trainers.wait_step(run_id, 45)
    c.rollback(run_id, day=1, lr=0.01)
    wait_for(lambda: c.run(run_id).hp["lr"] == 0.01, 10, "the override")
    trainers.wait_step(run_id, 25)
    lr = c.metrics(run_id, ["hp/lr"])
    assert lr[lr.step >= 20].value.iloc[-1] == 0.01


def test_fork_starts_from_the_parents_day_and_runs_beside_it(trainers):
    _, parent = trainers.start("--pace", "0.01", "--day", "20 steps")
    c = trainers.client
    wait_for(lambda: len(c.checkpoints(parent)) >= 3, 60, "day 2")
    child = c.fork(parent, day=2, lr=0.02)
    wait_for(lambda: len(c.metrics(child, ["wsum"])) > 3, 60, "the fork's first steps")
    record = c.run(child)
    assert (record.parent_id, record.parent_day) == (parent, 2)
    assert record.hp["lr"] == 0.02 and record.hp["momentum"] == 0.9
    first = c.metrics(child, ["wsum", "loss"]).sort_values("step").groupby("name").first()
    parent_rows = c.metrics(parent, ["wsum", "loss"]).set_index(["name", "step"]).value
    assert first.loc["wsum", "step"] == 40
    # same weights, same batch, same dropout mask: the first step is the parent's step 40
    assert first.loc["wsum", "value"] == parent_rows[("wsum", 40)]
    assert first.loc["loss", "value"] == parent_rows[("loss", 40)]
    assert c.run(parent).status == "running" and c.run(child).status == "running"
    fork_event = c.events(parent).query("kind == 'fork'").iloc[-1]
    assert fork_event.detail["child"] == child and fork_event.detail["day"] == 2
    assert "forked" in c.events(child).kind.tolist()


def test_a_fork_that_crashed_before_its_first_day_restarts_from_its_fork_point(trainers):
    """Killed before its first own day was listed, a fork has no checkpoint of its own: its
    restart starts from the parent's day it was forked from, never from fresh weights."""
    _, parent = trainers.start("--pace", "0.01", "--day", "20 steps")
    c = trainers.client
    wait_for(lambda: len(c.checkpoints(parent)) >= 3, 60, "day 2")
    day2, record = c.store.checkpoint(parent, 2), c.run(parent)
    child = c.store.create_run(   # a fork as Client.fork makes it, whose process then died
        project=record.project, name="early-fork", status="crashed", config=dict(day2.hp),
        hp=dict(day2.hp), strict=False, day_spec=record.day_spec, day=2, step=day2.step,
        parent_id=parent, parent_day=2, launch=record.launch, start_from=None,
        error="killed before its first day")
    c.restart(child)
    wait_for(lambda: len(c.metrics(child, ["wsum"])) > 3, 60, "the restarted fork's steps")
    first = c.metrics(child, ["wsum", "loss"]).sort_values("step").groupby("name").first()
    parent_rows = c.metrics(parent, ["wsum", "loss"]).set_index(["name", "step"]).value
    assert first.loc["wsum", "step"] == 40
    assert first.loc["wsum", "value"] == parent_rows[("wsum", 40)]
    assert first.loc["loss", "value"] == parent_rows[("loss", 40)]
    wait_for(lambda: c.store.checkpoint(child, 2) is not None, 30, "its own copy of day 2")


def test_a_killed_process_shows_as_crashed_and_restarts_from_its_last_day(trainers):
    proc, run_id = trainers.start("--pace", "0.01", "--day", "20 steps")
    c = trainers.client
    wait_for(lambda: len(c.checkpoints(run_id)) >= 3, 60, "day 2")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    # the monitor step (reading never writes) marks the dead run crashed
    wait_for(lambda: c.check_runs(run_id) or c.run(run_id).status == "crashed", 5, "crashed")
    assert time.monotonic() - killed < 5
    last = c.checkpoints(run_id).iloc[-1]
    c.restart(run_id)
    wait_for(lambda: c.run(run_id).status == "running", 60, "running again")
    trainers.wait_step(run_id, int(last.step) + 5)
    live = c.metrics(run_id, ["loss"])
    assert live.step.is_unique     # the steps redone after the crash replace the lost ones
    kinds = c.events(run_id).kind.tolist()
    assert "crashed" in kinds and "restarted" in kinds
    assert c.run(run_id).branch == 1


def test_restart_of_a_run_that_never_saved_a_day_starts_a_new_branch(trainers):
    """A process killed before its day 0 was listed: the restart starts from scratch, and what
    the dead process logged is kept as an abandoned branch, not as duplicate live steps."""
    c = trainers.client
    env = {k: v for k, v in trainers.env().items() if k == "PYTHONPATH"}
    script = str(Path(__file__).parent / "trainers" / "tiny.py")
    run_id = c.store.create_run(
        project="tiny", name="early", status="crashed", config={"lr": 0.05}, hp={"lr": 0.05},
        strict=False, day_spec="20 steps", step=7,
        launch={"executable": sys.executable, "argv": [script, "--pace", "0.01"],
                "cwd": str(trainers.root.parent), "env": env})
    c.store.insert_metrics(run_id, [(s, 1, "loss", 1.0, time.time(), 0) for s in range(8)])
    c.restart(run_id)
    trainers.wait_step(run_id, 12)
    live = c.metrics(run_id, ["loss"])
    assert live.step.is_unique and (live.branch == 1).all()
    old = c.metrics(run_id, ["loss"], include_superseded=True)
    assert int(old.superseded.sum()) == 8
    assert c.run(run_id).branch == 1


def test_stop_ends_the_process_and_restart_continues(trainers):
    proc, run_id = trainers.start("--pace", "0.01", "--day", "20 steps")
    c = trainers.client
    c.stop(run_id)
    assert proc.wait(timeout=30) == 0
    assert c.run(run_id).status == "stopped"
    c.restart(run_id)
    wait_for(lambda: c.run(run_id).status == "running", 60, "running again")
    c.stop(run_id)
    assert c.run(run_id).status == "stopped"


def test_exact_resume_after_a_kill_gives_the_same_curve_and_weights(trainers, tmp_path):
    full = tmp_path / "full.sha"
    proc, a = trainers.start("--steps", "90", "--day", "20 steps", "--project", "a",
                             "--final", str(full), wait_running=False)
    assert proc.wait(timeout=120) == 0
    resumed = tmp_path / "resumed.sha"
    proc, b = trainers.start("--steps", "90", "--day", "20 steps", "--project", "b",
                             "--pace", "0.02", "--final", str(resumed))
    c = trainers.client
    wait_for(lambda: len(c.checkpoints(b)) >= 3, 60, "day 2")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    c.restart(b)
    wait_for(lambda: c.run(b).status == "finished", 120, "the resumed run to finish")
    curve_a = c.metrics(a, ["loss"]).set_index("step").value
    curve_b = c.metrics(b, ["loss"]).set_index("step").value
    assert list(curve_a.index) == list(range(90)) == list(curve_b.index)
    np.testing.assert_array_equal(curve_a.to_numpy(), curve_b.to_numpy())
    assert full.read_text() == resumed.read_text()


def test_bad_commands_are_refused_and_change_nothing(trainers):
    _, run_id = trainers.start("--pace", "0.01", "--strict")
    c = trainers.client
    before = c.store.read(lambda conn: conn.exec_driver_sql("select count(*) from commands").scalar())
    bad = [
        dict(lr=float("nan")), dict(lr=float("inf")), dict(lr=-0.1), dict(lr=0), dict(lr="fast"),
        dict(lr=True), dict(momentum=1.0), dict(momentum=-0.1), dict(weight_decay=-1),
        dict(dropout=0.1),          # unknown key on a strict run
        {},
    ]
    for values in bad:
        with pytest.raises(babysit.InvalidValue):
            c.nudge(run_id, values)
    with pytest.raises(babysit.UnknownRun):
        c.nudge(999, lr=0.1)
    with pytest.raises(babysit.UnknownDay):
        c.rollback(run_id, day=50)
    with pytest.raises(babysit.InvalidValue):
        c.rollback(run_id, day=-1)
    with pytest.raises(babysit.UnknownDay):
        c.fork(run_id, day=77)
    with pytest.raises(babysit.InvalidValue):
        c.fork(run_id, day=0, lr=float("nan"))
    with pytest.raises(babysit.RunNotLive):
        c.restart(run_id)
    with pytest.raises(babysit.InvalidValue):
        c.resume(run_id)
    after = c.store.read(lambda conn: conn.exec_driver_sql("select count(*) from commands").scalar())
    assert after == before
    assert c.run(run_id).hp["lr"] == 0.05
    assert len(c.runs()) == 1


def test_a_bad_command_written_straight_into_the_store_is_rejected_by_the_trainer(trainers):
    _, run_id = trainers.start("--pace", "0.01")
    c = trainers.client
    command = c.store.post_command(run_id, "nudge", {"hp": {"lr": -5}}, "api")
    with pytest.raises(babysit.CommandRejected, match="lr"):
        c.wait(command, 10)
    assert c.run(run_id).hp["lr"] == 0.05
    assert "rejected" in c.events(run_id).kind.tolist()


def test_nan_loss_pauses_the_run_as_diverged(trainers):
    _, run_id = trainers.start("--pace", "0.01", "--nan-at", "30", "--day", "20 steps")
    c = trainers.client
    wait_for(lambda: c.run(run_id).status == "diverged", 30, "diverged")
    diverged = c.events(run_id).query("kind == 'diverged'").iloc[-1]
    assert diverged.step == 31     # the boundary right after the step that logged NaN
    assert c.metrics(run_id, ["loss"]).step.max() == 30
    c.rollback(run_id, day=1)
    wait_for(lambda: c.run(run_id).status == "running", 10, "running after the rollback")


def test_client_sees_the_same_store_as_init_by_default(root, monkeypatch):
    monkeypatch.chdir(root)
    monkeypatch.delenv("BABYSIT_ROOT", raising=False)
    run = babysit.init(project="here", config={"lr": 0.1})
    run.finish()
    assert (root / "checkpoints" / "babysit.db").exists()
    assert babysit.Client().runs().project.tolist() == ["here"]
    monkeypatch.setenv("BABYSIT_ROOT", str(root / "elsewhere"))
    assert babysit.Client().runs().empty
    assert os.path.exists(root / "elsewhere" / "babysit.db")


def test_divergence_guard_can_roll_back_and_halve_the_learning_rate(trainers):
    _, run_id = trainers.start("--pace", "0.01", "--nan-at", "30", "--day", "20 steps",
                               "--guard", "rollback")
    c = trainers.client
    wait_for(lambda: "rollback" in c.events(run_id).kind.tolist(), 30, "the guard's rollback")
    events = c.events(run_id)
    rollback = events.query("kind == 'rollback'").iloc[0]
    assert rollback.source == "guard" and rollback.detail["to_day"] == 1
    nudge = events.query("kind == 'nudge'").iloc[0]
    assert nudge.source == "guard" and nudge.detail["lr"]["new"] == pytest.approx(0.025)
    assert "diverged" in events.kind.tolist()
    # the script logs NaN at step 30 every time, so the guard gives up after 3 rollbacks
    wait_for(lambda: len(c.events(run_id).query("kind == 'rollback'")) == 3, 60, "3 rollbacks")
    wait_for(lambda: c.run(run_id).status == "diverged", 60, "the guard to give up")
    time.sleep(0.5)
    assert len(c.events(run_id).query("kind == 'rollback'")) == 3


def test_the_guard_skips_a_corrupt_day_when_it_rolls_back(trainers):
    _, run_id = trainers.start("--pace", "0.05", "--nan-at", "56", "--day", "20 steps",
                               "--guard", "rollback")
    c = trainers.client
    day2 = wait_for(lambda: c.store.checkpoint(run_id, 2), 60, "day 2")
    path = trainers.root / day2.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF                      # a bit flip in the latest day
    path.write_bytes(bytes(data))
    wait_for(lambda: "rollback" in c.events(run_id).kind.tolist(), 30, "the guard's rollback")
    events = c.events(run_id)
    assert events.query("kind == 'rollback'").iloc[0].detail["to_day"] == 1
    corrupt = events.query("kind == 'checkpoint_corrupt'")
    assert len(corrupt) and corrupt.iloc[0].detail["day"] == 2
    assert c.run(run_id).status in ("running", "diverged")      # not crashed


@pytest.mark.parametrize("locked", [False, True])
def test_a_process_killed_right_after_three_short_days_loses_at_most_the_day_in_progress(
        trainers, locked):
    """10-step days and os._exit right after the third day's end: days 1 and 2 are listed
    (the loop waits for each day's file and row before it snapshots the next), and every
    listed day loads. ``locked``: another process holds the store's write lock for a while
    after day 1, so the rows of days 2 and 3 wait; the process must not outrun them."""
    import sqlite3

    from babysit import checkpoint as ckpt

    proc, run_id = trainers.start("--day", "10 steps", "--hard-exit-after-days", "3",
                                  *(["--pace", "0.2"] if locked else []), wait_running=False)
    if locked:
        wait_for(lambda: trainers.client.store.checkpoint(run_id, 1), 60, "day 1")
        conn = sqlite3.connect(trainers.root / "babysit.db", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        # hold the lock until 5 s after day 2's file is on disk: a process that does not wait
        # for day 2's row ends (at step 31) meanwhile, and day 2 is lost
        day2 = trainers.root / "runs" / str(run_id) / ckpt.checkpoint_name(2, 0)
        wait_for(lambda: day2.exists() or proc.poll() is not None, 60, "day 2's file")
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        conn.execute("COMMIT")
        conn.close()
    assert proc.wait(timeout=120) == 0
    listed = trainers.client.store.checkpoint_records(run_id)
    assert {0, 1, 2} <= {r.day for r in listed}
    for record in listed:
        payload = ckpt.load(ckpt.safe_path(trainers.root, record.path), record.sha256)
        assert payload["day"] == record.day and payload["step"] == record.step
