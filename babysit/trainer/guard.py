"""The divergence guard: watches one metric and trips on a non-finite value or a blow-up.

It owns its state (the best value so far, the limit, whether it tripped, how many rollbacks it
made); the loop feeds it with ``observe`` and asks at the next step boundary what happened.
"""

from __future__ import annotations

import math

from babysit.errors import InvalidValue


class Guard:
    """Divergence guard: a non-finite ``metric`` (or one above ``max_ratio`` x its best so far)
    stops the run at that step with status ``diverged``.

    ``policy="pause"`` waits for the user; ``policy="rollback"`` rolls back to the last good day
    and multiplies the learning rate by ``lr_factor`` (events with source ``guard``), at most
    ``max_rollbacks`` times before it pauses instead. One guard watches one run.

    >>> run = babysit.init(config=config, guard=babysit.Guard("loss", max_ratio=10))
    """

    def __init__(self, metric: str = "loss", max_ratio: float | None = None,
                 policy: str = "pause", lr_factor: float = 0.5, max_rollbacks: int = 3):
        if policy not in ("pause", "rollback"):
            raise InvalidValue(f"guard policy must be 'pause' or 'rollback', got {policy!r}")
        if max_ratio is not None and not (isinstance(max_ratio, int | float) and max_ratio > 1):
            raise InvalidValue(f"guard max_ratio must be a number > 1, got {max_ratio!r}")
        if not 0 < lr_factor < 1:
            raise InvalidValue(f"guard lr_factor must lie in (0, 1), got {lr_factor!r}")
        self.metric, self.max_ratio, self.policy = metric, max_ratio, policy
        self.lr_factor, self.max_rollbacks = lr_factor, max_rollbacks
        self.best = math.inf
        self.limit = math.inf       # a value at or above it trips the guard (NaN always does)
        self.tripped: tuple[str, float] | None = None
        self.rollbacks = 0

    def observe(self, value: float) -> None:
        """One logged value of the guarded metric (called by ``run.log``: keep it cheap).
        A value with ``best <= value < limit`` changes nothing; ``run.log`` skips the call then.

        >>> guard.observe(float("nan")); guard.tripped
        ('loss', nan)
        """
        if not value < self.limit or value == -math.inf:
            if self.tripped is None:
                self.tripped = (self.metric, value)
        elif value < self.best:
            self.best = value
            if self.max_ratio is not None:
                self.limit = value * self.max_ratio if value > 0 else math.inf

    def trip(self, what: str, value: float) -> None:
        """Trip on something other than the metric (e.g. non-finite weights at a day's end)."""
        if self.tripped is None:
            self.tripped = (what, value)

    def take(self) -> tuple[str, float] | None:
        """What tripped the guard since the last call, if anything; clears it."""
        tripped, self.tripped = self.tripped, None
        return tripped

    def forget(self) -> None:
        """After a rollback or exploit the curve starts again: no best yet, nothing tripped."""
        self.best = self.limit = math.inf
        self.tripped = None

    def may_roll_back(self) -> bool:
        """Should the next divergence be rolled back (rather than paused for the user)?"""
        return self.policy == "rollback" and self.rollbacks < self.max_rollbacks
