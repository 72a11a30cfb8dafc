"""Shared helpers for the framework integration tests: no network, trainers built in code."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

import pytest

import babysit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TRAINERS = Path(__file__).parent / "trainers"
sys.path.insert(0, str(TRAINERS))


def curve(client, run_id: int, name: str = "loss") -> tuple[dict[int, float], dict[int, float]]:
    """(live branch, superseded) values of one metric, by step."""
    m = client.metrics(run_id, [name], include_superseded=True)
    live = {int(r.step): float(r.value) for r in m[~m["superseded"]].itertuples()}
    old = {int(r.step): float(r.value) for r in m[m["superseded"]].itertuples()}
    return live, old


def scale_nudges() -> bool:
    """Both halves of issue 9's relative nudge are here: the Client posts ``scale`` and the
    trainer applies it (main had the Client's half first; the trainer refused the command)."""
    from babysit.trainer import commands
    return "scale" in inspect.signature(babysit.Client.nudge).parameters \
        and "scale" in inspect.getsource(commands.nudge)


def half_lr(c, lr_then: float, how: str):
    """A nudge that halves the lr: ``scale`` (the trainer computes it from the live value at
    the applying step) or an absolute ``lr`` computed here from the schedule."""
    if how == "scale":
        if not scale_nudges():
            pytest.skip("Client.nudge(scale=...) or the trainer's handling of it (core's "
                        "commands.nudge) is not on this branch yet")
        return lambda run_id: c.nudge(run_id, scale={"lr": 0.5}, wait=False)
    return lambda run_id: c.nudge(run_id, lr=lr_then * 0.5, wait=False)


def send_and_hold(run, send) -> None:
    """Send a command to ``run`` (``send(run.id)``) from inside a framework callback and hold
    the fit until babysit's writer has read it, so that it applies at this very boundary."""
    from tests.conftest import wait_for
    send(run.id)
    wait_for(lambda: run.state.outbox.commands, 30, "the trainer to read the command")


def kill_mid_day_and_restart(trainers, proc, run_id: int, *, day: int, step: int):
    """A trainer process that stops for good past ``step`` (TINY_HANG_AT) inside the day after
    ``day``: wait for both, SIGKILL it, let the monitor mark it crashed, restart it and wait
    for the restart to end. Returns the run's record and its (live, superseded) loss curves."""
    import signal

    from tests.conftest import wait_for
    c = trainers.client
    wait_for(lambda: c.store.checkpoint(run_id, day), 120, f"day {day}")
    trainers.wait_step(run_id, step)
    assert c.store.checkpoint(run_id, day + 1) is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the monitor step (reading never writes) marks the dead run crashed
    wait_for(lambda: c.check_runs(run_id) or c.run(run_id).status == "crashed", 30,
             "the run to show as crashed")
    c.restart(run_id)
    wait_for(lambda: c.run(run_id).status in ("finished", "crashed"), 180, "the restart to end")
    record = c.run(run_id)
    assert record.status == "finished", record.error
    return record, curve(c, run_id)
