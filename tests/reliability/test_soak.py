"""Many writers: 16 real training processes log every step into one SQLite store while a reader
polls it like the dashboard. Every row a trainer logged is there exactly once, nobody sees
"database is locked", no run crashes and the WAL file stays bounded.

``BABYSIT_SOAK_SECONDS`` sets how long each trainer logs (default 60; try 600 for a long soak).
The trainers are forked from a process that has imported torch already (see conftest.py), so
they all log at the same time instead of spending the first minute importing torch.
"""

from __future__ import annotations

import os
import threading
import time

import psutil
import pytest

import babysit
from tests.conftest import TRAINERS, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SECONDS = float(os.environ.get("BABYSIT_SOAK_SECONDS", "60"))
WRITERS = 16
METRICS = 4                 # per step, besides the counter n
WAL_BOUND = 64 * 2**20


class Reader(threading.Thread):
    """Polls like the dashboard: the runs table and the curves of a few runs, every 0.5 s."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.client = babysit.Client(root, source="ui")
        self.wal = root / "babysit.db-wal"
        self.done = threading.Event()
        self.errors: list[str] = []
        self.polls = 0
        self.wal_sizes: list[int] = []
        self.slowest = 0.0

    def run(self) -> None:
        while not self.done.is_set():
            started = time.monotonic()
            try:
                runs = self.client.runs()
                for run_id in list(runs["id"])[self.polls % 4::4][:3]:
                    self.client.metrics(int(run_id), include_superseded=True)
                self.polls += 1
            except Exception as exc:   # any error a dashboard user would see
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.slowest = max(self.slowest, time.monotonic() - started)
            if self.wal.exists():
                self.wal_sizes.append(self.wal.stat().st_size)
            self.done.wait(0.5)
        self.client.close()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sixteen_writers_and_a_reader(trainers, zygote, tmp_path):
    root = trainers.root
    babysit.Client(root).close()                 # the store exists before 16 processes race
    pids, logs = [], []
    reader = Reader(root)
    started = time.monotonic()
    try:
        for i in range(WRITERS):
            logs.append(tmp_path / f"soak-{i}.log")
            pids.append(zygote.spawn(
                [TRAINERS / "soak.py", "--seconds", str(SECONDS), "--metrics", str(METRICS),
                 "--count-file", tmp_path / f"count-{i}", "--project", f"soak{i}"],
                trainers.env(), tmp_path, logs[-1]))
        reader.start()
        wait_for(lambda: all(gone(pid) for pid in pids), SECONDS + 240, "the trainers to end")
    finally:
        reader.done.set()
    reader.join(timeout=30)
    elapsed = time.monotonic() - started

    outputs = {log.name: log.read_text() for log in logs}
    assert not [n for n, o in outputs.items() if "locked" in o or "Traceback" in o], outputs
    # every trainer ended normally: it wrote how many steps it logged
    assert all((tmp_path / f"count-{i}").exists() for i in range(WRITERS)), outputs
    assert not reader.errors, reader.errors[:5]
    assert reader.polls >= 10                 # it kept polling (every 0.5 s when it can)

    c = trainers.client
    runs = c.runs()
    assert len(runs) == WRITERS and set(runs.status) == {"finished"}
    total = 0
    for i in range(WRITERS):
        count = int((tmp_path / f"count-{i}").read_text())
        run_id = int(runs[runs.project == f"soak{i}"].id.iloc[0])
        rows = c.metrics(run_id, include_superseded=True)
        counter = rows[rows.name == "n"].value
        assert sorted(counter.astype(int)) == list(range(count)), f"run {run_id}: gaps or doubles"
        sizes = rows.groupby("name").size()
        assert (sizes[[f"m{k}" for k in range(METRICS)] + ["loss", "n"]] == count).all(), sizes
        total += len(rows)
    assert not list(root.glob("runs/*/unwritten-*.tsv"))
    assert c.store.integrity_check() == "ok"
    biggest = max(reader.wal_sizes, default=0)
    assert biggest < WAL_BOUND, f"the WAL grew to {biggest / 2**20:.1f} MB"
    print(f"\n{WRITERS} writers, {SECONDS:.0f} s each: {total} metric rows "
          f"({total / elapsed:.0f}/s over {elapsed:.0f} s); WAL at most "
          f"{biggest / 2**20:.1f} MB; reader: {reader.polls} polls, slowest {reader.slowest:.2f} s")
