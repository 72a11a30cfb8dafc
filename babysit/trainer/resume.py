"""Starting a process of an existing run: from the checkpoint its run row names (a restart or a
fork), after removing what an earlier, killed process of the run left half-written."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from babysit import checkpoint as ckpt
from babysit.errors import BabysitError, CheckpointError
from babysit.storage import CheckpointStorage
from babysit.store import RunRecord, RunUpdate, Store, Supersede
from babysit.trainer import commands
from babysit.trainer.state import LoopState


def start_point(store: Store, record: RunRecord
                ) -> tuple[dict[str, Any] | None, tuple[str, dict[str, Any]] | None]:
    """Where a new process of an existing run starts: (the checkpoint, the start event).

    The run row's ``start_from`` (a restart or a fork), or, for a fork that has no checkpoint
    of its own yet (it crashed before its first day was listed, and a restart found nothing of
    its own to start from), the parent's checkpoint it was forked from: a fork never starts
    again from fresh weights. (None, None): a new run, from the script's own initial state.
    """
    if record.start_from:
        if record.parent_id is not None and not record.start_from.get("supersede"):
            return record.start_from, ("forked", {"parent": record.parent_id,
                                                  "day": record.parent_day})
        return record.start_from, ("restarted", {})
    if record.parent_id is None or record.parent_day is None or \
            store.checkpoint_records(record.id, include_superseded=True):
        return None, None
    # the parent's checkpoint of that day that was live when the fork was made (the parent
    # may have rolled back and redone the day since)
    candidates = [r for r in store.checkpoint_records(record.parent_id, include_superseded=True)
                  if r.day == record.parent_day and r.time <= record.created]
    if not candidates:
        raise CheckpointError(
            f"run {record.id} is a fork of run {record.parent_id}'s day {record.parent_day} and "
            "has no checkpoint of its own, but that day's checkpoint is no longer listed; it "
            "will not start again from fresh weights")
    fork_point = candidates[-1]
    print(f"babysit: run {record.id} has no checkpoint of its own yet: starting again from "
          f"run {record.parent_id}'s day {fork_point.day}, where it was forked", file=sys.stderr)
    return ({"path": fork_point.path, "sha256": fork_point.sha256, "day": fork_point.day,
             "supersede": False},
            ("restarted", {"parent": record.parent_id, "day": fork_point.day}))


# ------------------------------------------------------------------------- the run's folder
OWNER_FILE = "owner.json"
_CHECKPOINT = re.compile(r"^day\d{4,}\.b\d+\.pt$")
#: a process on another host counts as alive while its heartbeat is younger than this
REMOTE_ALIVE_S = 60.0


def _read_owner(folder: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _holds_checkpoints(folder: Path) -> bool:
    try:
        return any(_CHECKPOINT.match(entry.name) for entry in folder.iterdir())
    except OSError:
        return False


def claim_folder(store: Store, record: RunRecord) -> tuple[Path, dict[str, Any] | None]:
    """The folder this run's checkpoints go to, and who held it before this process.

    ``runs/<id>``, unless it belongs to another run: a store removed and created again under
    live runs hands out the same ids, and the new run 1 must neither write over nor clean up
    the files of the old one. A folder names its run in ``owner.json`` (the run's id and
    creation time); a folder that names another run, or that holds checkpoints the store does
    not list and no owner (written before owner files existed), or that is a symlink, is not
    this run's: the run takes ``runs/<id>.1`` (``.2``, ...) instead. The owner file is
    rewritten with this process's pid and host.
    """
    listed = {Path(r.path).parent for r in store.checkpoint_records(record.id,
                                                                     include_superseded=True)}
    base = ckpt.run_dir(store.root, record.id)
    for n in range(1000):
        folder = base if n == 0 else base.with_name(f"{record.id}.{n}")
        if folder.is_symlink():
            continue
        owner = _read_owner(folder)
        if owner is not None:
            mine = owner.get("run") == record.id and owner.get("created") == record.created
        else:
            mine = not _holds_checkpoints(folder) or \
                folder.relative_to(store.root) in listed
        if mine:
            break
    else:
        raise BabysitError(f"run {record.id} found no free folder under {base.parent}")
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    try:
        pid_start: float | None = psutil.Process(pid).create_time()
    except psutil.Error:
        pid_start = None
    claim = {"run": record.id, "created": record.created, "pid": pid, "pid_start": pid_start,
             "host": socket.gethostname(), "heartbeat": time.time()}
    tmp = folder / f".{OWNER_FILE}.{pid}.tmp"
    tmp.write_text(json.dumps(claim))
    os.replace(tmp, folder / OWNER_FILE)
    if n:
        print(f"babysit: run {record.id}: {base} belongs to another run (was the store "
              f"replaced?); this run keeps its checkpoints in {folder}", file=sys.stderr)
    return folder, owner


def may_be_alive(pid: object, pid_start: object, host: object, heartbeat: object) -> bool:
    """Could a process that a run row or owner file names still be running (other than this
    one)? On another host only its heartbeat can tell; here, the pid and its start time."""
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    if isinstance(host, str) and host != socket.gethostname():
        return isinstance(heartbeat, int | float) and time.time() - heartbeat < REMOTE_ALIVE_S
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not isinstance(pid_start, int | float) or abs(proc.create_time() - pid_start) < 1
    except psutil.Error:
        return False


def clean_leftovers(store: Store, checkpoints: CheckpointStorage, record: RunRecord,
                    folder: Path, start_from: dict[str, Any] | None,
                    previous_owner: dict[str, Any] | None = None) -> None:
    """Remove what a killed process of this run left half-written: temporary files, unfinished
    uploads and checkpoint files the store does not list. Runs before this process writes
    anything, and only when no other process of the run may still be alive (its run row or the
    folder's owner file names one: the files of a live process are never provably stale) and
    the run's folder is its own (``claim_folder``)."""
    if folder != ckpt.run_dir(store.root, record.id):
        return      # runs/<id> belongs to another run: nothing there is ours to remove
    for who in (record.__dict__, previous_owner or {}):
        if may_be_alive(who.get("pid"), who.get("pid_start"), who.get("host"),
                        who.get("heartbeat")):
            print(f"babysit: run {record.id}: process {who.get('pid')} on "
                  f"{who.get('host') or 'this host'} may still be running this run; its files "
                  f"in {folder} are left as they are", file=sys.stderr)
            return
    try:
        records = store.checkpoint_records(record.id, include_superseded=True)
    except BabysitError:
        return      # without the list nothing is provably stale: keep everything
    keep = [r.path for r in records]
    if start_from and isinstance(start_from.get("path"), str):
        keep.append(start_from["path"])
    try:
        removed = checkpoints.clean_run(record.id, keep)
    except BabysitError as exc:   # shared storage unreachable: leftovers wait for next time
        print(f"babysit: run {record.id}: could not clean up unfinished checkpoints: {exc}",
              file=sys.stderr)
        return
    if removed:
        print(f"babysit: run {record.id}: removed {len(removed)} unfinished checkpoint "
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
    not_restored = commands.restore(loop, payload)
    if not_restored:
        loop.mark_not_reproducible(f"RNG states missing from the checkpoint: {not_restored}")
    loop.position.reposition = False        # the loop has not opened an epoch yet
    return record_start(loop, start_from, start_event, payload, target_hp, corrupt)


def record_start(loop: LoopState, start_from: dict[str, Any],
                 start_event: tuple[str, dict[str, Any]], payload: dict[str, Any],
                 target_hp: dict[str, Any], corrupt: list[dict[str, Any]]) -> bool:
    """Once the checkpoint ``payload`` is in (by ``start_from_checkpoint``, or by a framework
    that loads it itself), go on from it: a restart's new branch, the run's own
    hyperparameters ``target_hp`` on top (a fork's overrides), the ``start_event`` and the
    corrupt days seen. Returns True when the run has no checkpoint of this day yet (a fork)."""
    if start_from.get("supersede"):
        # A restart redoes steps the crashed process had logged: keep those as a branch.
        loop.branch += 1
    overrides = {k: v for k, v in target_hp.items() if payload["hp"].get(k) != v}
    if overrides:       # a fork's, or nudges the crashed process took after its last day
        commands.apply_nudge(loop, {"hp": overrides}, new=True)
    kind, detail = start_event
    detail = {**detail, "from_day": loop.day, "overrides": overrides}
    loop.outbox.rewind(*([Supersede(loop.run_id, loop.step)] if start_from.get("supersede")
                         else []),
                       loop.event(kind, "trainer", detail),
                       RunUpdate(loop.run_id, {"branch": loop.branch, "step": loop.step,
                                               "day": loop.day, "hp": dict(loop.hp),
                                               "start_from": None,
                                               "effective": loop.effective()}))
    loop.traced = {}        # traced again by the loop, after the restart's records
    for bad in corrupt:     # after the restart event, so the restart does not supersede it
        loop.outbox.put(loop.event("checkpoint_corrupt", "trainer", bad))
    return loop.store.checkpoint(loop.run_id, loop.day) is None
