"""The outbox and the store's records, in process against a real SQLite store.

What must hold: a command's reply never waits behind a checkpoint write; a listed checkpoint is
always complete and its day means cover exactly the rows before it; a record the store refuses
is skipped with an event and blocks nothing; the heartbeat never runs ahead of the rows; and
close() leaves every row in exactly one place, the store or the unwritten file.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from babysit.store import (
    CheckpointRow,
    CommandOutcome,
    EventRow,
    MetricRows,
    RunUpdate,
    Store,
    Supersede,
)
from babysit.trainer.outbox import Outbox
from babysit.trainer.saver import SaveJob
from tests.conftest import wait_for


class Position:
    """Where a pretend loop stands: what the outbox's ``where`` reports."""

    def __init__(self) -> None:
        self.step, self.day, self.branch = 0, 1, 0

    def __call__(self) -> tuple[int, int, int]:
        return self.step, self.day, self.branch


def _setup(tmp_path: Path, busy_timeout_s: float = 5.0, **intervals: float):
    root = tmp_path / "store"
    root.mkdir(exist_ok=True)
    store = Store(f"sqlite:///{root / 'babysit.db'}", root, busy_timeout_s=busy_timeout_s)
    run_id = store.create_run(project="p", name="n", config={}, hp={}, day_spec="10 steps")
    folder = root / "runs" / str(run_id)
    folder.mkdir(parents=True)
    where = Position()
    outbox = Outbox(store, run_id, where, folder, **{"poll_s": 0.01, "flush_s": 0.02,
                                                     "heartbeat_s": 0.05, "system_s": None, **intervals})
    return store, run_id, outbox, where


def _row(run_id: int, day: int, step: int, path: str) -> CheckpointRow:
    return CheckpointRow(run_id, day, step, 0, time.time(), path, 0, "", {"lr": 0.1}, {})


def _log(outbox: Outbox, steps, name: str = "loss", value=lambda s: float(s), day: int = 1):
    for s in steps:
        outbox.queue.append((s, day, name, value(s), time.time(), 0))


# ------------------------------------------------------------------------------ Store.apply
def test_apply_writes_a_batch_in_order_in_one_transaction(tmp_path):
    store, run_id, _, _ = _setup(tmp_path)
    refused = store.apply([
        MetricRows(run_id, ((0, 1, "loss", 1.0, 0.0, 0), (1, 1, "loss", math.nan, 0.0, 0))),
        EventRow(run_id, 1, 1, "nudge", "ui", {"lr": {"old": 0.1, "new": 0.05}}, 0),
        RunUpdate(run_id, {"hp": {"lr": 0.05}, "step": 2}),
        CheckpointRow(run_id, 1, 2, 0, 1.0, "runs/1/day0001.b0.pt", 10, "ab", {"lr": 0.05},
                      {"loss": 1.0}),
    ])
    assert refused == []
    assert store.metrics(run_id).step.tolist() == [0, 1]
    assert math.isnan(store.metrics(run_id).value.iloc[1])
    record = store.get_run(run_id)
    assert (record.hp, record.step, record.day) == ({"lr": 0.05}, 2, 1)   # the row's day
    assert store.checkpoint(run_id, 1).metrics == {"loss": 1.0}
    assert store.events(run_id).kind.tolist() == ["nudge"]


def test_a_refused_record_is_skipped_and_the_rest_of_its_batch_written(tmp_path):
    store, run_id, _, _ = _setup(tmp_path)
    big = 2**70      # no SQLite integer holds it
    refused = store.apply([
        MetricRows(run_id, ((0, 1, "loss", 1.0, 0.0, 0), (big, 1, "loss", 2.0, 0.0, 0),
                            (2, 1, "loss", 3.0, 0.0, 0))),
        EventRow(run_id, 0, 1, "note", "python", {"what": object()}, 0),   # not JSON
        RunUpdate(run_id, {"step": 3}),
    ])
    assert [type(r.record).__name__ for r in refused] == ["MetricRows", "EventRow"]
    assert refused[0].record.rows == ((big, 1, "loss", 2.0, 0.0, 0),)     # only the bad row
    assert "JSON" in refused[1].error
    assert store.metrics(run_id).value.tolist() == [1.0, 3.0]
    assert store.get_run(run_id).step == 3


def test_a_command_outcome_writes_its_effects_only_if_the_command_was_pending(tmp_path):
    store, run_id, _, _ = _setup(tmp_path)
    command = store.post_command(run_id, "nudge", {"hp": {"lr": 0.05}}, "ui")
    outcome = CommandOutcome(command, "applied", 7, None, (
        EventRow(run_id, 7, 1, "nudge", "ui", {"lr": {"old": 0.1, "new": 0.05}}, 0),
        RunUpdate(run_id, {"hp": {"lr": 0.05}})))
    store.apply([outcome])
    store.apply([outcome])          # applied once: the second time it is no longer pending
    assert store.get_command(command).status == "applied"
    assert store.get_command(command).step == 7
    assert store.events(run_id).kind.tolist() == ["nudge"]
    # a refused effect does not undo the command's outcome
    second = store.post_command(run_id, "pause", {}, "ui")
    refused = store.apply([CommandOutcome(second, "applied", 8, None, (
        EventRow(run_id, 8, 1, "pause", "ui", {"x": object()}, 0),
        RunUpdate(run_id, {"status": "paused"})))])
    assert len(refused) == 1
    assert store.get_command(second).status == "applied"
    assert store.get_run(run_id).status == "paused"


def test_supersede_marks_what_was_written_before_it_from_a_step_on(tmp_path):
    store, run_id, _, _ = _setup(tmp_path)
    store.apply([MetricRows(run_id, tuple((s, 1, "loss", 1.0, 0.0, 0) for s in range(10))),
                 EventRow(run_id, 6, 1, "nudge", "ui", {}, 0),
                 _row(run_id, 0, 0, "a"), _row(run_id, 1, 5, "b"), _row(run_id, 2, 8, "c")])
    store.apply([Supersede(run_id, 5), EventRow(run_id, 5, 2, "rollback", "ui", {}, 1),
                 MetricRows(run_id, ((5, 2, "loss", 2.0, 0.0, 1),))])
    rows = store.metrics(run_id, include_superseded=True)
    assert rows[rows.superseded].step.tolist() == [5, 6, 7, 8, 9]
    assert store.metrics(run_id).step.tolist() == [0, 1, 2, 3, 4, 5]
    assert [r.day for r in store.checkpoint_records(run_id)] == [0, 1]   # the day at step 5 stays
    events = store.events(run_id)
    assert events.set_index("kind").superseded.to_dict() == {"nudge": True, "rollback": False}


# --------------------------------------------------------------------------------- Outbox
def test_a_commands_reply_does_not_wait_behind_a_checkpoint_being_written(tmp_path):
    store, run_id, outbox, where = _setup(tmp_path)
    outbox.start()
    _log(outbox, range(10))
    job = SaveJob(tmp_path / "day0001.b0.pt", {})          # the saver is still writing it
    outbox.day_end(job, _row(run_id, 1, 10, "runs/1/day0001.b0.pt"))
    _log(outbox, range(10, 13), value=lambda s: 100.0, day=2)
    command = store.post_command(run_id, "nudge", {"hp": {"lr": 0.05}}, "ui")
    outbox.put(CommandOutcome(command, "applied", 13, None,
                              (EventRow(run_id, 13, 2, "nudge", "ui", {}, 0),)))
    wait_for(lambda: store.get_command(command).status == "applied", 10, "the nudge's reply")
    # the rows after the day's end are written too; the checkpoint is not listed yet
    assert store.metrics(run_id).step.tolist() == list(range(13))
    assert store.checkpoint(run_id, 1) is None
    job.size, job.sha = 123, "f" * 64
    job.done.set()
    outbox.wake.set()
    listed = wait_for(lambda: store.checkpoint(run_id, 1), 10, "the checkpoint row")
    assert (listed.size, listed.sha256, listed.step) == (123, "f" * 64, 10)
    assert listed.metrics == {"loss": pytest.approx(4.5)}   # the mean of steps 0-9 only
    assert store.get_run(run_id).day == 1
    assert outbox.close() == 0


def test_a_rewind_waits_for_the_checkpoint_it_may_supersede(tmp_path):
    store, run_id, outbox, _ = _setup(tmp_path)
    outbox.start()
    _log(outbox, range(20))
    job = SaveJob(tmp_path / "day0002.b0.pt", {})
    outbox.day_end(job, _row(run_id, 2, 20, "runs/1/day0002.b0.pt"))
    outbox.rewind(Supersede(run_id, 10), EventRow(run_id, 10, 2, "rollback", "ui", {}, 1))
    time.sleep(0.3)
    assert "rollback" not in store.events(run_id).kind.tolist()
    job.done.set()
    outbox.wake.set()
    wait_for(lambda: "rollback" in store.events(run_id).kind.tolist(), 10, "the rollback")
    record = store.checkpoint_records(run_id, include_superseded=True)[-1]
    assert (record.day, record.superseded) == (2, True)   # listed, then superseded: in order
    outbox.close()


def test_a_failed_save_is_an_event_not_a_listed_checkpoint(tmp_path):
    store, run_id, outbox, _ = _setup(tmp_path)
    outbox.start()
    job = SaveJob(tmp_path / "day0001.b0.pt", {})
    job.error = "OSError: [Errno 28] No space left on device"
    job.done.set()
    outbox.day_end(job, _row(run_id, 1, 10, "runs/1/day0001.b0.pt"))
    outbox.close()
    assert store.checkpoint_records(run_id) == []
    failed = store.events(run_id).query("kind == 'checkpoint_failed'").iloc[0]
    assert failed.detail == {"day": 1, "error": job.error}


def test_a_refused_record_becomes_an_event_and_blocks_nothing(tmp_path):
    store, run_id, outbox, where = _setup(tmp_path)
    outbox.start()
    command = store.post_command(run_id, "pause", {}, "ui")
    _log(outbox, range(5))
    outbox.put(EventRow(run_id, 5, 1, "note", "python", {"bad": object()}, 0),
               CommandOutcome(command, "applied", 5, None, ()))
    _log(outbox, range(5, 8))
    wait_for(lambda: "store_refused" in store.events(run_id).kind.tolist(), 10, "the event")
    assert store.get_command(command).status == "applied"
    wait_for(lambda: len(store.metrics(run_id)) == 8, 10, "the rows behind it")
    refusal = store.events(run_id).query("kind == 'store_refused'").iloc[0]
    assert refusal.detail["record"] == "EventRow" and "JSON" in refusal.detail["error"]
    assert outbox.close() == 0


def test_the_heartbeat_never_reports_a_step_whose_rows_are_not_stored(tmp_path):
    store, run_id, outbox, where = _setup(tmp_path, heartbeat_s=0.01, flush_s=0.05)
    outbox.start()
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            step = store.get_run(run_id).step
            rows = store.metrics(run_id)
            seen.append((step, int(rows.step.max()) + 1 if len(rows) else 0))
    watcher = threading.Thread(target=watch)
    watcher.start()
    for s in range(300):                  # a loop: log at step s, then the boundary
        _log(outbox, [s])
        where.step = s + 1
        time.sleep(0.001)
    time.sleep(0.3)
    stop.set()
    watcher.join()
    outbox.close()
    assert any(step > 0 for step, _ in seen)
    assert all(step <= logged for step, logged in seen), [p for p in seen if p[0] > p[1]][:3]


def test_a_heartbeat_commits_with_the_rows_around_it_in_one_history_write(tmp_path):
    """The writer's cost is mostly per history write: a heartbeat between rows must not cut a
    batch's rows in two writes (it did once a second, in every batch)."""
    from babysit.trainer.outbox import Heartbeat
    store, run_id, outbox, _ = _setup(tmp_path)
    _log(outbox, range(5))
    outbox.queue.append(Heartbeat(5))
    _log(outbox, range(5, 9))
    batch = outbox._drain()
    assert [type(r).__name__ for r in batch] == ["RunUpdate", "MetricRows"]
    assert [r[0] for r in batch[1].rows] == list(range(9))
    assert batch[0].values["step"] == 5
    store.apply(batch)
    assert store.get_run(run_id).step == 5 and len(store.metrics(run_id)) == 9


def _lock(store_root: Path) -> tuple[sa.Connection, sa.Engine]:
    """Another process's long write transaction: the store is locked until released."""
    engine = sa.create_engine(f"sqlite:///{store_root / 'babysit.db'}",
                              connect_args={"isolation_level": None})
    conn = engine.connect()
    conn.exec_driver_sql("BEGIN IMMEDIATE")
    return conn, engine


def test_close_saves_what_the_locked_store_would_not_take_and_nothing_twice(tmp_path):
    store, run_id, outbox, _ = _setup(tmp_path, busy_timeout_s=0.05)
    outbox.start()
    _log(outbox, range(5))
    wait_for(lambda: len(store.metrics(run_id)) == 5, 10, "the first rows")
    conn, engine = _lock(store.root)
    _log(outbox, range(5, 12))
    time.sleep(0.3)                     # the writer tries, fails, and keeps the batch
    unwritten = outbox.close()          # still locked: the writer gives up and saves the rows
    conn.exec_driver_sql("ROLLBACK")
    conn.close()
    engine.dispose()
    assert unwritten == 7
    [saved] = list(outbox.folder.glob("unwritten-*.tsv"))
    lines = saved.read_text().splitlines()
    assert len(lines) == 1 + unwritten
    in_file = {int(line.split("\t")[0]) for line in lines[1:]}
    in_store = set(store.metrics(run_id).step)
    assert in_file == set(range(5, 12)) and in_store == set(range(5))
    time.sleep(0.2)                     # the writer is gone: nothing arrives late
    assert set(store.metrics(run_id).step) == in_store


def test_a_store_locked_for_a_while_gets_every_row_once(tmp_path):
    store, run_id, outbox, _ = _setup(tmp_path, busy_timeout_s=0.05)
    outbox.start()
    conn, engine = _lock(store.root)
    _log(outbox, range(50))
    time.sleep(0.3)
    conn.exec_driver_sql("ROLLBACK")
    conn.close()
    engine.dispose()
    assert outbox.close() == 0
    assert store.metrics(run_id).step.tolist() == list(range(50))
    assert not list(outbox.folder.glob("unwritten-*.tsv"))


# ------------------------------------------------------------------------------ commands
def _steps(outbox: Outbox, seconds: float, until=lambda: False) -> float:
    """A pretend loop: a step boundary every millisecond asking the inbox, for ``seconds`` or
    until ``until()``; returns the longest time one ``inbox()`` took."""
    slowest, end = 0.0, time.monotonic() + seconds
    while time.monotonic() < end and not until():
        t = time.perf_counter()
        outbox.inbox()
        slowest = max(slowest, time.perf_counter() - t)
        time.sleep(0.001)
    return slowest


def test_the_loop_asks_for_commands_so_the_writer_need_not_wake_for_them(tmp_path):
    """On SQLite the loop's own step boundaries ask which commands are pending (a query that
    never waits); the writer no longer wakes every poll to ask, yet a command arrives within
    a poll of being posted."""
    store, run_id, outbox, _ = _setup(tmp_path, poll_s=0.02, heartbeat_s=0.5)
    outbox.start()
    _steps(outbox, 0.3)
    posted = time.monotonic()
    command = store.post_command(run_id, "nudge", {"hp": {"lr": 0.05}}, "ui")
    _steps(outbox, 5, until=lambda: bool(outbox.commands))
    arrived = time.monotonic() - posted
    assert [c.id for c in outbox.commands] == [command]
    assert arrived < 0.25, f"the command took {arrived:.3f} s to reach the loop"
    _steps(outbox, 1.0)
    # about 1.5 s: a safety poll a heartbeat (3-4) and one for the new command, not one
    # every 20 ms (75)
    assert outbox.writer_polls <= 8, outbox.writer_polls
    assert [c.id for c in outbox.commands] == [command]      # handed over once
    assert outbox.close() == 0


def test_a_command_still_arrives_when_the_loop_cannot_ask(tmp_path):
    """The loop's probe fails (here its file is not a babysit store): the writer's own poll,
    once a heartbeat, hands the command over all the same."""
    store, run_id, outbox, _ = _setup(tmp_path, poll_s=0.02, heartbeat_s=0.3)
    from babysit.store import LoopProbe
    outbox._probe = LoopProbe(tmp_path / "not-a-store.db", run_id)
    outbox.start()
    command = store.post_command(run_id, "pause", {}, "ui")
    _steps(outbox, 5, until=lambda: bool(outbox.commands))
    assert [c.id for c in outbox.commands] == [command]
    assert outbox.close() == 0


def test_a_locked_database_never_holds_up_the_loop(tmp_path):
    """The probe runs on the training loop's thread, so it must not wait for a lock: with its
    database held by another connection (exclusive locking mode), each ask fails at once and
    the loop goes on; once the lock is gone the loop's asks find the command again."""
    import sqlite3

    from babysit.store import LoopProbe
    store, run_id, outbox, _ = _setup(tmp_path, poll_s=0.02, heartbeat_s=60)
    locked = tmp_path / "locked.db"
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("CREATE TABLE commands (id INTEGER PRIMARY KEY, run_id INT, status TEXT)")
    holder.execute("INSERT INTO commands VALUES (7, ?, 'pending')", (run_id,))
    probe = LoopProbe(locked, run_id)
    with pytest.raises(Exception, match="locked"):
        probe.ids()
    outbox._probe = probe
    outbox.start()
    slowest = _steps(outbox, 0.5)
    assert slowest < 0.05, f"one inbox() took {slowest:.3f} s behind the lock"
    assert not outbox._read_commands
    holder.close()                      # the lock goes with its connection
    _steps(outbox, 5, until=lambda: outbox._announced == {7})
    assert outbox._announced == {7}
    assert outbox.close() == 0
