"""A loop that logs faster than the store writes: bounded memory, a throttled event, no row
lost, and finish() returns only when every row is in the store (issue 13, item 3)."""

from __future__ import annotations

import threading
import time

import numpy as np

import babysit
from babysit.store import Store
from babysit.trainer.outbox import Outbox
from tests.trainer.test_outbox import Position


def test_finish_under_a_flood_loses_nothing_and_says_the_loop_waited(tmp_path):
    """A real Run in a tight loop: 10 scalars a step for 3 s, far faster than any store."""
    run = babysit.init(project="flood", day="1000000 steps", root=tmp_path)
    outbox = run._state.outbox
    names = [f"m{i}" for i in range(10)]
    logged = 0
    deadline = time.monotonic() + 3.0
    for step in run.loop(steps=10**9):
        run.log(**{n: float(step + i) for i, n in enumerate(names)})
        logged += 10
        if step % 1000 == 0 and time.monotonic() > deadline:
            break
    run.finish()
    assert outbox.peak_queued <= outbox.max_queued + 64          # bounded, whatever the rate
    store = Store.open(tmp_path, create=False)
    try:
        df = store.metrics(run.id)
        df = df[~df.name.str.startswith("sys/")]     # the trainer's own CPU / memory samples
        assert len(df) == logged and outbox.unwritten == 0        # every row, in the store
        for n in names[:2]:
            steps = df[df.name == n].step.to_numpy()
            np.testing.assert_array_equal(steps, np.arange(len(steps)))
        events = store.events(run.id)
        throttled = events[events.kind == "throttled"]
        if outbox.throttled_s > 0:
            assert len(throttled) >= 1
            assert sum(d["seconds"] for d in throttled.detail) > 0
        else:     # a machine fast enough to keep up at this rate: nothing to say
            assert throttled.empty
        assert store.get_run(run.id).status == "finished"
    finally:
        store.close()


def test_the_queue_stays_bounded_and_the_loop_waits_while_the_writer_catches_up(tmp_path):
    """The outbox alone with a small bound: the loop (this thread) waits, the writer drains,
    every row arrives once, and the wait is recorded as an event."""
    root = tmp_path / "store"
    root.mkdir()
    store = Store(f"sqlite:///{root / 'babysit.db'}", root)
    run_id = store.create_run(project="p", name="n", config={}, hp={}, day_spec="10 steps")
    folder = root / "runs" / str(run_id)
    folder.mkdir(parents=True)
    outbox = Outbox(store, run_id, Position(), folder, poll_s=0.01, flush_s=0.02,
                    heartbeat_s=0.05, system_s=None, max_queued=5_000, max_batch_rows=2_000)
    outbox.start()
    n = 60_000
    peak = 0
    for s in range(n):
        outbox.queue.append((s, 1, "loss", float(s), time.time(), 0))
        if len(outbox.queue) > outbox.max_queued:
            outbox.throttle()
        peak = max(peak, len(outbox.queue))
    assert outbox.close() == 0
    assert peak <= 5_000 + 2                       # the event and a heartbeat at most
    assert outbox.throttled_s > 0
    assert store.metrics(run_id).step.tolist() == list(range(n))
    events = store.events(run_id)
    assert "throttled" in set(events.kind)
    store.close()


def test_a_dead_store_does_not_hold_the_loop_nor_fill_memory(tmp_path):
    """The store is locked by another process for good: once the writer has failed a few
    times, a full queue's rows go to the unwritten file; the loop is never stuck, and at close
    every row is in exactly one place."""
    import sqlite3

    root = tmp_path / "store"
    root.mkdir()
    store = Store(f"sqlite:///{root / 'babysit.db'}", root, busy_timeout_s=0.05)
    run_id = store.create_run(project="p", name="n", config={}, hp={}, day_spec="10 steps")
    folder = root / "runs" / str(run_id)
    folder.mkdir(parents=True)
    outbox = Outbox(store, run_id, Position(), folder, poll_s=0.01, flush_s=0.02,
                    heartbeat_s=0.05, system_s=None, max_queued=2_000, max_batch_rows=500, max_wait_s=0.5)
    blocker = sqlite3.connect(root / "babysit.db", timeout=0.05)
    blocker.execute("BEGIN IMMEDIATE")            # holds the write lock until we let go
    outbox.start()
    n = 20_000
    started = time.monotonic()
    for s in range(n):
        outbox.queue.append((s, 1, "loss", float(s), time.time(), 0))
        if len(outbox.queue) > outbox.max_queued:
            outbox.throttle()
    loop_s = time.monotonic() - started
    assert loop_s < 30                            # it waited a while, then went on
    assert outbox.unwritten > 0
    done = threading.Event()
    threading.Thread(target=lambda: (outbox.close(), done.set()), daemon=True).start()
    assert done.wait(120)
    blocker.rollback()
    blocker.close()
    in_store = store.metrics(run_id)
    lines = [line.split("\t") for p in folder.glob("unwritten-*.tsv")
             for line in p.read_text().splitlines()[1:]]
    assert len(lines) == outbox.unwritten
    # the loop's rows (the writer adds its own system samples beside them)
    in_file = [int(parts[0]) for parts in lines if parts[2] == "loss"]
    loss = in_store[in_store.name == "loss"].step.tolist()
    assert sorted(loss + in_file) == list(range(n))     # each row exactly once
    store.close()
