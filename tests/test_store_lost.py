"""A store deleted under a live run: the trainer stops writing and says why, a later run in a new
store at the same place (which hands out the same run id) removes none of its files, and a
malformed database file is a StoreError (real trainer subprocess, real SQLite files)."""

from __future__ import annotations

import signal
import time

import pytest
import torch

import babysit
from babysit.errors import StoreError
from babysit.store import Store
from tests.conftest import wait_for

pytestmark = pytest.mark.slow


def test_deleting_the_store_under_a_live_run_stops_its_writes_and_keeps_its_files(trainers):
    root = trainers.root
    proc, orphan = trainers.start("--pace", "0.02", "--day", "10 steps")
    c = trainers.client
    wait_for(lambda: len(c.checkpoints(orphan)) >= 3, 90, "day 2")
    folder = root / "runs" / str(orphan)
    c.close()
    for suffix in ("", "-wal", "-shm"):
        (root / f"babysit.db{suffix}").unlink(missing_ok=True)
    log = root.parent / "trainer-0.log"
    wait_for(lambda: "was removed" in log.read_text(), 30, "the trainer to say why")
    assert "stops writing" in log.read_text() and proc.poll() is None    # paused, not dead
    # what the orphan holds once it noticed (it may have ended a day or two before the check)
    time.sleep(1.0)
    before = {p.name: p.stat().st_mtime for p in folder.glob("day*")}
    assert before

    # a later run in a new store at the same place gets the orphan's id
    run = babysit.init(project="later", root=root, day="5 steps")
    assert run.id == orphan
    model = torch.nn.Linear(2, 1)
    run.attach(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    for _ in run.loop(steps=12):
        run.log(later=1.0)
    run.finish()
    time.sleep(3)
    store = Store.open(root)
    assert [r.project for r in store.list_runs()] == ["later"]
    assert not {"loss", "wsum"} & set(store.metrics(orphan).name)     # nothing of the orphan
    later = store.checkpoint_records(orphan)
    assert later and all(r.path.startswith(f"runs/{orphan}.1/") for r in later)
    after = {p.name: p.stat().st_mtime for p in folder.glob("day*")}
    assert after == before          # the orphan's checkpoints: all there, none rewritten

    proc.send_signal(signal.SIGTERM)        # the user stops the orphan: rows go to a file
    assert proc.wait(timeout=60) == 0
    assert list(folder.glob("unwritten-*.tsv"))
    assert not {"loss", "wsum"} & set(store.metrics(orphan).name)
    store.close()


def test_a_malformed_database_file_is_a_store_error(tmp_path):
    (tmp_path / "babysit.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)
    with pytest.raises(StoreError, match="not a babysit store|damaged"):
        Store.open(tmp_path)
    with pytest.raises(StoreError):
        babysit.Client(tmp_path).runs()
