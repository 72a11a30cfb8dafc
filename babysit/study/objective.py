"""A study's objective read from the store's day-end checkpoints, and the one "best" rule.

Every place that names a best run or a best day (the orchestrator telling a strategy a trial's
result, ``Client.studies()``, ``Client.study_best()``, the Study page) uses `best`, so they
agree: the smallest (``min``) or largest (``max``) finite value wins, the first one on a tie,
and NaN/inf never win.

>>> best_of([0.5, float("nan"), 0.3, 0.4], "min")
(0.3, 3)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Iterable
from typing import Any, TypeVar

from babysit.store import CheckpointRecord
from babysit.study.space import score_key

K = TypeVar("K", bound=Hashable)


def as_float(value: Any) -> float:
    """A stored metric value as a float: NaN for anything missing or not a number.

    >>> as_float(None), as_float("0.5"), as_float(2)
    (nan, nan, 2.0)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return math.nan
    return float(value)


def best(items: Iterable[tuple[K, Any]], direction: str) -> tuple[float, K | None]:
    """``(best finite value, its key)`` over ``(key, value)`` pairs, or ``(nan, None)``.

    >>> best([("a", 0.4), ("b", 0.2), ("c", float("nan"))], "min")
    (0.2, 'b')
    """
    found: tuple[float, K] | None = None
    for key, raw in items:
        value = as_float(raw)
        if not math.isfinite(value):
            continue
        if found is None or score_key(value, direction) < score_key(found[0], direction):
            found = (value, key)
    return found if found is not None else (math.nan, None)


def best_of(values: Iterable[float], direction: str) -> tuple[float, int | None]:
    """``(best finite value, its day)`` of a run's day-end objectives, or ``(nan, None)``."""
    return best(enumerate(values, 1), direction)


def histories(checkpoints: Iterable[CheckpointRecord], objective: str) -> dict[int, list[float]]:
    """Each run's objective at the end of day 1, 2, ... (its live branch's checkpoints).

    A day without a checkpoint (a failed save) repeats the day before; a checkpoint without the
    objective counts as NaN, the worst value.
    """
    by_run: dict[int, dict[int, float]] = {}
    for record in checkpoints:
        if record.day >= 1:
            by_run.setdefault(record.run_id, {})[record.day] = \
                as_float(record.metrics.get(objective))
    out: dict[int, list[float]] = {}
    for run_id, days in by_run.items():
        values, last = [], math.nan
        for day in range(1, max(days) + 1):
            last = days.get(day, last)
            values.append(last)
        out[run_id] = values
    return out
