"""The dashboard's incremental curve cache against a real store."""

from __future__ import annotations

import pandas as pd

from babysit.store import Store, Supersede
from babysit.ui.curves import CurveCache


def _store(tmp_path) -> tuple[Store, int]:
    store = Store.open(tmp_path)
    run_id = store.create_run(project="p", name="r", status="running", config={}, hp={},
                              strict=False, day_spec="10 steps")
    return store, run_id


def _rows(steps, name="loss", branch=0):
    return [(s, s // 10, name, float(s) * 0.5, 1000.0 + s, branch) for s in steps]


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    key = ["name", "step", "branch", "superseded"]
    a = a.assign(name=a["name"].astype(str)).sort_values(key).reset_index(drop=True)
    b = b.assign(name=b["name"].astype(str)).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[b.columns], b, check_dtype=False)


def test_new_rows_are_added_and_match_a_full_read(tmp_path):
    store, run_id = _store(tmp_path)
    store.insert_metrics(run_id, _rows(range(50)))
    cache = CurveCache()
    first = cache.metrics(store, run_id, branch=0)
    assert len(first) == 50
    store.insert_metrics(run_id, _rows(range(50, 60)) + _rows(range(0, 60, 10), "val_loss"))
    second = cache.metrics(store, run_id, branch=0)
    assert len(second) == 66
    _same(second, store.metrics(run_id, include_superseded=True).drop(columns=["id"]))
    assert cache.metrics(store, run_id, branch=0) is second      # nothing new: nothing read


def test_a_new_branch_rereads_the_run_so_superseded_rows_show(tmp_path):
    store, run_id = _store(tmp_path)
    store.insert_metrics(run_id, _rows(range(40)))
    cache = CurveCache()
    assert not cache.metrics(store, run_id, branch=0)["superseded"].any()
    # a rollback to step 20: the old rows after it are marked (an update, not new rows)
    store.apply([Supersede(run_id, 21)])
    store.update_run(run_id, branch=1)
    store.insert_metrics(run_id, _rows(range(21, 25), branch=1))
    stale = cache.metrics(store, run_id, branch=0)       # the caller has not seen branch 1 yet
    assert not stale["superseded"].any()
    fresh = cache.metrics(store, run_id, branch=1)
    assert int(fresh["superseded"].sum()) == 19
    _same(fresh, store.metrics(run_id, include_superseded=True).drop(columns=["id"]))


def test_the_cache_keeps_a_bounded_number_of_runs(tmp_path):
    store, _ = _store(tmp_path)
    ids = [store.create_run(project="p", name=f"r{i}", status="running", config={}, hp={},
                            strict=False, day_spec="10 steps") for i in range(5)]
    cache = CurveCache(max_runs=3)
    for run_id in ids:
        store.insert_metrics(run_id, _rows(range(3)))
        cache.metrics(store, run_id, branch=0)
    assert len(cache._entries) == 3


def test_latest_metric_reads_one_row(tmp_path):
    store, run_id = _store(tmp_path)
    assert store.latest_metric(run_id, "loss") is None
    store.insert_metrics(run_id, _rows(range(30)))
    assert store.latest_metric(run_id, "loss") == 29 * 0.5
