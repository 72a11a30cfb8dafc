"""The tail of a run's console output: what its process printed, as the launcher saved it.

``babysit run`` and the launcher (restarts, forks, studies) send a run's stdout and stderr to
``<root>/runs/<id>/process.log``; the Run page shows its last lines, so a traceback is seen
in the browser. Read-only, bounded (the last ``max_bytes``), never following a symlink.

>>> import tempfile, pathlib; root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "runs" / "3").mkdir(parents=True)
>>> _ = (root / "runs" / "3" / "process.log").write_text("a\\nb\\nc\\n")
>>> tail(root, 3, lines=2)
'b\\nc'
"""

from __future__ import annotations

import os
from pathlib import Path

LOG_NAME = "process.log"


def log_path(root: str | os.PathLike[str], run_id: int) -> Path:
    """Where the launcher writes run ``run_id``'s console output."""
    return Path(root) / "runs" / str(int(run_id)) / LOG_NAME


def tail(root: str | os.PathLike[str], run_id: int, *, lines: int = 200,
         max_bytes: int = 64_000) -> str | None:
    """The last ``lines`` lines of the run's console output; None when it has none here."""
    path = log_path(root, run_id)
    try:
        # O_NOFOLLOW: a run folder's log replaced by a link to another file is not shown
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - max_bytes))
        data = f.read(max_bytes)
    text = data.decode("utf-8", errors="replace")
    if size > max_bytes:
        text = text.partition("\n")[2]       # the first line read is cut
    # carriage-return progress bars: keep what the terminal would show last
    out = [line.rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n")]
    return "\n".join(out[-lines:])
