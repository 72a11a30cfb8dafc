"""The training side of babysit (needs torch): ``init``, ``Run`` and ``Guard``.

    run.py       the Run facade and the one readable loop (step boundary, day end)
    outbox.py    the queue to the store and its writer thread (the protocol is documented there)
    saver.py     snapshots and the saver thread that writes day checkpoints
    commands.py  command handlers; rollback and exploit share one restore path
    resume.py    starting from a checkpoint (restart, fork) and leftover cleanup
    knobs.py     optimizer knobs: pure functions over optimizers and schedulers
    position.py  the data position: epoch RNG capture / restore, batch skipping
    guard.py     the divergence guard
    state.py     what the loop thread owns, shared by the modules above
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from babysit.day import DaySpec
from babysit.errors import BabysitError, InvalidValue
from babysit.names import check_name
from babysit.store import Store
from babysit.trainer import resume
from babysit.trainer.guard import Guard
from babysit.trainer.run import Run

__all__ = ["Guard", "Run", "init"]


# ---------------------------------------------------------------------- init
def _launch_record() -> dict[str, Any] | None:
    """How this process was started, so forks and restarts need nothing from the user."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    args = argv[1:]
    script = sys.argv[0] if sys.argv else ""
    if not args or script in ("", "-") or script.endswith("ipykernel_launcher.py") or \
            bool(getattr(sys, "ps1", None)) or sys.flags.interactive:
        return None
    keep = ("PYTHONPATH", "CUDA_VISIBLE_DEVICES", "BABYSIT_ROOT", "BABYSIT_STORE_URL",
            "BABYSIT_CHECKPOINTS")
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
    check_name("project", project)
    if name is not None:
        check_name("run name", name)
    config = dict(config or {})
    for key in config:
        check_name("config key", key)
    spec = DaySpec.parse(day)
    store = Store.open(root, url=store_url)
    env_id = os.environ.get("BABYSIT_RUN_ID")
    event: tuple[str, dict[str, Any]] | None = None
    start_from: dict[str, Any] | None = None
    if env_id:
        record = store.get_run(env_id)
        # One process per run: a second init() with the same id (e.g. a user re-running a fork's
        # command by hand) must not hijack a live run.
        if record.status not in ("starting", "crashed", "stopped"):
            raise BabysitError(f"run {record.id} is {record.status}; it already has a process")
        start_from, event = resume.start_point(store, record)
        fill: dict[str, Any] = {}
        if record.launch is None:
            fill["launch"] = _launch_record()
        if not start_from and record.step == 0:
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
        run_id = record.id
    else:
        run_id = store.create_run(
            project=project.strip(), name=name or "", status="starting", config=config,
            hp=config, strict=bool(strict), day_spec=str(spec), launch=_launch_record())
        if not name:
            store.update_run(run_id, name=f"{project.strip()}-{run_id}")
    run = Run(store, run_id, guard=guard, poll_interval=poll_interval, start_from=start_from)
    run._start(event)
    return run
