"""Kill at any moment: SIGKILL real training processes at random moments, then check the store.

Two runs are killed and restarted over and over, side by side (one per core):

- run A (small checkpoints) is killed at seeded random moments: while it starts (init,
  clean-up, loading its checkpoint) or while it trains;
- run B carries a 32 MB buffer, so writing a day takes a while, and is killed the moment a
  temporary checkpoint file (``.dayNNNN.bB.pt.<pid>.tmp``) appears in its folder.

Restarts go through ``Client.restart``, with a launcher that forks the trainer from a process
that has imported torch already (see conftest.py), so a restart costs a fraction of a second
instead of several: the trainer still runs as its own process, from its script, and is
SIGKILLed like any other.

After every kill: every checkpoint the store lists is complete and loads, the store passes
``PRAGMA integrity_check``; after every restart: the process resumes from the last listed day
(its ``restart`` event and step say so) and the files the killed process left half-written are
gone. ``BABYSIT_FAULT_SEED`` changes the seed.
"""

from __future__ import annotations

import os
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import babysit
from babysit import checkpoint as ckpt
from tests.conftest import wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SEED = int(os.environ.get("BABYSIT_FAULT_SEED", "4"))
RANDOM_TRIALS = 20          # run A: random moments
IN_WRITE_TRIALS = 14        # run B: the moment a checkpoint write starts
MIN_IN_WRITE = 10           # of which at least this many must land inside the write


def leftovers(folder: Path) -> set[Path]:
    """Temporary files and day files in a run's folder (listed or not)."""
    return {p for p in folder.iterdir()
            if (p.name.startswith(".") and p.name.endswith(".tmp")) or p.name.startswith("day")}


def checkpoint_tmp(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".day") and ".pt." in p.name
            and p.name.endswith(".tmp")]


class Trials:
    """Kills one run's process again and again; checks the store after each kill and restart."""

    def __init__(self, root: Path, run_id: int, pid: int, rng: random.Random,
                 launcher: babysit.launcher.Launcher):
        self.c = babysit.Client(root, launcher=launcher)
        self.run_id, self.pid, self.rng = run_id, pid, rng
        self.folder = ckpt.run_dir(self.c.store.root, run_id)
        self.loaded: set[str] = set()      # listed checkpoints already loaded in full
        self.stale: set[Path] = set()      # files a killed process left; the next start removes
        self.expected: babysit.store.CheckpointRecord | None = None   # what a restart resumes from
        self.restarts_seen = 0
        self.resumes_checked = 0
        self.kills = 0
        self.training_kills = 0

    # ---------------------------------------------------------------- the kill and the checks
    def kill(self, sent: bool = False) -> None:
        """SIGKILL the run's process (unless ``sent`` already), then check the store."""
        if not sent:
            os.kill(self.pid, signal.SIGKILL)
        self.kills += 1
        wait_for(lambda: self.c.check_runs(self.run_id) or
                 self.c.run(self.run_id).status == "crashed", 15, "crashed")
        self.check_store()
        listed = {(self.c.store.root / r.path) for r in
                  self.c.store.checkpoint_records(self.run_id, include_superseded=True)}
        listed |= {p.with_suffix(".json") for p in listed}
        self.stale |= leftovers(self.folder) - listed

    def check_store(self) -> None:
        assert self.c.store.integrity_check() == "ok"
        records = self.c.store.checkpoint_records(self.run_id, include_superseded=True)
        assert records, "day 0 is listed before the first kill"
        for record in records:
            path = ckpt.safe_path(self.c.store.root, record.path)
            if record.path in self.loaded:
                # loaded in full once; still there, same size, manifest intact
                assert path.stat().st_size == record.size, record.path
                assert path.with_suffix(".json").exists(), record.path
                continue
            payload = ckpt.load(path, record.sha256)   # complete: manifest, size, hash, loads
            assert (payload["day"], payload["step"]) == (record.day, record.step)
            self.loaded.add(record.path)

    def trainer_restarts(self):
        return self.c.events(self.run_id).query("kind == 'restarted' and source == 'trainer'")

    def restart(self) -> None:
        self.expected = self.c.store.checkpoint(self.run_id)
        # the killed processes wrote all they will: only a newer restart event is this one's
        self.restarts_seen = len(self.trainer_restarts())
        self.pid = self.c.restart(self.run_id)

    def check_resumed(self) -> bool:
        """Once the new process is up: it resumed from the expected day, leftovers are gone."""
        restarts = self.trainer_restarts()
        if len(restarts) <= self.restarts_seen:
            return False
        assert len(restarts) == self.restarts_seen + 1
        self.restarts_seen = len(restarts)
        event = restarts.iloc[-1]
        assert self.expected is not None
        assert event.detail["from_day"] == self.expected.day, (event.detail, self.expected)
        assert event.step == self.expected.step
        self.resumes_checked += 1
        # the process cleans its folder before it reports running; the restart event comes later
        assert not (self.stale & leftovers(self.folder)), sorted(p.name for p in self.stale)
        self.stale = set()
        return True

    def wait_resumed(self, timeout: float = 60.0) -> None:
        wait_for(self.check_resumed, timeout, f"run {self.run_id} to resume")

    # ---------------------------------------------------------------- the two kinds of trial
    def random_moment(self) -> None:
        """Restart, then kill during start-up (a third of the trials) or while training."""
        self.restart()
        if self.rng.random() < 1 / 3:
            time.sleep(self.rng.uniform(0.0, 0.8))       # init, clean-up, resume
            self.check_resumed()
        else:
            self.wait_resumed()
            time.sleep(self.rng.uniform(0.0, 1.5))       # a few days of training
            self.training_kills += 1
        self.kill()

    def in_write(self, restart: bool = True) -> bool:
        """Restart, let 0 or 1 days finish, kill as the next checkpoint write starts.

        Returns whether the kill landed inside the write (its temporary file is still there).
        """
        if restart:
            self.restart()
            self.wait_resumed()
        skip = self.rng.choice([0, 0, 1])
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while True:
            found = [p for p in checkpoint_tmp(self.folder) if p.name not in seen]
            if found and len(seen) == skip:
                os.kill(self.pid, signal.SIGKILL)
                break
            seen |= {p.name for p in found}
            assert time.monotonic() < deadline, "no checkpoint write within 60 s"
            time.sleep(0.002)
        landed = bool(checkpoint_tmp(self.folder))
        self.kill(sent=True)
        return landed


def test_kill_at_any_moment(trainers, forked):
    started = time.monotonic()
    pid_a, run_a = forked.start("--pace", "0.01", "--day", "20 steps", "--project", "a")
    pid_b, run_b = forked.start("--pace", "0.01", "--day", "15 steps", "--big-mb", "32",
                                "--project", "b")
    c = trainers.client
    for run_id in (run_a, run_b):
        wait_for(lambda r=run_id: len(c.checkpoints(r)) >= 2, 60, "day 1")
    launcher = forked.client.launcher
    a = Trials(trainers.root, run_a, pid_a, random.Random(SEED), launcher)
    b = Trials(trainers.root, run_b, pid_b, random.Random(SEED + 1), launcher)

    def run_a_trials() -> None:
        time.sleep(a.rng.uniform(0, 1.0))
        a.kill()
        for _ in range(RANDOM_TRIALS - 1):
            a.random_moment()

    def run_b_trials() -> int:
        landed = b.in_write(restart=False)      # the first process, started above
        for _ in range(IN_WRITE_TRIALS - 1):
            landed += b.in_write()
        return landed

    with ThreadPoolExecutor(2) as pool:
        fa = pool.submit(run_a_trials)
        fb = pool.submit(run_b_trials)
        fa.result()
        landed = fb.result()

    assert a.kills + b.kills >= 30
    assert landed >= MIN_IN_WRITE, f"only {landed} of {b.kills} kills landed inside a write"
    assert a.resumes_checked >= a.training_kills > 0
    assert b.resumes_checked == IN_WRITE_TRIALS - 1

    # a last restart of each: it resumes, trains on, and the live curve has each step once
    for trials in (a, b):
        trials.restart()
        trials.wait_resumed()
        step = trials.expected.step if trials.expected else 0
        wait_for(lambda t=trials, s=step: t.c.run(t.run_id).step > s + 20, 60, "training on")
        c.stop(trials.run_id)
        live = c.metrics(trials.run_id, ["loss"])
        assert live.step.is_unique
        assert live.step.max() + 1 == len(live)      # no step lost: 0, 1, 2, ... without gaps
        trials.check_store()
        trials.c.close()
    print(f"\n{a.kills + b.kills} kills ({landed} inside a checkpoint write) in "
          f"{time.monotonic() - started:.0f} s")
