"""The Study page's validators: every bad field is named, and nothing is built from bad input."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

import babysit
from babysit.errors import InvalidValue
from babysit.study.space import Space, SpaceError
from babysit.ui import study_actions as sa

LR = {"name": "lr", "scale": "log", "low": "1e-4", "high": "1", "choices": ""}


def form(**fields) -> sa.StudyForm:
    return sa.StudyForm(**{"name": "sweep", **fields})


def errors_of(f: sa.StudyForm, existing=(), commands=None) -> dict[str, str]:
    with pytest.raises(sa.FormErrors) as info:
        sa.check_study_form(f, existing, commands)
    return info.value.errors


def test_the_default_form_is_a_valid_study():
    request = sa.check_study_form(form())
    assert request.space.to_dict() == {
        "lr": {"scale": "log", "low": 0.001, "high": 1.0},
        "momentum": {"scale": "one_minus_log", "low": 0.5, "high": 0.99}}
    assert request.strategy == {"kind": "random"}
    assert request.budget == {"runs": 8, "days": 4, "parallel": 2}
    assert request.command[:3] == [sys.executable, "-m", "babysit.demo"]
    assert request.autopilot == "auto" and request.stopping == ()


def test_rows_with_every_scale():
    space = sa.space_from_rows([
        LR,
        {"name": "momentum", "scale": "one_minus_log", "low": 0.9, "high": 0.999},
        {"name": "batch_size", "scale": "pow2", "low": "16", "high": "256"},
        {"name": "layers", "scale": "int", "low": "1", "high": "4"},
        {"name": "opt", "scale": "choice", "low": None, "high": float("nan"),
         "choices": "sgd, adam, 0.5, true"},
        {"name": None, "scale": None, "low": None, "high": None, "choices": None},   # blank row
    ])
    assert space["lr"].low == 1e-4
    assert space["batch_size"].to_spec() == {"scale": "pow2", "low": 16, "high": 256}
    assert space["opt"].choices == ("sgd", "adam", 0.5, True)
    assert len(space) == 5


@pytest.mark.parametrize(("row", "message"), [
    ({**LR, "low": "1", "high": "0.1"}, "low must be < high, got low=1.0, high=0.1"),
    ({**LR, "low": "0.5", "high": "0.5"}, "low must be < high"),
    ({**LR, "low": "0"}, "scale 'log' needs low > 0, got low=0.0"),
    ({**LR, "low": "abc"}, "param 'lr': low must be a number, got 'abc'"),
    ({**LR, "scale": "logarithmic"}, "pick a scale, one of linear, log"),
    ({**LR, "name": " "}, "row 1: the hyperparameter needs a name"),
    ({**LR, "high": ""}, "needs both low and high"),
    ({"name": "m", "scale": "one_minus_log", "low": "0.9", "high": "1"}, "0 < low < high < 1"),
    ({"name": "bs", "scale": "pow2", "low": "16.5", "high": "64"}, "integer bounds"),
    ({"name": "opt", "scale": "choice", "choices": "sgd, sgd"}, "appears twice"),
    ({"name": "opt", "scale": "choice", "low": "1", "high": "2"}, "takes choices, not low/high"),
])
def test_bad_rows_name_the_problem(row, message):
    with pytest.raises(SpaceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sa.space_from_rows([row])


def test_duplicate_and_missing_rows():
    with pytest.raises(SpaceError, match="param 'lr' appears twice"):
        sa.space_from_rows([LR, LR])
    with pytest.raises(SpaceError, match="add at least one hyperparameter"):
        sa.space_from_rows([{"name": ""}])


def test_space_text_in_yaml_toml_and_json():
    yaml_text = "lr: {scale: log, low: 1e-4, high: 1}\nopt: [sgd, adam]\n"
    assert sa.space_from_text(yaml_text).to_dict() == {
        "lr": {"scale": "log", "low": 0.0001, "high": 1.0},
        "opt": {"scale": "choice", "choices": ["sgd", "adam"]}}
    toml_text = '[lr]\nscale = "log"\nlow = 1e-4\nhigh = 1\n'
    assert sa.space_from_text(toml_text, "toml")["lr"].high == 1.0
    assert sa.space_from_text('{"lr": {"scale": "log", "low": 0.001, "high": 1}}', "json")
    assert sa.spec_format("my.space.TOML") == "toml"
    with pytest.raises(SpaceError, match="space file ends in"):
        sa.spec_format("space.txt")


@pytest.mark.parametrize(("text", "message"), [
    ("", "the space spec is empty"),
    ("lr: {scale: log, low: 1e-4", "cannot parse the space spec as yaml"),
    ("- lr\n- momentum\n", "a space spec must be a mapping"),
    ("lr: {scale: log, low: 1, high: 1e-4}", "low must be < high"),
    ("lr: {scale: log, lo: 1e-4, high: 1}", "unknown key"),
    ("lr: {scale: cubic, low: 1, high: 2}", "unknown scale 'cubic'"),
])
def test_bad_space_text_is_refused_with_the_reason(text, message):
    with pytest.raises(SpaceError, match=message):
        sa.space_from_text(text)


def test_form_errors_are_reported_per_field_all_at_once():
    errors = errors_of(sa.StudyForm(
        name="  ", objective="val loss", direction="down", space_source="text",
        space_text="lr: {scale: log, low: 1, high: 0.1}", strategy="hillclimb", runs="0",
        days="two", parallel=-1, stopping="patience:0", autopilot="maybe",
        command="python train.py"))
    assert set(errors) == {"name", "objective", "direction", "space", "strategy", "budget",
                           "stopping", "autopilot", "command"}
    assert errors["name"] == "the study needs a name"
    assert "low must be < high" in errors["space"]
    assert "hillclimb" in errors["strategy"]
    assert errors["budget"] == ("runs must be a whole number >= 1, got '0'; days must be a "
                                "whole number >= 1, got 'two'; parallel must be a whole number "
                                ">= 1, got -1")
    assert errors["stopping"].startswith("line 1: ") and "patience" in errors["stopping"]
    assert "pick the trial command from the list" in errors["command"]


def test_duplicate_name_is_refused():
    errors = errors_of(form(name="sweep"), existing=["other", "sweep"])
    assert errors == {"name": "a study named 'sweep' already exists; pick another name"}
    assert "only digits" in errors_of(form(name="42"))["name"]


def test_pbt_needs_numbers_and_a_population():
    rows = [LR, {"name": "opt", "scale": "choice", "choices": "sgd, adam"}]
    errors = errors_of(form(strategy="pbt", param_rows=rows, parallel=1, runs=1))
    assert "choice param 'opt'" in errors["space"]
    assert "population (parallel) of at least 2" in errors["budget"]
    request = sa.check_study_form(form(strategy="pbt", strategy_options="quantile=0.5"))
    assert request.strategy == {"kind": "pbt", "quantile": 0.5}


def test_strategy_options_stopping_and_command():
    request = sa.check_study_form(form(
        strategy="coarse_to_fine", strategy_options="batch_size=4 rounds=2, seed=7",
        stopping="median min_days=1  # the usual\n\nasha min_days=1 reduction_factor=3",
        parallel=20))
    assert request.strategy == {"kind": "coarse_to_fine", "batch_size": 4, "rounds": 2, "seed": 7}
    assert request.stopping == ({"rule": "median", "min_days": 1},
                                {"rule": "asha", "min_days": 1, "reduction_factor": 3})
    assert "at most 8 will run at once" in request.notes[0]
    assert "kind=" in errors_of(form(strategy_options="kind=grid"))["strategy"]
    assert "expected key=value" in errors_of(form(strategy_options="fast"))["strategy"]
    assert "unknown stopping rule 'early'" in errors_of(form(stopping="early"))["stopping"]
    assert "'median' takes min_days, min_runs; got days" in \
        errors_of(form(stopping="median days=2"))["stopping"]
    assert sa.parse_stopping("patience:3\nwalltime seconds=600") == (
        {"rule": "patience", "days": 3}, {"rule": "walltime", "seconds": 600})
    assert "batchsize" in errors_of(form(strategy="coarse_to_fine",
                                         strategy_options="batchsize=4"))["strategy"]
    assert "sampler" in errors_of(form(strategy="optuna", strategy_options="sampler=nope"))["strategy"]



def test_the_form_runs_only_an_offered_command_never_a_typed_one(tmp_path):
    """Issue 10: a string typed into the page is never run; the choices are the demo and the
    commands of runs and studies created from the CLI or Python."""
    c = babysit.Client(tmp_path)
    try:
        c.launch([sys.executable, "train.py", "--epochs", "3"], project="p", detach=False,
                 cwd=str(tmp_path))
        c.create_study("s", objective="loss", space={"lr": {"scale": "log", "low": 1e-3,
                                                            "high": 1}},
                       command=[sys.executable, "other.py"], cwd=str(tmp_path))
        choices = sa.trial_commands(c)
    finally:
        c.close()
    assert list(choices)[0] == sa.DEMO_CHOICE
    [run_label] = [k for k in choices if k.startswith("run #1 ")]
    [study_label] = [k for k in choices if k.startswith("study #1 s")]
    assert run_label.endswith("train.py --epochs 3")
    request = sa.check_study_form(form(command=run_label), commands=choices)
    assert request.command == [sys.executable, "train.py", "--epochs", "3"]
    assert request.cwd == str(tmp_path.resolve())
    assert sa.check_study_form(form(command=study_label), commands=choices).command == \
        [sys.executable, "other.py"]
    for typed in ("id", f"{sys.executable} -c 'import os; os.system(\"id\")'", run_label + " x"):
        assert "pick the trial command from the list" in \
            errors_of(form(command=typed), commands=choices)["command"]


# ----------------------------------------------------------------------------- coarse to fine


def test_region_from_selected_points_fits_narrow_to():
    space = Space.from_dict({
        "lr": {"scale": "log", "low": 1e-4, "high": 1},
        "momentum": {"scale": "one_minus_log", "low": 0.9, "high": 0.999},
        "layers": {"scale": "int", "low": 1, "high": 8},
        "batch_size": {"scale": "pow2", "low": 16, "high": 256},
        "opt": ["sgd", "adam", "rmsprop"],
    })
    region = sa.region_from_selection(space, {
        "lr": [1e-3, 3e-3], "momentum": [0.99], "layers": [8], "batch_size": [64],
        "opt": ["adam", "sgd", "adam"]})
    assert region["lr"] == pytest.approx((6.31e-4, 4.75e-3), rel=1e-2)
    low, high = region["momentum"]
    assert low < 0.99 < high and 1 - low == pytest.approx(0.01 * 10**0.1, rel=1e-3)   # 5% of 2 decades
    assert region["layers"] == (7, 8)              # an int range keeps two values
    assert region["batch_size"] == (64, 128)       # a lone power of two gets a neighbour
    assert region["opt"] == ["adam", "sgd"]
    narrowed = space.narrow_to(region)
    assert narrowed["lr"].low == pytest.approx(6.31e-4, rel=1e-2)
    assert narrowed["opt"].choices == ("sgd", "adam")   # the space's order
    assert sa.region_from_selection(space, {"lr": [5.0]}) == {}      # outside: ignored
    assert sa.selection_values([{"customdata": [3, 0.01]}, {"x": 1}]) == [0.01]


def test_best_run_and_finished_runs():
    runs = pd.DataFrame({"id": [1, 2, 3, 4], "status": ["finished", "running", "stopped", "crashed"],
                         "objective": [0.5, 0.1, 0.3, float("nan")]})
    assert sa.best_run(runs, "min")["id"] == 2
    assert sa.best_run(runs, "max")["id"] == 1
    assert list(sa.finished_runs(runs)["id"]) == [1, 3]
    assert sa.best_run(runs.assign(objective=float("nan"))) is None
    # with a best column (best day-end value, as study_runs gives it) that one decides
    with_best = runs.assign(best=[0.05, 0.1, 0.3, float("nan")])
    assert sa.best_run(with_best, "min")["id"] == 1


def test_importance_waits_for_enough_finished_runs():
    space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1},
                             "wd": {"scale": "linear", "low": 0, "high": 1}})
    lrs = [10.0 ** -(i % 4) for i in range(8)]
    runs = pd.DataFrame({"id": range(8), "status": "finished", "lr": lrs,
                         "wd": [(i * 7 % 10) / 10 for i in range(8)],
                         "objective": [abs(-2 - __import__("math").log10(v)) for v in lrs]})
    ranked, why = sa.study_importance(runs, space, "min")
    assert why == "" and list(ranked)[0] == "lr"
    none, why = sa.study_importance(runs.head(3), space)
    assert none is None and "5 finished runs" in why and "3 so far" in why


# ----------------------------------------------------------------------------- commands


class NoClient:
    """Fails the test if a handler reaches the Client: validation must stop it first."""

    def __getattr__(self, name):
        raise AssertionError(f"the handler called Client.{name} on bad input")


@pytest.mark.parametrize(("args", "message"), [
    ((3, 3, 2), "cannot copy itself"),
    ((3, 1, -1), "day must be a whole number >= 0"),
    ((3, "x", 2), "donor run must be a whole number"),
    ((3, 1, 2, "lr=nan"), "lr must be a finite number"),
])
def test_manual_exploit_checks_before_sending(args, message):
    with pytest.raises(InvalidValue, match=message):
        sa.manual_exploit(NoClient(), *args)


def test_autopilot_and_decisions_check_before_sending():
    with pytest.raises(InvalidValue, match="autopilot must be one of auto, supervised, off"):
        sa.set_autopilot(NoClient(), 1, "sometimes")
    with pytest.raises(InvalidValue, match="decision id"):
        sa.approve(NoClient(), "seven")
    with pytest.raises(InvalidValue, match="decision id"):
        sa.veto(NoClient(), 0)
