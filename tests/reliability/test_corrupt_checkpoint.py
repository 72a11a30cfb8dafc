"""A truncated or bit-flipped checkpoint: restarts fall back to the previous good day, loudly;
rollback and fork to a corrupt day are refused; the dashboard still draws the run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import babysit
from babysit import checkpoint as ckpt
from tests.conftest import wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10
    path.write_bytes(bytes(data))


def crashed_with_days(forked, days: int) -> tuple[int, list]:
    """A trainer killed after ``days`` listed days; returns (run id, checkpoint records)."""
    pid, run_id = forked.start("--pace", "0.01", "--day", "20 steps")
    c = forked.client
    wait_for(lambda: len(c.checkpoints(run_id)) >= days, 60, f"{days} days")
    forked.kill(pid, run_id)
    return run_id, c.store.checkpoint_records(run_id)


def trainer_restart(c: babysit.Client, run_id: int) -> dict:
    """The restart event the new process recorded once it loaded a checkpoint."""
    def event():
        found = c.events(run_id).query("kind == 'restarted' and source == 'trainer'")
        return found.iloc[-1].to_dict() if len(found) else None
    return wait_for(event, 60, "the trainer's restart event")


def test_client_restart_skips_a_truncated_latest_day(trainers, forked):
    run_id, records = crashed_with_days(forked, 4)
    c = forked.client
    bad, good = records[-1], records[-2]
    truncate(c.store.root / bad.path)

    c.restart(run_id)
    restart = trainer_restart(c, run_id)
    assert restart["detail"]["from_day"] == good.day and restart["step"] == good.step
    corrupt = c.events(run_id).query("kind == 'checkpoint_corrupt'")
    assert len(corrupt) == 1
    detail = corrupt.iloc[0].detail
    assert detail["day"] == bad.day and "bytes" in detail["error"]     # which day, and why
    trainers.wait_step(run_id, good.step + 25)
    assert c.run(run_id).status == "running"
    # the bad day belongs to the abandoned branch now; the live days all load
    everything = c.store.checkpoint_records(run_id, include_superseded=True)
    assert [r.superseded for r in everything if r.id == bad.id] == [True]
    for record in c.store.checkpoint_records(run_id):
        if record.path != bad.path:
            ckpt.load(c.store.root / record.path, record.sha256)
    c.stop(run_id)


def test_the_trainer_itself_falls_back_when_its_checkpoint_is_corrupt(trainers, forked):
    """The file goes bad after the restart was decided (here: the run row names it directly)."""
    run_id, records = crashed_with_days(forked, 4)
    c = forked.client
    bad, good = records[-1], records[-2]
    flip_a_bit(c.store.root / bad.path)
    resume = {"path": bad.path, "sha256": bad.sha256, "day": bad.day, "supersede": True}
    assert c.store.update_run(run_id, only_if_status=("crashed",), status="starting",
                              start_from=resume, pid=None, heartbeat=time.time())
    c.launcher.start(run_id, c.run(run_id).launch, c.store.root, None)

    restart = trainer_restart(c, run_id)
    assert restart["detail"]["from_day"] == good.day and restart["step"] == good.step
    corrupt = c.events(run_id).query("kind == 'checkpoint_corrupt'")
    assert len(corrupt) == 1 and corrupt.iloc[0].source == "trainer"
    detail = corrupt.iloc[0].detail
    assert detail["day"] == bad.day and "sha256" in detail["error"]
    assert detail["fallback_day"] == good.day
    assert not corrupt.iloc[0].superseded
    trainers.wait_step(run_id, good.step + 25)
    log = (c.store.root / "runs" / str(run_id) / "process.log").read_text()
    assert f"day {bad.day} is unusable" in log
    c.stop(run_id)


def test_rollback_and_fork_to_a_corrupt_day_are_refused_and_the_dashboard_stays_up(
        trainers, forked, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from babysit.ui import actions

    _, run_id = forked.start("--pace", "0.01", "--day", "20 steps")
    c = forked.client
    wait_for(lambda: len(c.checkpoints(run_id)) >= 3, 60, "day 2")
    day1 = c.store.checkpoint(run_id, 1)
    flip_a_bit(c.store.root / day1.path)
    count = "select count(*) from commands"
    before = c.store.read(lambda conn: conn.exec_driver_sql(count).scalar())
    runs_before = len(c.runs())

    with pytest.raises(babysit.CheckpointError, match=r"day 1 .*sha256"):
        c.rollback(run_id, day=1)
    with pytest.raises(babysit.CheckpointError, match=r"day 1 .*sha256"):
        c.fork(run_id, day=1)
    with pytest.raises(babysit.CheckpointError, match="day 1"):
        actions.rollback(c, run_id, "1", confirmed=True)
    assert c.store.read(lambda conn: conn.exec_driver_sql(count).scalar()) == before
    assert len(c.runs()) == runs_before
    assert c.rollback(run_id, day=0).status == "applied"     # a good day still works

    monkeypatch.setenv("BABYSIT_ROOT", str(trainers.root))
    at = AppTest.from_string("from babysit.ui.views import run as page\npage.render()\n",
                             default_timeout=30)
    at.query_params["run"] = str(run_id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value.startswith(f"Run #{run_id}")
    c.stop(run_id)
