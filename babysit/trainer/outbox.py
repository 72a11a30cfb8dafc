"""The outbox: everything the loop thread tells the store, written in order by one thread.

Protocol (the loop thread on the left, the writer thread on the right):

- ``queue`` is a deque the loop appends to and only the writer pops from. It holds, in the order
  the loop produced them: metric tuples ``(step, day, name, value, time, branch)`` (``run.log``
  appends them directly: the hot path), store records (``babysit.store.outbox``: events, run
  updates, command outcomes), and three markers: a day's end (its checkpoint ``SaveJob``), a
  rewind (records that restart the day: rollback, exploit, restart), and a heartbeat.
- The writer drains the queue into a batch (consecutive tuples become one ``MetricRows``; a
  heartbeat does not cut them, as it commits with them) and hands it to ``Store.apply``: one
  transaction. A batch the store cannot take now (locked, gone)
  is retried, before anything newer, until it goes in; a record the store refuses is skipped with
  a ``store_refused`` event and the rest of its batch is written.
- A day's checkpoint row waits for its file: the marker is held until the saver is done (then
  the row, or a ``checkpoint_failed`` event, is written), so a listed checkpoint is always
  complete. The loop waits for the previous day's row before it snapshots the next day
  (``wait_days_written``, bounded, not while the store fails): a process killed at any moment
  loses at most the day in progress. Nothing else waits behind it (a command's reply goes out at once) except a rewind,
  which supersedes checkpoints and so must come after them.
- The day means stored with a checkpoint are the means of the rows queued before its marker
  since the previous day's end (or rewind).
- The heartbeat is a marker too, with the loop's step when it was queued: ``runs.step`` never
  runs ahead of the metric rows in the store. It carries ``runs.effective`` when that changed
  (``report``), so effective values and reads reach the store at most once a heartbeat.
- ``close()`` (from the loop thread, after the saver has finished) writes what is left; if the
  store stays unreachable it saves the metric rows to ``unwritten-<time>.tsv``, in this thread,
  so no row ends up both in the store and in the file. It returns once every row is in one.
- Memory is bounded at any logging rate. The writer takes at most ``MAX_BATCH_ROWS`` rows per
  transaction (more when it is behind, up to that cap: a bounded WAL and batch). When the queue
  holds more than ``max_queued`` items, ``run.log`` calls ``throttle()``: the loop waits until
  the writer has brought the queue down to half (lossless backpressure: the loop runs at the
  store's pace) and a ``throttled`` event says for how long (at most one a minute, the rest
  added up; the last one at close). If the store keeps failing while the queue is full, the
  writer saves the queued metric rows to the unwritten file instead of holding them, so a dead
  store never stalls training for long nor fills memory; the count is reported at close.

Commands reach the loop through ``commands``, which the loop thread reads at step boundaries
(``inbox()``). On SQLite the loop thread itself asks, every ``poll_s`` at a step boundary, which
commands are pending (``Store.loop_probe``: microseconds, never waits) and wakes the writer only
when one is new; the writer then reads it and appends it to ``commands``, and also polls once a
heartbeat in case a probe failed. So the writer wakes about once a second, not 20 times (a
thread's wakeup costs ~0.1 ms of CPU on a busy core: that was most of babysit's own CPU on a
small model). On other databases a query is a network round trip the loop must not wait for:
the writer polls every ``poll_s`` (on PostgreSQL a flag test between notifications).

Every few seconds the writer checks that the store's database file is still the one it opened
(``Store.identity_changed``); when it was removed or replaced, it stops writing (``lost``), the
loop pauses, and ``close()`` saves the rows to the file instead.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from babysit import checkpoint as ckpt
from babysit.errors import CheckpointError, StoreError
from babysit.store import (
    CheckpointRow,
    CommandFeed,
    CommandRecord,
    EventRow,
    MetricRows,
    Record,
    Refused,
    RunUpdate,
    Store,
)
from babysit.trainer import system
from babysit.trainer.saver import SaveJob

Where = Callable[[], tuple[int, int, int]]     # the loop's (step, day in progress, branch)
#: how often the writer checks that the store's database file is still the one it opened
IDENTITY_CHECK_S = 2.0

#: items (metric rows, records) queued before ``run.log`` waits for the writer: about 40 MB
MAX_QUEUED = 250_000
#: metric rows per transaction at most: the WAL and the writer's batch stay a few MB
MAX_BATCH_ROWS = 100_000
#: a batch of fewer metric rows than this waits SLOW_FLUSH_FACTOR x flush_s for the next one
SMALL_BATCH_ROWS = 2_000
SLOW_FLUSH_FACTOR = 4
#: at most one ``throttled`` event per this many seconds (the waits in between add up)
THROTTLE_EVENT_S = 60.0
#: a full queue's rows go to the unwritten file when the store has failed this many writes in
#: a row, or fails while the loop has waited ``max_wait_s`` (a dead store must not stall it)
SPILL_AFTER_FAILURES = 3
MAX_WAIT_S = 30.0


@dataclass(frozen=True)
class DayEnd:
    """A day's end: list ``row`` (means filled in by the writer) once ``job``'s file is done."""

    job: SaveJob
    row: CheckpointRow


@dataclass(frozen=True)
class Rewind:
    """Records that restart the day (rollback, exploit, restart): they reset the day means and
    wait for checkpoints still being written, since they may supersede them."""

    records: tuple[Record, ...]


@dataclass(frozen=True)
class Heartbeat:
    step: int
    effective: dict[str, Any] | None = None     # runs.effective, when it changed


class Outbox:
    """The queue between the loop thread and the store, and the writer thread that drains it."""

    def __init__(self, store: Store, run_id: int, where: Where, folder: Path, *,
                 poll_s: float = 0.05, flush_s: float = 0.25, heartbeat_s: float = 1.0,
                 max_queued: int = MAX_QUEUED, max_batch_rows: int = MAX_BATCH_ROWS,
                 max_wait_s: float = MAX_WAIT_S, system_s: float | None = system.INTERVAL_S,
                 report: Callable[[], dict[str, Any] | None] = lambda: None):
        self.store, self.run_id, self.where, self.folder = store, run_id, where, folder
        self.system_s = system_s       # sample the process's CPU / memory this often (None: off)
        self.report = report           # runs.effective if it changed, sent with the heartbeat
        self.poll_s, self.flush_s, self.heartbeat_s = poll_s, flush_s, heartbeat_s
        self.queue: deque[Any] = deque()
        self.commands: deque[CommandRecord] = deque()
        self.wake = threading.Event()
        self._probe = store.loop_probe(run_id)      # None: the writer polls every poll_s
        self._next_probe = 0.0
        self._announced: set[int] = set()  # pending ids the loop has told the writer about
        self._read_commands = False        # the loop saw a new command: the writer reads it
        self.writer_polls = 0              # the writer's command polls (tests, benchmarks)
        self.unwritten = 0                 # metric rows saved to the unwritten file
        self.max_queued, self.max_batch_rows = int(max_queued), int(max_batch_rows)
        self.peak_queued = 0               # the most items the queue held (seen by either side)
        self.rows_written = 0              # metric rows the store took
        self.throttled_s = 0.0             # the loop's total wait in throttle()
        self.max_wait_s = float(max_wait_s)
        self._drained = threading.Event()  # set by the writer when the queue is down to half
        self._consume = threading.Lock()   # one consumer of the queue at a time (drain, spill)
        self._throttle_waits = 0
        self._throttle_unreported = 0.0
        self._throttle_reported_at = -math.inf
        self._unwritten_path: Path | None = None
        self.lost: str | None = None       # why the store can no longer be written (see _check)
        self.days_queued = 0               # day ends queued (loop thread) ...
        self.days_written = 0              # ... and their rows written (writer thread)
        self._closing = False
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._held: deque[tuple[DayEnd, dict[str, float]]] = deque()
        self._retry: list[Record] = []     # a batch whose write failed, retried before anything
        self._failures = 0
        self._last_warning = 0.0
        self._sampler: system.SystemSampler | None = None
        self._thread = threading.Thread(target=self._run, name=f"babysit-writer-{run_id}",
                                        daemon=True)

    # ------------------------------------------------------------------ loop thread
    def inbox(self) -> deque[CommandRecord]:
        """The commands waiting for the loop, oldest first (call from the loop thread at a step
        boundary). Every ``poll_s`` it asks the store which are pending, when the store allows
        that without waiting, and wakes the writer to read a new one (see the module
        docstring): the command is in this deque a moment later."""
        if self._probe is not None and time.monotonic() >= self._next_probe:
            self._ask_pending()
        return self.commands

    def _ask_pending(self) -> None:
        self._next_probe = time.monotonic() + self.poll_s
        try:
            ids = self._probe.ids()         # type: ignore[union-attr]
        except StoreError:
            return      # busy or gone this instant: ask again; the writer's poll covers it
        if not ids <= self._announced:
            self._read_commands = True
            self.wake.set()
        self._announced = ids

    def put(self, *records: Record) -> None:
        """Queue records behind everything logged so far; written soon (a command's reply)."""
        self.queue.extend(records)
        self.wake.set()

    def rewind(self, *records: Record) -> None:
        """Queue records that restart the day (see the module docstring)."""
        self.queue.append(Rewind(records))
        self.wake.set()

    def day_end(self, job: SaveJob, row: CheckpointRow) -> None:
        self.days_queued += 1
        self.queue.append(DayEnd(job, row))

    def wait_days_written(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until the row of every day end queued so far is in the
        store, while the writer is healthy: a file on disk that the store does not list is
        a lost day for a process killed now. A failing store is not waited for."""
        deadline = time.monotonic() + timeout
        while self.days_written < self.days_queued and not self.lost and \
                self._failures == 0 and self._thread.is_alive() and \
                time.monotonic() < deadline:
            self.wake.set()
            time.sleep(0.002)

    def start(self) -> None:
        self._thread.start()

    def throttle(self) -> None:
        """The queue is over ``max_queued``: wait until the writer has brought it down to half,
        then (at most once a minute) queue a ``throttled`` event saying how long the loop waited.
        Called by ``run.log``; returns at once if no writer is running to drain the queue."""
        started = time.monotonic()
        low = self.max_queued // 2
        self.peak_queued = max(self.peak_queued, len(self.queue))
        self.wake.set()
        while len(self.queue) > low and self._thread.is_alive():
            if self.lost or self._failures >= SPILL_AFTER_FAILURES or (
                    self._failures and time.monotonic() - started > self.max_wait_s):
                self._spill()               # the store is failing: bound memory, go on
                break
            self._drained.clear()
            if len(self.queue) <= low:      # the writer drained it between the test and clear()
                break
            self.wake.set()
            self._drained.wait(0.1)
        waited = time.monotonic() - started
        self.throttled_s += waited
        self._throttle_unreported += waited
        self._throttle_waits += 1
        if started - self._throttle_reported_at >= THROTTLE_EVENT_S:
            self._report_throttle()

    def _report_throttle(self) -> None:
        step, day, branch = self.where()
        self.queue.append(EventRow(self.run_id, step, day, "throttled", "trainer", {
            "seconds": round(self._throttle_unreported, 3), "waits": self._throttle_waits,
            "queue_limit": self.max_queued,
            "reason": "the loop logged faster than the store writes; it waited for the writer"},
            branch))
        self._throttle_reported_at = time.monotonic()
        self._throttle_unreported = 0.0
        self._throttle_waits = 0
        self.wake.set()

    def close(self) -> int:
        """Write everything queued (or save the rows to a file); returns the rows saved to the
        file (0 when everything reached the store). Call after the saver has finished."""
        if self._throttle_waits:
            self._report_throttle()
        self._closing = True
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._probe is not None:
            self._probe.close()
        return self.unwritten

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        feed = self.store.command_feed(self.run_id)
        # with the loop asking (SQLite), the writer's own poll is a safety net, once a heartbeat
        poll_s = self.poll_s if self._probe is None else self.heartbeat_s
        try:
            next_poll = next_flush = next_beat = next_check = time.monotonic()
            next_sample = next_poll + 1.0
            while True:
                now = time.monotonic()
                if now >= next_check and not self.lost:
                    self._check()
                    next_check = now + IDENTITY_CHECK_S
                if self.lost:           # write nothing more; keep the rows for the file
                    if self._closing:
                        self._save_unwritten()
                        return
                    self.wake.wait(0.25)
                    continue
                if self.system_s is not None and now >= next_sample and not self._closing:
                    self._sample_system()
                    next_sample = now + self.system_s
                if (now >= next_poll or self._read_commands) and not self._closing:
                    self._read_commands = False
                    self._poll(feed)
                    next_poll = now + poll_s
                if now >= next_beat:
                    self.queue.append(Heartbeat(self.where()[0], self.report()))
                    next_beat = now + self.heartbeat_s
                if self._retry or self._releasable() or (self.queue and (
                        now >= next_flush or self.wake.is_set() or len(self.queue) > 20000
                        or self._closing)):
                    self.wake.clear()
                    rows = self._flush()
                    # a few rows at a time: write them less often (each transaction costs a few
                    # ms whatever its size); many: the usual pace, or at once when behind
                    next_flush = now + self.flush_s * (1 if rows >= SMALL_BATCH_ROWS
                                                       else SLOW_FLUSH_FACTOR)
                    if len(self.queue) <= self.max_queued // 2:
                        self._drained.set()
                    if len(self.queue) > 20000 and not self._failures:
                        continue        # behind: the next batch at once, no wait
                if self._closing:
                    if not (self.queue or self._retry or self._held):
                        return
                    if self._failures >= 3:
                        self._save_unwritten()
                        return
                wake_at = min(next_poll, next_beat, next_check)
                if self.queue:
                    wake_at = min(wake_at, next_flush)
                if self.system_s is not None:
                    wake_at = min(wake_at, next_sample)
                timeout = max(0.0, wake_at - time.monotonic())
                self.wake.wait(0.05 if self._closing else timeout)
        finally:
            feed.close()

    def _sample_system(self) -> None:
        """Queue this process's CPU / memory (/ GPU) as sys/* rows at the loop's step."""
        if self._sampler is None:
            self._sampler = system.SystemSampler()
        step, day, branch = self.where()
        now = time.time()
        self.queue.extend((step, day, name, value, now, branch)
                          for name, value in self._sampler.sample().items())

    def _check(self) -> None:
        """Is the store's database still the file it opened? Removed or replaced (by a user,
        or a cleanup script), every later write would go into the void or into another store:
        stop writing, say so once, and let the loop pause (it reads ``lost``)."""
        reason = self.store.identity_changed()
        if reason is None:
            return
        self.lost = reason
        print(f"babysit: ERROR run {self.run_id}: {reason} while the run was training. "
              "babysit stops writing to it and pauses the run: nothing it logs from now on "
              "would reach a store. The run's checkpoints stay in "
              f"{self.folder}; stop this process (Ctrl-C or SIGTERM) and its metric rows "
              "not yet written are saved there as unwritten-*.tsv.", file=sys.stderr, flush=True)

    def _warn(self, message: str) -> None:
        if time.monotonic() - self._last_warning > 60:
            self._last_warning = time.monotonic()
            print(f"babysit: {message} (training goes on; will retry)", file=sys.stderr)

    def _poll(self, feed: CommandFeed) -> None:
        self.writer_polls += 1
        try:
            commands = feed.poll()      # each pending command once, whatever its id's order
        except StoreError as exc:      # a store hiccup never reaches the training loop
            self._warn(f"could not read commands: {exc}")
            return
        self.commands.extend(commands)

    def _releasable(self) -> bool:
        return bool(self._held) and self._held[0][0].job.done.is_set()

    def _listed(self, day_end: DayEnd, means: dict[str, float]) -> Record:
        """The record a finished day's end becomes: its checkpoint row, or why it failed."""
        job, row = day_end.job, day_end.row
        if job.error:
            # Disk full or an I/O error: the previous day's checkpoint is untouched; say so.
            return EventRow(row.run_id, row.step, row.day, "checkpoint_failed", "trainer",
                            {"day": row.day, "error": job.error}, row.branch)
        return CheckpointRow(row.run_id, row.day, row.step, row.branch, time.time(), row.path,
                             job.size, job.sha, row.hp, means)

    def _drain(self, max_rows: int | None = None) -> list[Record]:
        """Take what the queue holds, in order, as store records (see the protocol); at most
        ``max_rows`` metric rows (default: ``max_batch_rows``)."""
        with self._consume:
            return self._drain_locked(max_rows)

    def _drain_locked(self, max_rows: int | None) -> list[Record]:
        batch: list[Record] = []
        while self._releasable():
            batch.append(self._listed(*self._held.popleft()))
        rows: list[tuple] = []
        sums, counts = self._sums, self._counts
        queue = self.queue
        self.peak_queued = max(self.peak_queued, len(queue))
        budget = self.max_batch_rows if max_rows is None else max_rows
        taken = 0
        while queue:
            item = queue[0]
            if type(item) is tuple:
                if taken >= budget:
                    break
                taken += 1
                rows.append(item)
                queue.popleft()
                continue
            if type(item) is Rewind and self._held:
                break       # it may supersede a checkpoint not listed yet: wait for the file
            if type(item) is Heartbeat:
                # No need to cut the rows here: the heartbeat commits in the same transaction
                # as the rows before it, so one history write a batch instead of two (each
                # costs the writer a few ms whatever its size).
                queue.popleft()
                batch.append(self._beat(item))
                continue
            if rows:
                self._add_to_day_means(rows)
                batch.append(MetricRows(self.run_id, tuple(rows)))
                rows = []
            queue.popleft()
            if type(item) is DayEnd:
                means = {k: sums[k] / counts[k] for k in sums}
                sums.clear()
                counts.clear()
                batch.append(RunUpdate(self.run_id, {"step": item.row.step}))
                if item.job.done.is_set() and not self._held:
                    batch.append(self._listed(item, means))
                else:
                    self._held.append((item, means))
            elif type(item) is Rewind:
                sums.clear()
                counts.clear()
                batch.extend(item.records)
            else:
                batch.append(item)
        if rows:
            self._add_to_day_means(rows)
            batch.append(MetricRows(self.run_id, tuple(rows)))
        return batch

    def _beat(self, item: Heartbeat) -> RunUpdate:
        values: dict[str, Any] = {"heartbeat": time.time(), "step": item.step}
        if item.effective is not None:
            values["effective"] = item.effective
        return RunUpdate(self.run_id, values)

    def _add_to_day_means(self, rows: list[tuple]) -> None:
        """Add rows' finite values (not ``hp/`` ones) to the day's sums, a column at a time: a
        per-row Python loop here would cost the writer more than the store write itself."""
        n = len(rows)
        codes, names = pd.factorize(pd.Series(list(map(itemgetter(2), rows)), dtype=object))
        values = np.fromiter(map(itemgetter(3), rows), np.float64, n)
        finite = np.isfinite(values)
        sums = np.bincount(codes[finite], weights=values[finite], minlength=len(names))
        counts = np.bincount(codes[finite], minlength=len(names))
        for i, name in enumerate(names):
            if counts[i] and not name.startswith(("hp/", "sys/")):
                self._sums[name] = self._sums.get(name, 0.0) + float(sums[i])
                self._counts[name] = self._counts.get(name, 0) + int(counts[i])

    def _flush(self) -> int:
        """Write what is queued (and any batch to retry); returns the metric rows written."""
        # a batch that failed is retried with at most a batch's worth of new rows behind it, so
        # a failing store leaves the rest in the queue, where throttle() and _spill() see it
        retrying = sum(len(r.rows) for r in self._retry if type(r) is MetricRows)
        batch = self._retry + self._drain(max(0, self.max_batch_rows - retrying))
        self._retry = []
        if not batch:
            return 0
        rows = sum(len(r.rows) for r in batch if type(r) is MetricRows)
        try:
            refused = self.store.apply(batch, attempts=3 if self._closing else 8)
            self._failures = 0
            self.rows_written += rows
            self.days_written += sum(1 for r in batch if type(r) is CheckpointRow or (
                type(r) is EventRow and r.kind == "checkpoint_failed"))
        except StoreError as exc:
            self._failures += 1
            self._warn(f"store write failed: {exc}")
            self._retry = batch
            return 0
        except Exception:
            # A bug must not wedge the writer: report it, keep the metric rows.
            traceback.print_exc()
            self._retry = [r for r in batch if type(r) is MetricRows]
            return 0
        for refusal in refused:
            self._report(refusal)
        return rows

    def _report(self, refusal: Refused) -> None:
        """A record the store refused: say so in the log and, once, as an event."""
        record = refusal.record
        what = type(record).__name__
        if isinstance(record, MetricRows):
            what = f"{len(record.rows)} metric row(s) ({', '.join(sorted({r[2] for r in record.rows}))[:200]})"
        print(f"babysit: the store refused {what}: {refusal.error}; skipped", file=sys.stderr)
        if isinstance(record, EventRow) and record.kind == "store_refused":
            return
        step, day, branch = self.where()
        self.queue.appendleft(EventRow(self.run_id, step, day, "store_refused", "trainer",
                                       {"record": type(record).__name__,
                                        "error": refusal.error}, branch))

    def _save_unwritten(self) -> None:
        """The store stayed unreachable: keep the metric rows in a file rather than lose them."""
        leftover = self._retry + self._drain(max_rows=len(self.queue) + 1)   # all of it
        while self._held:
            leftover.append(self._listed(*self._held.popleft()))
        rows = [row for record in leftover if isinstance(record, MetricRows)
                for row in record.rows]
        others = sum(1 for record in leftover if not isinstance(record, MetricRows | RunUpdate))
        self._retry = []
        with self._consume:
            path = self._write_unwritten(rows)
        print(f"babysit: the store was unreachable; {self.unwritten} metric rows in all saved "
              f"to {path}" + (f"; {others} event(s) and checkpoint row(s) could not be written"
                              if others else ""), file=sys.stderr)

    def _write_unwritten(self, rows: list[tuple]) -> Path:
        """Append metric rows to this run's unwritten file (created on first use)."""
        if self._unwritten_path is None:
            path = self.folder / f"unwritten-{time.time_ns()}.tsv"
            try:
                ckpt.refuse_symlinks(path)
            except CheckpointError as exc:
                # never write through a link; the rows go beside the store instead of nowhere
                path = self.store.root / f"unwritten-run{self.run_id}-{time.time_ns()}.tsv"
                print(f"babysit: {exc}; saving the unwritten rows to {path}", file=sys.stderr)
            with _open_new(path) as f:
                f.write("step\tday\tname\tvalue\ttime\tbranch\n")
            self._unwritten_path = path
        with open(self._unwritten_path, "a") as f:
            for row in rows:
                f.write("\t".join(str(x) for x in row) + "\n")
        self.unwritten += len(rows)
        return self._unwritten_path

    def _spill(self) -> None:
        """The store keeps failing and the queue is full (loop thread, from ``throttle``): move
        the queued metric rows to the unwritten file (the records between them stay queued, in
        order), so memory stays bounded and the loop does not wait on a dead store."""
        with self._consume:
            keep: deque[Any] = deque()
            rows: list[tuple] = []
            queue = self.queue
            for _ in range(len(queue)):     # what is queued now; the loop adds nothing meanwhile
                item = queue.popleft()
                (rows if type(item) is tuple else keep).append(item)
            queue.extendleft(reversed(keep))
            if rows:
                path = self._write_unwritten(rows)
        if rows:
            self._warn(f"the store has failed {self._failures} write(s) in a row; {len(rows)} "
                       f"metric rows saved to {path} to keep memory bounded")


def _open_new(path: Path) -> Any:
    """A new file for writing that is not a link and did not exist (O_EXCL | O_NOFOLLOW)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    return os.fdopen(fd, "w")
