"""Population Based Training as pure functions: who copies whom, and with what config.

Modelled on Ray Tune's ``_quantiles`` / ``_explore``: `select` ranks the runs at a day end,
`explore` perturbs a winner's config, and `plan` pairs every loser with a winner. The
orchestrator then copies the winner's checkpoint into the loser, applies the new config and
writes one event per `Exploit` (its ``reason`` is the line shown in the event log). Randomness
comes only from the ``rng`` passed in, so a seeded generator gives the same plan every time.

>>> select({1: 0.9, 2: 0.4, 3: 0.5, 4: 0.7}, quantile=0.25, direction="min")
([1], [2])
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from babysit.format import fmt
from babysit.study.space import Space, SpaceError, check_direction, score_key

RunId = Hashable


@dataclass(frozen=True)
class Op:
    """What `explore` did to one param: ``how`` is "perturb x1.2" or "resample".

    >>> Op("lr", 0.01, 0.012, "perturb x1.2")
    Op(name='lr', old=0.01, new=0.012, how='perturb x1.2')
    """

    name: str
    old: Any
    new: Any
    how: str


@dataclass(frozen=True)
class Exploit:
    """One PBT decision: ``loser`` restarts from ``winner``'s checkpoint with ``new_config``.

    ``ops`` says per param how ``new_config`` was made from the winner's config; ``reason``
    is the human-readable line for the event log. Treat ``new_config`` as read-only.
    """

    loser: RunId
    winner: RunId
    new_config: dict[str, Any]
    ops: tuple[Op, ...]
    reason: str


def _check_quantile(quantile: Any) -> float:
    if (
        isinstance(quantile, bool)
        or not isinstance(quantile, int | float)
        or not 0 < quantile <= 0.5
    ):
        raise SpaceError(f"quantile must be in (0, 0.5], got {quantile!r}")
    return float(quantile)


def _scores(scores: Mapping[RunId, Any]) -> dict[RunId, float]:
    if not isinstance(scores, Mapping):
        raise SpaceError(f"scores must be a mapping of run id to value, got {scores!r}")
    out = {}
    for run, value in scores.items():
        try:
            out[run] = float(value)
        except (TypeError, ValueError):
            raise SpaceError(f"the score of run {run!r} must be a number, got {value!r}") from None
    return out


def select(
    scores: Mapping[RunId, float], quantile: float = 0.25, direction: str = "min"
) -> tuple[list[RunId], list[RunId]]:
    """Split runs into ``(losers, winners)``: the bottom and top ``quantile`` of ``scores``.

    Each side has ``ceil(n * quantile)`` runs (at most n // 2). NaN and inf scores rank
    worst and are always losers, even beyond the quantile; a winner always has a finite
    score. Equal scores rank by run id (the smaller id ranks better). Losers come worst
    first, winners best first. Fewer than 2 runs, or no finite score: ``([], [])``.

    >>> select({"a": 0.3, "b": float("nan"), "c": 0.1, "d": 0.2}, 0.25, "min")
    (['b'], ['c'])
    """
    quantile = _check_quantile(quantile)
    check_direction(direction)
    values = _scores(scores)
    ranked = sorted(values, key=lambda run: (score_key(values[run], direction), run))
    # At most half per side, so with fewer than 2 runs both sides are empty.
    count = min(math.ceil(len(ranked) * quantile), len(ranked) // 2)
    winners = [run for run in ranked[:count] if math.isfinite(values[run])]
    if not winners:
        return [], []
    bottom = set(ranked[len(ranked) - count :])
    losers = [run for run in reversed(ranked) if run in bottom or not math.isfinite(values[run])]
    return losers, winners


def _check_factors(
    perturb_factors: Sequence[float], resample_probability: float
) -> tuple[float, ...]:
    if (
        isinstance(perturb_factors, str | bytes)
        or not isinstance(perturb_factors, Sequence)
        or not perturb_factors
    ):
        raise SpaceError(
            f"perturb_factors must be a non-empty list of numbers > 0, got {perturb_factors!r}"
        )
    for f in perturb_factors:
        if isinstance(f, bool) or not isinstance(f, int | float) or not math.isfinite(f) or f <= 0:
            raise SpaceError(f"each perturb factor must be a finite number > 0, got {f!r}")
    p = resample_probability
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
        raise SpaceError(f"resample_probability must be in [0, 1], got {p!r}")
    return tuple(float(f) for f in perturb_factors)


def explore(
    config: Mapping[str, Any],
    space: Space,
    rng: np.random.Generator,
    perturb_factors: Sequence[float] = (0.8, 1.2),
    resample_probability: float = 0.25,
) -> tuple[dict[str, Any], list[Op]]:
    """A new config near ``config``: each param of ``space`` is resampled (with probability
    ``resample_probability``) or perturbed by a factor drawn from ``perturb_factors``
    (`Param.perturb`: x1.2 on a learning rate multiplies it, on a momentum lengthens its
    horizon 1/(1 - beta), on a batch size doubles it). Results are clipped to the bounds;
    keys that are not params are copied unchanged. Returns the config and one `Op` per param.

    Per param, in space order, the rng draws one uniform number (resample or not), then
    either the resampled value or the index of the factor.

    >>> from babysit.study.space import Space
    >>> space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}})
    >>> explore({"lr": 0.01, "epochs": 10}, space, np.random.default_rng(0))
    ({'lr': 0.012, 'epochs': 10}, [Op(name='lr', old=0.01, new=0.012, how='perturb x1.2')])
    """
    factors = _check_factors(perturb_factors, resample_probability)
    if not isinstance(config, Mapping):
        raise SpaceError(f"a config must be a mapping of param name to value, got {config!r}")
    missing = [name for name in space.names if name not in config]
    if missing:
        raise SpaceError(
            f"the config {dict(config)!r} lacks param(s) {', '.join(map(repr, missing))}"
        )
    new = dict(config)
    ops = []
    for param in space:
        old = config[param.name]
        if float(rng.random()) < resample_probability:
            value, how = param.sample(rng), "resample"
        else:
            factor = factors[int(rng.integers(len(factors)))]
            value, how = param.perturb(old, factor), f"perturb x{factor:g}"
        new[param.name] = value
        ops.append(Op(param.name, old, value, how))
    return new, ops


def plan(
    scores: Mapping[RunId, float],
    configs: Mapping[RunId, Mapping[str, Any]],
    space: Space,
    rng: np.random.Generator,
    quantile: float = 0.25,
    direction: str = "min",
    *,
    perturb_factors: Sequence[float] = (0.8, 1.2),
    resample_probability: float = 0.25,
    metric: str = "score",
    day: int | None = None,
) -> list[Exploit]:
    """One PBT step: every loser of `select` copies a winner drawn by ``rng`` and explores.

    Losers are handled worst first; for each, the rng first picks the winner (uniformly among
    the winners), then `explore` draws from it. ``metric`` and ``day`` only shape the reasons.

    >>> from babysit.study.space import Space
    >>> space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}})
    >>> [e.reason for e in plan({7: 0.91, 3: 0.42}, {7: {"lr": 0.1}, 3: {"lr": 0.01}}, space,
    ...  np.random.default_rng(0), metric="val_loss", day=4)]
    ['run 7 (val_loss 0.91) in bottom 25%, copies run 3 (val_loss 0.42) at day 4']
    """
    losers, winners = select(scores, quantile, direction)
    _check_factors(perturb_factors, resample_probability)
    missing = [run for run in winners if run not in configs]
    if missing:
        raise SpaceError(f"no config for winning run(s) {', '.join(map(repr, missing))}")
    values = _scores(scores)
    at_day = "" if day is None else f" at day {day}"
    out = []
    for loser in losers:
        winner = winners[int(rng.integers(len(winners)))]
        new_config, ops = explore(
            configs[winner], space, rng, perturb_factors, resample_probability
        )
        why = f"in bottom {quantile:.0%}" if math.isfinite(values[loser]) else "has no finite value"
        reason = (
            f"run {loser} ({metric} {fmt(values[loser], 3)}) {why}, "
            f"copies run {winner} ({metric} {fmt(values[winner], 3)}){at_day}"
        )
        out.append(Exploit(loser, winner, new_config, tuple(ops), reason))
    return out
