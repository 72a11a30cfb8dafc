"""Day checkpoints off the loop thread: the loop takes a snapshot, the saver writes the file.

The loop thread copies the state to CPU (``snapshot``) and hands a ``SaveJob`` to the saver
thread, which serializes, fsyncs and renames the file, then calls ``on_done`` (the outbox lists
the checkpoint only once its file and manifest are complete). The loop waits for the previous
day's file before it snapshots the next (``wait_idle``), so the saver is never more than one day
behind: a process killed at any moment loses at most the day in progress.
"""

from __future__ import annotations

import copy
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from babysit.storage import CheckpointStorage


def snapshot(value: Any) -> Any:
    """A copy of a state_dict that the next training step cannot change (tensors on CPU).

    Copying to CPU (rather than cloning on the GPU) costs no accelerator memory; it is the copy
    ``torch.save`` would make anyway, done here so the saver thread can write at its own pace.
    """
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        out = copy.copy(value)      # keeps the type and extras such as a state_dict's _metadata
        for key, item in value.items():
            out[key] = snapshot(item)
        return out
    if isinstance(value, list):
        return [snapshot(item) for item in value]
    if isinstance(value, tuple):
        return tuple(snapshot(item) for item in value)
    if value is None or isinstance(value, int | float | str | bool):
        return value
    return copy.deepcopy(value)


class SaveJob:
    """One day checkpoint on its way to disk: a snapshot of the state, then the file's facts
    (``size``, ``sha``) or the ``error`` that stopped it. ``done`` is set either way."""

    __slots__ = ("path", "payload", "done", "size", "sha", "error")

    def __init__(self, path: Path, payload: dict[str, Any]):
        self.path, self.payload = path, payload
        self.done = threading.Event()
        self.size, self.sha, self.error = 0, "", ""


class Saver:
    """The saver thread: writes day checkpoints, oldest first."""

    def __init__(self, run_id: int, on_done: Callable[[], None], checkpoints: CheckpointStorage,
                 root: Path):
        self._checkpoints, self._root = checkpoints, root
        self._jobs: queue.SimpleQueue[SaveJob | None] = queue.SimpleQueue()
        self._on_done = on_done
        self._last: SaveJob | None = None
        self._thread = threading.Thread(target=self._run, name=f"babysit-saver-{run_id}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: SaveJob) -> None:
        self._last = job
        self._jobs.put(job)

    def wait_idle(self) -> None:
        """Block until every submitted file is written (or has failed)."""
        if self._last is not None and self._thread.is_alive():
            self._last.done.wait()

    def close(self) -> None:
        """Write what is queued, then end the thread; safe to call twice."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job.size, job.sha = self._checkpoints.save(
                    str(job.path.relative_to(self._root)), job.payload)
            except Exception as exc:  # noqa: BLE001 - disk full, I/O error, unpicklable state
                job.error = f"{type(exc).__name__}: {exc}"
                print(f"babysit: could not save {job.path.name}: {job.error}", file=sys.stderr)
            finally:
                job.payload = {}    # free the snapshot
                job.done.set()
                self._on_done()
