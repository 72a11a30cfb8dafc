"""The training side: a user's own PyTorch loop gains live metrics, day checkpoints and commands.

    run = babysit.init(project="digits", config={"lr": 0.1}, day="200 steps")
    run.attach(model=model, optimizer=opt, scheduler=sched)
    for batch in run.loop(loader, epochs=20):
        ...
        run.log(loss=loss.item())
    run.finish()

Three threads. The loop thread (the user's) runs the steps; between two steps, at the step
boundary, it applies commands and ends the day when due. ``run.log`` only appends to the outbox
(``outbox.py``), whose writer thread writes to the store in batches and polls for commands; at a
day's end the loop thread snapshots the state and the saver thread (``saver.py``) writes the
file. So logging, nudges, pauses and day ends never wait on the store or the disk, with three
exceptions where the loop thread does wait: a day's end waits for the previous day's file (the
saver is never more than a day behind), a rollback or exploit reads its checkpoint from disk and
the checkpoint list from the store (``commands.py``), and a restarted or forked process loads
its checkpoint before its first step (``resume.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import dis
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import psutil
import torch

from babysit import checkpoint as ckpt
from babysit.day import DaySpec
from babysit.errors import BabysitError, InvalidValue
from babysit.names import check_name
from babysit.storage import open_storage
from babysit.store import CheckpointRow, RunUpdate, Store
from babysit.trainer import commands, knobs, resume
from babysit.trainer.guard import Guard
from babysit.trainer.outbox import Outbox
from babysit.trainer.saver import SaveJob, Saver, snapshot
from babysit.trainer.state import HpView, LoopState, has_tensor_knob

#: how long a day's end waits for the previous day's row to be written (a healthy store takes
#: milliseconds; a failing one is not waited for at all)
DAY_ROW_WAIT_S = 10.0


class _ExitCodes:
    """The code of a ``sys.exit()`` called on the main thread while a run is open.

    Python tells atexit handlers nothing of how the process ends, and a ``SystemExit`` reaches
    neither ``sys.excepthook`` nor ``sys.last_value``; so, as wandb's exit hooks do, babysit wraps
    ``sys.exit`` while a run is open and puts the original back when the last one closes (if
    nobody replaced it meanwhile). ``raise SystemExit(n)`` and the builtin ``exit(n)`` bypass it:
    ``with run:`` and ``babysit run`` see those too.
    """

    def __init__(self) -> None:
        self.original: Callable[..., Any] | None = None
        self.open = 0
        self.last: tuple[Any, int] | None = None     # (sys.exit's argument, the run's step)
        self.step_of: Callable[[], int] = lambda: -1
        self.wrapper = self._exit       # one bound method, so `sys.exit is self.wrapper` holds

    def install(self, step_of: Callable[[], int]) -> None:
        self.open += 1
        self.step_of = step_of
        if self.original is None:
            self.original = sys.exit
            sys.exit = self.wrapper     # type: ignore[assignment]  # wrapped on purpose

    def uninstall(self) -> None:
        self.open = max(0, self.open - 1)
        if self.open == 0 and self.original is not None:
            if sys.exit is self.wrapper:
                sys.exit = self.original
            self.original = None

    def _exit(self, status: Any = None) -> None:
        if threading.current_thread() is threading.main_thread():
            self.last = (status, self.step_of())
        assert self.original is not None
        self.original(status)

    def code_at(self, step: int) -> tuple[Any] | None:
        """The argument of the sys.exit() called at ``step`` (one that a caller caught earlier,
        at another step, does not count), in a 1-tuple; None if there was none."""
        if self.last is not None and self.last[1] == step:
            return (self.last[0],)
        return None


_exit_codes = _ExitCodes()


class Run:
    """A babysat training run, seen from inside the training process. Create with ``init()``."""

    def __init__(self, store: Store, run_id: int, *, guard: Guard | None = None,
                 poll_interval: float = 0.05, flush_interval: float = 0.25,
                 heartbeat_interval: float = 1.0, start_from: dict[str, Any] | None = None):
        record = store.get_run(run_id)
        self.id = record.id
        self.project, self.name = record.project, record.name
        self.day_spec = DaySpec.parse(record.day_spec)
        folder, self._previous_owner = resume.claim_folder(store, record)
        self._record = record
        self._guard = guard or Guard()
        state = LoopState(run_id=self.id, store=store, folder=folder, hp=dict(record.hp),
                          checkpoints=open_storage(root=store.root),
                          day_spec=self.day_spec, strict=record.strict,
                          reproducible=record.reproducible, branch=record.branch,
                          guard=self._guard)
        state.outbox = Outbox(store, self.id, state.where, folder, poll_s=poll_interval,
                              flush_s=flush_interval, heartbeat_s=heartbeat_interval,
                              report=state.effective_report)
        state.saver = Saver(self.id, state.outbox.wake.set, state.checkpoints, store.root)
        self._state = state
        self._queue = state.outbox.queue
        self._log_row = state.outbox.queue.append      # the hot path of run.log
        self._watched = self._guard.metric
        self._queue_limit = state.outbox.max_queued
        #: the configured hyperparameters, read-only (change them with nudges); the loop's
        #: reads are recorded, so a key it no longer reads shows as such
        self.hp: Mapping[str, Any] = HpView(state)
        self._day_callbacks: list[Callable[[int], Any]] = []
        self._metric_names: set[str] = set()
        self._max_days = record.max_days     # a study's trial ends by itself after this day
        self._days_done = False
        self._start_from = start_from     # see resume.start_point
        self._started_from_checkpoint = False
        self._start_event: tuple[str, dict[str, Any]] = ("restarted", {})
        self._closed = False
        self._in_loop = False
        self._driven = False             # drive() has taken the optimizer's values once
        self._left_loop_by_exception = False
        self._sigterm_before: Any = None

    # ------------------------------------------------------------------ public properties
    @property
    def step(self) -> int:
        """Steps completed so far (inside the loop body: the index of the current step)."""
        return self._state.step

    @property
    def day(self) -> int:
        """The day in progress (1-based); ``day - 1`` is the last checkpointed day."""
        return self._state.day + 1

    @property
    def epoch(self) -> int:
        return self._state.position.epoch

    @property
    def status(self) -> str:
        return self._state.status

    @property
    def store(self) -> Store:
        return self._state.store

    def __repr__(self) -> str:
        return f"<babysit.Run {self.id} {self.name!r} step={self.step} status={self.status}>"

    # ------------------------------------------------------------------ for framework loops
    # A framework (the Hugging Face Trainer, Lightning) runs its own loop and drives the run
    # from its callbacks (babysit/integrations). It does so through the methods below and the
    # LoopState's documented fields and methods, never through the Run's private parts, so
    # that this class can change without breaking them.
    @property
    def state(self) -> LoopState:
        """The loop's state (counters, flags, hyperparameters, outbox, saver; see
        ``LoopState``), for an integration whose framework runs the loop.

        >>> run.state.step, run.state.outbox.inbox()
        """
        return self._state

    def drive(self, optimizers: Iterable[Any], schedulers: Iterable[Any]) -> None:
        """A framework's loop drives the run from here on: nudges reach ``optimizers``
        (wrappers such as Accelerate's included) and rescale ``schedulers``; SIGTERM stops at
        the next step boundary instead of raising. Call it again when the framework builds
        them anew (a fit entered again): the first call with an optimizer takes its values as
        the run's hyperparameters, as ``attach`` does.

        >>> run.drive([trainer.optimizer], [trainer.lr_scheduler])
        """
        state = self._state
        state.optimizers[:] = [o for o in optimizers if o is not None]
        inner = [knobs.unwrap(o) for o in state.optimizers]
        state.tensor_optimizers[:] = [o for o in inner if has_tensor_knob(o)]
        state.plain_optimizers[:] = [o for o in inner if not has_tensor_knob(o)]
        state.schedulers[:] = [s for s in schedulers if s is not None]
        self._in_loop = True
        if state.optimizers and not self._driven:
            self._driven = True
            self._sync_hp_from_optimizer()
            state.trace_hp()

    @property
    def starts_from_checkpoint(self) -> bool:
        """A restarted or forked process: the loop must start from the run's checkpoint."""
        return bool(self._start_from)

    def take_start(self) -> tuple[dict[str, Any], tuple[str, dict[str, Any]]] | None:
        """Once, for a restarted or forked process whose framework loads the checkpoint
        itself: ``(start_from, (event kind, detail))``, the checkpoint to start from (see
        ``resume.load_start``) and the event to record once it is loaded; None otherwise and
        at every later call.

        >>> start = run.take_start()
        """
        if not self._start_from or self._started_from_checkpoint:
            return None
        self._started_from_checkpoint = True
        return self._start_from, self._start_event

    def day_saved(self) -> None:
        """A day's checkpoint is queued (``state.day`` counts it): a study's trial whose last
        day this was ends as finished at the next step boundary."""
        if self._max_days is not None and self._state.day >= self._max_days:
            self._days_done = True      # end the loop as a stop would, but as finished
            self._state.stopping = True

    def end(self, exc: BaseException | None = None) -> None:
        """The framework's loop is over: the run ends finished or stopped, crashed with
        ``exc``, stopped when ``exc`` is a KeyboardInterrupt. Safe to call twice.

        >>> try: trainer.fit(model)
        ... except BaseException as exc: run.end(exc); raise
        ... else: run.end()
        """
        self._in_loop = False
        if exc is None:
            self.finish()
        else:
            self.__exit__(type(exc), exc, exc.__traceback__)

    # ------------------------------------------------------------------ lifecycle
    def _start(self, start_event: tuple[str, dict[str, Any]] | None) -> None:
        state = self._state
        resume.clean_leftovers(state.store, state.checkpoints, self._record, state.folder,
                               self._start_from, self._previous_owner)
        pid = os.getpid()
        try:
            pid_start = psutil.Process(pid).create_time()
        except psutil.Error:
            pid_start = None
        records: list[Any] = [RunUpdate(self.id, {
            "status": "running", "pid": pid, "pid_start": pid_start, "host": socket.gethostname(),
            "heartbeat": time.time(), "error": None, "ended": None})]
        # A restarted or forked process records its start once it knows the checkpoint's step.
        if start_event is not None:
            self._start_event = start_event
        if not self._start_from:
            records.append(state.event("started", "trainer",
                                       {"hp": dict(state.hp), "day": str(self.day_spec)}))
        state.store.apply(records)
        state.outbox.start()
        state.saver.start()
        atexit.register(self._atexit)
        _exit_codes.install(lambda: self._state.step)
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError):
                self._sigterm_before = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # Stop at the next step boundary; a second SIGTERM ends the process at once.
        if self._state.stopping:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        self._state.stopping = True
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
        state = self._state
        named = {"model": model, "optimizer": optimizer, "scheduler": scheduler, **objects}
        for name, obj in named.items():
            if obj is None:
                continue
            if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
                raise InvalidValue(f"{name} has no state_dict()/load_state_dict(), got {type(obj).__name__}")
            state.objects[name] = obj
            if knobs.is_optimizer(obj):
                state.optimizers.append(obj)
                inner = knobs.unwrap(obj)
                (state.tensor_optimizers if has_tensor_knob(inner)
                 else state.plain_optimizers).append(inner)
            elif knobs.is_scheduler(obj):
                state.schedulers.append(obj)
        if state.optimizers:
            self._sync_hp_from_optimizer()
        self._start_from_checkpoint()
        return self

    def _sync_hp_from_optimizer(self) -> None:
        """The optimizer is the truth for lr/momentum/weight_decay: its configured values
        (before a schedule's first factor, e.g. a warmup's) become the run's hp, and what it
        uses now becomes the run's effective values."""
        state = self._state
        changed = False
        for key, value in knobs.optimizer_values(state.optimizers).items():
            if state.hp.get(key) != value and not self._start_from:
                if key in state.hp:
                    warnings.warn(f"babysit: config {key}={state.hp[key]!r} but the optimizer "
                                  f"was given {value!r}; showing the optimizer's", stacklevel=4)
                state.hp[key] = value
                changed = True
        values: dict[str, Any] = {"optimizer_keys": knobs.optimizer_keys(state.optimizers),
                                  "effective": state.effective()}
        if changed:
            values["hp"] = dict(state.hp)
        state.outbox.put(RunUpdate(self.id, values))

    def _start_from_checkpoint(self) -> None:
        """A restarted or forked process: load the checkpoint the run row names, once."""
        if not self._start_from or self._started_from_checkpoint:
            return
        self._started_from_checkpoint = True
        if resume.start_from_checkpoint(self._state, self._start_from, self._start_event):
            self._save_day()   # a fork keeps its own copy of its first day, to roll back to

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
        self._close(status or self._end_status(), None)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._closed:
            return
        self._closed = True
        self._close(*self._ending(exc))

    def _ending(self, exc: BaseException | None) -> tuple[str, str | None, str | None]:
        """(status, error, reason) of a run whose process ends with ``exc`` (None: normally).

        Ctrl-C (KeyboardInterrupt, also SIGTERM outside the loop) is a stop, "interrupted";
        ``sys.exit(0)`` ends as a normal end would; any other exit code or exception is a crash
        whose error says what happened (the exit code, or the traceback).
        """
        if exc is None:
            return self._end_status(), None, None
        if isinstance(exc, KeyboardInterrupt):
            return "stopped", "interrupted", "interrupted"
        if isinstance(exc, SystemExit):
            code = exc.code
            if code is None or code == 0:
                return self._end_status(), None, None
            number = code if isinstance(code, int) else 1     # sys.exit("message") exits 1
            return ("crashed", f"the process exited with code {number} (sys.exit({code!r})) at "
                               f"step {self._state.step}", None)
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return "crashed", text[-4000:], None

    def _end_status(self) -> str:
        """How a loop that ended without an error ends: stopped by a command, or finished (all
        its epochs/steps, or its ``max_days``)."""
        return "stopped" if self._state.stopping and not self._days_done else "finished"

    def _atexit(self) -> None:
        """The process ends without finish() or ``with run:``. An uncaught exception is in
        ``sys.last_value`` by now; a ``sys.exit(n)`` leaves no trace there but in ``_exit_codes``.
        A loop that an exception left (see ``_loop``) with nothing else to go on (``raise
        SystemExit``) ends as a crash whose exit code only ``with run:`` (or ``babysit run``,
        which waits for the process) can tell."""
        if self._closed:
            return
        self._closed = True
        last = getattr(sys, "last_value", None)
        exited = _exit_codes.code_at(self._state.step)
        if last is not None:
            self._close(*self._ending(last))
        elif exited is not None:
            self._close(*self._ending(SystemExit(exited[0])))
        elif self._left_loop_by_exception and not self._state.stopping:
            self._close("crashed", f"the process exited from inside the training loop at step "
                                   f"{self._state.step} (sys.exit, or an exception caught "
                                   "outside the loop); use `with run:` to record the exit code",
                        None)
        else:
            self._close(self._end_status(), None, None)

    def _close(self, status: str, error: str | None, reason: str | None = None) -> None:
        """End the run: finish the checkpoints queued, write everything logged (or save it to
        a file), record the final status, release the store, its threads and connections."""
        state = self._state
        state.status = status
        state.saver.close()
        detail: dict[str, Any] = {"reason": reason} if reason else {"error": error} if error else {}
        state.outbox.put(
            RunUpdate(self.id, {"status": status, "ended": time.time(), "error": error,
                                "step": state.step, "heartbeat": time.time(),
                                "effective": state.effective()}),
            state.event(status, "trainer", detail))
        state.outbox.close()
        if not state.outbox.lost:
            with contextlib.suppress(BabysitError):
                state.store.cancel_pending(self.id, f"run {self.id} is {status}")
        state.store.close()
        atexit.unregister(self._atexit)
        _exit_codes.uninstall()
        if self._sigterm_before is not None and \
                threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGTERM, self._sigterm_before)
            self._sigterm_before = None

    # ------------------------------------------------------------------ logging (hot path)
    def log(self, **metrics: float) -> None:
        """Record scalars at the current step, e.g. ``run.log(loss=loss.item(), acc=acc)``.

        Costs well under a microsecond per value: rows go to a queue that a background thread
        writes in batches, so a slow or locked store never stalls training. A loop that logs
        faster than the store can write waits for it once the queue holds ``MAX_QUEUED`` items
        (a ``throttled`` event says for how long): memory stays bounded, no row is dropped.
        """
        state = self._state
        step, day, now, branch = state.step, state.day + 1, time.time(), state.branch
        put, known, watched = self._log_row, self._metric_names, self._watched
        for name, value in metrics.items():
            if name not in known:       # checked once per name: log() stays a set lookup
                known.add(check_name("metric name", name))
            if type(value) is not float:
                value = float(value)
            put((step, day, name, value, now, branch))
            if name == watched:
                guard = self._guard
                # best <= value < limit is the guard's quiet range, where observe() changes
                # nothing (most steps): a comparison here is cheaper than the call
                if not guard.best <= value < guard.limit:
                    guard.observe(value)
        if len(self._queue) > self._queue_limit:
            # the store writes slower than the loop logs: wait for it rather than grow
            # without bound (an event says for how long; see trainer/outbox.py)
            state.outbox.throttle()

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
            yield from self._steps(loader, epochs, steps)
        except GeneratorExit:
            # The user's code left the loop: a break, or an exception unwinding their frame
            # (sys.exit leaves no other trace for _atexit).
            self._left_loop_by_exception = _unwinding(sys._getframe(1))
            raise
        except BaseException:
            self._left_loop_by_exception = True
            raise
        finally:
            self._in_loop = False

    def _steps(self, loader: Iterable[Any] | None, epochs: int | None, steps: int | None
               ) -> Iterator[Any]:
        state = self._state
        position = state.position
        self._begin()
        if loader is None:
            while state.step < steps and not state.stopping:  # type: ignore[operator]
                yield state.step
                self._after_step()
            return
        while not state.stopping:
            if (epochs is not None and position.epoch >= epochs) or \
                    (steps is not None and state.step >= steps):
                return
            exhausted = True
            for batch in position.open_epoch(loader, state.mark_not_reproducible):
                yield batch
                position.batch += 1
                self._after_step()
                if position.reposition or state.stopping or \
                        (steps is not None and state.step >= steps):
                    exhausted = False
                    break
            if position.reposition:     # a rollback or exploit: reopen at its position
                continue
            if not exhausted:
                return
            position.end_epoch()
            if self.day_spec.unit == "epochs" and \
                    position.epoch % int(self.day_spec.amount) == 0:
                self._end_day()
            self._boundary()

    def _begin(self) -> None:
        state = self._state
        self._start_from_checkpoint()
        if not self._started_from_checkpoint and state.store.checkpoint(self.id, 0) is None:
            self._save_day()        # day 0: the very start, so a user can always go back to it
        state.arm_day()
        state.effective()
        state.trace_hp()

    def _after_step(self) -> None:
        """The step boundary: count the step, end the day when due, apply commands."""
        state = self._state
        state.step += 1
        if state.step >= state.next_day_step or (
                state.day_deadline is not math.inf and time.monotonic() >= state.day_deadline):
            self._end_day()
        if state.outbox.inbox() or state.paused or self._guard.tripped is not None or \
                state.outbox.lost:
            self._boundary()
        if state.optimizers:
            state.knobs_moved()

    def _boundary(self) -> None:
        """Apply commands, handle divergence, and wait while paused. Runs between steps."""
        state = self._state
        tripped = self._guard.take()
        if tripped is not None:
            commands.on_diverged(state, *tripped)
        if state.outbox.lost and not state.paused:
            # the store is gone (the writer said why in the log): wait for a stop, as paused
            state.paused, state.status = True, "paused"
        while True:
            inbox = state.outbox.inbox()
            # A run that is ending (a stop, or a trial's last day just saved) applies nothing
            # more: what is still queued is cancelled at finish. An exploit applied here would
            # restore an earlier day and then end there ("finished" at day 5 of 8).
            while inbox and not state.stopping:
                commands.apply(state, inbox.popleft())
            if state.stopping or not state.paused:
                return
            time.sleep(0.02)

    # ------------------------------------------------------------------ days and checkpoints
    def _end_day(self) -> None:
        state = self._state
        if self._guard.tripped is not None:
            self._boundary()   # never checkpoint a diverged state
            if state.position.reposition or state.stopping:
                return
        for callback in self._day_callbacks:
            callback(state.day + 1)
        if not self._weights_finite():
            self._guard.trip("weights", math.nan)
            self._boundary()
            return
        state.day += 1
        self._save_day()
        state.arm_day()
        self.day_saved()

    def _weights_finite(self) -> bool:
        for obj in self._state.objects.values():
            if isinstance(obj, torch.nn.Module):
                for param in obj.parameters():
                    if not bool(torch.isfinite(param).all()):
                        return False
        return True

    def _save_day(self) -> None:
        """Snapshot the state as the checkpoint of the day just done; the saver writes it."""
        state = self._state
        # The previous day's file, then its row, first: never more than a day behind.
        state.saver.wait_idle()
        state.outbox.wait_days_written(DAY_ROW_WAIT_S)
        day, step, branch = state.day, state.step, state.branch
        payload = {
            "format": ckpt.FORMAT, "run_id": self.id, "day": day, "step": step, "branch": branch,
            **state.position.state(), "hp": dict(state.hp), "rng": ckpt.capture_rng(),
            "time": time.time(),
            "state": {name: snapshot(obj.state_dict()) for name, obj in state.objects.items()},
        }
        path = state.folder / ckpt.checkpoint_name(day, branch)
        job = SaveJob(path, payload)
        state.outbox.day_end(job, CheckpointRow(
            self.id, day, step, branch, time.time(), str(path.relative_to(state.store.root)),
            0, "", dict(state.hp), {}))
        state.saver.submit(job)


def _unwinding(frame: types.FrameType | None) -> bool:
    """Is ``frame`` (the user's, which held the loop) being unwound by an exception, rather
    than leaving the loop by ``break`` or ``return``? Both close the loop's generator; a break
    or return does it at the POP_TOP that drops the iterator, an exception wherever it was
    raised. (CPython bytecode; anything unexpected counts as a normal exit.)"""
    try:
        assert frame is not None
        return dis.opname[frame.f_code.co_code[frame.f_lasti]] != "POP_TOP"
    except Exception:      # noqa: BLE001 - another interpreter: no opinion
        return False
