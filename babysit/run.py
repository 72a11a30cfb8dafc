"""The training side: a user's own PyTorch loop gains live metrics, day checkpoints and commands.

    run = babysit.init(project="digits", config={"lr": 0.1}, day="200 steps")
    run.attach(model=model, optimizer=opt, scheduler=sched)
    for batch in run.loop(loader, epochs=20):
        ...
        run.log(loss=loss.item())
    run.finish()

The loop thread never waits on the store or the disk. ``run.log`` appends a tuple to a deque; one
background thread (the writer) flushes metric rows in batches, polls for commands on a time
budget, heartbeats, and performs the store side of each step-boundary action in the order the
loop produced them. At a day's end the loop thread only snapshots the state (tensors copied to
CPU); a second thread (the saver) serializes, fsyncs and renames the file, and the writer adds
the checkpoint's store row only once the file and its manifest are complete. Commands are applied
by the loop thread at step boundaries only.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
import types
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
import torch

from babysit import checkpoint as ckpt
from babysit.day import DaySpec
from babysit.errors import BabysitError, CheckpointError, InvalidValue, StoreError
from babysit.hparams import OPTIMIZER_KEYS, check_updates
from babysit.store import CheckpointRecord, CommandRecord, Store

_now = time.time


class Guard:
    """Divergence guard: a non-finite ``metric`` (or one above ``max_ratio`` x its best so far)
    stops the run at that step with status ``diverged``.

    ``policy="pause"`` waits for the user; ``policy="rollback"`` rolls back to the last good day
    and multiplies the learning rate by ``lr_factor`` (an autopilot event), at most
    ``max_rollbacks`` times before it pauses instead.
    """

    def __init__(self, metric: str = "loss", max_ratio: float | None = None,
                 policy: str = "pause", lr_factor: float = 0.5, max_rollbacks: int = 3):
        if policy not in ("pause", "rollback"):
            raise InvalidValue(f"guard policy must be 'pause' or 'rollback', got {policy!r}")
        if max_ratio is not None and not (isinstance(max_ratio, int | float) and max_ratio > 1):
            raise InvalidValue(f"guard max_ratio must be a number > 1, got {max_ratio!r}")
        if not 0 < lr_factor < 1:
            raise InvalidValue(f"guard lr_factor must lie in (0, 1), got {lr_factor!r}")
        self.metric, self.max_ratio, self.policy = metric, max_ratio, policy
        self.lr_factor, self.max_rollbacks = lr_factor, max_rollbacks


class _Op:
    """A store-side action queued behind the metric rows logged before it.

    A checkpoint's op carries its ``_Save``; the writer holds it (and everything behind it) back
    until the saver has finished the file, so a listed checkpoint is always complete.
    """

    __slots__ = ("fn", "kind", "save")

    def __init__(self, fn: Callable[..., Any], kind: str = "op", save: _Save | None = None):
        self.fn, self.kind, self.save = fn, kind, save


class _Save:
    """One day checkpoint on its way to disk: a snapshot of the state, then the file's facts."""

    __slots__ = ("path", "payload", "done", "size", "sha", "error")

    def __init__(self, path: Path, payload: dict[str, Any]):
        self.path, self.payload = path, payload
        self.done = threading.Event()
        self.size, self.sha, self.error = 0, "", ""


def _snapshot(value: Any) -> Any:
    """A copy of a state_dict that the next training step cannot change (tensors on CPU).

    Copying to CPU (rather than cloning on the GPU) costs no accelerator memory; it is the copy
    ``torch.save`` would make anyway, done here so the saver thread can write at its own pace.
    """
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        out = copy.copy(value)      # keeps the type and extras such as a state_dict's _metadata
        for key, item in value.items():
            out[key] = _snapshot(item)
        return out
    if isinstance(value, list):
        return [_snapshot(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_snapshot(item) for item in value)
    if value is None or isinstance(value, int | float | str | bool):
        return value
    return copy.deepcopy(value)


class _Saver(threading.Thread):
    """Background thread: write day checkpoints, oldest first, then wake the writer."""

    def __init__(self, run: Run):
        super().__init__(name=f"babysit-saver-{run.id}", daemon=True)
        self.jobs: queue.SimpleQueue[_Save | None] = queue.SimpleQueue()
        self.wake = run._writer.wake

    def run(self) -> None:  # noqa: D102 - threading.Thread API
        while (job := self.jobs.get()) is not None:
            try:
                job.size, job.sha = ckpt.save(job.path, job.payload)
            except Exception as exc:  # noqa: BLE001 - disk full, I/O error, unpicklable state
                job.error = f"{type(exc).__name__}: {exc}"
                print(f"babysit: could not save {job.path.name}: {job.error}", file=sys.stderr)
            finally:
                job.payload = {}    # free the snapshot
                job.done.set()
                self.wake.set()


class _Writer(threading.Thread):
    """Background thread: flush metrics, run queued ops, poll commands, heartbeat."""

    def __init__(self, run: Run, poll_s: float, flush_s: float, heartbeat_s: float):
        super().__init__(name=f"babysit-writer-{run.id}", daemon=True)
        self.owner, self.store = run, run._store
        self.poll_s, self.flush_s, self.heartbeat_s = poll_s, flush_s, heartbeat_s
        self.queue: deque[Any] = run._queue
        self.wake = threading.Event()
        self.closing = False
        self.seen_command = 0
        self.day_sum: dict[str, float] = {}
        self.day_count: dict[str, int] = {}
        self.retry: list[Any] = []     # a batch whose write failed, retried before anything newer
        self.last_warning = 0.0
        self.failures = 0
        self.probe = self.store.command_probe(run.id)

    def run(self) -> None:  # noqa: D102 - threading.Thread API
        next_poll = next_flush = next_beat = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_poll:
                self._poll()
                next_poll = now + self.poll_s
            if now >= next_beat:
                self._heartbeat()
                next_beat = now + self.heartbeat_s
            if self.retry or (self.queue and (now >= next_flush or self.wake.is_set()
                                              or len(self.queue) > 20000 or self.closing)):
                self.wake.clear()
                self._flush()
                next_flush = now + self.flush_s
            if self.closing and (not (self.queue or self.retry) or self.failures > 3):
                # done, or the store is gone (close() then saves what is left to a file)
                self.probe.close()
                return
            timeout = max(0.0, min(next_poll, next_beat) - time.monotonic())
            self.wake.wait(timeout if not self.closing else 0.05)

    def _warn(self, message: str) -> None:
        if time.monotonic() - self.last_warning > 60:
            self.last_warning = time.monotonic()
            print(f"babysit: {message} (training goes on; will retry)", file=sys.stderr)

    def _poll(self) -> None:
        try:
            if not self.probe(self.seen_command):
                return
            commands = self.store.pending_commands(self.owner.id, self.seen_command)
        except Exception as exc:  # a store hiccup never reaches the training loop
            self._warn(f"could not read commands: {exc}")
            return
        for command in commands:
            self.seen_command = max(self.seen_command, command.id)
            self.owner._inbox.append(command)

    def _heartbeat(self) -> None:
        run = self.owner
        try:
            self.store.update_run(run.id, heartbeat=_now(), step=run._step, day=run._day)
        except Exception as exc:
            self._warn(f"could not heartbeat: {exc}")

    def _flush(self) -> None:
        batch = self.retry
        self.retry = []
        pending = self.queue
        for _ in range(len(pending)):
            head = pending[0]
            if type(head) is _Op and head.save is not None and not head.save.done.is_set():
                break       # a checkpoint still being written: it and what follows wait
            batch.append(pending.popleft())
        if not batch:
            return
        try:
            self.store.write(lambda conn: self._apply(conn, batch))
            self.failures = 0
        except StoreError as exc:
            self.failures += 1
            self._warn(f"store write failed: {exc}")
            self.retry = batch
        except Exception:
            # A bug in an op must not wedge the writer: report it, keep the metric rows.
            traceback.print_exc()
            self.retry = [item for item in batch if type(item) is tuple]

    def _apply(self, conn: Any, batch: list[Any]) -> None:
        rows: list[tuple] = []
        run_id = self.owner.id
        # Day means are accumulated on a copy so a failed (rolled back) transaction counts nothing.
        sums, counts = dict(self.day_sum), dict(self.day_count)
        for item in batch:
            if type(item) is tuple:
                rows.append(item)
                value, name = item[3], item[2]
                if value == value and value not in (math.inf, -math.inf) and \
                        not name.startswith("hp/"):
                    sums[name] = sums.get(name, 0.0) + value
                    counts[name] = counts.get(name, 0) + 1
            else:
                self.store.insert_metrics(run_id, rows, conn=conn)
                rows = []
                if item.kind == "checkpoint":
                    item.fn(conn, {k: sums[k] / counts[k] for k in sums})
                    sums, counts = {}, {}
                elif item.kind == "rollback":
                    item.fn(conn, self)
                    sums, counts = {}, {}
                else:
                    item.fn(conn, self)
        self.store.insert_metrics(run_id, rows, conn=conn)
        self.day_sum, self.day_count = sums, counts


class Run:
    """A babysat training run, seen from inside the training process. Create with ``init()``."""

    def __init__(self, store: Store, run_id: int, *, guard: Guard | None = None,
                 poll_interval: float = 0.05, flush_interval: float = 0.25,
                 heartbeat_interval: float = 1.0):
        self._store = store
        record = store.get_run(run_id)
        self.id = record.id
        self.project, self.name = record.project, record.name
        self.day_spec = DaySpec.parse(record.day_spec)
        self._strict = record.strict
        self._hp: dict[str, Any] = dict(record.hp)
        #: the current hyperparameters, read-only: change them with nudges
        self.hp: Mapping[str, Any] = types.MappingProxyType(self._hp)
        self._step = 0
        self._day = 0                   # the last completed day (its checkpoint); day 0 = start
        self._branch = record.branch
        self._epoch = 0
        self._batch = 0
        self._epoch_rng: dict[str, Any] | None = None
        self._position: dict[str, Any] | None = None   # where the data iterator must resume
        self._reposition = False
        self._objects: dict[str, Any] = {}
        self._optimizers: list[torch.optim.Optimizer] = []
        self._schedulers: list[Any] = []
        self._day_callbacks: list[Callable[[int], Any]] = []
        self._queue: deque[Any] = deque()
        self._inbox: deque[CommandRecord] = deque()
        self._status = "running"
        self._paused = False
        self._stopping = False
        self._diverged: tuple[str, float] | None = None
        self._closed = False
        self._in_loop = False
        self._day_deadline = math.inf
        self._next_day_step = math.inf
        self._traced: dict[str, float] = {}
        self._reproducible = record.reproducible
        self._max_days = record.max_days     # a study's trial ends by itself after this day
        self._days_done = False
        self._resume = record.resume
        self._resumed = False
        self._guard = guard or Guard()
        self._guard_name = self._guard.metric
        self._guard_best = math.inf
        self._guard_limit = math.inf
        self._guard_rollbacks = 0
        self._dir = ckpt.run_dir(store.root, self.id)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._writer = _Writer(self, poll_interval, flush_interval, heartbeat_interval)
        self._saver = _Saver(self)

    # ------------------------------------------------------------------ public properties
    @property
    def step(self) -> int:
        """Steps completed so far (inside the loop body: the index of the current step)."""
        return self._step

    @property
    def day(self) -> int:
        """The day in progress (1-based); ``day - 1`` is the last checkpointed day."""
        return self._day + 1

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def status(self) -> str:
        return self._status

    @property
    def store(self) -> Store:
        return self._store

    def __repr__(self) -> str:
        return f"<babysit.Run {self.id} {self.name!r} step={self._step} status={self._status}>"

    # ------------------------------------------------------------------ lifecycle
    def _clean_leftovers(self) -> None:
        """Remove what a killed process of this run left half-written: temporary files and
        checkpoint files the store does not list. Runs before this process writes anything."""
        try:
            records = self._store.checkpoint_records(self.id, include_superseded=True)
        except BabysitError:
            return      # without the list nothing is provably stale: keep everything
        keep = [self._store.root / r.path for r in records]
        if self._resume and isinstance(self._resume.get("path"), str):
            keep.append(self._store.root / self._resume["path"])
        removed = ckpt.clean_run_dir(self._dir, keep)
        if removed:
            print(f"babysit: run {self.id}: removed {len(removed)} unfinished checkpoint "
                  f"file(s) left by an earlier process: {', '.join(p.name for p in removed)}",
                  file=sys.stderr)

    def _start(self, source_event: tuple[str, dict] | None) -> None:
        self._clean_leftovers()
        pid = os.getpid()
        try:
            pid_start = psutil.Process(pid).create_time()
        except psutil.Error:
            pid_start = None
        self._store.update_run(self.id, status="running", pid=pid, pid_start=pid_start,
                               host=socket.gethostname(), heartbeat=_now(), error=None,
                               ended=None)
        # A resumed process records its start once it knows the checkpoint's step (in attach).
        self._start_event = source_event
        if not self._resume:
            self._store.add_event(self.id, 0, 1, "start", "trainer",
                                  {"hp": dict(self._hp), "day": str(self.day_spec)}, self._branch)
        self._writer.start()
        self._saver.start()
        atexit.register(self._atexit)
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # Stop at the next step boundary; a second SIGTERM ends the process at once.
        if self._stopping:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        self._stopping = True
        if not self._in_loop:
            raise KeyboardInterrupt("SIGTERM")

    def attach(self, model: Any = None, optimizer: Any = None, scheduler: Any = None,
               **objects: Any) -> Run:
        """Register what each day's checkpoint holds: anything with ``state_dict()``.

        Optimizers receive nudges of lr / momentum / weight_decay; schedulers are rescaled by lr
        nudges so they never overwrite them. On a restart, fork or rollback the state is loaded
        here, so call ``attach`` before ``loop``.

        >>> run.attach(model=model, optimizer=opt, scheduler=sched, scaler=scaler)
        """
        named = {"model": model, "optimizer": optimizer, "scheduler": scheduler, **objects}
        for name, obj in named.items():
            if obj is None:
                continue
            if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
                raise InvalidValue(f"{name} has no state_dict()/load_state_dict(), got {type(obj).__name__}")
            self._objects[name] = obj
            if isinstance(obj, torch.optim.Optimizer):
                self._optimizers.append(obj)
            elif hasattr(obj, "optimizer") and isinstance(getattr(obj, "optimizer", None),
                                                           torch.optim.Optimizer):
                self._schedulers.append(obj)
        if self._optimizers:
            self._sync_hp_from_optimizer()
        if self._resume and not self._resumed:
            self._resume_from_store()
        return self

    def on_day_end(self, fn: Callable[[int], Any]) -> Callable[[int], Any]:
        """Call ``fn(day)`` at each day's end, before its checkpoint (e.g. to log validation).

        >>> @run.on_day_end
        ... def validate(day): run.log(val_loss=evaluate(model))
        """
        self._day_callbacks.append(fn)
        return fn

    def finish(self, status: str | None = None) -> None:
        """Flush everything and mark the run finished (or stopped); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        final = status or self._end_status()
        self._close(final, None)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._closed:
            return
        self._closed = True
        if exc_type is None:
            self._close(self._end_status(), None)
        elif issubclass(exc_type, KeyboardInterrupt):
            self._close("stopped", "interrupted")
        else:
            self._close("crashed", "".join(traceback.format_exception(exc_type, exc, tb))[-4000:])

    def _end_status(self) -> str:
        """How a loop that ended without an error ends: stopped by a command, or finished (all
        its epochs/steps, or its ``max_days``)."""
        return "stopped" if self._stopping and not self._days_done else "finished"

    def _atexit(self) -> None:
        if not self._closed:
            self._closed = True
            info = sys.exc_info()
            if getattr(sys, "last_value", None) is not None or info[0] is not None:
                self._close("crashed", "the process ended with an exception")
            else:
                self._close(self._end_status(), None)

    def _close(self, status: str, error: str | None) -> None:
        self._status = status
        step, day, branch = self._step, self._day + 1, self._branch

        def op(conn: Any, writer: _Writer) -> None:
            self._store.update_run(self.id, conn=conn, status=status, ended=_now(), error=error,
                                   step=step, day=self._day, heartbeat=_now())
            self._store.add_event(self.id, step, day, {"finished": "finish"}.get(status, status),
                                  "trainer", {"error": error} if error else {}, branch, conn=conn)
        if self._saver.is_alive():
            self._saver.jobs.put(None)          # finish the checkpoints already queued
            self._saver.join(timeout=600)
        self._queue.append(_Op(op))
        self._writer.closing = True
        self._writer.wake.set()
        if self._writer.is_alive():
            self._writer.join(timeout=30)
        leftover = list(self._writer.retry) + list(self._queue)
        if leftover:
            self._save_unwritten(leftover)
        with contextlib.suppress(BabysitError):
            self._store.cancel_pending(self.id, f"run {self.id} is {status}")
        atexit.unregister(self._atexit)

    def _save_unwritten(self, items: list[Any]) -> None:
        """The store stayed unreachable: keep the metric rows in a file rather than lose them."""
        rows = [item for item in items if type(item) is tuple]
        path = self._dir / f"unwritten-{int(_now())}.tsv"
        with open(path, "w") as f:
            f.write("step\tday\tname\tvalue\ttime\tbranch\n")
            for row in rows:
                f.write("\t".join(str(x) for x in row) + "\n")
        print(f"babysit: the store was unreachable; {len(rows)} metric rows saved to {path}",
              file=sys.stderr)

    # ------------------------------------------------------------------ logging (hot path)
    def log(self, **metrics: float) -> None:
        """Record scalars at the current step, e.g. ``run.log(loss=loss.item(), acc=acc)``.

        Costs well under a microsecond per value: rows go to a queue that a background thread
        writes in batches, so a slow or locked store never stalls training.
        """
        step, day, now, branch = self._step, self._day + 1, _now(), self._branch
        put = self._queue.append
        for name, value in metrics.items():
            if type(value) is not float:
                value = float(value)
            put((step, day, name, value, now, branch))
            if name == self._guard_name:
                if not value < self._guard_limit:
                    if self._diverged is None:
                        self._diverged = (name, value)
                elif value < self._guard_best:
                    self._guard_best = value
                    if self._guard.max_ratio is not None:
                        self._guard_limit = value * self._guard.max_ratio if value > 0 else math.inf

    # ------------------------------------------------------------------ the loop
    def loop(self, loader: Iterable[Any] | None = None, *, epochs: int | None = None,
             steps: int | None = None) -> Iterator[Any]:
        """Iterate batches of ``loader`` for ``epochs`` (or until ``steps``), or step numbers.

        At each step boundary the run applies commands (nudge, pause, rollback, stop) and ends
        the day when it is due. Restarts, forks and rollbacks resume at the exact batch.

        >>> for batch in run.loop(loader, epochs=20): ...
        >>> for step in run.loop(steps=5000): ...
        """
        if loader is None and steps is None:
            raise InvalidValue("loop() needs a loader (with epochs or steps) or steps=N")
        for name, value in (("epochs", epochs), ("steps", steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InvalidValue(f"{name} must be a whole number >= 0, got {value!r}")
        if self.day_spec.unit == "epochs" and loader is None:
            raise InvalidValue(f"day is {self.day_spec} but loop() has no loader: use a day of steps or time")
        if loader is not None and epochs is None and steps is None:
            epochs = 1
        return self._loop(loader, epochs, steps)

    def _loop(self, loader: Iterable[Any] | None, epochs: int | None, steps: int | None
              ) -> Iterator[Any]:
        self._in_loop = True
        try:
            self._begin()
            if loader is None:
                while self._step < steps and not self._stopping:  # type: ignore[operator]
                    yield self._step
                    self._after_step()
            else:
                yield from self._loop_loader(loader, epochs, steps)
        finally:
            self._in_loop = False

    def _loop_loader(self, loader: Iterable[Any], epochs: int | None, steps: int | None
                     ) -> Iterator[Any]:
        while not self._stopping:
            if epochs is not None and self._epoch >= epochs:
                return
            if steps is not None and self._step >= steps:
                return
            iterator = self._open_epoch(loader)
            exhausted = True
            for batch in iterator:
                yield batch
                self._batch += 1
                self._after_step()
                if self._reposition or self._stopping or (steps is not None and self._step >= steps):
                    exhausted = False
                    break
            if self._reposition:
                self._reposition = False
                continue
            if not exhausted:
                return
            self._epoch += 1
            self._batch = 0
            self._epoch_rng = None
            if self.day_spec.unit == "epochs" and self._epoch % int(self.day_spec.amount) == 0:
                self._end_day()
            self._boundary()

    def _open_epoch(self, loader: Iterable[Any]) -> Iterator[Any]:
        position, self._position = self._position, None
        self._reposition = False
        if position is None or (position.get("epoch_rng") is None and not position.get("batch")):
            self._epoch_rng = self._capture_epoch_rng(loader)
            return iter(loader)
        # Resume inside an epoch: replay the epoch's start, skip the batches already trained on,
        # then put the generators back where the checkpoint left them.
        epoch_rng = position["epoch_rng"]
        self._restore_epoch_rng(loader, epoch_rng)
        self._epoch_rng = epoch_rng
        iterator = iter(loader)
        for skipped in range(position["batch"]):
            try:
                next(iterator)
            except StopIteration:
                self._mark_not_reproducible(
                    f"the data loader has {skipped} batches per epoch, but the checkpoint is at "
                    f"batch {position['batch']}: the data position cannot be restored")
                break
        ckpt.restore_rng(position["rng"])
        return iterator

    @staticmethod
    def _loader_generators(loader: Any) -> list[torch.Generator]:
        found: list[torch.Generator] = []
        for holder in (loader, getattr(loader, "sampler", None),
                       getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
            gen = getattr(holder, "generator", None)
            if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
                found.append(gen)
        return found

    def _capture_epoch_rng(self, loader: Any) -> dict[str, Any]:
        return {"torch": torch.get_rng_state(),
                "loader": [g.get_state() for g in self._loader_generators(loader)]}

    def _restore_epoch_rng(self, loader: Any, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        generators = self._loader_generators(loader)
        if len(generators) != len(state.get("loader", [])):
            self._mark_not_reproducible("the data loader's generators differ from the checkpoint's")
            return
        for gen, gen_state in zip(generators, state["loader"], strict=True):
            gen.set_state(gen_state)

    def _begin(self) -> None:
        if self._resume and not self._resumed:
            self._resume_from_store()
        if not self._resumed and self._store.checkpoint(self.id, 0) is None:
            self._save_day()        # day 0: the very start, so a user can always go back to it
        self._arm_day()
        self._trace_hp()

    def _arm_day(self) -> None:
        spec = self.day_spec
        if spec.unit == "steps":
            done = self._step % int(spec.amount)
            self._next_day_step = self._step + (int(spec.amount) - done)
        elif spec.unit == "seconds":
            self._day_deadline = time.monotonic() + spec.amount

    def _after_step(self) -> None:
        self._step += 1
        if self._step >= self._next_day_step or (
                self._day_deadline is not math.inf and time.monotonic() >= self._day_deadline):
            self._end_day()
        if self._inbox or self._paused or self._diverged is not None:
            self._boundary()
        if self._optimizers:
            group = self._optimizers[0].param_groups[0]
            if group["lr"] != self._traced.get("lr"):
                self._trace_hp()

    # ------------------------------------------------------------------ days and checkpoints
    def _end_day(self) -> None:
        if self._diverged is not None:
            self._boundary()   # never checkpoint a diverged state
            if self._reposition or self._stopping:
                return
        for callback in self._day_callbacks:
            callback(self._day + 1)
        self._day += 1
        if not self._weights_finite():
            self._diverged = ("weights", math.nan)
            self._day -= 1
            self._boundary()
            return
        self._save_day()
        self._arm_day()
        if self._max_days is not None and self._day >= self._max_days:
            self._days_done = True      # end the loop as a stop would, but as finished
            self._stopping = True

    def _weights_finite(self) -> bool:
        for obj in self._objects.values():
            if isinstance(obj, torch.nn.Module):
                for param in obj.parameters():
                    if not bool(torch.isfinite(param).all()):
                        return False
        return True

    def _save_day(self) -> None:
        day, step, branch = self._day, self._step, self._branch
        payload = {
            "format": ckpt.FORMAT, "run_id": self.id, "day": day, "step": step, "branch": branch,
            "epoch": self._epoch, "batch": self._batch, "epoch_rng": self._epoch_rng,
            "hp": dict(self._hp), "rng": ckpt.capture_rng(), "time": _now(),
            "state": {name: _snapshot(obj.state_dict()) for name, obj in self._objects.items()},
        }
        path = self._dir / ckpt.checkpoint_name(day, branch)
        rel = str(path.relative_to(self._store.root))
        hp = dict(self._hp)
        job = _Save(path, payload)

        def op(conn: Any, means: dict[str, float]) -> None:
            if job.error:
                # Disk full or an I/O error: the previous day's checkpoint is untouched; say so.
                self._store.add_event(self.id, step, day, "checkpoint_failed", "trainer",
                                      {"day": day, "error": job.error}, branch, conn=conn)
                return
            self._store.add_checkpoint(conn, run_id=self.id, day=day, step=step, branch=branch,
                                       time=_now(), path=rel, size=job.size, sha256=job.sha,
                                       hp=hp, metrics=means)
            self._store.update_run(self.id, conn=conn, day=day, step=step)
        self._queue.append(_Op(op, "checkpoint", job))
        self._saver.jobs.put(job)

    # ------------------------------------------------------------------ commands
    def _boundary(self) -> None:
        """Apply commands, handle divergence, and wait while paused. Runs between steps."""
        if self._diverged is not None:
            self._on_diverged()
        while True:
            while self._inbox:
                self._apply_command(self._inbox.popleft())
                if self._stopping:
                    return
            if not self._paused or self._stopping:
                return
            time.sleep(0.02)

    def _apply_command(self, command: CommandRecord) -> None:
        try:
            handler = {"nudge": self._cmd_nudge, "pause": self._cmd_pause,
                       "resume": self._cmd_resume, "stop": self._cmd_stop,
                       "rollback": self._cmd_rollback,
                       "exploit": self._cmd_exploit}.get(command.kind)
            if handler is None:
                raise InvalidValue(f"unknown command {command.kind!r}")
            handler(command)
        except (BabysitError, ValueError, TypeError, KeyError) as exc:
            self._reject(command, str(exc))

    def _reject(self, command: CommandRecord, reason: str) -> None:
        step, day, branch = self._step, self._day + 1, self._branch
        detail = {"command": command.kind, "args": command.args, "error": reason}

        def op(conn: Any, writer: _Writer) -> None:
            if self._store.close_command(conn, command.id, "rejected", step, reason):
                self._store.add_event(self.id, step, day, "rejected", command.source, detail,
                                      branch, conn=conn)
        self._queue.append(_Op(op))
        self._writer.wake.set()

    def _record(self, command: CommandRecord | None, kind: str, source: str, detail: dict,
                run_values: dict[str, Any] | None = None) -> None:
        """Close the command, add its event and update the run in one transaction."""
        step, day, branch = self._step, self._day + 1, self._branch

        def op(conn: Any, writer: _Writer) -> None:
            if command is not None and not self._store.close_command(conn, command.id, "applied", step):
                return
            self._store.add_event(self.id, step, day, kind, source, detail, branch, conn=conn)
            if run_values:
                self._store.update_run(self.id, conn=conn, **run_values)
        self._queue.append(_Op(op))
        self._writer.wake.set()

    def _cmd_nudge(self, command: CommandRecord) -> None:
        changes = self._nudge(dict(command.args.get("hp", {})))
        self._record(command, "nudge", command.source, changes, {"hp": dict(self._hp)})

    def _nudge(self, updates: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Validate then apply hyperparameters; returns {key: {old, new}}. All or nothing."""
        keys = self._optimizer_keys()
        clean = check_updates(updates, self._hp, strict=self._strict, optimizer_keys=keys)
        changes: dict[str, dict[str, Any]] = {}
        for key, value in clean.items():
            old = self._current(key)
            if key in OPTIMIZER_KEYS and keys is not None:
                self._set_optimizer_value(key, value)
            self._hp[key] = value
            changes[key] = {"old": old, "new": value}
        self._trace_hp()
        return changes

    def _optimizer_keys(self) -> list[str] | None:
        if not self._optimizers:
            return None
        group = self._optimizers[0].param_groups[0]
        keys = ["lr"]
        if "momentum" in group or "betas" in group:
            keys.append("momentum")
        if "weight_decay" in group:
            keys.append("weight_decay")
        return keys

    def _current(self, key: str) -> Any:
        if self._optimizers and key in OPTIMIZER_KEYS:
            group = self._optimizers[0].param_groups[0]
            if key == "momentum":
                return group["betas"][0] if "betas" in group else group.get("momentum")
            return group.get(key)
        return self._hp.get(key)

    def _set_optimizer_value(self, key: str, value: float) -> None:
        if key == "lr":
            self._scale_lr(value)
            return
        for opt in self._optimizers:
            for group in opt.param_groups:
                if key == "momentum" and "betas" in group:
                    group["betas"] = (value, *tuple(group["betas"])[1:])
                elif key in group:
                    group[key] = value

    def _scale_lr(self, value: float) -> None:
        """Set the current lr and scale the schedule with it, so a scheduler's next step keeps
        the nudge instead of overwriting it (closed-form schedulers recompute from base_lrs,
        chainable ones from the group's lr; both are scaled)."""
        current = self._optimizers[0].param_groups[0]["lr"]
        factor = value / current if current else None
        for opt in self._optimizers:
            for group in opt.param_groups:
                group["lr"] = group["lr"] * factor if factor else value
                for key in ("initial_lr", "max_lr", "min_lr"):
                    if isinstance(group.get(key), int | float):
                        group[key] = group[key] * factor if factor else value
        for sched in self._schedulers:
            if hasattr(sched, "base_lrs"):
                sched.base_lrs = [b * factor if factor else value for b in sched.base_lrs]
            if isinstance(getattr(sched, "eta_min", None), int | float) and factor:
                sched.eta_min = sched.eta_min * factor
            if isinstance(getattr(sched, "min_lrs", None), list) and factor:
                sched.min_lrs = [m * factor for m in sched.min_lrs]
            if hasattr(sched, "_last_lr"):
                sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]

    def _sync_hp_from_optimizer(self) -> None:
        """The optimizer is the truth for lr/momentum/weight_decay: show what it really uses."""
        changed = False
        for key in self._optimizer_keys() or []:
            value = self._current(key)
            if isinstance(value, int | float) and self._hp.get(key) != value:
                if key in self._hp and not self._resume:
                    warnings.warn(f"babysit: config {key}={self._hp[key]!r} but the optimizer "
                                  f"uses {value!r}; showing the optimizer's value", stacklevel=3)
                self._hp[key] = value
                changed = True
        values: dict[str, Any] = {"optimizer_keys": self._optimizer_keys()}
        if changed and not self._resume:
            values["hp"] = dict(self._hp)
        self._store.update_run(self.id, **values)

    def _trace_hp(self) -> None:
        """Record hyperparameters as ``hp/<key>`` metrics when they change (a step line)."""
        step, day, now, branch = self._step, self._day + 1, _now(), self._branch
        values = {key: self._current(key) for key in self._hp}
        for key in self._optimizer_keys() or []:
            values[key] = self._current(key)
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if self._traced.get(key) != value:
                self._traced[key] = value
                self._queue.append((step, day, f"hp/{key}", float(value), now, branch))

    def _cmd_pause(self, command: CommandRecord) -> None:
        if self._paused:
            raise InvalidValue(f"run {self.id} is already paused")
        self._paused = True
        self._status = "paused"
        self._record(command, "pause", command.source, {}, {"status": "paused"})

    def _cmd_resume(self, command: CommandRecord) -> None:
        if not self._paused:
            raise InvalidValue(f"run {self.id} is not paused")
        self._paused = False
        self._status = "running"
        self._record(command, "resume", command.source, {}, {"status": "running"})

    def _cmd_stop(self, command: CommandRecord) -> None:
        reason = command.args.get("reason")
        self._stopping = True
        self._paused = False
        self._record(command, "stop", command.source,
                     {"reason": reason} if isinstance(reason, str) and reason else {})

    def _cmd_rollback(self, command: CommandRecord) -> None:
        day = command.args.get("day")
        overrides = dict(command.args.get("hp") or {})
        if isinstance(day, bool) or not isinstance(day, int) or day < 0:
            raise InvalidValue(f"day must be a whole number >= 0, got {day!r}")
        record = self._store.checkpoint(self.id, day)
        if record is None:
            raise InvalidValue(f"run {self.id} has no checkpoint for day {day}")
        if overrides:  # validate before anything changes
            check_updates(overrides, dict(record.hp), strict=self._strict,
                          optimizer_keys=self._optimizer_keys())
        self._rollback(record, overrides, command, command.source)

    def _cmd_exploit(self, command: CommandRecord) -> None:
        """Copy another run's day checkpoint into this run (PBT's exploit), with hp overrides
        (its explore). Validated here again: the command may have been written by anyone."""
        args = command.args
        source, day, reason = args.get("run"), args.get("day"), args.get("reason")
        if isinstance(source, bool) or not isinstance(source, int) or source == self.id:
            raise InvalidValue(f"exploit needs the id of another run, got {source!r}")
        if isinstance(day, bool) or not isinstance(day, int) or day < 0:
            raise InvalidValue(f"day must be a whole number >= 0, got {day!r}")
        if reason is not None and not isinstance(reason, str):
            raise InvalidValue(f"reason must be text, got {reason!r}")
        record = self._store.checkpoint(source, day)
        if record is None:
            raise InvalidValue(f"run {source} has no checkpoint for day {day}")
        overrides = dict(args.get("hp") or {})
        clean = check_updates(overrides, dict(record.hp), strict=self._strict,
                              optimizer_keys=self._optimizer_keys()) if overrides else {}
        payload = ckpt.load(ckpt.safe_path(self._store.root, record.path), record.sha256)
        self._check_compatible(payload, source)
        self._exploit(record, payload, clean, command, reason, args.get("decision"))

    def _check_compatible(self, payload: dict[str, Any], source: int) -> None:
        """Refuse another run's checkpoint before loading any of it if it cannot fit this run
        (other objects, layer shapes or param groups): a half-loaded state is worse than none."""
        state = payload["state"]
        for name, obj in self._objects.items():
            theirs = state.get(name)
            if theirs is None:
                raise CheckpointError(f"run {source}'s checkpoint has no {name} state")
            if isinstance(obj, torch.nn.Module):
                mine = obj.state_dict()
                if set(mine) != set(theirs) or any(
                        tuple(mine[k].shape) != tuple(theirs[k].shape) for k in mine):
                    raise CheckpointError(f"run {source}'s {name} does not have this run's "
                                          "layers and shapes")
            elif isinstance(obj, torch.optim.Optimizer):
                sizes = [len(g["params"]) for g in obj.state_dict()["param_groups"]]
                if sizes != [len(g["params"]) for g in theirs.get("param_groups", [])]:
                    raise CheckpointError(f"run {source}'s {name} has other param groups")

    def _exploit(self, record: CheckpointRecord, payload: dict[str, Any], overrides: dict[str, Any],
                 command: CommandRecord, reason: str | None, decision: Any) -> None:
        from_step, from_day, from_branch = self._step, self._day, self._branch
        old_hp = dict(self._hp)
        user_paused = self._paused and self._status == "paused"
        self._restore(payload)
        # PBT is synchronous at day ends: the source's day normally ends where this run stands,
        # and the run keeps its own step counter. If this run has gone past that step, what it
        # did since is superseded, as a rollback does.
        rewind = self._step < from_step
        if rewind:
            self._branch = from_branch + 1
        else:
            self._step, self._day = from_step, from_day
        self._paused = user_paused
        self._diverged = None
        explore = {k: {"old": self._current(k), "new": v} for k, v in overrides.items()}
        new_hp = {**self._hp, **overrides}
        detail: dict[str, Any] = {
            "from_run": record.run_id, "from_day": record.day, "from_step": record.step,
            "old": old_hp, "new": new_hp, "explore": explore, "rewound_from_step":
            from_step if rewind else None}
        if reason:
            detail["reason"] = reason
        if isinstance(decision, int) and not isinstance(decision, bool):
            detail["decision"] = decision
        step, done_days, branch = self._step, self._day, self._branch
        status = "paused" if user_paused else "running"

        def op(conn: Any, writer: _Writer) -> None:
            if not self._store.close_command(conn, command.id, "applied", step):
                return
            event_id = self._store.add_event(self.id, step, done_days + 1, "exploit",
                                             command.source, detail, branch, conn=conn)
            if rewind:
                self._store.supersede(conn, self.id, step, event_id)
            self._store.update_run(self.id, conn=conn, branch=branch, step=step, day=done_days,
                                   hp=new_hp, status=status)
        self._queue.append(_Op(op, "rollback"))
        self._writer.wake.set()
        self._status = status
        self._traced = {}
        if overrides:
            self._nudge(overrides)      # validated above against the same hyperparameters
        else:
            self._trace_hp()            # (_nudge traces too, with the values it set)
        self._arm_day()

    def _rollback(self, record: CheckpointRecord, overrides: dict[str, Any],
                  command: CommandRecord | None, source: str, reason: str | None = None) -> None:
        payload = ckpt.load(ckpt.safe_path(self._store.root, record.path), record.sha256)
        from_step, from_branch = self._step, self._branch
        # A run the user paused stays paused after a rollback; a diverged one goes on.
        user_paused = self._paused and self._status == "paused"
        self._restore(payload)
        self._branch = from_branch + 1
        self._paused = user_paused
        self._diverged = None
        detail: dict[str, Any] = {"to_day": record.day, "to_step": record.step, "from_step": from_step,
                  "from_branch": from_branch}
        if reason:
            detail["reason"] = reason
        step, day, branch = self._step, self._day + 1, self._branch
        hp = dict(self._hp)
        status = "paused" if user_paused else "running"

        def op(conn: Any, writer: _Writer) -> None:
            if command is not None and not self._store.close_command(conn, command.id, "applied", step):
                return
            event_id = self._store.add_event(self.id, step, day, "rollback", source, detail,
                                             branch, conn=conn)
            self._store.supersede(conn, self.id, record.step, event_id)
            self._store.update_run(self.id, conn=conn, branch=branch, step=step, day=self._day,
                                   hp=hp, status=status)
        self._queue.append(_Op(op, "rollback"))
        self._writer.wake.set()
        self._status = status
        self._traced = {}
        self._trace_hp()
        if overrides:
            changes = self._nudge(overrides)
            self._record(None, "nudge", source, changes, {"hp": dict(self._hp)})
        self._arm_day()

    def _restore(self, payload: dict[str, Any]) -> None:
        """Put every attached object, the RNGs, the counters and the data position back."""
        state = payload["state"]
        missing = [name for name in self._objects if name not in state]
        if missing:
            raise CheckpointError(f"the checkpoint has no state for {missing}")
        for name, obj in self._objects.items():
            obj.load_state_dict(state[name])
        self._step, self._day = int(payload["step"]), int(payload["day"])
        self._epoch, self._batch = int(payload["epoch"]), int(payload["batch"])
        self._hp.clear()
        self._hp.update(payload["hp"])
        self._guard_best, self._guard_limit = math.inf, math.inf
        not_restored = ckpt.restore_rng(payload["rng"])
        if not_restored:
            self._mark_not_reproducible(f"RNG states missing from the checkpoint: {not_restored}")
        self._position = {"epoch_rng": payload.get("epoch_rng"), "batch": self._batch,
                          "rng": payload["rng"]}
        self._reposition = True

    def _mark_not_reproducible(self, why: str) -> None:
        if not self._reproducible:
            return
        self._reproducible = False
        print(f"babysit: WARNING run {self.id} is no longer exactly reproducible: {why}",
              file=sys.stderr)
        self._record(None, "not_reproducible", "trainer", {"reason": why}, {"reproducible": False})

    def _resume_from_store(self) -> None:
        """Start a restarted or forked process from the checkpoint its run row names."""
        self._resumed = True
        resume = self._resume or {}
        payload, corrupt = self._load_resume(resume)
        target_hp = dict(self._hp)
        self._restore(payload)
        self._reposition = False
        supersede = bool(resume.get("supersede"))
        if supersede:
            # A restart redoes steps the crashed process had logged: keep those as a branch.
            self._branch += 1
        overrides = {k: v for k, v in target_hp.items() if payload["hp"].get(k) != v}
        if overrides:
            self._nudge(overrides)
        step, day, branch = self._step, self._day, self._branch
        kind, detail = self._start_event or ("restart", {})
        detail = {**detail, "from_day": day, "overrides": overrides}
        hp = dict(self._hp)

        def op(conn: Any, writer: _Writer) -> None:
            event_id = self._store.add_event(self.id, step, day + 1, kind, "trainer", detail,
                                             branch, conn=conn)
            if supersede:
                self._store.supersede(conn, self.id, step, event_id)
            self._store.update_run(self.id, conn=conn, branch=branch, step=step, day=day, hp=hp,
                                   resume=None)
        self._queue.append(_Op(op, "rollback"))
        # The hp/<key> rows the overrides traced above sit before the restart op, which
        # supersedes them with the rest of this step: trace the hyperparameters again after it.
        self._traced = {}
        for bad in corrupt:     # after the restart event, so the restart does not supersede it
            self._queue.append(_Op(lambda conn, w, bad=bad: self._store.add_event(
                self.id, step, day + 1, "checkpoint_corrupt", "trainer", bad, branch, conn=conn)))
        self._writer.wake.set()
        if self._store.checkpoint(self.id, day) is None:
            self._save_day()   # a fork keeps its own copy of its first day, to roll back to

    def _load_resume(self, resume: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Load the checkpoint a restart or fork starts from: (payload, the corrupt days seen).

        A restart whose checkpoint fails its checks falls back to the run's previous good day,
        loudly; a fork has no day of its own to fall back to, so it fails.
        """
        try:
            path = ckpt.safe_path(self._store.root, resume["path"])
            return ckpt.load(path, resume.get("sha256")), []
        except CheckpointError as exc:
            if not resume.get("supersede"):
                raise
            corrupt = [{"day": resume.get("day"), "path": resume["path"], "error": str(exc)}]
        limit = resume.get("day")
        for record in reversed(self._store.checkpoint_records(self.id)):
            if record.path == resume["path"] or (isinstance(limit, int) and record.day >= limit):
                continue
            try:
                payload = ckpt.load(ckpt.safe_path(self._store.root, record.path), record.sha256)
            except CheckpointError as exc:
                corrupt.append({"day": record.day, "path": record.path, "error": str(exc)})
                continue
            for bad in corrupt:
                bad["fallback_day"] = record.day
                print(f"babysit: WARNING run {self.id}: day {bad['day']} is unusable "
                      f"({bad['error']}); resuming from day {record.day}", file=sys.stderr)
            return payload, corrupt
        raise CheckpointError(f"run {self.id} has no intact checkpoint to restart from: "
                              + "; ".join(f"day {b['day']}: {b['error']}" for b in corrupt))

    def _on_diverged(self) -> None:
        name, value = self._diverged  # type: ignore[misc]
        self._diverged = None
        step, day = self._step, self._day + 1
        guard = self._guard
        detail = {"metric": name, "value": value, "step": step}
        self._record(None, "diverged", "trainer", detail, {"status": "diverged"})
        if guard.policy == "rollback" and self._guard_rollbacks < guard.max_rollbacks:
            record = self._last_good_day()
            if record is not None and "lr" in self._hp:
                self._guard_rollbacks += 1
                new_lr = self._current("lr") * guard.lr_factor
                self._rollback(record, {"lr": new_lr}, None, "autopilot",
                               reason=f"{name} was {value} at step {step}")
                return
        self._paused = True
        self._status = "diverged"
        print(f"babysit: run {self.id} diverged ({name}={value} at step {step}, day {day}); "
              "paused: roll back or nudge, then resume", file=sys.stderr)


    def _last_good_day(self) -> CheckpointRecord | None:
        """The newest listed checkpoint that passes its checks; corrupt ones are reported."""
        for record in reversed(self._store.checkpoint_records(self.id)):
            try:
                ckpt.verify(ckpt.safe_path(self._store.root, record.path), record.sha256)
                return record
            except CheckpointError as exc:
                bad = {"day": record.day, "error": str(exc)}
                where = (self._step, self._day + 1, self._branch)
                self._queue.append(_Op(lambda conn, w, bad=bad, where=where: self._store.add_event(
                    self.id, where[0], where[1], "checkpoint_corrupt", "trainer", bad, where[2],
                    conn=conn)))
        return None


# ---------------------------------------------------------------------- init
def _launch_record() -> dict[str, Any] | None:
    """How this process was started, so forks and restarts need nothing from the user."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    args = argv[1:]
    script = sys.argv[0] if sys.argv else ""
    if not args or script in ("", "-") or script.endswith("ipykernel_launcher.py") or \
            bool(getattr(sys, "ps1", None)) or sys.flags.interactive:
        return None
    keep = ("PYTHONPATH", "CUDA_VISIBLE_DEVICES", "BABYSIT_ROOT", "BABYSIT_STORE_URL")
    return {"executable": sys.executable, "argv": args, "cwd": os.getcwd(),
            "env": {k: os.environ[k] for k in keep if k in os.environ}}


def init(project: str = "default", config: Mapping[str, Any] | None = None, *,
         day: str | int = "1000 steps", name: str | None = None, strict: bool = False,
         root: str | os.PathLike[str] | None = None, store_url: str | None = None,
         guard: Guard | None = None, poll_interval: float = 0.05) -> Run:
    """Start babysitting this process: returns the ``Run`` the training loop talks to.

    With no arguments the store is ``./checkpoints`` (or ``$BABYSIT_ROOT``). When babysit itself
    launched this process (a fork, a restart, ``babysit run``), ``$BABYSIT_RUN_ID`` names the run
    and its stored hyperparameters win over ``config``.

    >>> run = babysit.init(project="digits", config={"lr": 0.1, "momentum": 0.9}, day="200 steps")
    """
    if not isinstance(project, str) or not project.strip():
        raise InvalidValue(f"project must be a non-empty string, got {project!r}")
    config = dict(config or {})
    for key in config:
        if not isinstance(key, str):
            raise InvalidValue(f"config keys must be strings, got {key!r}")
    spec = DaySpec.parse(day)
    store = Store.open(root, url=store_url)
    env_id = os.environ.get("BABYSIT_RUN_ID")
    event: tuple[str, dict] | None = None
    if env_id:
        record = store.get_run(env_id)
        # One process per run: a second init() with the same id (e.g. a user re-running a fork's
        # command by hand) must not hijack a live run.
        if record.status not in ("starting", "crashed", "stopped"):
            raise BabysitError(f"run {record.id} is {record.status}; it already has a process")
        fill: dict[str, Any] = {}
        if record.launch is None:
            fill["launch"] = _launch_record()
        if not record.resume and record.step == 0:
            # launched by `babysit run`: the script's own init() supplies what the CLI did not
            fill.update(config={**config, **record.config}, hp={**config, **record.hp})
            if not record.project:
                fill["project"] = project.strip()
                if record.name == f"run-{record.id}":
                    fill["name"] = name or f"{project.strip()}-{record.id}"
            if not record.day_spec:
                fill["day_spec"] = str(spec)
        if fill:
            store.update_run(record.id, **fill)
        if record.parent_id is not None and record.resume:
            event = ("forked", {"parent": record.parent_id, "day": record.parent_day})
        elif record.resume:
            event = ("restart", {})
        run_id = record.id
    else:
        run_id = store.create_run(
            project=project.strip(), name=name or "", status="starting", config=config,
            hp=config, strict=bool(strict), day_spec=str(spec), launch=_launch_record())
        if not name:
            store.update_run(run_id, name=f"{project.strip()}-{run_id}")
    run = Run(store, run_id, guard=guard, poll_interval=poll_interval)
    run._start(event)
    return run


def default_root() -> Path:
    return Path(os.environ.get("BABYSIT_ROOT") or "checkpoints").resolve()
