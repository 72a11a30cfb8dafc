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

from babysit.trainer.guard import Guard
from babysit.trainer.run import Run, init

__all__ = ["Guard", "Run", "init"]
