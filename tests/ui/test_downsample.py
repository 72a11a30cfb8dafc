"""The downsampler keeps every spike, every nan/inf, the ends and the x order, within budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from babysit.ui.downsample import downsample, downsample_frame, downsample_indices

N = 1_000_000


def noisy(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1.0 + 0.01 * rng.standard_normal(n)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sign", [+1.0, -1.0])
def test_single_spike_in_a_million_points_survives(seed: int, sign: float) -> None:
    y = noisy(N, seed)
    at = int(np.random.default_rng(100 + seed).integers(1, N - 1))
    y[at] = 1.0 + sign * 5.0
    out = downsample(np.arange(N), y, max_points=1500)
    assert len(out.x) <= 1500
    assert len(out.x) >= 1000  # the budget is used, not wasted
    assert at in out.x
    assert out.y[np.searchsorted(out.x, at)] == y[at]


def test_keeps_first_and_last_point() -> None:
    y = noisy(N, 3)
    out = downsample(np.arange(N), y, max_points=1500)
    assert out.x[0] == 0 and out.y[0] == y[0]
    assert out.x[-1] == N - 1 and out.y[-1] == y[-1]


def test_every_bucket_keeps_its_min_and_max() -> None:
    # A random walk: the global extremes and the overall shape must both survive.
    y = np.cumsum(np.random.default_rng(4).standard_normal(200_000))
    out = downsample(np.arange(len(y)), y, max_points=1000)
    assert out.y.max() == y.max() and out.y.min() == y.min()
    # each of the 250 equal-width buckets keeps its own min and max
    edges = np.linspace(0, len(y), 251).astype(int)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        kept = out.y[(out.x >= lo) & (out.x < hi)]
        assert kept.max() == y[lo:hi].max() and kept.min() == y[lo:hi].min()


def test_nonfinite_values_are_kept_and_marked() -> None:
    y = noisy(N, 5)
    spots = {123_456: np.nan, 500_000: np.inf, 900_001: -np.inf, 900_002: np.nan}
    for i, v in spots.items():
        y[i] = v
    out = downsample(np.arange(N), y, max_points=1500)
    assert len(out.x) <= 1500
    assert set(out.x[out.nonfinite].tolist()) == set(spots)
    assert not np.isfinite(out.y[out.nonfinite]).any()
    assert np.isfinite(out.y[~out.nonfinite]).all()
    assert np.isposinf(out.y[out.x == 500_000]).all() and np.isneginf(out.y[out.x == 900_001]).all()


def test_a_run_that_went_nan_for_good_stays_within_budget() -> None:
    y = noisy(N, 6)
    y[600_000:] = np.nan
    out = downsample(np.arange(N), y, max_points=1500)
    assert len(out.x) <= 1500
    assert out.nonfinite.any() and out.x[out.nonfinite][0] == 600_000
    assert out.x[-1] == N - 1 and np.isnan(out.y[-1])


def test_x_order_is_preserved() -> None:
    y = noisy(N, 7)
    out = downsample(np.arange(N), y, max_points=1500)
    assert np.all(np.diff(out.x) > 0)


def test_unsorted_x_comes_back_sorted_with_its_own_y() -> None:
    rng = np.random.default_rng(8)
    x = rng.permutation(50_000)
    y = x * 2.0
    out = downsample(x, y, max_points=500)
    assert np.all(np.diff(out.x) > 0)
    np.testing.assert_array_equal(out.y, out.x * 2.0)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1500])
def test_tiny_inputs_are_returned_unchanged(n: int) -> None:
    x = np.arange(n) * 3
    y = np.linspace(0.0, 1.0, n)
    if n > 2:
        y[1] = np.nan
    out = downsample(x, y, max_points=1500)
    np.testing.assert_array_equal(out.x, x)
    np.testing.assert_array_equal(out.y, y)
    assert out.nonfinite.tolist() == (~np.isfinite(y)).tolist()


def test_uneven_x_is_bucketed_by_x_not_by_index() -> None:
    # 90% of the points in the first 1% of x: equal-count buckets would leave the rest bare.
    x = np.concatenate((np.linspace(0, 1, 90_000), np.linspace(1.01, 100, 10_000)))
    y = noisy(len(x), 15)
    out = downsample(x, y, max_points=400)
    assert len(out.x) <= 400
    assert (out.x > 1).sum() > 300  # equal-count buckets would leave about 40 there


def test_constant_and_datetime_x() -> None:
    y = noisy(10_000, 9)
    y[4321] = 99.0
    out = downsample(np.zeros(10_000), y, max_points=100)
    assert len(out.x) <= 100 and 99.0 in out.y
    t = np.datetime64("2024-01-01T00:00:00", "ms") + np.arange(10_000).astype("timedelta64[s]")
    out = downsample(t, y, max_points=100)
    assert out.x.dtype == t.dtype and len(out.x) <= 100 and t[4321] in out.x


def test_same_input_same_output() -> None:
    y = noisy(100_000, 10)
    a = downsample_indices(np.arange(len(y)), y, 300)
    b = downsample_indices(np.arange(len(y)), y, 300)
    np.testing.assert_array_equal(a, b)


def test_none_keeps_everything_and_bad_budgets_are_refused() -> None:
    y = noisy(5000, 11)
    assert len(downsample(np.arange(5000), y, max_points=None).x) == 5000
    with pytest.raises(ValueError, match="max_points"):
        downsample(np.arange(5000), y, max_points=2)
    with pytest.raises(ValueError, match="same length"):
        downsample(np.arange(3), np.arange(4.0))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 3000),
    max_points=st.integers(10, 300),
    seed=st.integers(0, 2**16),
    nan_share=st.sampled_from([0.0, 0.01, 0.5, 1.0]),
)
def test_budget_extremes_and_ends_hold_for_any_curve(n: int, max_points: int, seed: int, nan_share: float) -> None:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.integers(0, 10 * n + 1, n))
    y = rng.standard_normal(n)
    y[rng.random(n) < nan_share] = np.nan
    y[rng.random(n) < nan_share / 10] = np.inf
    out = downsample(x, y, max_points)
    assert len(out.x) <= max_points
    assert np.all(np.diff(out.x) >= 0)
    if n:
        assert out.x[0] == x[0] and out.x[-1] == x[-1]
        finite = np.isfinite(y)
        if finite.any():
            assert np.nanmax(np.where(out.nonfinite, np.nan, out.y)) == y[finite].max()
            assert np.nanmin(np.where(out.nonfinite, np.nan, out.y)) == y[finite].min()
        assert out.nonfinite.any() == (not finite.all())


def test_frame_is_downsampled_per_name_and_branch() -> None:
    n = 60_000
    loss = noisy(n, 12)
    loss[31_337] = 40.0
    frames = [
        pd.DataFrame({"step": np.arange(n), "name": "loss", "value": loss, "branch": 0, "superseded": False}),
        pd.DataFrame({"step": np.arange(n), "name": "acc", "value": noisy(n, 13), "branch": 0, "superseded": False}),
        pd.DataFrame({"step": np.arange(30_000, n), "name": "loss", "value": -noisy(n - 30_000, 14),
                      "branch": 1, "superseded": True}),
        pd.DataFrame({"step": [0, 100], "name": "hp/lr", "value": [0.1, 0.05], "branch": 0, "superseded": False}),
    ]
    df = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=0)  # rows in any order
    out = downsample_frame(df, max_points=500)
    assert list(out.columns) == list(df.columns)
    sizes = out.groupby(["name", "branch"]).size()
    assert sizes[("loss", 0)] <= 500 and sizes[("acc", 0)] <= 500 and sizes[("loss", 1)] <= 500
    assert sizes[("hp/lr", 0)] == 2
    assert 40.0 in out["value"].to_numpy()
    for key, group in out.groupby(["name", "branch"]):
        assert group["step"].is_monotonic_increasing
        source = df[(df["name"] == key[0]) & (df["branch"] == key[1])]
        # each curve is downsampled on its own: its own ends and extremes survive
        assert group["step"].iloc[0] == source["step"].min() and group["step"].iloc[-1] == source["step"].max()
        assert group["value"].min() == source["value"].min() and group["value"].max() == source["value"].max()
    # rows stay whole: each kept row is the original row under its original index
    pd.testing.assert_frame_equal(out, df.loc[out.index])


def test_empty_frame_comes_back() -> None:
    df = pd.DataFrame({"step": [], "name": [], "value": []})
    assert downsample_frame(df).empty
