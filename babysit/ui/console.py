"""The tail of a run's console output: what its process printed, as the launcher saved it.

``babysit run`` and the launcher (restarts, forks, studies) send a run's stdout and stderr to
``<root>/runs/<id>/process.log``; the Run page shows its last lines, so a traceback is seen
in the browser. A run started as a Ray job has its output with Ray: `of_run` asks the
launcher that started the run (``Client.console``). Read-only, bounded (the last ``max_bytes``), never following a symlink.

>>> import tempfile, pathlib; root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "runs" / "3").mkdir(parents=True)
>>> _ = (root / "runs" / "3" / "process.log").write_text("a\\nb\\nc\\n")
>>> tail(root, 3, lines=2)
'b\\nc'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from babysit.launcher import read_log_tail

LOG_NAME = "process.log"


def log_path(root: str | os.PathLike[str], run_id: int) -> Path:
    """Where the launcher writes run ``run_id``'s console output."""
    return Path(root) / "runs" / str(int(run_id)) / LOG_NAME


def tail(root: str | os.PathLike[str], run_id: int, *, lines: int = 200,
         max_bytes: int = 64_000) -> str | None:
    """The last ``lines`` lines of the run's console output; None when it has none here."""
    return read_log_tail(log_path(root, run_id), lines=lines, max_bytes=max_bytes)


def of_run(client: Any, run_id: int, *, lines: int = 200) -> str | None:
    """The run's console output from the launcher that started it: the local process log, or
    a Ray job's logs (asked through Ray: the process may run on another machine)."""
    return client.console(run_id, lines=lines)
