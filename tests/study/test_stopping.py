"""Early-stopping rules: exact decisions and reasons on small hand-written histories."""

from __future__ import annotations

import math

import pytest

from babysit.study.space import SpaceError
from babysit.study.stopping import (
    ASHA,
    Decision,
    MedianRule,
    Patience,
    StoppingRule,
    SuccessiveHalving,
    Threshold,
    WallTime,
)

NAN = math.nan


# -- Patience ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "days", "direction", "expected"),
    [
        (
            Patience(2),
            [1.0, 0.8],
            "min",
            Decision(False, "run 1: 2 day(s) so far, patience is 2 days"),
        ),
        (
            Patience(2),
            [1.0, 0.8, 0.9, 0.85],
            "min",
            Decision(
                True, "run 1: val_loss has not improved in the last 2 days (best 0.8 on day 2)"
            ),
        ),
        (
            Patience(2),
            [1.0, 0.8, 0.9, 0.79],
            "min",
            Decision(False, "run 1: val_loss improved in the last 2 days (to 0.79 on day 4)"),
        ),
        (
            Patience(2, min_delta=0.05),
            [1.0, 0.8, 0.9, 0.79],
            "min",
            Decision(
                True,
                "run 1: val_loss has not improved by more than 0.05 in the last 2 days (best 0.8 on day 2)",
            ),
        ),
        (
            Patience(1),
            [0.5, 0.7],
            "max",
            Decision(False, "run 1: val_loss improved in the last 1 days (to 0.7 on day 2)"),
        ),
        (
            Patience(1),
            [0.5, NAN],
            "min",
            Decision(
                True, "run 1: val_loss has not improved in the last 1 days (best 0.5 on day 1)"
            ),
        ),
        (
            Patience(1),
            [NAN, 3.0],
            "min",
            Decision(False, "run 1: val_loss improved in the last 1 days (to 3 on day 2)"),
        ),
        (
            Patience(1),
            [0.5, 0.5],
            "min",
            Decision(
                True, "run 1: val_loss has not improved in the last 1 days (best 0.5 on day 1)"
            ),
        ),
    ],
)
def test_patience(rule, days, direction, expected):
    assert rule.should_stop({1: days, 2: [0.0] * 9}, 1, direction, metric="val_loss") == expected


# -- Threshold -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "direction", "expected"),
    [
        ([2.5], "min", Decision(False, "run 1: not at day 2 yet (day 1)")),
        ([2.5, 2.31], "min", Decision(True, "run 1: objective 2.31 at day 2 is worse than 2")),
        (
            [2.5, 1.9, 3.0],
            "min",
            Decision(False, "run 1: objective 1.9 at day 2 is not worse than 2"),
        ),
        ([2.5, NAN], "min", Decision(True, "run 1: objective nan at day 2 is worse than 2")),
        ([2.5, 1.9], "max", Decision(True, "run 1: objective 1.9 at day 2 is worse than 2")),
        ([2.5, 2.0], "min", Decision(False, "run 1: objective 2 at day 2 is not worse than 2")),
    ],
)
def test_threshold(days, direction, expected):
    assert Threshold(day=2, worse_than=2.0).should_stop({1: days}, 1, direction) == expected


# -- WallTime -------------------------------------------------------------------------------------


def test_wall_time():
    rule = WallTime(max_seconds=3600)
    assert rule.should_stop({1: []}, 1, elapsed_s=3599.4) == Decision(
        False, "run 1 ran 3599s of 3600s"
    )
    assert rule.should_stop({1: []}, 1, elapsed_s=3600) == Decision(
        True, "run 1 ran 3600s, the limit is 3600s"
    )
    with pytest.raises(SpaceError, match="needs elapsed_s"):
        rule.should_stop({1: []}, 1)


# -- MedianRule ------------------------------------------------------------------------------------

HISTORY = {
    1: [0.9, 0.7, 0.5],
    2: [0.8, 0.6],
    3: [0.7, 0.5, 0.4],
    4: [0.6, NAN],
    5: [1.0],
}


@pytest.mark.parametrize(
    ("rule", "run", "direction", "expected"),
    [
        # Day 2 of run 2: others at day 2 are 0.7, 0.5, nan (worst): median 0.7; 0.6 is better.
        (
            MedianRule(),
            2,
            "min",
            Decision(
                False,
                "run 2: objective 0.6 at day 2 is not worse than the median 0.7 of 3 other runs",
            ),
        ),
        # Day 3 of run 1: only run 3 reached day 3.
        (
            MedianRule(),
            1,
            "min",
            Decision(False, "run 1: 1 other run(s) reached day 3, the median rule needs 3"),
        ),
        (
            MedianRule(min_runs=1),
            1,
            "min",
            Decision(
                True, "run 1: objective 0.5 at day 3 is worse than the median 0.4 of 1 other runs"
            ),
        ),
        # Day 1 of run 5: others 0.9, 0.8, 0.7, 0.6: median 0.75.
        (
            MedianRule(),
            5,
            "min",
            Decision(
                True, "run 5: objective 1 at day 1 is worse than the median 0.75 of 4 other runs"
            ),
        ),
        (
            MedianRule(),
            5,
            "max",
            Decision(
                False,
                "run 5: objective 1 at day 1 is not worse than the median 0.75 of 4 other runs",
            ),
        ),
        (
            MedianRule(min_days=2),
            5,
            "min",
            Decision(False, "run 5: day 1, the median rule starts at day 2"),
        ),
        # A NaN is stopped whatever the median.
        (
            MedianRule(),
            4,
            "min",
            Decision(
                True, "run 4: objective nan at day 2 is worse than the median 0.6 of 3 other runs"
            ),
        ),
    ],
)
def test_median_rule(rule, run, direction, expected):
    assert rule.should_stop(HISTORY, run, direction) == expected


# -- Successive halving / ASHA ---------------------------------------------------------------------

RUNGS = {
    1: [0.9, 0.8, 0.7],
    2: [0.5, 0.4, 0.3],
    3: [0.6, 0.5, 0.45],
    4: [0.7],
    5: [0.3],
    6: [0.4, 0.35],
}


def test_rungs():
    assert SuccessiveHalving(min_days=1, reduction_factor=3, max_days=27).rungs(100) == [1, 3, 9]
    assert SuccessiveHalving(min_days=2, reduction_factor=2).rungs(20) == [2, 4, 8, 16]


@pytest.mark.parametrize(
    ("rule", "run", "direction", "expected"),
    [
        # Rung day 1, 6 runs reached it: keep ceil(6/3) = 2 (0.3 and 0.4); cutoff 0.4.
        (
            SuccessiveHalving(1, 3),
            4,
            "min",
            Decision(
                True,
                "run 4: objective 0.7 at day 1 is not in the top 1/3 of the 6 runs that reached it (cutoff 0.4)",
            ),
        ),
        (
            SuccessiveHalving(1, 3),
            5,
            "min",
            Decision(
                False,
                "run 5: objective 0.3 at day 1 is in the top 1/3 of the 6 runs that reached it (cutoff 0.4)",
            ),
        ),
        (
            SuccessiveHalving(1, 3),
            4,
            "max",
            Decision(
                False,
                "run 4: objective 0.7 at day 1 is in the top 1/3 of the 6 runs that reached it (cutoff 0.7)",
            ),
        ),
        # Day 2 is not a rung for eta 3.
        (
            SuccessiveHalving(1, 3),
            6,
            "min",
            Decision(False, "run 6: day 2 is not a rung (next rung: day 3)"),
        ),
        # Rung day 3: runs 1, 2, 3 reached it; keep 1 (0.3).
        (
            SuccessiveHalving(1, 3),
            3,
            "min",
            Decision(
                True,
                "run 3: objective 0.45 at day 3 is not in the top 1/3 of the 3 runs that reached it (cutoff 0.3)",
            ),
        ),
        (
            SuccessiveHalving(1, 3),
            2,
            "min",
            Decision(
                False,
                "run 2: objective 0.3 at day 3 is in the top 1/3 of the 3 runs that reached it (cutoff 0.3)",
            ),
        ),
        # Rung day 2 with eta 2: runs 1, 2, 3, 6 reached it; keep 2 (0.35, 0.4).
        (
            SuccessiveHalving(2, 2),
            6,
            "min",
            Decision(
                False,
                "run 6: objective 0.35 at day 2 is in the top 1/2 of the 4 runs that reached it (cutoff 0.4)",
            ),
        ),
        (
            SuccessiveHalving(1, 3, max_days=3),
            2,
            "min",
            Decision(True, "run 2 reached max_days (3)"),
        ),
        (
            SuccessiveHalving(1, 3, max_days=3),
            6,
            "min",
            Decision(False, "run 6: day 2 is not a rung (no rung left)"),
        ),
    ],
)
def test_successive_halving(rule, run, direction, expected):
    assert rule.should_stop(RUNGS, run, direction) == expected


def test_successive_halving_keeps_ceil_n_over_eta():
    # 4 runs at the rung, eta 3: ceil(4 / 3) = 2 go on, so the second best is kept.
    history = {1: [0.1], 2: [0.2], 3: [0.3], 4: [0.4]}
    assert SuccessiveHalving(1, 3).should_stop(history, 2) == Decision(
        False,
        "run 2: objective 0.2 at day 1 is in the top 1/3 of the 4 runs that reached it (cutoff 0.2)",
    )
    assert SuccessiveHalving(1, 3).should_stop(history, 3).stop


def test_the_first_run_at_a_rung_goes_on_and_a_nan_stops():
    rule = ASHA(min_days=1, reduction_factor=3)
    assert not rule.should_stop({1: [5.0]}, 1).stop
    assert rule.should_stop({1: [NAN]}, 1).stop
    assert rule.should_stop({1: [NAN], 2: [NAN]}, 2).stop
    assert rule.should_stop({1: []}, 1) == Decision(
        False, "run 1: day 0 is not a rung (next rung: day 1)"
    )


# -- validation and the protocol --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: Patience(0), "patience_days must be a whole number >= 1, got 0"),
        (lambda: Patience(2, min_delta=-0.1), "min_delta must be >= 0, got -0.1"),
        (lambda: Threshold(day=0, worse_than=1.0), "day must be a whole number >= 1, got 0"),
        (
            lambda: Threshold(day=1, worse_than=math.nan),
            "worse_than must be a finite number, got nan",
        ),
        (lambda: WallTime(0), "max_seconds must be > 0, got 0"),
        (lambda: MedianRule(min_days=1.5), "got 1.5"),
        (
            lambda: SuccessiveHalving(reduction_factor=1),
            "reduction_factor must be a whole number >= 2, got 1",
        ),
        (lambda: SuccessiveHalving(min_days=3, max_days=3), "max_days=3, min_days=3"),
    ],
)
def test_rules_validate_their_settings(make, fragment):
    with pytest.raises(SpaceError) as info:
        make()
    assert fragment in str(info.value)


RULES: list[StoppingRule] = [
    Patience(1),
    Threshold(1, 1.0),
    WallTime(1.0),
    MedianRule(),
    SuccessiveHalving(),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: type(r).__name__)
def test_every_rule_checks_its_inputs(rule):
    with pytest.raises(SpaceError, match="run 9 has no history"):
        rule.should_stop({1: [0.5]}, 9, elapsed_s=0.0)
    with pytest.raises(SpaceError, match="'down'"):
        rule.should_stop({1: [0.5]}, 1, "down", elapsed_s=0.0)
    with pytest.raises(SpaceError, match="must be numbers"):
        rule.should_stop({1: ["x"]}, 1, elapsed_s=0.0)
    decision = rule.should_stop({1: [0.5], 2: [0.4]}, 1, elapsed_s=0.0)
    assert isinstance(decision, Decision) and decision.reason
