"""Strategies: grid, random, coarse-to-fine and Optuna ask/tell, with seeded generators."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from babysit.study.space import Space, SpaceError
from babysit.study.strategies import (
    STRATEGIES,
    CoarseToFineStrategy,
    GridStrategy,
    OptunaStrategy,
    RandomStrategy,
    Strategy,
    from_optuna,
    make_strategy,
    to_optuna,
)

FULL = Space.from_dict(
    {
        "lr": {"scale": "log", "low": 1e-4, "high": 1},
        "momentum": {"scale": "one_minus_log", "low": 0.9, "high": 0.999},
        "batch_size": {"scale": "pow2", "low": 16, "high": 256},
        "layers": {"scale": "int", "low": 1, "high": 4},
        "dropout": {"scale": "linear", "low": 0.0, "high": 0.5},
        "opt": {"choices": ["sgd", "adam"]},
    }
)
LR = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}})


def quadratic(config: dict) -> float:
    """Best at lr = 1e-2 and x = 0.3; the log axis is where the bowl is round."""
    return (math.log10(config["lr"]) + 2) ** 2 + 4 * (config["x"] - 0.3) ** 2


QUAD = Space.from_dict(
    {"lr": {"scale": "log", "low": 1e-4, "high": 1}, "x": {"scale": "linear", "low": -1, "high": 1}}
)


def run_study(strategy: Strategy, trials: int, batch: int = 1) -> list[float]:
    values = []
    while len(values) < trials:
        for s in strategy.ask(min(batch, trials - len(values))):
            value = quadratic(s.config)
            strategy.tell(s.number, value)
            values.append(value)
    return values


# -- grid ------------------------------------------------------------------------------------------


def test_grid_asks_every_point_once_in_order_then_is_exhausted():
    space = Space.from_dict(
        {"lr": {"scale": "log", "low": 1e-3, "high": 1e-1}, "opt": ["sgd", "adam", "lion"]}
    )
    grid = GridStrategy(space, 3)
    assert grid.size == 9
    batches = [grid.ask(4), grid.ask(4), grid.ask(4), grid.ask(4)]
    assert [len(b) for b in batches] == [4, 4, 1, 0]
    asked = [s for b in batches for s in b]
    assert [s.number for s in asked] == list(range(9))
    assert [s.config for s in asked] == space.grid(3)
    assert asked[4].config == {"lr": 0.01, "opt": "adam"}
    assert grid.exhausted
    assert grid.pending == list(range(9))


def test_grid_is_not_exhausted_before_its_last_point():
    grid = GridStrategy(LR, 2)
    grid.ask(1)
    assert not grid.exhausted
    grid.ask(1)
    assert grid.exhausted


# -- bookkeeping (shared by all strategies) --------------------------------------------------------


def test_tell_refuses_unknown_and_repeated_numbers_and_non_numbers():
    strategy = RandomStrategy(LR, seed=0)
    [s] = strategy.ask(1)
    with pytest.raises(SpaceError, match="trial 5 was never asked"):
        strategy.tell(5, 0.1)
    with pytest.raises(SpaceError, match="'bad'"):
        strategy.tell(s.number, "bad")
    strategy.tell(s.number, 0.1)
    with pytest.raises(SpaceError, match=r"trial 0 was already told a value \(0.1\)"):
        strategy.tell(s.number, 0.2)
    assert strategy.results == [(s.config, 0.1)]
    assert strategy.pending == []


@pytest.mark.parametrize("n", [-1, 1.5, True, "3"])
def test_ask_refuses_a_bad_count(n):
    with pytest.raises(SpaceError, match="got"):
        RandomStrategy(LR, seed=0).ask(n)


def test_suggested_configs_are_copies():
    strategy = GridStrategy(LR, 2)
    [s] = strategy.ask(1)
    s.config["lr"] = 123.0
    assert strategy.results == [] and strategy._asked[0] == {"lr": 0.0001}


# -- random ----------------------------------------------------------------------------------------


def test_random_is_reproducible_with_its_seed_and_leaves_global_state_alone():
    np_state, py_state = np.random.get_state()[1].copy(), random.getstate()
    a = [s.config for s in RandomStrategy(FULL, seed=7).ask(20)]
    b = [
        s.config for s in RandomStrategy(FULL, seed=7).ask(10) + RandomStrategy(FULL, seed=8).ask(0)
    ]
    c = [s.config for s in RandomStrategy(FULL, seed=8).ask(20)]
    assert a[:10] == b
    assert a != c
    assert all(FULL.contains(config) for config in a)
    assert not RandomStrategy(FULL, seed=7).exhausted
    assert (np.random.get_state()[1] == np_state).all() and random.getstate() == py_state


# -- coarse to fine --------------------------------------------------------------------------------


def test_coarse_to_fine_narrows_around_high_lr_when_high_lr_is_best():
    c2f = CoarseToFineStrategy(
        LR, direction="min", batch_size=20, top_fraction=0.25, rounds=2, seed=0
    )
    first = c2f.ask(20)
    assert c2f.ask(5) == []  # waiting for the batch
    assert not c2f.exhausted
    for s in first:
        c2f.tell(s.number, -math.log10(s.config["lr"]))  # higher lr, lower loss
    assert c2f.round == 1
    second = c2f.ask(100)
    assert len(second) == 20
    assert all(s.config["lr"] > 1e-2 for s in second)  # all in the upper half of the log range
    assert min(s.config["lr"] for s in first) < 1e-3  # the first batch was spread out
    assert c2f.space["lr"].high == 1.0 and c2f.space["lr"].low > 1e-2
    for s in second:
        c2f.tell(s.number, 0.0)
    assert c2f.exhausted and c2f.ask(1) == []


def test_coarse_to_fine_maximising_narrows_the_other_way():
    c2f = CoarseToFineStrategy(LR, direction="max", batch_size=16, rounds=3, seed=1)
    for s in c2f.ask(16):
        c2f.tell(s.number, -math.log10(s.config["lr"]))
    assert all(s.config["lr"] < 1e-2 for s in c2f.ask(16))


def test_coarse_to_fine_searches_the_same_range_again_when_a_whole_batch_fails():
    c2f = CoarseToFineStrategy(LR, batch_size=3, rounds=3, seed=0)
    for s in c2f.ask(3):
        c2f.tell(s.number, math.nan)
    assert c2f.round == 1 and c2f.space == LR


def test_coarse_to_fine_narrow_to_starts_a_batch_in_the_region_even_when_exhausted():
    c2f = CoarseToFineStrategy(LR, batch_size=4, rounds=1, seed=0)
    for s in c2f.ask(4):
        c2f.tell(s.number, 1.0)
    assert c2f.exhausted
    c2f.narrow_to({"lr": (1e-3, 1e-2)})
    assert not c2f.exhausted
    batch = c2f.ask(10)
    assert len(batch) == 4
    assert all(1e-3 <= s.config["lr"] <= 1e-2 for s in batch)
    with pytest.raises(SpaceError, match="high=2"):
        c2f.narrow_to({"lr": (1e-3, 2)})


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"batch_size": 0}, "batch_size must be a whole number >= 1, got 0"),
        ({"rounds": 1.5}, "got 1.5"),
        ({"top_fraction": 0}, "top_fraction must be in (0, 1], got 0"),
        ({"margin": 2}, "margin must be in (0, 1], got 2"),
        ({"direction": "up"}, "'up'"),
    ],
)
def test_coarse_to_fine_validates_its_options(kwargs, fragment):
    with pytest.raises(SpaceError) as info:
        CoarseToFineStrategy(LR, **kwargs)
    assert fragment in str(info.value)


# -- Optuna ----------------------------------------------------------------------------------------


def test_tpe_beats_random_on_a_quadratic_in_20_trials():
    # Five seeds, because one 20-trial study is noisy either way.
    tpe = [
        run_study(OptunaStrategy(QUAD, sampler="tpe", seed=seed, n_startup_trials=5), 20)
        for seed in range(5)
    ]
    rnd = [run_study(RandomStrategy(QUAD, seed=seed), 20) for seed in range(5)]
    assert np.mean(tpe) < np.mean(rnd)
    # After its 5 random start-up trials TPE has learned: its last 10 trials are far better.
    assert np.mean([values[10:] for values in tpe]) < 0.7 * np.mean(rnd)
    assert np.mean([min(values) for values in tpe]) < np.mean([min(values) for values in rnd])


def test_optuna_asks_in_batches_and_maps_every_scale_back_to_legal_values():
    strategy = OptunaStrategy(FULL, sampler="tpe", seed=3, n_startup_trials=2)
    for _ in range(3):
        batch = strategy.ask(3)
        assert len({s.number for s in batch}) == 3
        for s in batch:
            FULL.validate(s.config)
            strategy.tell(s.number, s.config["lr"] + s.config["dropout"])
    assert len(strategy.results) == 9


def test_optuna_counts_a_nan_as_a_failed_trial_and_goes_on():
    import optuna

    strategy = OptunaStrategy(LR, direction="max", sampler="random", seed=0)
    a, b = strategy.ask(2)
    strategy.tell(a.number, math.nan)
    strategy.report(b.number, 1, 0.5)
    strategy.report(b.number, 2, math.inf)  # ignored: Optuna takes only finite reports
    strategy.tell(b.number, 0.7)
    states = [t.state for t in strategy._study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert strategy._study.trials[1].intermediate_values == {1: 0.5}
    assert strategy._study.best_value == 0.7


def test_optuna_random_is_reproducible_with_its_seed():
    a = [s.config for s in OptunaStrategy(FULL, sampler="random", seed=5).ask(5)]
    b = [s.config for s in OptunaStrategy(FULL, sampler="random", seed=5).ask(5)]
    assert a == b


def test_gp_sampler_runs_ask_tell():
    strategy = OptunaStrategy(QUAD, sampler="gp", seed=0, n_startup_trials=2)
    values = run_study(strategy, 4)
    assert len(values) == 4 and all(math.isfinite(v) for v in values)


def test_optuna_conversions_search_momentum_as_one_minus_beta_and_batch_size_as_exponent():
    momentum, batch = FULL["momentum"], FULL["batch_size"]
    assert to_optuna(momentum, 0.99) == pytest.approx(0.01)
    assert from_optuna(momentum, 0.01) == pytest.approx(0.99)
    assert from_optuna(momentum, 1 - 0.999) <= 0.999
    assert to_optuna(batch, 64) == 6 and from_optuna(batch, 6) == 64
    with pytest.raises(SpaceError, match="48"):
        to_optuna(batch, 48)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"sampler": "cmaes"}, "'cmaes'"),
        ({"sampler": "random", "n_startup_trials": 3}, "got 3"),
        ({"n_startup_trials": -1}, "got -1"),
        ({"direction": "maximize"}, "'maximize'"),
    ],
)
def test_optuna_strategy_validates_its_options(kwargs, fragment):
    with pytest.raises(SpaceError) as info:
        OptunaStrategy(LR, **kwargs)
    assert fragment in str(info.value)


# -- factory ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_make_strategy_builds_every_strategy_and_it_follows_the_protocol(name):
    strategy = make_strategy(name, LR, direction="max", seed=0)
    assert isinstance(strategy, Strategy)
    [s] = strategy.ask(1)
    assert LR.contains(s.config)
    strategy.report(s.number, 1, 0.5)
    strategy.tell(s.number, 0.5)


def test_make_strategy_passes_options_and_refuses_unknown_names_and_options():
    c2f = make_strategy("coarse_to_fine", LR, direction="max", seed=1, batch_size=5)
    assert isinstance(c2f, CoarseToFineStrategy) and c2f.batch_size == 5 and c2f.direction == "max"
    assert isinstance(make_strategy("grid", LR, n_per_param=2, seed=3), GridStrategy)
    assert make_strategy("gp", LR).sampler == "gp"
    with pytest.raises(
        SpaceError, match=r"unknown strategy 'hyperband'; expected one of grid, random"
    ):
        make_strategy("hyperband", LR)
    with pytest.raises(SpaceError, match="does not take option.*batch"):
        make_strategy("random", LR, batch=3)
    with pytest.raises(SpaceError, match="sampler"):
        make_strategy("tpe", LR, sampler="gp")
    with pytest.raises(SpaceError, match="'best'"):
        make_strategy("grid", LR, direction="best")
