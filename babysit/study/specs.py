"""A study's settings as stored (JSON): strategy, budget and stopping rules, checked and built.

The store keeps plain JSON; these functions turn what a user typed (Python, CLI, UI) into that
JSON with clear errors, and turn the JSON back into strategy and rule objects for the
orchestrator. Pure: no store, no processes.

>>> strategy_spec("pbt", Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}}),
...               "min", seed=3)["quantile"]
0.25
>>> stop_spec("patience:3")
{'rule': 'patience', 'days': 3}
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields
from typing import Any

from babysit.study.pbt import _check_factors, _check_quantile
from babysit.study.space import Space, SpaceError
from babysit.study.stopping import (
    MedianRule,
    Patience,
    StoppingRule,
    SuccessiveHalving,
    Threshold,
    WallTime,
)
from babysit.study.strategies import Strategy, make_strategy

#: the strategy kinds a study takes; "optuna" picks its sampler with the ``sampler`` option
KINDS = ("grid", "random", "coarse_to_fine", "optuna", "pbt")
#: the other names `make_strategy` knows, accepted as shorthands for an Optuna sampler
_OPTUNA_ALIASES = {"tpe": "tpe", "gp": "gp", "optuna_random": "random"}
PBT_DEFAULTS: dict[str, Any] = {"quantile": 0.25, "perturb_factors": [0.8, 1.2],
                                "resample_probability": 0.25, "interval": 1}
BUDGET_DEFAULTS = {"runs": 8, "days": 5, "parallel": 2}

#: rule name -> (class, {spec key: constructor argument}, positional keys for "rule:a:b")
RULES: dict[str, tuple[type, dict[str, str], tuple[str, ...]]] = {
    "patience": (Patience, {"days": "patience_days", "min_delta": "min_delta"},
                 ("days", "min_delta")),
    "threshold": (Threshold, {"day": "day", "worse_than": "worse_than"}, ("day", "worse_than")),
    "walltime": (WallTime, {"seconds": "max_seconds"}, ("seconds",)),
    "median": (MedianRule, {"min_days": "min_days", "min_runs": "min_runs"},
               ("min_days", "min_runs")),
    "asha": (SuccessiveHalving, {"min_days": "min_days", "reduction_factor": "reduction_factor",
                                 "max_days": "max_days"},
             ("min_days", "reduction_factor", "max_days")),
}


def _whole(value: Any, label: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpaceError(f"{label} must be a whole number >= {minimum}, got {value!r}")
    return value


def strategy_spec(strategy: str | Mapping[str, Any], space: Space, direction: str, *,
                  seed: int | None = None) -> dict[str, Any]:
    """The stored form of a strategy: ``{"kind": ..., "seed": ..., options}``, checked by
    building it once. A missing seed is drawn now and kept, so a restarted orchestrator
    replays the same suggestions.

    >>> space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}})
    >>> strategy_spec({"kind": "grid", "n_per_param": 2}, space, "min", seed=0)
    {'kind': 'grid', 'seed': 0, 'n_per_param': 2}
    """
    if isinstance(strategy, str):
        spec: dict[str, Any] = {"kind": strategy}
    elif isinstance(strategy, Mapping):
        spec = dict(strategy)
    else:
        raise SpaceError(f"strategy must be a name or a mapping with a 'kind', got {strategy!r}")
    kind = spec.pop("kind", None)
    if kind in _OPTUNA_ALIASES:
        spec.setdefault("sampler", _OPTUNA_ALIASES[kind])
        kind = "optuna"
    if kind not in KINDS:
        raise SpaceError(f"unknown strategy {kind!r}; expected one of {', '.join(KINDS)}")
    given_seed = spec.pop("seed", seed)
    if given_seed is None:
        given_seed = secrets.randbelow(2**31)
    _whole(given_seed, "seed", 0)
    out = {"kind": kind, "seed": given_seed, **spec}
    if kind == "pbt":   # stored with its defaults, so the UI shows what the autopilot uses
        out.update(_pbt_options(out))
    build_strategy(out, space, direction)   # raises on a bad option
    return out


def _pbt_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in spec.items() if k not in ("kind", "seed")}
    unknown = sorted(set(options) - set(PBT_DEFAULTS))
    if unknown:
        raise SpaceError(f"strategy 'pbt' does not take option(s) {', '.join(unknown)}; it takes "
                         f"{', '.join(PBT_DEFAULTS)}")
    merged = {**PBT_DEFAULTS, **options}
    _check_quantile(merged["quantile"])
    factors = merged["perturb_factors"]
    if not isinstance(factors, Sequence) or isinstance(factors, str):
        raise SpaceError(f"perturb_factors must be a list of numbers > 0, got {factors!r}")
    _check_factors(list(factors), merged["resample_probability"])
    _whole(merged["interval"], "interval", 1)
    return merged


def pbt_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A PBT study's options with their defaults: quantile, perturb_factors,
    resample_probability and interval (days between two rounds)."""
    return _pbt_options(spec)


def check_pbt_space(space: Space) -> None:
    """PBT applies its explore as a nudge, which takes numbers >= 0 only."""
    for p in space:
        if p.scale == "choice":
            raise SpaceError(f"PBT cannot change the choice param {p.name!r} of a running run "
                             "(a nudge takes numbers); make it a fixed setting of the command")
        if p.low is not None and p.low < 0:
            raise SpaceError(f"PBT applies values as nudges, which must be >= 0; param {p.name!r}"
                             f" goes down to {p.low!r}")


def build_strategy(spec: Mapping[str, Any], space: Space, direction: str) -> Strategy:
    """The strategy object a stored spec describes (PBT's initial population is random)."""
    kind = spec.get("kind")
    seed = spec.get("seed")
    options = {k: v for k, v in spec.items() if k not in ("kind", "seed")}
    if kind == "pbt":
        _pbt_options(spec)
        check_pbt_space(space)
        return make_strategy("random", space, direction=direction, seed=seed)
    if kind == "optuna":
        sampler = options.pop("sampler", "tpe")
        name = {"tpe": "tpe", "gp": "gp", "random": "optuna_random"}.get(sampler)
        if name is None:
            raise SpaceError(f"unknown Optuna sampler {sampler!r}; expected tpe, gp or random")
        return make_strategy(name, space, direction=direction, seed=seed, **options)
    if kind not in KINDS:
        raise SpaceError(f"unknown strategy {kind!r}; expected one of {', '.join(KINDS)}")
    return make_strategy(str(kind), space, direction=direction, seed=seed, **options)


def budget_spec(budget: Mapping[str, Any] | None, *, pbt: bool = False) -> dict[str, int]:
    """``{"runs", "days", "parallel"}`` with defaults (8 runs, 5 days, 2 in parallel; a PBT
    study's runs default to its population, ``parallel``).

    >>> budget_spec({"runs": 4, "parallel": 2})
    {'runs': 4, 'days': 5, 'parallel': 2}
    """
    if budget is None:
        budget = {}
    if not isinstance(budget, Mapping):
        raise SpaceError(f"budget must be a mapping with runs, days, parallel; got {budget!r}")
    unknown = sorted(set(budget) - set(BUDGET_DEFAULTS))
    if unknown:
        raise SpaceError(f"budget takes runs, days and parallel; got {', '.join(unknown)}")
    out = {**BUDGET_DEFAULTS, **budget}
    if pbt and "runs" not in budget:
        out["runs"] = out["parallel"]
    for key in ("runs", "days", "parallel"):
        _whole(out[key], f"budget {key}", 1)
    if pbt and out["parallel"] < 2:
        raise SpaceError(f"PBT needs a population (parallel) of at least 2, got {out['parallel']}")
    return {key: int(out[key]) for key in ("runs", "days", "parallel")}


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise SpaceError(f"expected a number, got {text!r}") from None


def stop_spec(rule: str | Mapping[str, Any]) -> dict[str, Any]:
    """One stopping rule as stored, from a mapping or the CLI's ``rule:a:b`` form, checked.

    ``patience:DAYS[:MIN_DELTA]``, ``threshold:DAY:WORSE_THAN``, ``walltime:SECONDS``,
    ``median[:MIN_DAYS[:MIN_RUNS]]``, ``asha[:MIN_DAYS[:REDUCTION_FACTOR[:MAX_DAYS]]]``.

    >>> stop_spec("threshold:2:1.5")
    {'rule': 'threshold', 'day': 2, 'worse_than': 1.5}
    """
    if isinstance(rule, str):
        name, *values = rule.strip().split(":")
        name = {"successive_halving": "asha"}.get(name, name)
        if name not in RULES:
            raise SpaceError(f"unknown stopping rule {rule!r}; expected one of "
                             f"{', '.join(RULES)} (e.g. patience:3)")
        positional = RULES[name][2]
        if len(values) > len(positional):
            raise SpaceError(f"stopping rule {rule!r} takes at most {len(positional)} values: "
                             f"{name}:{':'.join(k.upper() for k in positional)}")
        spec: dict[str, Any] = {"rule": name}
        spec.update({k: _number(v) for k, v in zip(positional, values, strict=False)})
    elif isinstance(rule, Mapping):
        spec = dict(rule)
        if spec.get("rule") == "successive_halving":
            spec["rule"] = "asha"
        if spec["rule"] not in RULES:
            raise SpaceError(f"unknown stopping rule {spec['rule']!r}; expected one of "
                             f"{', '.join(RULES)}")
    else:
        raise SpaceError(f"a stopping rule is a mapping or text like 'patience:3', got {rule!r}")
    build_rule(spec)
    return spec


def build_rule(spec: Mapping[str, Any]) -> StoppingRule:
    """The rule object a stored spec describes; a missing or unknown key is an error."""
    name = spec.get("rule")
    if name not in RULES:
        raise SpaceError(f"unknown stopping rule {name!r}; expected one of {', '.join(RULES)}")
    cls, keys, _ = RULES[str(name)]
    options = {k: v for k, v in spec.items() if k != "rule"}
    unknown = sorted(set(options) - set(keys))
    if unknown:
        raise SpaceError(f"stopping rule {name!r} takes {', '.join(keys)}; got "
                         f"{', '.join(unknown)}")
    defaults = {f.name for f in fields(cls) if f.default is not MISSING}
    missing = [k for k, arg in keys.items() if k not in options and arg not in defaults]
    if missing:
        raise SpaceError(f"stopping rule {name!r} needs {', '.join(missing)}")
    return cls(**{keys[k]: v for k, v in options.items()})


def stopping_spec(rules: Sequence[str | Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """A study's list of stopping rules as stored (each checked by `stop_spec`)."""
    if rules is None:
        return []
    if isinstance(rules, str | Mapping):
        rules = [rules]
    return [stop_spec(r) for r in rules]


def donor_of(detail: Mapping[str, Any]) -> tuple[Any, Any]:
    """An exploit decision's (donor run, donor day): the run whose checkpoint is copied.

    Decisions written before the rename named them source_run / source_day.

    >>> donor_of({"donor": 2, "donor_day": 3}), donor_of({"source_run": 2, "source_day": 3})
    ((2, 3), (2, 3))
    """
    return (detail.get("donor", detail.get("source_run")),
            detail.get("donor_day", detail.get("source_day")))
