"""babysit: babysit PyTorch training runs (panda) or many at once (caviar).

    run = babysit.init(project="digits", config={"lr": 0.1}, day="200 steps")
    run.attach(model=model, optimizer=opt)
    for batch in run.loop(loader, epochs=20):
        ...
        run.log(loss=loss.item())
    run.finish()

    c = babysit.Client(); c.nudge(run_id, lr=0.05)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from babysit.client import Client, CommandResult
from babysit.day import DaySpec
from babysit.errors import (
    BabysitError,
    CheckpointError,
    CommandRejected,
    CommandTimeout,
    InvalidValue,
    LaunchError,
    RunNotLive,
    StoreError,
    UnknownDay,
    UnknownRun,
    UnknownStudy,
)

if TYPE_CHECKING:       # what __getattr__ gives, for type checkers and editors
    from babysit.trainer import Guard, Run, init

__version__ = "0.1.0"

__all__ = [
    "BabysitError", "CheckpointError", "Client", "CommandRejected", "CommandResult",
    "CommandTimeout", "DaySpec", "Guard", "InvalidValue", "LaunchError", "Run", "RunNotLive",
    "StoreError", "UnknownDay", "UnknownRun", "UnknownStudy", "__version__", "init",
]


def __getattr__(name: str) -> object:
    # The training side needs torch; the CLI and the dashboard do not, and start faster without.
    if name in ("init", "Run", "Guard"):
        from babysit import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'babysit' has no attribute {name!r}")
