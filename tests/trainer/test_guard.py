"""The divergence guard on its own: what trips it, what it remembers, what it forgets."""

from __future__ import annotations

import math

import pytest

from babysit import Guard, InvalidValue


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_value_trips_the_guard_once(bad):
    guard = Guard("loss")
    for value in (3.0, 2.0, bad, math.nan, 1.0):
        guard.observe(value)
    name, value = guard.take()
    assert name == "loss" and (value == bad or math.isnan(bad) and math.isnan(value))
    assert guard.take() is None         # taken: cleared


def test_the_first_trip_is_kept_until_taken():
    guard = Guard("loss")
    guard.observe(math.inf)
    guard.observe(math.nan)
    name, value = guard.take()
    assert (name, value) == ("loss", math.inf)


def test_max_ratio_trips_on_a_blow_up_relative_to_the_best_so_far():
    guard = Guard("loss", max_ratio=10)
    for value in (5.0, 2.0, 19.9, 3.0):
        guard.observe(value)
    assert guard.tripped is None and guard.best == 2.0 and guard.limit == 20.0
    guard.observe(20.0)
    assert guard.take() == ("loss", 20.0)
    without = Guard("loss")             # no ratio: only non-finite values trip it
    for value in (1.0, 1e30):
        without.observe(value)
    assert without.tripped is None


def test_a_restore_forgets_the_best_value_and_a_pending_trip():
    guard = Guard("loss", max_ratio=2)
    guard.observe(1.0)
    guard.observe(5.0)
    guard.forget()
    assert guard.tripped is None
    guard.observe(5.0)                  # the curve starts again: 5 is the new best
    assert guard.tripped is None and guard.best == 5.0


def test_other_trips_and_the_rollback_budget():
    guard = Guard(policy="rollback", max_rollbacks=2)
    guard.trip("weights", math.nan)
    guard.trip("loss", 1.0)
    assert guard.take()[0] == "weights"
    assert guard.may_roll_back()
    guard.rollbacks = 2
    assert not guard.may_roll_back()
    assert not Guard(policy="pause").may_roll_back()


@pytest.mark.parametrize("kwargs,message", [
    ({"policy": "explode"}, "policy"), ({"max_ratio": 1}, "max_ratio"),
    ({"max_ratio": "10"}, "max_ratio"), ({"lr_factor": 1.5}, "lr_factor"),
    ({"lr_factor": 0}, "lr_factor"),
])
def test_bad_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(InvalidValue, match=message):
        Guard(**kwargs)


@pytest.mark.parametrize("values, tripped", [
    ((3.0, 2.0, 2.5, 1.0, 9.0, 10.5), ("loss", 10.5)),   # 10 x the best (1.0) and over
    ((3.0, 2.0, 2.5, 19.9), None),                        # under 10 x the best (2.0)
    ((3.0, 3.0, -math.inf), ("loss", -math.inf)),
    ((3.0, 4.0, math.nan), ("loss", math.nan)),
])
def test_run_log_feeds_the_guard_as_observe_does(tmp_path, values, tripped):
    """run.log skips the call when the value is in the guard's quiet range: the guard must end
    in the same state as one that observed every value."""
    import babysit

    run = babysit.init(project="g", day="1000 steps", root=tmp_path,
                       guard=Guard("loss", max_ratio=10))
    reference = Guard("loss", max_ratio=10)
    try:
        for value in values:
            run.log(loss=value, other=100.0)
            reference.observe(value)
        guard = run._guard
        assert (guard.best, guard.limit) == (reference.best, reference.limit)
        got = guard.take()
        assert (got is None) == (tripped is None)
        if tripped is not None:
            assert got[0] == tripped[0]
            assert got[1] == tripped[1] or (math.isnan(got[1]) and math.isnan(tripped[1]))
    finally:
        run.finish()
