"""Search spaces: per-scale sampling, grids, unit positions, perturbation, narrowing, spec files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from babysit.study.space import Param, Space, SpaceError, check_direction, score_key

SPEC = {
    "lr": {"scale": "log", "low": 1e-4, "high": 1},
    "momentum": {"scale": "one_minus_log", "low": 0.9, "high": 0.999},
    "batch_size": {"scale": "pow2", "low": 16, "high": 256},
    "opt": {"choices": ["sgd", "adam"]},
}


@pytest.fixture
def space() -> Space:
    return Space.from_dict(SPEC)


# -- sampling on each scale ---------------------------------------------------------------------


def test_log_scale_puts_a_quarter_of_the_samples_in_each_decade():
    lr = Param("lr", "log", 1e-4, 1.0)
    rng = np.random.default_rng(0)
    samples = np.array([lr.sample(rng) for _ in range(10_000)])
    assert samples.min() >= 1e-4 and samples.max() <= 1.0
    counts, _ = np.histogram(np.log10(samples), bins=[-4, -3, -2, -1, 0])
    for share in counts / len(samples):
        assert share == pytest.approx(0.25, abs=0.02)


def test_one_minus_log_gives_as_many_samples_to_0_99_0_999_as_to_0_9_0_99():
    momentum = Param("momentum", "one_minus_log", 0.9, 0.999)
    rng = np.random.default_rng(0)
    samples = np.array([momentum.sample(rng) for _ in range(10_000)])
    assert samples.min() >= 0.9 and samples.max() <= 0.999
    assert np.mean(samples < 0.99) == pytest.approx(0.5, abs=0.02)
    # A linear sampler would put 91% below 0.99; check the finer decade split as well.
    assert np.mean(samples > 0.995) == pytest.approx((3 + math.log10(0.005)) / 2, abs=0.02)


def test_linear_and_int_scales_are_uniform_with_both_ends_included():
    rng = np.random.default_rng(1)
    drop = np.array([Param("dropout", "linear", 0.0, 0.5).sample(rng) for _ in range(10_000)])
    assert np.mean(drop < 0.25) == pytest.approx(0.5, abs=0.02)
    layers = [Param("layers", "int", 1, 4).sample(rng) for _ in range(4_000)]
    assert all(isinstance(v, int) for v in layers)
    assert {v: layers.count(v) / len(layers) for v in range(1, 5)} == pytest.approx(
        {1: 0.25, 2: 0.25, 3: 0.25, 4: 0.25}, abs=0.03
    )


def test_pow2_samples_only_powers_of_two_each_about_as_often():
    batch = Param("batch_size", "pow2", 10, 300)  # bounds need not be powers of two
    rng = np.random.default_rng(2)
    samples = [batch.sample(rng) for _ in range(5_000)]
    assert set(samples) == {16, 32, 64, 128, 256}
    assert all(type(v) is int for v in samples)
    for power in (16, 32, 64, 128, 256):
        assert samples.count(power) / len(samples) == pytest.approx(0.2, abs=0.02)


def test_space_sample_is_a_plain_dict_in_param_order_and_reproducible(space):
    a = space.sample(np.random.default_rng(3))
    b = space.sample(np.random.default_rng(3))
    assert a == b
    assert list(a) == ["lr", "momentum", "batch_size", "opt"]
    assert type(a["lr"]) is float and type(a["batch_size"]) is int
    assert space.contains(a)


# -- grids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "n", "expected"),
    [
        (Param("lr", "log", 1e-4, 1.0), 5, [0.0001, 0.001, 0.01, 0.1, 1.0]),
        (Param("lr", "log", 1e-4, 1.0), 1, [0.01]),
        (Param("momentum", "one_minus_log", 0.9, 0.999), 3, [0.9, 0.99, 0.999]),
        (Param("dropout", "linear", 0.0, 0.5), 6, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]),
        (Param("batch_size", "pow2", 16, 256), 3, [16, 64, 256]),
        (Param("batch_size", "pow2", 16, 256), 10, [16, 32, 64, 128, 256]),
        (Param("layers", "int", 1, 3), 5, [1, 2, 3]),
        (Param("layers", "int", 0, 10), 3, [0, 5, 10]),
        (Param("opt", "choice", choices=("sgd", "adam", "lion")), 2, ["sgd", "adam", "lion"]),
    ],
)
def test_param_grid_is_evenly_spaced_on_its_own_scale(param, n, expected):
    assert param.grid(n) == expected


def test_space_grid_enumerates_the_exact_cartesian_product():
    space = Space.from_dict(
        {
            "lr": {"scale": "log", "low": 1e-3, "high": 1e-1},
            "batch_size": {"scale": "pow2", "low": 32, "high": 64},
        }
    )
    assert space.grid(3) == [
        {"lr": 0.001, "batch_size": 32},
        {"lr": 0.001, "batch_size": 64},
        {"lr": 0.01, "batch_size": 32},
        {"lr": 0.01, "batch_size": 64},
        {"lr": 0.1, "batch_size": 32},
        {"lr": 0.1, "batch_size": 64},
    ]
    # A param left out gets its middle (32..64 on the exponent scale rounds up to 64).
    assert space.grid({"lr": 2}) == [{"lr": 0.001, "batch_size": 64}, {"lr": 0.1, "batch_size": 64}]


def test_space_grid_refuses_a_product_over_the_limit_and_unknown_names(space):
    with pytest.raises(SpaceError, match=r"10000 x 10000 x 5 x 2"):
        space.grid(10_000)
    with pytest.raises(SpaceError, match="'wd'"):
        space.grid({"wd": 3})
    with pytest.raises(SpaceError, match="got 0"):
        space.grid(0)


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"lr": {"scale": "log", "low": 1.0, "high": 1e-4}}, "low=1.0, high=0.0001"),
        ({"lr": {"scale": "linear", "low": 0.5, "high": 0.5}}, "low=0.5, high=0.5"),
        ({"lr": {"scale": "log", "low": 0, "high": 1}}, "low=0.0"),
        ({"lr": {"scale": "log", "low": -1e-3, "high": 1}}, "low=-0.001"),
        ({"m": {"scale": "one_minus_log", "low": 0.9, "high": 1.0}}, "high=1.0"),
        ({"m": {"scale": "one_minus_log", "low": 0.0, "high": 0.99}}, "low=0.0"),
        ({"m": {"scale": "one_minus_log", "low": -0.5, "high": 0.5}}, "low=-0.5"),
        ({"lr": {"scale": "logg", "low": 1e-4, "high": 1}}, "'logg'"),
        ({"lr": {"scale": "log", "low": 1e-4}}, "high=None"),
        ({"lr": {"low": 1e-4, "high": 1}}, "missing 'scale'"),
        ({"opt": {"choices": []}}, "[]"),
        ({"opt": {"scale": "choice"}}, "None"),
        ({"opt": {"choices": ["sgd", "sgd"]}}, "'sgd' appears twice"),
        ({"opt": {"choices": [["sgd"]]}}, "['sgd']"),
        ({"opt": {"scale": "choice", "choices": ["a"], "low": 1}}, "low=1"),
        ({"lr": {"scale": "log", "low": 1e-4, "high": 1, "choices": [1]}}, "(1,)"),
        ({"layers": {"scale": "int", "low": 1.5, "high": 4}}, "low=1.5"),
        ({"bs": {"scale": "pow2", "low": 16, "high": 100.5}}, "high=100.5"),
        ({"bs": {"scale": "pow2", "low": 17, "high": 31}}, "low=17 and high=31"),
        ({"bs": {"scale": "pow2", "low": -8, "high": 0}}, "low=-8 and high=0"),
        ({"lr": {"scale": "log", "low": "1e-4", "high": 1}}, "'1e-4'"),
        ({"lr": {"scale": "linear", "low": 0, "high": math.inf}}, "inf"),
        ({"lr": {"scale": "linear", "low": True, "high": 2}}, "True"),
        ({"lr": {"scale": "log", "lo": 1e-4, "high": 1}}, "'lo'"),
        ({"lr": 0.1}, "0.1"),
        ({"": {"scale": "linear", "low": 0, "high": 1}}, "''"),
        ({}, "at least one param"),
        ([("lr", {})], "[('lr', {})]"),
    ],
)
def test_bad_specs_raise_space_error_naming_the_bad_value(spec, fragment):
    with pytest.raises(SpaceError) as info:
        Space.from_dict(spec)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_duplicate_param_names_are_refused():
    with pytest.raises(SpaceError, match="duplicate param name 'lr'"):
        Space((Param("lr", "log", 1e-4, 1.0), Param("lr", "linear", 0, 1)))


def test_validate_names_every_bad_or_missing_param_and_allows_fixed_settings(space):
    space.validate({"lr": 0.1, "momentum": 0.95, "batch_size": 32, "opt": "adam", "epochs": 10})
    with pytest.raises(SpaceError) as info:
        space.validate({"lr": 2.0, "momentum": 0.95, "batch_size": 48})
    message = str(info.value)
    assert "'lr': 2.0 is not in log [0.0001, 1.0]" in message
    assert "'batch_size': 48" in message
    assert "'opt' is missing" in message
    assert "momentum" not in message


@pytest.mark.parametrize(
    ("param", "value", "inside"),
    [
        (Param("bs", "pow2", 16, 256), 64, True),
        (Param("bs", "pow2", 16, 256), 48, False),
        (Param("bs", "pow2", 16, 256), 512, False),
        (Param("bs", "pow2", 16, 256), 64.0, True),
        (Param("layers", "int", 1, 4), 2.5, False),
        (Param("layers", "int", 1, 4), True, False),
        (Param("lr", "log", 1e-4, 1.0), math.nan, False),
        (Param("lr", "log", 1e-4, 1.0), "0.1", False),
        (Param("flag", "choice", choices=(1, 2)), True, False),
        (Param("flag", "choice", choices=(True, False)), 1, False),
        (Param("flag", "choice", choices=(1, 2)), 2.0, True),
    ],
)
def test_contains(param, value, inside):
    assert param.contains(value) is inside


def test_direction_and_score_key():
    assert check_direction("min") == "min"
    with pytest.raises(SpaceError, match="'minimize'"):
        check_direction("minimize")
    assert score_key(0.5, "max") == -0.5
    assert score_key(math.nan, "max") == math.inf
    assert score_key(-math.inf, "min") == math.inf


# -- unit positions, clipping, perturbation ------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "value", "u"),
    [
        (Param("lr", "log", 1e-4, 1.0), 1e-2, 0.5),
        (Param("lr", "log", 1e-4, 1.0), 1e-4, 0.0),
        (Param("momentum", "one_minus_log", 0.9, 0.999), 0.99, 0.5),
        (Param("bs", "pow2", 16, 256), 64, 0.5),
        (Param("bs", "pow2", 16, 31), 16, 0.0),
        (Param("layers", "int", 0, 4), 1, 0.25),
        (Param("opt", "choice", choices=("a", "b", "c")), "c", 1.0),
        (Param("opt", "choice", choices=("a",)), "a", 0.0),
    ],
)
def test_to_unit_and_back(param, value, u):
    assert param.to_unit(value) == pytest.approx(u)
    assert param.from_unit(u) == pytest.approx(value)


def test_to_unit_refuses_values_outside_and_from_unit_refuses_positions_outside():
    lr = Param("lr", "log", 1e-4, 1.0)
    with pytest.raises(SpaceError, match="2.0 is not in log"):
        lr.to_unit(2.0)
    with pytest.raises(SpaceError, match="got 1.5"):
        lr.from_unit(1.5)


CONTINUOUS = [
    Param("lr", "log", 1e-6, 10.0),
    Param("m", "one_minus_log", 0.5, 0.9999),
    Param("x", "linear", -3.0, 7.0),
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(CONTINUOUS), st.floats(0.0, 1.0))
def test_from_unit_then_to_unit_is_the_identity_on_continuous_scales(param, u):
    value = param.from_unit(u)
    assert param.contains(value)
    assert param.to_unit(value) == pytest.approx(u, abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from([*CONTINUOUS, Param("bs", "pow2", 8, 1024), Param("n", "int", 1, 9)]),
    st.floats(0.0, 1.0),
    st.floats(0.05, 20.0),
)
def test_perturb_always_stays_inside_the_bounds(param, u, factor):
    assert param.contains(param.perturb(param.from_unit(u), factor))


@pytest.mark.parametrize(
    ("param", "value", "factor", "expected"),
    [
        (Param("lr", "log", 1e-4, 1.0), 0.01, 1.2, 0.012),
        (Param("lr", "log", 1e-4, 1.0), 0.01, 0.8, 0.008),
        (Param("lr", "log", 1e-4, 1.0), 0.9, 1.2, 1.0),  # clipped
        (Param("m", "one_minus_log", 0.9, 0.999), 0.99, 1.2, 0.991666666667),  # horizon 100 -> 120
        (Param("m", "one_minus_log", 0.9, 0.999), 0.99, 0.8, 0.9875),  # horizon 100 -> 80
        (Param("m", "one_minus_log", 0.9, 0.999), 0.9, 0.8, 0.9),  # clipped
        (Param("x", "linear", 0.0, 1.0), 0.5, 1.2, 0.6),
        (Param("x", "linear", 0.0, 1.0), 0.0, 1.2, 0.0),
        (Param("n", "int", 1, 100), 10, 1.2, 12),
        (Param("n", "int", 1, 100), 2, 1.2, 3),  # rounding would undo the move: one step
        (Param("n", "int", 1, 100), 2, 0.8, 1),
        (Param("n", "int", 1, 100), 1, 0.8, 1),  # clipped
        (Param("bs", "pow2", 16, 256), 64, 1.2, 128),
        (Param("bs", "pow2", 16, 256), 64, 0.8, 32),
        (Param("bs", "pow2", 16, 256), 256, 1.2, 256),
        (Param("opt", "choice", choices=("a", "b", "c")), "b", 1.2, "c"),
        (Param("opt", "choice", choices=("a", "b", "c")), "b", 0.8, "a"),
        (Param("opt", "choice", choices=("a", "b", "c")), "a", 0.8, "a"),
        (Param("opt", "choice", choices=("a", "b", "c")), "b", 1.0, "b"),
    ],
)
def test_perturb_multiplies_on_each_params_own_scale(param, value, factor, expected):
    assert param.perturb(value, factor) == expected


@pytest.mark.parametrize("factor", [0, -1.2, math.inf, "1.2"])
def test_perturb_refuses_bad_factors(factor):
    with pytest.raises(SpaceError, match="got"):
        Param("lr", "log", 1e-4, 1.0).perturb(0.01, factor)


def test_clip():
    assert Param("lr", "log", 1e-4, 1.0).clip(5) == 1.0
    assert Param("bs", "pow2", 16, 256).clip(100) == 128
    assert Param("bs", "pow2", 16, 256).clip(4) == 16
    assert Param("n", "int", 1, 4).clip(2.6) == 3
    with pytest.raises(SpaceError, match="'d'"):
        Param("opt", "choice", choices=("a",)).clip("d")


def test_is_log():
    assert [Param("p", s, 0.1, 0.9).is_log for s in ("linear", "log", "one_minus_log")] == [
        False,
        True,
        False,
    ]
    assert Param("bs", "pow2", 16, 256).is_log


# -- narrowing -------------------------------------------------------------------------------------


def test_narrow_keeps_the_best_configs_and_ranges_around_them_on_each_scale(space):
    scored = [
        ({"lr": 0.1, "momentum": 0.99, "batch_size": 32, "opt": "adam"}, 0.2),
        ({"lr": 0.3, "momentum": 0.995, "batch_size": 64, "opt": "adam"}, 0.3),
        ({"lr": 1e-4, "momentum": 0.9, "batch_size": 256, "opt": "sgd"}, 0.9),
        ({"lr": 1e-3, "momentum": 0.999, "batch_size": 16, "opt": "sgd"}, math.nan),
    ]
    narrowed = space.narrow(scored, "min", k=2, margin=0.1)
    assert narrowed.to_dict() == {
        # lr: positions 0.75 and 0.869 on the log axis, widened to [0.65, 0.969].
        "lr": {"scale": "log", "low": 0.0398107170553, "high": 0.753565929453},
        # momentum: 0.99 and 0.995 sit at 0.5 and 0.651 of 0.9..0.999, widened to [0.4, 0.751].
        "momentum": {"scale": "one_minus_log", "low": 0.984151068075, "high": 0.996845213278},
        "batch_size": {"scale": "pow2", "low": 16, "high": 128},
        "opt": {"scale": "choice", "choices": ["adam"]},
    }
    for config, _ in scored[:2]:
        assert narrowed.contains(config)
    assert space.narrow(scored, "max", k=1).to_dict()["opt"] == {
        "scale": "choice",
        "choices": ["sgd"],
    }


def test_narrow_never_leaves_the_original_bounds_and_uses_top_fraction():
    space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}})
    scored = [
        ({"lr": lr}, -math.log10(lr)) for lr in (1.0, 0.5, 1e-2, 1e-3, 1e-4, 2e-4, 3e-4, 4e-4)
    ]
    narrowed = space.narrow(scored, "min", top_fraction=0.25, margin=0.2)["lr"]
    assert narrowed.high == 1.0
    assert narrowed.low == pytest.approx(10 ** (math.log10(0.5) - 0.8))


def test_narrow_int_and_pow2_round_outwards_and_keep_two_values():
    space = Space.from_dict(
        {
            "n": {"scale": "int", "low": 1, "high": 100},
            "bs": {"scale": "pow2", "low": 16, "high": 256},
        }
    )
    narrowed = space.narrow(
        [({"n": 100, "bs": 256}, 0.1), ({"n": 1, "bs": 16}, 0.9)], "min", k=1, margin=0.01
    )
    assert narrowed.to_dict() == {
        "n": {"scale": "int", "low": 99, "high": 100},
        "bs": {"scale": "pow2", "low": 128, "high": 256},
    }


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"k": 1, "top_fraction": 0.5}, "not both"),
        ({"k": 0}, "got 0"),
        ({"top_fraction": 1.5}, "got 1.5"),
        ({"margin": 0}, "got 0"),
    ],
)
def test_narrow_refuses_bad_options(space, kwargs, fragment):
    scored = [({"lr": 0.1, "momentum": 0.99, "batch_size": 32, "opt": "adam"}, 0.2)]
    with pytest.raises(SpaceError, match=fragment):
        space.narrow(scored, "min", **kwargs)


def test_narrow_needs_a_finite_config_inside_the_space(space):
    with pytest.raises(SpaceError, match="none of the 2 scored configs"):
        space.narrow(
            [
                ({"lr": 0.1, "momentum": 0.99, "batch_size": 32, "opt": "adam"}, math.nan),
                ({"lr": 5.0, "momentum": 0.99, "batch_size": 32, "opt": "adam"}, 0.1),
            ],
            "min",
        )


def test_narrow_to_a_region_selected_in_the_ui(space):
    narrowed = space.narrow_to({"lr": (1e-3, 1e-2), "batch_size": (37.2, 130.5), "opt": ["adam"]})
    assert narrowed.to_dict() == {
        "lr": {"scale": "log", "low": 0.001, "high": 0.01},
        "momentum": SPEC["momentum"],
        "batch_size": {"scale": "pow2", "low": 38, "high": 130},
        "opt": {"scale": "choice", "choices": ["adam"]},
    }
    assert narrowed["batch_size"].grid(5) == [64, 128]


@pytest.mark.parametrize(
    ("region", "fragment"),
    [
        ({"lr": (1e-5, 1e-2)}, "low=1e-05"),
        ({"lr": (1e-2, 1e-3)}, "low=0.01, high=0.001"),
        ({"lr": (1e-3, 2.0)}, "high=2.0"),
        ({"wd": (0, 1)}, "['wd']"),
        ({"lr": 0.1}, "got 0.1"),
        ({"opt": ["lion"]}, "'lion'"),
        ({"opt": []}, "at least one choice"),
        ({"batch_size": (17, 31)}, "low=17 and high=31"),
    ],
)
def test_narrow_to_refuses_regions_outside_the_space(space, region, fragment):
    with pytest.raises(SpaceError) as info:
        space.narrow_to(region)
    assert fragment in str(info.value)


# -- spec files --------------------------------------------------------------------------------------

YAML = """\
lr: {scale: log, low: 1e-4, high: 1}
momentum:
  scale: one_minus_log
  low: 0.9
  high: 0.999
batch_size: {scale: pow2, low: 16, high: 256}
opt: {choices: [sgd, adam]}
"""

TOML = """\
[lr]
scale = "log"
low = 1e-4
high = 1

[momentum]
scale = "one_minus_log"
low = 0.9
high = 0.999

[batch_size]
scale = "pow2"
low = 16
high = 256

[opt]
choices = ["sgd", "adam"]
"""


@pytest.mark.parametrize(("name", "text"), [("s.yaml", YAML), ("s.yml", YAML), ("s.toml", TOML)])
def test_yaml_and_toml_files_load_to_the_same_space_as_the_dict(tmp_path, space, name, text):
    path = tmp_path / name
    path.write_text(text)
    loaded = Space.from_file(path)
    assert loaded == space
    assert type(loaded["lr"].low) is float  # YAML 1.1 alone would read 1e-4 as a string
    assert loaded.names == ("lr", "momentum", "batch_size", "opt")


def test_json_file_and_to_dict_round_trip(tmp_path, space):
    import json

    path = tmp_path / "space.json"
    path.write_text(json.dumps(space.to_dict()))
    assert Space.from_file(path) == space
    assert Space.from_dict(space.to_dict()) == space


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("s.txt", "", "must end in .yaml"),
        ("s.yaml", "lr: [unclosed", "cannot parse"),
        ("s.toml", "lr = ", "cannot parse"),
        ("s.yaml", "- 1\n- 2\n", "[1, 2]"),
    ],
)
def test_bad_space_files(tmp_path, name, text, fragment):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        Space.from_file(path)
    assert fragment in str(info.value)


def test_missing_space_file(tmp_path):
    with pytest.raises(SpaceError, match="cannot read"):
        Space.from_file(tmp_path / "nope.yaml")
