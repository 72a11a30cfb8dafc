"""Param importance through Optuna's evaluators, on each param's own scale."""

from __future__ import annotations

import math

import numpy as np
import pytest

from babysit.study.importance import importance
from babysit.study.space import Space, SpaceError

SPACE = Space.from_dict(
    {
        "lr": {"scale": "log", "low": 1e-4, "high": 1},
        "momentum": {"scale": "one_minus_log", "low": 0.9, "high": 0.999},
        "batch_size": {"scale": "pow2", "low": 16, "high": 256},
        "opt": {"choices": ["sgd", "adam"]},
    }
)


def runs(n: int, seed: int = 0) -> tuple[list[dict], list[float]]:
    """Configs whose loss depends mostly on lr (on its log axis), a little on momentum."""
    rng = np.random.default_rng(seed)
    configs = [SPACE.sample(rng) for _ in range(n)]
    values = [
        (math.log10(c["lr"]) + 2) ** 2 + 0.05 * math.log10(1 - c["momentum"]) for c in configs
    ]
    return configs, values


@pytest.mark.parametrize("evaluator", ["auto", "fanova", "ped_anova"])
def test_the_param_that_drives_the_loss_comes_first(evaluator):
    configs, values = runs(40)
    result = importance(configs, values, SPACE, "min", evaluator=evaluator)
    assert set(result) == set(SPACE.names)
    assert next(iter(result)) == "lr"
    assert result["lr"] > 0.5
    assert sum(result.values()) == pytest.approx(1.0)
    assert list(result.values()) == sorted(result.values(), reverse=True)
    assert all(type(v) is float for v in result.values())


def test_fanova_is_reproducible_with_its_seed():
    configs, values = runs(30)
    assert importance(configs, values, SPACE, evaluator="fanova", seed=3) == importance(
        configs, values, SPACE, evaluator="fanova", seed=3
    )


def test_failed_runs_are_left_out_and_too_few_runs_is_a_clear_error():
    configs, values = runs(6)
    values[:2] = [math.nan, math.inf]
    with pytest.raises(
        SpaceError, match=r"at least 5 runs with a finite value, got 4 \(of 6 runs\)"
    ):
        importance(configs, values, SPACE)
    assert set(importance(configs, values, SPACE, min_runs=4)) == set(SPACE.names)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda c, v: (c, v[:-1]), "got 10 configs but 9 values"),
        (lambda c, v: ([{**c[0], "lr": 3.0}, *c[1:]], v), "config 0 is not in the space"),
        (lambda c, v: (c, ["x", *v[1:]]), "value 0 must be a number, got 'x'"),
    ],
)
def test_bad_inputs(change, fragment):
    configs, values = change(*runs(10))
    with pytest.raises(SpaceError) as info:
        importance(configs, values, SPACE)
    assert fragment in str(info.value)


def test_bad_options():
    configs, values = runs(10)
    with pytest.raises(SpaceError, match="'shap'"):
        importance(configs, values, SPACE, evaluator="shap")
    with pytest.raises(SpaceError, match="'lowest'"):
        importance(configs, values, SPACE, "lowest")
    with pytest.raises(SpaceError, match="got 1"):
        importance(configs, values, SPACE, min_runs=1)
