"""Retest a run's hyperparameters: which probes to fork around them, and the verdict. Pure.

"Retest your hyperparameters once in a while": from a run's current checkpoint, a few short
probes train with the hyperparameters moved up and down on their own scales, beside a control
probe that keeps them. If a probe ends its days better than the control, the run's setting is no
longer the best one nearby. `Client.retest` forks the probes; `Client.retest_report` reads this.

>>> probe_configs({"lr": 0.1, "momentum": 0.9}, default_movers(), probes=4, factor=2.0)
[{'lr': 0.2}, {'lr': 0.05}, {'momentum': 0.95}, {'momentum': 0.8}]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from babysit.errors import InvalidValue
from babysit.hparams import check_value
from babysit.study.space import Space, check_direction, score_key

Mover = Callable[[Any, float], Any]
#: how a run's optimizer hyperparameters move when they are not in a study's space
DEFAULT_SCALES = {"lr": "log", "momentum": "one_minus_log", "weight_decay": "log"}


def move(value: float, scale: str, factor: float) -> float:
    """``value`` moved by ``factor`` on its scale: x factor on ``log``/``linear``; on
    ``one_minus_log`` the horizon ``1 / (1 - beta)`` is multiplied, so factor > 1 means more.

    >>> move(0.9, "one_minus_log", 2.0), move(0.01, "log", 0.5)
    (0.95, 0.005)
    """
    if scale == "one_minus_log":
        return round(1.0 - (1.0 - value) / factor, 12)
    if scale in ("log", "linear"):
        return round(value * factor, 12)
    raise InvalidValue(f"cannot move a value on the {scale!r} scale")


def _mover(scale: str) -> Mover:
    return lambda value, factor: move(value, scale, factor)


def default_movers() -> dict[str, Mover]:
    """Movers for lr, momentum and weight_decay (`DEFAULT_SCALES`)."""
    return {key: _mover(scale) for key, scale in DEFAULT_SCALES.items()}


def space_movers(space: Space) -> dict[str, Mover]:
    """Movers for a study's numeric params: `Param.perturb`, clipped to the space."""
    return {p.name: p.perturb for p in space if p.scale != "choice"}


def probe_configs(hp: Mapping[str, Any], movers: Mapping[str, Mover], *, probes: int = 4,
                  factor: float = 2.0) -> list[dict[str, Any]]:
    """The overrides of each probe: one hyperparameter at a time up (x ``factor``) then down
    (/ ``factor``), in the order of ``movers``; then pairs of those moves if more probes are
    asked. Moves that leave a value unchanged (a bound) or invalid (momentum >= 1) are skipped.
    """
    if isinstance(probes, bool) or not isinstance(probes, int) or not 1 <= probes <= 16:
        raise InvalidValue(f"probes must be a whole number from 1 to 16, got {probes!r}")
    if isinstance(factor, bool) or not isinstance(factor, int | float) or \
            not math.isfinite(factor) or factor <= 1:
        raise InvalidValue(f"factor must be a finite number > 1, got {factor!r}")
    singles: list[dict[str, Any]] = []
    for key, mover in movers.items():
        value = hp.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        for f in (factor, 1.0 / factor):
            moved = mover(value, f)
            try:
                check_value(key, moved, value)
            except InvalidValue:
                continue
            if moved != value and {key: moved} not in singles:
                singles.append({key: moved})
    pairs = [{**a, **b} for a, b in combinations(singles, 2) if set(a).isdisjoint(b)]
    return (singles + pairs)[:probes]


@dataclass(frozen=True)
class Probe:
    """One probe of a retest: its run, the overrides it trains with (none for the control),
    its status and its objective at the retest's last day (None until it has one)."""

    run_id: int
    hp: dict[str, Any]
    control: bool
    status: str
    value: float | None


@dataclass(frozen=True)
class RetestReport:
    """Where a retest stands. ``still_best`` is None until the control and every probe that did
    not fail have a value; then True when no probe beat the control."""

    id: int
    run_id: int
    day: int
    target_day: int
    objective: str
    direction: str
    probes: tuple[Probe, ...]
    done: bool
    still_best: bool | None
    best: Probe | None
    summary: str


def verdict(probes: list[Probe], direction: str) -> tuple[bool | None, Probe | None, bool]:
    """``(still_best, best probe, done)``: done once every probe has a value or has ended
    without one; the control wins ties.

    >>> ps = [Probe(1, {}, True, "finished", 0.5), Probe(2, {"lr": 0.2}, False, "finished", 0.4)]
    >>> verdict(ps, "min")[0], verdict(ps, "min")[1].run_id
    (False, 2)
    """
    check_direction(direction)
    ended = ("finished", "stopped", "crashed")
    done = all(p.value is not None or p.status in ended for p in probes)
    scored = [p for p in probes if p.value is not None and math.isfinite(p.value)]
    control = next((p for p in probes if p.control), None)
    if not done or not scored or control is None or control not in scored:
        return None, None, done
    best = min(scored, key=lambda p: (score_key(p.value, direction), not p.control))  # type: ignore[arg-type]
    return best.control, best, done
