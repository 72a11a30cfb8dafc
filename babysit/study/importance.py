"""Which hyperparameters mattered: Optuna's importance evaluators on a study's finished runs.

The runs become trials of a throwaway in-memory Optuna study, each param on its own scale
(log for learning rates, log of ``1 - beta`` for momentum, the exponent for a power of two,
see `babysit.study.strategies.optuna_distribution`), so "important" is judged on the same
axis the search used.

>>> from babysit.study.space import Space
>>> space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1},
...                          "wd": {"scale": "linear", "low": 0, "high": 1}})
>>> configs = [{"lr": 10 ** -(i % 4), "wd": (i * 7 % 10) / 10} for i in range(12)]
>>> values = [c["lr"] for c in configs]
>>> ranked = importance(configs, values, space)
>>> list(ranked)[0]
'lr'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from babysit.study.space import Space, SpaceError, check_direction
from babysit.study.strategies import optuna_distribution, to_optuna

EVALUATORS = ("auto", "fanova", "ped_anova")
MIN_RUNS = 5


def _evaluator(name: str, seed: int | None) -> Any:
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    if name not in EVALUATORS:
        raise SpaceError(
            f"unknown importance evaluator {name!r}; expected one of {', '.join(EVALUATORS)}"
        )
    if name in ("auto", "fanova"):
        try:
            import sklearn  # noqa: F401  # fANOVA's random forest comes from scikit-learn
        except ImportError as exc:
            if name == "fanova":
                raise SpaceError(
                    "evaluator 'fanova' needs scikit-learn: pip install scikit-learn"
                ) from exc
            return PedAnovaImportanceEvaluator()
        return FanovaImportanceEvaluator(seed=seed)
    return PedAnovaImportanceEvaluator()


def importance(
    configs: Sequence[Mapping[str, Any]],
    values: Sequence[float],
    space: Space,
    direction: str = "min",
    *,
    evaluator: str = "auto",
    seed: int | None = 0,
    min_runs: int = MIN_RUNS,
) -> dict[str, float]:
    """Importance of each param of ``space`` for the objective, summing to 1, most important first.

    ``configs[i]`` scored ``values[i]``; NaN/inf values (failed runs) are left out, and at
    least ``min_runs`` runs must remain. ``evaluator`` is "fanova" (needs scikit-learn),
    "ped_anova" (Optuna's default, no extra dependency) or "auto" (fANOVA when scikit-learn
    is installed). ``seed`` makes fANOVA's random forest reproducible.
    """
    import optuna

    check_direction(direction)
    if len(configs) != len(values):
        raise SpaceError(f"got {len(configs)} configs but {len(values)} values; they must pair up")
    if isinstance(min_runs, bool) or not isinstance(min_runs, int) or min_runs < 2:
        raise SpaceError(f"min_runs must be a whole number >= 2, got {min_runs!r}")
    chosen = _evaluator(evaluator, seed)
    distributions = {p.name: optuna_distribution(p) for p in space}
    trials = []
    for i, (config, value) in enumerate(zip(configs, values, strict=True)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise SpaceError(f"value {i} must be a number, got {value!r}") from None
        if not math.isfinite(value):
            continue
        problems = space.problems(config)
        if problems:
            raise SpaceError(f"config {i} is not in the space: {'; '.join(problems)}")
        params = {p.name: to_optuna(p, config[p.name]) for p in space}
        trials.append(
            optuna.trial.create_trial(params=params, distributions=distributions, value=value)
        )
    if len(trials) < min_runs:
        raise SpaceError(
            f"importance needs at least {min_runs} runs with a finite value, got {len(trials)} "
            f"(of {len(values)} runs)"
        )
    study = optuna.create_study(direction="minimize" if direction == "min" else "maximize")
    study.add_trials(trials)
    raw = optuna.importance.get_param_importances(study, evaluator=chosen, params=list(space.names))
    return {name: float(v) for name, v in raw.items()}
