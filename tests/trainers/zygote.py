"""A fork server for tests that start many trainer processes: torch and babysit are imported
once, then each request forks a child that runs a trainer script as ``__main__``.

The child is an ordinary process (own pid and session, its output in a log file) running the
real script; only the seconds of importing torch are saved. Requests are JSON lines on stdin:
``{"argv": [script, args...], "env": {...}, "cwd": "...", "log": "..."}``; the reply is the
child's pid on a line of stdout. Used by tests/reliability/test_fault_injection.py.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import sys
import traceback

# what a trainer imports, loaded before any fork (no threads are started by importing these)
import torch  # noqa: F401
import torch._dynamo  # noqa: F401  - optimizers import it on their first step: seconds
import torch.utils.data  # noqa: F401

import babysit  # noqa: F401
import babysit.trainer  # noqa: F401


def child(request: dict) -> None:
    """In the forked child: become the trainer process, never return."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = list(request["argv"])
        # what babysit records as the run's command line, so a restart can exec it afresh
        sys.orig_argv = [sys.executable, *sys.argv]
        runpy.run_path(sys.argv[0], run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # children are reaped automatically
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
