"""Early-stopping rules, evaluated at day ends on the objective history of a study's runs.

Each rule is a frozen dataclass with one pure method::

    rule.should_stop(history, run_id, direction, elapsed_s=..., metric=...) -> Decision

``history`` maps each run id to its objective at the end of each finished day:
``history[run][0]`` is day 1, ``history[run][-1]`` is the day that just ended. NaN and inf
count as the worst possible value. ``Decision.reason`` is the sentence the UI and the event
log show, for a stop and for a go-on alike.

>>> Patience(patience_days=2).should_stop({1: [0.5, 0.6, 0.7]}, 1, "min", metric="val_loss")
Decision(stop=True, reason='run 1: val_loss has not improved in the last 2 days (best 0.5 on day 1)')
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from babysit.format import fmt
from babysit.study.space import SpaceError, check_direction, score_key

RunId = Hashable


@dataclass(frozen=True)
class Decision:
    """Whether to stop a run now, and why, in words for the event log."""

    stop: bool
    reason: str


def _history(
    history: Mapping[RunId, Sequence[float]], run_id: RunId, direction: str
) -> list[float]:
    check_direction(direction)
    if not isinstance(history, Mapping):
        raise SpaceError(f"history must map run id to a list of day values, got {history!r}")
    if run_id not in history:
        raise SpaceError(f"run {run_id!r} has no history; runs with history: {list(history)!r}")
    try:
        return [float(v) for v in history[run_id]]
    except (TypeError, ValueError):
        raise SpaceError(
            f"the history of run {run_id!r} must be numbers, got {history[run_id]!r}"
        ) from None


def _value_at(history: Mapping[RunId, Sequence[float]], run: RunId, day: int) -> float:
    try:
        return float(history[run][day - 1])
    except (TypeError, ValueError):
        raise SpaceError(
            f"the history of run {run!r} must be numbers, got {history[run]!r}"
        ) from None


def _whole(value: Any, label: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise SpaceError(f"{label} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _number(value: Any, label: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpaceError(f"{label} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise SpaceError(f"{label} must be > 0, got {value!r}")
    return float(value)


class StoppingRule:
    """What every rule here provides (see the module docstring for ``history``): the one
    ``should_stop``, which checks the history and asks the rule's ``_decide`` with the run's
    own values ``h`` (day 1 first) as floats."""

    def should_stop(
        self,
        history: Mapping[RunId, Sequence[float]],
        run_id: RunId,
        direction: str = "min",
        *,
        elapsed_s: float | None = None,
        metric: str = "objective",
    ) -> Decision:
        h = _history(history, run_id, direction)
        return self._decide(h, history, run_id, direction, elapsed_s, metric)

    def _decide(self, h: list[float], history: Mapping[RunId, Sequence[float]], run_id: RunId,
                direction: str, elapsed_s: float | None, metric: str) -> Decision:
        raise NotImplementedError


def _judge(text: str, value: float, limit_key: float, direction: str, worse: str,
           not_worse: str) -> Decision:
    """Stop when ``value`` is non-finite or ranks after ``limit_key`` (a ``score_key``)."""
    if not math.isfinite(value) or score_key(value, direction) > limit_key:
        return Decision(True, f"{text} {worse}")
    return Decision(False, f"{text} {not_worse}")


@dataclass(frozen=True)
class Patience(StoppingRule):
    """Stop a run whose best of the last ``patience_days`` days did not beat its best before
    them by more than ``min_delta``.

    >>> Patience(2, min_delta=0.05).should_stop({1: [0.5, 0.48, 0.47]}, 1, "min").stop
    True
    """

    patience_days: int
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        _whole(self.patience_days, "patience_days", 1)
        if _number(self.min_delta, "min_delta") < 0:
            raise SpaceError(f"min_delta must be >= 0, got {self.min_delta!r}")

    def _decide(self, h: list[float], history: Mapping[RunId, Sequence[float]], run_id: RunId,
                direction: str, elapsed_s: float | None, metric: str) -> Decision:
        p = self.patience_days
        if len(h) <= p:
            return Decision(False, f"run {run_id}: {len(h)} day(s) so far, patience is {p} days")
        before = min(range(len(h) - p), key=lambda i: (score_key(h[i], direction), i))
        recent = min(range(len(h) - p, len(h)), key=lambda i: (score_key(h[i], direction), i))
        gain = score_key(h[before], direction) - score_key(h[recent], direction)
        by = f" by more than {self.min_delta:g}" if self.min_delta else ""
        if math.isfinite(h[recent]) and (not math.isfinite(h[before]) or gain > self.min_delta):
            return Decision(
                False,
                f"run {run_id}: {metric} improved{by} in the last {p} days (to {fmt(h[recent])} on day {recent + 1})",
            )
        return Decision(
            True,
            f"run {run_id}: {metric} has not improved{by} in the last {p} days (best {fmt(h[before])} on day {before + 1})",
        )


@dataclass(frozen=True)
class Threshold(StoppingRule):
    """Stop a run whose objective at the end of ``day`` is worse than ``worse_than``.

    >>> Threshold(day=2, worse_than=2.0).should_stop({1: [2.5, 2.31]}, 1, "min", metric="val_loss")
    Decision(stop=True, reason='run 1: val_loss 2.31 at day 2 is worse than 2')
    """

    day: int
    worse_than: float

    def __post_init__(self) -> None:
        _whole(self.day, "day", 1)
        _number(self.worse_than, "worse_than")

    def _decide(self, h: list[float], history: Mapping[RunId, Sequence[float]], run_id: RunId,
                direction: str, elapsed_s: float | None, metric: str) -> Decision:
        if len(h) < self.day:
            return Decision(False, f"run {run_id}: not at day {self.day} yet (day {len(h)})")
        value = h[self.day - 1]
        text = f"run {run_id}: {metric} {fmt(value)} at day {self.day}"
        return _judge(text, value, score_key(self.worse_than, direction), direction,
                      f"is worse than {self.worse_than:g}", f"is not worse than {self.worse_than:g}")


@dataclass(frozen=True)
class WallTime(StoppingRule):
    """Stop a run that has run for ``max_seconds`` or more (pass ``elapsed_s``).

    >>> WallTime(3600).should_stop({1: [0.5]}, 1, elapsed_s=3700.0)
    Decision(stop=True, reason='run 1 ran 3700s, the limit is 3600s')
    """

    max_seconds: float

    def __post_init__(self) -> None:
        _number(self.max_seconds, "max_seconds", positive=True)

    def _decide(self, h: list[float], history: Mapping[RunId, Sequence[float]], run_id: RunId,
                direction: str, elapsed_s: float | None, metric: str) -> Decision:
        if elapsed_s is None:
            raise SpaceError(
                f"WallTime needs elapsed_s, the seconds run {run_id!r} has run; got None"
            )
        elapsed = _number(elapsed_s, "elapsed_s")
        if elapsed >= self.max_seconds:
            return Decision(
                True, f"run {run_id} ran {elapsed:.0f}s, the limit is {self.max_seconds:g}s"
            )
        return Decision(False, f"run {run_id} ran {elapsed:.0f}s of {self.max_seconds:g}s")


@dataclass(frozen=True)
class MedianRule(StoppingRule):
    """Stop a run whose objective on the day that just ended is worse than the median of the
    other runs' objectives on that same day (from day ``min_days`` on, and only once at least
    ``min_runs`` other runs reached that day). A NaN/inf value is always stopped there.

    >>> MedianRule(min_days=1, min_runs=2).should_stop({1: [0.9], 2: [0.5], 3: [0.6]}, 1)
    Decision(stop=True, reason='run 1: objective 0.9 at day 1 is worse than the median 0.55 of 2 other runs')
    """

    min_days: int = 1
    min_runs: int = 3

    def __post_init__(self) -> None:
        _whole(self.min_days, "min_days", 1)
        _whole(self.min_runs, "min_runs", 1)

    def _decide(self, h: list[float], history: Mapping[RunId, Sequence[float]], run_id: RunId,
                direction: str, elapsed_s: float | None, metric: str) -> Decision:
        day = len(h)
        if day < self.min_days:
            return Decision(
                False, f"run {run_id}: day {day}, the median rule starts at day {self.min_days}"
            )
        others = [
            _value_at(history, r, day) for r in history if r != run_id and len(history[r]) >= day
        ]
        if len(others) < self.min_runs:
            return Decision(
                False,
                f"run {run_id}: {len(others)} other run(s) reached day {day}, the median rule needs {self.min_runs}",
            )
        median_key = float(np.median([score_key(v, direction) for v in others]))
        median = median_key if direction == "min" else -median_key
        text = f"run {run_id}: {metric} {fmt(h[-1])} at day {day}"
        of = f"the median {fmt(median)} of {len(others)} other runs"
        return _judge(text, h[-1], median_key, direction, f"is worse than {of}",
                      f"is not worse than {of}")


@dataclass(frozen=True)
class SuccessiveHalving(StoppingRule):
    """Asynchronous successive halving (ASHA): at each rung day, ``min_days * eta**k``, a run
    goes on only if it is in the top ``1/eta`` (``eta = reduction_factor``) of all runs that
    have reached that day so far (``ceil(n / eta)`` kept, ties kept); at ``max_days`` a run
    stops. Asynchronous as in Ray Tune's ASHA: the first runs at a rung are compared with
    fewer runs, so no run ever waits for the others.

    >>> rule = SuccessiveHalving(min_days=1, reduction_factor=2)
    >>> rule.should_stop({1: [0.9], 2: [0.5], 3: [0.6]}, 1).reason
    'run 1: objective 0.9 at day 1 is not in the top 1/2 of the 3 runs that reached it (cutoff 0.6)'
    """

    min_days: int = 1
    reduction_factor: int = 3
    max_days: int | None = None

    def __post_init__(self) -> None:
        _whole(self.min_days, "min_days", 1)
        _whole(self.reduction_factor, "reduction_factor", 2)
        if self.max_days is not None and _whole(self.max_days, "max_days", 1) <= self.min_days:
            raise SpaceError(
                f"max_days must be > min_days, got max_days={self.max_days!r}, min_days={self.min_days!r}"
            )

    def rungs(self, up_to: int) -> list[int]:
        """The rung days up to ``up_to`` (and below ``max_days``).

        >>> SuccessiveHalving(min_days=1, reduction_factor=3, max_days=27).rungs(100)
        [1, 3, 9]
        """
        out, day = [], self.min_days
        while day <= up_to and (self.max_days is None or day < self.max_days):
            out.append(day)
            day *= self.reduction_factor
        return out

    def _decide(self, h: list[float], history: Mapping[RunId, Sequence[float]], run_id: RunId,
                direction: str, elapsed_s: float | None, metric: str) -> Decision:
        day = len(h)
        if self.max_days is not None and day >= self.max_days:
            return Decision(True, f"run {run_id} reached max_days ({self.max_days})")
        if day not in self.rungs(day):
            upcoming = self.min_days
            while upcoming <= day:
                upcoming *= self.reduction_factor
            last = self.max_days is not None and upcoming >= self.max_days
            nxt = "no rung left" if last else f"next rung: day {upcoming}"
            return Decision(False, f"run {run_id}: day {day} is not a rung ({nxt})")
        at_rung = [_value_at(history, r, day) for r in history if len(history[r]) >= day]
        keep = math.ceil(len(at_rung) / self.reduction_factor)
        cutoff_key = sorted(score_key(v, direction) for v in at_rung)[keep - 1]
        cutoff = cutoff_key if direction == "min" else -cutoff_key
        eta = self.reduction_factor
        text = f"run {run_id}: {metric} {fmt(h[-1])} at day {day}"
        counted = f"of the {len(at_rung)} runs that reached it (cutoff {fmt(cutoff)})"
        return _judge(text, h[-1], cutoff_key, direction, f"is not in the top 1/{eta} {counted}",
                      f"is in the top 1/{eta} {counted}")


ASHA = SuccessiveHalving
