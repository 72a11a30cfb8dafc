"""PBT: exact losers/winners, explored configs and exploit plans for a seeded generator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from babysit.study.pbt import Exploit, Op, explore, plan, select
from babysit.study.space import Space, SpaceError

SPACE = Space.from_dict(
    {
        "lr": {"scale": "log", "low": 1e-4, "high": 1},
        "momentum": {"scale": "one_minus_log", "low": 0.9, "high": 0.999},
        "batch_size": {"scale": "pow2", "low": 16, "high": 256},
        "opt": {"choices": ["sgd", "adam"]},
    }
)
SCORES = {1: 0.91, 2: 0.42, 3: 0.55, 4: math.nan, 5: 0.60, 6: 0.47, 7: 0.80, 8: 0.42}
CONFIG = {"lr": 0.01, "momentum": 0.99, "batch_size": 64, "opt": "sgd", "epochs": 10}


# -- select ----------------------------------------------------------------------------------------


def test_select_bottom_and_top_quarter_with_nan_worst_and_ties_by_run_id():
    # 8 runs, quantile 0.25: 2 each side. 2 and 8 tie at 0.42: the smaller id ranks better.
    assert select(SCORES, 0.25, "min") == ([4, 1], [2, 8])
    # Maximising: NaN is still worst, and of the tied 2 and 8, 8 ranks below 2.
    assert select(SCORES, 0.25, "max") == ([4, 8], [1, 7])
    assert select(SCORES, 0.5, "min") == ([4, 1, 7, 5], [2, 8, 6, 3])


def test_select_makes_every_non_finite_run_a_loser_and_never_a_winner():
    scores = {"a": 0.3, "b": math.nan, "c": math.inf, "d": 0.2, "e": -math.inf}
    # 5 runs: ceil(5 * 0.25) = 2 per side, and all three non-finite runs lose.
    assert select(scores, 0.25, "min") == (["e", "c", "b"], ["d", "a"])
    assert select({"a": 0.3, "b": math.nan, "c": math.nan, "d": math.nan}, 0.5, "min") == (
        ["d", "c", "b"],
        ["a"],
    )
    assert select({"a": math.nan, "b": math.nan}, 0.5, "min") == ([], [])


def test_select_with_fewer_than_two_runs_does_nothing():
    assert select({}, 0.25) == ([], [])
    assert select({1: 0.5}, 0.25) == ([], [])
    assert select({1: 0.5, 2: 0.4}, 0.25) == ([1], [2])


def test_select_never_takes_more_than_half_per_side():
    assert select({1: 3.0, 2: 1.0, 3: 2.0}, 0.5, "min") == ([1], [2])


@pytest.mark.parametrize("quantile", [0, -0.1, 0.51, 1, "0.25", True])
def test_select_validates_the_quantile(quantile):
    with pytest.raises(SpaceError, match=r"quantile must be in \(0, 0.5\]"):
        select(SCORES, quantile)


def test_select_validates_direction_and_scores():
    with pytest.raises(SpaceError, match="'minimise'"):
        select(SCORES, 0.25, "minimise")
    with pytest.raises(SpaceError, match="run 2.*'x'"):
        select({1: 0.5, 2: "x"}, 0.25)


# -- explore ---------------------------------------------------------------------------------------


def test_explore_with_a_seeded_generator_gives_this_exact_config():
    new, ops = explore(CONFIG, SPACE, np.random.default_rng(0))
    assert new == {
        "lr": 0.012,
        "momentum": 0.9073288123328695,
        "batch_size": 32,
        "opt": "adam",
        "epochs": 10,
    }
    assert ops == [
        Op("lr", 0.01, 0.012, "perturb x1.2"),
        Op("momentum", 0.99, 0.9073288123328695, "resample"),
        Op("batch_size", 64, 32, "perturb x0.8"),
        Op("opt", "sgd", "adam", "perturb x1.2"),
    ]
    assert CONFIG["lr"] == 0.01  # the input is not changed
    again, _ = explore(CONFIG, SPACE, np.random.default_rng(0))
    assert again == new


def test_explore_only_perturbs_without_resampling_and_clips_to_bounds():
    config = {"lr": 0.9, "momentum": 0.999, "batch_size": 256, "opt": "adam"}
    new, ops = explore(
        config, SPACE, np.random.default_rng(1), perturb_factors=(1.2,), resample_probability=0
    )
    assert new == {"lr": 1.0, "momentum": 0.999, "batch_size": 256, "opt": "adam"}
    assert {op.how for op in ops} == {"perturb x1.2"}


def test_explore_always_resamples_with_probability_one():
    new, ops = explore(CONFIG, SPACE, np.random.default_rng(2), resample_probability=1.0)
    assert [op.how for op in ops] == ["resample"] * 4
    assert SPACE.contains(new) and new["epochs"] == 10


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"perturb_factors": ()}, "non-empty"),
        ({"perturb_factors": (0.8, -1.2)}, "got -1.2"),
        ({"perturb_factors": "1.2"}, "'1.2'"),
        ({"resample_probability": 1.5}, "got 1.5"),
    ],
)
def test_explore_validates_its_options(kwargs, fragment):
    with pytest.raises(SpaceError) as info:
        explore(CONFIG, SPACE, np.random.default_rng(0), **kwargs)
    assert fragment in str(info.value)


def test_explore_needs_every_param_of_the_space():
    with pytest.raises(SpaceError, match="lacks param.*'opt'"):
        explore({"lr": 0.1, "momentum": 0.9, "batch_size": 32}, SPACE, np.random.default_rng(0))


# -- plan ------------------------------------------------------------------------------------------


def test_plan_pairs_each_loser_with_a_random_winner_and_explains_why():
    configs = {run: dict(CONFIG, lr=0.01 * run) for run in SCORES}
    exploits = plan(
        SCORES, configs, SPACE, np.random.default_rng(0), 0.25, "min", metric="val_loss", day=4
    )
    assert exploits == [
        Exploit(
            loser=4,
            winner=8,
            new_config={
                "lr": 0.096,
                "momentum": 0.9073288123328695,
                "batch_size": 128,
                "opt": "adam",
                "epochs": 10,
            },
            ops=(
                Op("lr", 0.08, 0.096, "perturb x1.2"),
                Op("momentum", 0.99, 0.9073288123328695, "resample"),
                Op("batch_size", 64, 128, "perturb x1.2"),
                Op("opt", "sgd", "adam", "perturb x1.2"),
            ),
            reason="run 4 (val_loss nan) has no finite value, copies run 8 (val_loss 0.42) at day 4",
        ),
        Exploit(
            loser=1,
            winner=8,
            new_config={
                "lr": 0.096,
                "momentum": 0.9875,
                "batch_size": 256,
                "opt": "adam",
                "epochs": 10,
            },
            ops=(
                Op("lr", 0.08, 0.096, "perturb x1.2"),
                Op("momentum", 0.99, 0.9875, "perturb x0.8"),
                Op("batch_size", 64, 256, "resample"),
                Op("opt", "sgd", "adam", "perturb x1.2"),
            ),
            reason="run 1 (val_loss 0.91) in bottom 25%, copies run 8 (val_loss 0.42) at day 4",
        ),
    ]


def test_plan_with_another_seed_picks_other_winners():
    configs = {run: dict(CONFIG) for run in SCORES}
    winners = {
        e.winner
        for seed in range(10)
        for e in plan(SCORES, configs, SPACE, np.random.default_rng(seed))
    }
    assert winners == {2, 8}


def test_plan_reason_without_a_day_and_with_fewer_than_two_runs():
    [exploit] = plan({7: 0.91, 3: 0.42}, {7: CONFIG, 3: CONFIG}, SPACE, np.random.default_rng(0))
    assert exploit.reason == "run 7 (score 0.91) in bottom 25%, copies run 3 (score 0.42)"
    assert plan({7: 0.91}, {7: CONFIG}, SPACE, np.random.default_rng(0)) == []


def test_plan_needs_the_winners_configs():
    with pytest.raises(SpaceError, match="no config for winning run"):
        plan({7: 0.91, 3: 0.42}, {7: CONFIG}, SPACE, np.random.default_rng(0))
