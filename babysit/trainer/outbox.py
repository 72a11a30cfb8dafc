"""The outbox: everything the loop thread tells the store, written in order by one thread.

Protocol (the loop thread on the left, the writer thread on the right):

- ``queue`` is a deque the loop appends to and only the writer pops from. It holds, in the order
  the loop produced them: metric tuples ``(step, day, name, value, time, branch)`` (``run.log``
  appends them directly: the hot path), store records (``babysit.store.outbox``: events, run
  updates, command outcomes), and three markers: a day's end (its checkpoint ``SaveJob``), a
  rewind (records that restart the day: rollback, exploit, restart), and a heartbeat.
- The writer drains the queue into a batch (consecutive tuples become one ``MetricRows``) and
  hands it to ``Store.apply``: one transaction. A batch the store cannot take now (locked, gone)
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

The writer also polls for commands (a cheap probe on a time budget) and appends them to
``commands``, which the loop thread reads at step boundaries. Every few seconds it checks that
the store's database file is still the one it opened (``Store.identity_changed``); when it was
removed or replaced, it stops writing (``lost``), the loop pauses, and ``close()`` saves the rows
to the file instead.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babysit.errors import StoreError
from babysit.store import (
    CheckpointRow,
    CommandRecord,
    EventRow,
    MetricRows,
    Record,
    Refused,
    RunUpdate,
    Store,
)
from babysit.trainer.saver import SaveJob

Where = Callable[[], tuple[int, int, int]]     # the loop's (step, day in progress, branch)
#: how often the writer checks that the store's database file is still the one it opened
IDENTITY_CHECK_S = 2.0


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
                 report: Callable[[], dict[str, Any] | None] = lambda: None):
        self.store, self.run_id, self.where, self.folder = store, run_id, where, folder
        self.report = report           # runs.effective if it changed, sent with the heartbeat
        self.poll_s, self.flush_s, self.heartbeat_s = poll_s, flush_s, heartbeat_s
        self.queue: deque[Any] = deque()
        self.commands: deque[CommandRecord] = deque()
        self.wake = threading.Event()
        self.unwritten = 0                 # metric rows saved to a file at close
        self.lost: str | None = None       # why the store can no longer be written (see _check)
        self.days_queued = 0               # day ends queued (loop thread) ...
        self.days_written = 0              # ... and their rows written (writer thread)
        self._closing = False
        self._seen_command = 0
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._held: deque[tuple[DayEnd, dict[str, float]]] = deque()
        self._retry: list[Record] = []     # a batch whose write failed, retried before anything
        self._failures = 0
        self._last_warning = 0.0
        self._thread = threading.Thread(target=self._run, name=f"babysit-writer-{run_id}",
                                        daemon=True)

    # ------------------------------------------------------------------ loop thread
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

    def close(self) -> int:
        """Write everything queued (or save the rows to a file); returns the rows saved to the
        file (0 when everything reached the store). Call after the saver has finished."""
        self._closing = True
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.unwritten

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        probe = self.store.command_probe(self.run_id)
        try:
            next_poll = next_flush = next_beat = next_check = time.monotonic()
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
                if now >= next_poll and not self._closing:
                    self._poll(probe)
                    next_poll = now + self.poll_s
                if now >= next_beat:
                    self.queue.append(Heartbeat(self.where()[0], self.report()))
                    next_beat = now + self.heartbeat_s
                if self._retry or self._releasable() or (self.queue and (
                        now >= next_flush or self.wake.is_set() or len(self.queue) > 20000
                        or self._closing)):
                    self.wake.clear()
                    self._flush()
                    next_flush = now + self.flush_s
                if self._closing:
                    if not (self.queue or self._retry or self._held):
                        return
                    if self._failures >= 3:
                        self._save_unwritten()
                        return
                timeout = max(0.0, min(next_poll, next_beat) - time.monotonic())
                self.wake.wait(0.05 if self._closing else timeout)
        finally:
            probe.close()

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

    def _poll(self, probe: Callable[[int], bool]) -> None:
        try:
            if not probe(self._seen_command):
                return
            commands = self.store.pending_commands(self.run_id, self._seen_command)
        except StoreError as exc:      # a store hiccup never reaches the training loop
            self._warn(f"could not read commands: {exc}")
            return
        for command in commands:
            self._seen_command = max(self._seen_command, command.id)
            self.commands.append(command)

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

    def _drain(self) -> list[Record]:
        """Take what the queue holds, in order, as store records (see the protocol)."""
        batch: list[Record] = []
        while self._releasable():
            batch.append(self._listed(*self._held.popleft()))
        rows: list[tuple] = []
        sums, counts = self._sums, self._counts
        queue = self.queue
        while queue:
            item = queue[0]
            if type(item) is tuple:
                rows.append(item)
                name, value = item[2], item[3]
                if value == value and value not in (math.inf, -math.inf) and \
                        not name.startswith("hp/"):
                    sums[name] = sums.get(name, 0.0) + value
                    counts[name] = counts.get(name, 0) + 1
                queue.popleft()
                continue
            if type(item) is Rewind and self._held:
                break       # it may supersede a checkpoint not listed yet: wait for the file
            if rows:
                batch.append(MetricRows(self.run_id, tuple(rows)))
                rows = []
            queue.popleft()
            if type(item) is Heartbeat:
                values: dict[str, Any] = {"heartbeat": time.time(), "step": item.step}
                if item.effective is not None:
                    values["effective"] = item.effective
                batch.append(RunUpdate(self.run_id, values))
            elif type(item) is DayEnd:
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
            batch.append(MetricRows(self.run_id, tuple(rows)))
        return batch

    def _flush(self) -> None:
        batch = self._retry + self._drain()
        self._retry = []
        if not batch:
            return
        try:
            refused = self.store.apply(batch, attempts=3 if self._closing else 8)
            self._failures = 0
            self.days_written += sum(1 for r in batch if type(r) is CheckpointRow or (
                type(r) is EventRow and r.kind == "checkpoint_failed"))
        except StoreError as exc:
            self._failures += 1
            self._warn(f"store write failed: {exc}")
            self._retry = batch
            return
        except Exception:
            # A bug must not wedge the writer: report it, keep the metric rows.
            traceback.print_exc()
            self._retry = [r for r in batch if type(r) is MetricRows]
            return
        for refusal in refused:
            self._report(refusal)

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
        leftover = self._retry + self._drain()
        while self._held:
            leftover.append(self._listed(*self._held.popleft()))
        rows = [row for record in leftover if isinstance(record, MetricRows)
                for row in record.rows]
        others = sum(1 for record in leftover if not isinstance(record, MetricRows | RunUpdate))
        self._retry = []
        path = self.folder / f"unwritten-{int(time.time())}.tsv"
        with open(path, "w") as f:
            f.write("step\tday\tname\tvalue\ttime\tbranch\n")
            for row in rows:
                f.write("\t".join(str(x) for x in row) + "\n")
        self.unwritten = len(rows)
        print(f"babysit: the store was unreachable; {len(rows)} metric rows saved to {path}"
              + (f"; {others} event(s) and checkpoint row(s) could not be written" if others
                 else ""), file=sys.stderr)
