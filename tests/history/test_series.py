"""The summary arithmetic (pure numpy) against a plain pandas reference, point by point."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from babysit.store import series
from babysit.store.series import NO_STEP, Points


def reference(steps, values, level: int) -> pd.DataFrame:
    """Bucket summaries the slow, obvious way: one pandas group per bucket."""
    df = pd.DataFrame({"step": steps, "value": values, "order": np.arange(len(steps))})
    df = df.sort_values(["step", "order"], kind="stable")
    out = []
    for b, g in df.groupby(df["step"] // (1 << level), sort=True):
        v = g["value"].to_numpy()
        s = g["step"].to_numpy()
        fin = np.isfinite(v)
        row = {"bucket": b, "count": len(g), "nan": int(np.isnan(v).sum()),
               "posinf": int((v == np.inf).sum()), "neginf": int((v == -np.inf).sum()),
               "step_first": s[0], "step_last": s[-1], "first": v[0], "last": v[-1],
               "min": np.nan, "step_min": NO_STEP, "max": np.nan, "step_max": NO_STEP,
               "step_nonfinite": int(s[~fin].min()) if (~fin).any() else NO_STEP}
        if fin.any():
            row["min"] = v[fin].min()
            row["max"] = v[fin].max()
            row["step_min"] = int(s[fin][v[fin] == row["min"]].min())
            row["step_max"] = int(s[fin][v[fin] == row["max"]].min())
        out.append(row)
    return pd.DataFrame(out)


def assert_matches(b: series.Buckets, ref: pd.DataFrame) -> None:
    assert len(b) == len(ref)
    for col in ref.columns:
        np.testing.assert_array_equal(getattr(b, col), ref[col].to_numpy(), err_msg=col)


def noisy(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(n).round(1)          # rounding makes ties for min and max
    v[rng.integers(0, n, max(1, n // 50))] = np.nan
    v[rng.integers(0, n, max(1, n // 97))] = np.inf
    v[rng.integers(0, n, max(1, n // 89))] = -np.inf
    return v


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("level", [0, 1, 3, 6])
def test_summarize_matches_the_reference(seed, level):
    rng = np.random.default_rng([seed, level])
    n = int(rng.integers(1, 3000))
    steps = np.sort(rng.integers(0, 5000, n))     # gaps and repeated steps
    if seed % 2:
        steps = rng.permutation(steps)            # out of order arrivals too
    values = noisy(n, rng)
    assert_matches(series.summarize(steps, values, level=level), reference(steps, values, level))


@pytest.mark.parametrize("seed", range(6))
def test_merging_in_pieces_equals_summarising_at_once(seed):
    """The store folds each batch into the stored buckets: any split must give the same."""
    rng = np.random.default_rng(seed)
    n = 4000
    steps = np.sort(rng.integers(0, 20_000, n))
    values = noisy(n, rng)
    cuts = np.sort(rng.choice(np.arange(1, n), 7, replace=False))
    for level in (6, 8):
        acc = series.Buckets.empty(level)
        for part in np.split(np.arange(n), cuts):
            acc = series.merge(acc, series.summarize(steps[part], values[part], level=level))
        assert_matches(acc, reference(steps, values, level))


def test_each_level_of_the_pyramid_comes_from_the_one_below():
    rng = np.random.default_rng(7)
    n = 50_000
    steps = np.arange(n) * 3
    values = noisy(n, rng)
    pyr = series.pyramid(Points.of(steps, values))
    assert sorted(pyr) == list(series.LEVELS)
    for level in (6, 10, 14):
        assert_matches(pyr[level], reference(steps, values, level))


def test_a_spike_and_a_nan_survive_every_level():
    n = 1 << 20
    values = np.zeros(n)
    values[777_777] = 50.0
    values[12_345] = np.nan
    for level, b in series.pyramid(Points.of(np.arange(n), values)).items():
        assert b.max.max() == 50.0, level
        assert b.step_max[np.argmax(b.max)] == 777_777
        assert b.nan.sum() == 1 and b.step_nonfinite.min() == 12_345


def test_blocks_round_trip_exactly():
    rng = np.random.default_rng(1)
    n = series.BLOCK
    p = Points.of(np.cumsum(rng.integers(0, 5, n)), noisy(n, rng),
                  1.7e9 + np.cumsum(rng.random(n)).round(6), np.arange(n) // 100)
    q = series.decode_block(series.encode_block(p))
    np.testing.assert_array_equal(q.step, p.step)
    np.testing.assert_array_equal(q.value, p.value)          # nan, inf, -inf, -0.0 kept
    np.testing.assert_array_equal(q.day, p.day)
    assert np.abs(q.time - p.time).max() < 1e-6              # microseconds
    assert len(series.encode_block(p)) < 12 * n              # small: ~8 bytes a point


@pytest.mark.parametrize(("span", "max_points", "k"),
                         [(1, 2, 0), (2000, 2000, 1), (1999, 2000, 0), (10**6, 2000, 9),
                          (10**7, 2000, 13)])
def test_choose_level_fits_the_range_in_max_points(span, max_points, k):
    assert series.choose_level(span, max_points) == k
    for lo in (0, 1, 12345):      # whatever the alignment, the buckets fit
        hi = lo + span - 1
        assert (hi >> k) - (lo >> k) + 1 <= max_points


def test_buckets_rows_round_trip_through_sql_nulls():
    b = series.summarize([0, 1, 64, 65], [np.nan, np.nan, 1.0, -np.inf], level=6)
    rows = b.rows()
    assert rows[0][series.COLUMNS.index("min")] is None       # no finite value: NULL
    assert rows[0][series.COLUMNS.index("first")] is None     # a nan: NULL
    again = series.Buckets.from_rows(6, rows)
    for col in series.COLUMNS:
        np.testing.assert_array_equal(getattr(again, col), getattr(b, col), err_msg=col)
        assert getattr(again, col).dtype == getattr(b, col).dtype, col
    # steps past a double's 53 bits take the exact per-column path
    big = series.summarize([2**60, 2**60 + 1], [1.0, 2.0], level=0)
    again = series.Buckets.from_rows(0, big.rows())
    assert again.step_first.tolist() == [2**60, 2**60 + 1]
    assert again.step_min.tolist() == [2**60, 2**60 + 1]


def test_owned_pyramids_equal_one_pyramid_per_trace():
    """A batch of several metrics is reduced in one pass: the same buckets as one per trace."""
    rng = np.random.default_rng(11)
    n = 6000
    owner = rng.integers(0, 5, n)
    steps = np.sort(rng.integers(0, 50_000, n))
    values = noisy(n, rng)
    together = series.owned_pyramid(owner, Points.of(steps, values))
    for o in range(5):
        alone = series.pyramid(Points.of(steps[owner == o], values[owner == o]))
        for level, b in together.items():
            bucket, who = series.split_key(b.bucket)
            mine = b.take(who == o)
            assert_matches(series.Buckets(level, **{**mine.columns(), "bucket": bucket[who == o]}),
                           pd.DataFrame(alone[level].columns()))
