"""Exactly once: a command in flight when the process dies is applied once after the restart;
one that was applied just before the kill is not applied again."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def nudges(c, run_id: int, lr: float):
    events = c.events(run_id)          # superseded ones included
    return events[(events.kind == "nudge")
                  & events.detail.map(lambda d: d.get("lr", {}).get("new") == lr)]


def optimizer_lr_from(c, run_id: int, step: int) -> list[float]:
    """The optimizer's lr (the hp/lr trace) from ``step`` on, live branch only."""
    trace = c.metrics(run_id, ["hp/lr"])      # ordered by step, then as written
    before = trace[trace.step <= step].value.tolist()[-1:]
    return before + trace[trace.step > step].value.tolist()


def test_a_command_in_flight_at_a_kill_is_applied_exactly_once(trainers, forked):
    pid, run_id = forked.start("--pace", "0.01", "--day", "20 steps")
    c = forked.client
    wait_for(lambda: len(c.checkpoints(run_id)) >= 2, 60, "day 1")

    # in flight: the process cannot read it (stopped), then dies
    os.kill(pid, signal.SIGSTOP)
    posted = c.nudge(run_id, lr=0.0123, wait=False)
    time.sleep(0.3)
    assert c.store.get_command(posted.id).status == "pending"
    forked.kill(pid, run_id)
    c.restart(run_id)
    applied = c.wait(posted.id, 60)
    assert applied.status == "applied"
    trainers.wait_step(run_id, applied.step + 10)
    assert len(nudges(c, run_id, 0.0123)) == 1
    assert nudges(c, run_id, 0.0123).iloc[0].step == applied.step
    assert c.run(run_id).hp["lr"] == 0.0123
    assert set(optimizer_lr_from(c, run_id, applied.step)) == {0.0123}

    # applied just before the kill: the restart keeps its effect and does not apply it again
    done = c.nudge(run_id, lr=0.0321)
    assert done.status == "applied"
    forked.kill(c.run(run_id).pid, run_id)
    before = c.store.get_command(done.id)
    c.restart(run_id)
    wait_for(lambda: len(c.events(run_id).query("kind == 'restarted' and source == 'trainer'"))
             == 2, 60, "the second restart")
    restart = c.events(run_id).query("kind == 'restarted' and source == 'trainer'").iloc[-1]
    trainers.wait_step(run_id, restart.step + 10)
    assert len(nudges(c, run_id, 0.0321)) == 1
    assert c.store.get_command(done.id) == before          # not touched again
    assert c.run(run_id).hp["lr"] == 0.0321
    assert set(optimizer_lr_from(c, run_id, restart.step)) == {0.0321}
    pending = c.store.read(lambda conn: conn.exec_driver_sql(
        "select count(*) from commands where status = 'pending'").scalar())
    assert pending == 0
    c.stop(run_id)
