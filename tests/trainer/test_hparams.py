"""Nudge validation, the CLI's nudge syntax, user-key changes and the effective-vs-configured
label: pure functions, exact expectations."""

from __future__ import annotations

import math

import pytest

from babysit.errors import InvalidValue
from babysit.hparams import (
    check_factor,
    check_nudge,
    check_updates,
    describe,
    describe_lr,
    parse_assignments,
    parse_nudge,
    user_changes,
)

HP = {"lr": 0.05, "momentum": 0.9, "batch_size": 64, "clip": 1.0, "ema": 0.99,
      "opt": "sgd", "amp": True}
KEYS = ["lr", "momentum", "weight_decay"]


def nudge(**args):
    return check_nudge(args, HP, optimizer_keys=KEYS, n_groups=2)


def test_a_nudge_comes_back_in_its_stored_shape():
    assert nudge(scale={"lr": 0.5}) == {"hp": {}, "scale": {"lr": 0.5}, "scale_1m": {},
                                        "group": None, "new": False}
    assert nudge(hp={"momentum": 0.95, "batch_size": 32.0}, scale={"clip": 2},
                 scale_1m={"ema": 0.5}) == {
        "hp": {"momentum": 0.95, "batch_size": 32}, "scale": {"clip": 2.0},
        "scale_1m": {"ema": 0.5}, "group": None, "new": False}
    assert nudge(scale={"weight_decay": 2}, group=1)["group"] == 1
    # an old stored command with only "hp" still passes
    assert check_nudge({"hp": {"lr": 0.01}}, HP, optimizer_keys=KEYS)["hp"] == {"lr": 0.01}
    # optimizer keys take floats even when the config wrote an int
    assert check_nudge({"hp": {"weight_decay": 0.01}}, {"weight_decay": 0},
                       optimizer_keys=KEYS)["hp"] == {"weight_decay": 0.01}


def test_a_typo_is_refused_with_the_known_keys_unless_new():
    with pytest.raises(InvalidValue) as info:
        nudge(hp={"lrr": 0.1})
    message = str(info.value)
    assert "'lrr'" in message and "new=True" in message and "--new" in message
    assert "['amp', 'batch_size', 'clip', 'ema', 'lr', 'momentum', 'opt', 'weight_decay']" in message
    assert nudge(hp={"dropout": 0.1}, new=True)["hp"] == {"dropout": 0.1}
    with pytest.raises(InvalidValue, match="no value yet"):
        nudge(scale={"dropout": 0.5}, new=True)
    with pytest.raises(InvalidValue, match="strict"):
        check_nudge({"hp": {"dropout": 0.1}, "new": True}, HP, strict=True, optimizer_keys=KEYS)
    # with no optimizer attached, lr is a plain user key: unknown unless configured
    with pytest.raises(InvalidValue, match="unknown hyperparameter 'lr'"):
        check_nudge({"scale": {"lr": 0.5}}, {"clip": 1.0})
    assert check_nudge({"scale": {"lr": 0.5}}, {"lr": 0.1}, optimizer_keys=[])["scale"] == {"lr": 0.5}


@pytest.mark.parametrize("args,match", [
    ({}, "at least one"),
    ({"hp": {}, "scale": {}}, "at least one"),
    ({"scale": {"lr": 0}}, "got 0"),
    ({"scale": {"lr": -2.0}}, "got -2.0"),
    ({"scale": {"lr": math.nan}}, "got nan"),
    ({"scale": {"lr": math.inf}}, "got inf"),
    ({"scale": {"lr": True}}, "got True"),
    ({"scale": {"lr": "0.5"}}, "got '0.5'"),
    ({"scale": {"lr": 10**400}}, "got 1000"),
    ({"hp": {"lr": 0}}, "lr must be a finite number > 0, got 0"),
    ({"hp": {"momentum": 1.0}}, r"\[0, 1\), got 1.0"),
    ({"hp": {"lr": 0.1}, "scale": {"lr": 0.5}}, "lr is nudged twice"),
    ({"scale_1m": {"lr": 0.5}}, "1-lr"),
    ({"scale_1m": {"clip": 0.5}}, "clip is 1.0"),
    ({"scale_1m": {"batch_size": 0.5}}, "batch_size is 64"),
    ({"scale": {"opt": 2}}, "'sgd', not a number"),
    ({"scale": {"amp": 2}}, "True, not a number"),
    ({"hp": {"batch_size": 31.5}}, "whole number"),
    ({"scale": {"clip": 2}, "group": 0}, "not to clip"),
    ({"scale": {"lr": 0.5}, "group": 2}, r"0\.\.1\), got 2"),
    ({"scale": {"lr": 0.5}, "group": -1}, "got -1"),
    ({"scale": {"lr": 0.5}, "group": True}, "got True"),
    ({"scale": {"lr": 0.5}, "new": "yes"}, "got 'yes'"),
    ({"scale": [("lr", 0.5)]}, "mapping"),
    ({"hp": {"bad key": 1}}, "identifiers"),
])
def test_bad_nudges_are_refused_naming_the_value(args, match):
    with pytest.raises(InvalidValue, match=match):
        check_nudge(args, HP, optimizer_keys=KEYS, n_groups=2)


def test_an_optimizer_without_momentum_says_what_it_has():
    with pytest.raises(InvalidValue, match=r"no momentum; it supports \['lr', 'weight_decay'\]"):
        check_nudge({"scale_1m": {"momentum": 0.5}}, HP, optimizer_keys=["lr", "weight_decay"])


def test_check_updates_keeps_its_old_contract():
    assert check_updates({"lr": 0.1, "batch_size": 32}, HP) == {"lr": 0.1, "batch_size": 32}
    with pytest.raises(InvalidValue, match="unknown hyperparameter 'dropout'"):
        check_updates({"dropout": 0.1}, HP)
    assert check_updates({"dropout": 0.1}, HP, new=True) == {"dropout": 0.1}
    with pytest.raises(InvalidValue, match="at least one"):
        check_updates({}, HP)


def test_check_factor():
    assert check_factor("lr", 2) == 2.0 and isinstance(check_factor("lr", 2), float)
    with pytest.raises(InvalidValue, match="factor for 1-momentum .* got 0"):
        check_factor("momentum", 0, "scale_1m")


def test_user_changes_compute_from_the_current_value_and_change_nothing():
    current = dict(HP)
    out = user_changes(current, hp={"clip": 0.5, "lr": 0.1}, scale={"batch_size": 0.5},
                       scale_1m={"ema": 2}, skip=KEYS)
    assert out == {"clip": {"old": 1.0, "new": 0.5, "op": "set", "arg": 0.5},
                   "batch_size": {"old": 64, "new": 32, "op": "scale", "arg": 0.5},
                   "ema": {"old": 0.99, "new": 1 - (1 - 0.99) * 2, "op": "scale_1m", "arg": 2.0}}
    assert isinstance(out["batch_size"]["new"], int)
    assert current == HP
    assert user_changes({"n": 100}, scale={"n": 0.07})["n"]["new"] == 7    # not 7.000000000000001
    with pytest.raises(InvalidValue, match=r"63 ×0.5 = 31.5 is not"):
        user_changes({"batch_size": 63}, scale={"batch_size": 0.5})
    with pytest.raises(InvalidValue, match=r"outside \[0, 1\)"):
        user_changes({"ema": 0.5}, scale_1m={"ema": 3})
    with pytest.raises(InvalidValue, match="'sgd', not a number"):
        user_changes({"opt": "sgd"}, scale={"opt": 2})
    assert user_changes({"new_key": 1}, hp={"x": 0.2}) == {
        "x": {"old": None, "new": 0.2, "op": "set", "arg": 0.2}}


def test_parse_nudge_reads_the_three_forms():
    assert parse_nudge(["lr*=0.5", "momentum=0.9", "1-momentum2*=0.5", "batch=64"]) == {
        "hp": {"momentum": 0.9, "batch": 64}, "scale": {"lr": 0.5},
        "scale_1m": {"momentum2": 0.5}}
    assert parse_nudge([" lr *= 2 "]) == {"hp": {}, "scale": {"lr": 2.0}, "scale_1m": {}}
    assert parse_nudge(["lr=1e-3"])["hp"] == {"lr": 0.001}
    assert parse_nudge([]) == {"hp": {}, "scale": {}, "scale_1m": {}}


@pytest.mark.parametrize("item,match", [
    ("lr", "expected key=value"),
    ("=3", "expected key=value"),
    ("*=3", "identifiers"),
    ("lr**=2", "identifiers"),
    ("lr*=", "must be a number, got ''"),
    ("lr*=fast", "got 'fast'"),
    ("lr*=0", "got 0"),
    ("lr*=-1", "got -1"),
    ("lr*=nan", "got nan"),
    ("lr=nan", "got nan"),
    ("lr=-1", "got -1"),
    ("1-momentum=0.1", r"takes only \*="),
    ("2-momentum*=0.5", "identifiers"),
    ("lr/=2", "identifiers"),
])
def test_parse_nudge_refuses_malformed_items_clearly(item, match):
    with pytest.raises(InvalidValue, match=match):
        parse_nudge([item])


def test_parse_nudge_refuses_a_key_given_twice():
    with pytest.raises(InvalidValue, match=r"lr is given twice \('lr=0.1' and 'lr\*=0.5'\)"):
        parse_nudge(["lr=0.1", "lr*=0.5"])


def test_parse_assignments_still_works():
    assert parse_assignments(["lr=0.05", "batch=64"]) == {"lr": 0.05, "batch": 64}


def test_describe_shows_the_effective_value_beside_the_configured_one():
    assert describe_lr(0.0125, 0.05) == "lr 0.0125 · schedule ×0.25 of 0.05"
    assert describe_lr(0.05, 0.05) == "lr 0.05"
    assert describe_lr(0.05 * (1 + 1e-12), 0.05) == "lr 0.05"          # float noise of a rescale
    assert describe_lr(0.1, 0.05) == "lr 0.1 · schedule ×2 of 0.05"
    assert describe_lr(0.0, 0.05) == "lr 0 · configured 0.05"          # warmup's first step
    assert describe_lr(None, 0.05) == "lr 0.05"
    assert describe_lr(0.0125, None) == "lr 0.0125"
    assert describe("momentum", 0.85, 0.9) == "momentum 0.85 · configured 0.9"
    assert describe("momentum", 0.9, 0.9) == "momentum 0.9"
