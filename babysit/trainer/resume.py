"""Starting a process of an existing run: from the checkpoint its run row names (a restart or a
fork), after removing what an earlier, killed process of the run left half-written."""

from __future__ import annotations

import sys
from typing import Any

from babysit.errors import BabysitError, CheckpointError
from babysit.storage import CheckpointStorage
from babysit.store import RunUpdate, Store, Supersede
from babysit.trainer import commands
from babysit.trainer.state import LoopState


def clean_leftovers(store: Store, checkpoints: CheckpointStorage, run_id: int,
                    start_from: dict[str, Any] | None) -> None:
    """Remove what a killed process of this run left half-written: temporary files, unfinished
    uploads and checkpoint files the store does not list. Runs before this process writes."""
    try:
        records = store.checkpoint_records(run_id, include_superseded=True)
    except BabysitError:
        return      # without the list nothing is provably stale: keep everything
    keep = [r.path for r in records]
    if start_from and isinstance(start_from.get("path"), str):
        keep.append(start_from["path"])
    try:
        removed = checkpoints.clean_run(run_id, keep)
    except BabysitError as exc:   # shared storage unreachable: leftovers wait for next time
        print(f"babysit: run {run_id}: could not clean up unfinished checkpoints: {exc}",
              file=sys.stderr)
        return
    if removed:
        print(f"babysit: run {run_id}: removed {len(removed)} unfinished checkpoint "
              f"file(s) left by an earlier process: {', '.join(removed)}", file=sys.stderr)


def load_start(loop: LoopState, start_from: dict[str, Any]
               ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Load the checkpoint a restart or fork starts from: (payload, the corrupt days seen).

    A restart whose checkpoint fails its checks falls back to the run's previous good day,
    loudly; a fork has no day of its own to fall back to, so it fails.
    """
    store = loop.store
    try:
        return loop.checkpoints.load(start_from["path"], start_from.get("sha256")), []
    except CheckpointError as exc:
        if not start_from.get("supersede"):
            raise
        corrupt = [{"day": start_from.get("day"), "path": start_from["path"], "error": str(exc)}]
    limit = start_from.get("day")
    for record in reversed(store.checkpoint_records(loop.run_id)):
        if record.path == start_from["path"] or (isinstance(limit, int) and record.day >= limit):
            continue
        try:
            payload = loop.checkpoints.load(record.path, record.sha256)
        except CheckpointError as exc:
            corrupt.append({"day": record.day, "path": record.path, "error": str(exc)})
            continue
        for bad in corrupt:
            bad["fallback_day"] = record.day
            print(f"babysit: WARNING run {loop.run_id}: day {bad['day']} is unusable "
                  f"({bad['error']}); resuming from day {record.day}", file=sys.stderr)
        return payload, corrupt
    raise CheckpointError(f"run {loop.run_id} has no intact checkpoint to restart from: "
                          + "; ".join(f"day {b['day']}: {b['error']}" for b in corrupt))


def start_from_checkpoint(loop: LoopState, start_from: dict[str, Any],
                          start_event: tuple[str, dict[str, Any]]) -> bool:
    """Restore the checkpoint a restarted or forked process starts from, with the run's own
    hyperparameters on top (a fork's overrides); records ``start_event`` (``restarted`` or
    ``forked``). Returns True when the run has no checkpoint of this day yet (a fork): the
    caller saves one, so the run can always roll back to where it started."""
    payload, corrupt = load_start(loop, start_from)
    target_hp = dict(loop.hp)
    commands.restore(loop, payload)
    loop.position.reposition = False        # the loop has not opened an epoch yet
    supersede = bool(start_from.get("supersede"))
    if supersede:
        # A restart redoes steps the crashed process had logged: keep those as a branch.
        loop.branch += 1
    overrides = {k: v for k, v in target_hp.items() if payload["hp"].get(k) != v}
    if overrides:
        commands.set_hp(loop, overrides)
    kind, detail = start_event
    detail = {**detail, "from_day": loop.day, "overrides": overrides}
    loop.outbox.rewind(*([Supersede(loop.run_id, loop.step)] if supersede else []),
                       loop.event(kind, "trainer", detail),
                       RunUpdate(loop.run_id, {"branch": loop.branch, "step": loop.step,
                                               "day": loop.day, "hp": dict(loop.hp),
                                               "start_from": None}))
    loop.traced = {}        # traced again by the loop, after the restart's records
    for bad in corrupt:     # after the restart event, so the restart does not supersede it
        loop.outbox.put(loop.event("checkpoint_corrupt", "trainer", bad))
    return loop.store.checkpoint(loop.run_id, loop.day) is None
