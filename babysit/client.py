"""The command API: the CLI, the dashboard and Python code all steer runs through ``Client``.

``Client`` is the run commands (`babysit.run_client.RunClient`: read runs, nudge, pause,
resume, stop, rollback, exploit, fork, restart, launch) plus the study commands
(`babysit.study.client.StudyClient`: create, launch, watch and steer studies; retest).

>>> c = babysit.Client()                   # ./checkpoints, like init()
>>> c.check_runs()                         # mark runs whose process is gone as crashed
>>> c.nudge(3, scale={"lr": 0.5})          # halve what the optimizer uses now
>>> c.rollback(3, day=2)
>>> child = c.fork(3, day=2, lr=0.02)
>>> c.exploit(4, 3, day=2, lr=0.02)        # run 4 continues from run 3's day 2, with lr 0.02
"""

from __future__ import annotations

from babysit.run_client import SOURCES, CommandResult, RunClient
from babysit.study.client import StudyClient

__all__ = ["SOURCES", "Client", "CommandResult", "RunClient", "StudyClient"]


class Client(StudyClient):
    """Steer and inspect runs and studies from another process (see the module docstring)."""
