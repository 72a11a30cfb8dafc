"""In-process lifecycle of a Run: the names it takes, how it ends, what it leaves open."""

from __future__ import annotations

import time

import pytest
import torch

import babysit
from babysit.errors import InvalidValue
from babysit.store import Store

BAD_NAMES = ["a\x1b[2Jb", "line\nbreak", "bell\x07", "del\x7f", "csi\x9b31m", "rtl\u202eexe",
             "x" * 201]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_names_with_control_characters_or_too_long_are_refused_at_init(tmp_path, bad):
    for kwargs in ({"project": bad}, {"name": bad}, {"config": {bad: 1}}):
        with pytest.raises(InvalidValue) as info:
            babysit.init(root=tmp_path, **{"project": "p", **kwargs})
        assert repr(bad)[:40] in str(info.value)
    store = Store.open(tmp_path)
    assert store.list_runs() == []          # refused before anything was written
    store.close()


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_metric_names_are_checked_the_first_time_they_are_logged(tmp_path, bad):
    run = babysit.init(project="p", root=tmp_path, day="100 steps")
    run.attach(model=torch.nn.Linear(1, 1))
    with run:
        for _ in run.loop(steps=3):
            run.log(loss=1.0, **{"val/acc (top-1)": 0.5})
            with pytest.raises(InvalidValue) as info:
                run.log(**{bad: 1.0})
            assert repr(bad)[:40] in str(info.value)
    assert set(run.store.metrics(run.id).name) == {"loss", "val/acc (top-1)"}
    assert run.store.get_run(run.id).status == "finished"


def test_a_name_of_200_characters_is_fine(tmp_path):
    name = "n" * 200
    run = babysit.init(project=name, name=name, config={name: 1}, root=tmp_path)
    run.log(**{name: 1.0})
    run.finish()
    store = Store.open(tmp_path)
    record = store.get_run(run.id)
    assert (record.project, record.name, record.hp) == (name, name, {name: 1})
    store.close()


def test_finish_releases_every_file_and_thread(tmp_path):
    """A notebook or a sweep runs hundreds of runs in one process: each finish() gives back
    its store connections, its threads and its signal handler."""
    import os
    import signal
    import threading

    def cycle(i: int) -> None:
        run = babysit.init(project="fds", config={"lr": 0.1}, root=tmp_path, day="5 steps")
        model = torch.nn.Linear(2, 1)
        run.attach(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
        for _ in run.loop(steps=7):
            run.log(loss=float(i))
        run.finish()

    handler = signal.getsignal(signal.SIGTERM)
    cycle(0)
    fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
    for i in range(1, 50):
        cycle(i)
    assert len(os.listdir("/proc/self/fd")) <= fds
    assert threading.active_count() <= threads
    assert signal.getsignal(signal.SIGTERM) == handler
    store = Store.open(tmp_path)
    assert (store.list_runs()[-1].status, len(store.list_runs())) == ("finished", 50)
    store.close()


def test_a_command_queued_at_a_trials_last_day_is_cancelled_not_applied(tmp_path, monkeypatch):
    """A study's trial ends by itself once its last day is saved. A rollback (or a PBT exploit)
    that reaches the loop at that same step boundary must not restore an earlier day and then
    end there: the run finishes at its last day and the command is cancelled. (A CI run once
    had a PBT trial "finished" at day 5 of 8.)"""
    store = Store.open(tmp_path)
    run_id = store.create_run(project="p", name="trial", status="starting", config={},
                              hp={}, day_spec="10 steps", max_days=2)
    monkeypatch.setenv("BABYSIT_RUN_ID", str(run_id))
    run = babysit.init(project="p", root=tmp_path, day="10 steps")
    net = torch.nn.Linear(2, 1)
    run.attach(model=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    command = None
    with run:
        for step in run.loop(steps=100):
            run.log(loss=1.0 / (step + 1))
            if step == 19:          # the last step of day 2: the command waits at its end
                command = babysit.Client(tmp_path).rollback(run.id, day=0, wait=False).id
                deadline = time.monotonic() + 10
                while not run.state.outbox.inbox() and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert run.state.outbox.commands, "the rollback did not reach the loop"
    record = store.get_run(run_id)
    assert (record.status, record.day, record.step) == ("finished", 2, 20)
    assert store.get_command(command).status == "cancelled"
    assert store.events(run_id, kind="rollback").empty
    store.close()
