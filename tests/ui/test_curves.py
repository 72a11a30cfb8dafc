"""The dashboard's bounded curve views against a real store."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from babysit.store import Store, Supersede
from babysit.ui.curves import (
    POINT_COLUMNS,
    CurveCache,
    bucket_points,
    chart_window,
    window_steps,
)
from babysit.ui.panels import panels_figure, zoom_steps, zoomed


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


def test_short_curves_come_back_point_for_point_and_refresh_when_logged(tmp_path):
    store, run_id = _store(tmp_path)
    store.insert_metrics(run_id, _rows(range(50)))
    cache = CurveCache()
    first = cache.metrics(store, run_id, branch=0)
    assert list(first.columns) == list(POINT_COLUMNS) and len(first) == 50
    store.insert_metrics(run_id, _rows(range(50, 60)) + _rows(range(0, 60, 10), "val_loss"))
    second = cache.metrics(store, run_id, branch=0)
    assert len(second) == 66
    _same(second, store.metrics(run_id, include_superseded=True).drop(columns=["id"]))
    assert cache.metrics(store, run_id, branch=0) is second      # nothing new: nothing read


def test_a_rollback_shows_both_branches(tmp_path):
    store, run_id = _store(tmp_path)
    store.insert_metrics(run_id, _rows(range(40)))
    cache = CurveCache()
    assert not cache.metrics(store, run_id, branch=0)["superseded"].any()
    store.apply([Supersede(run_id, 21)])         # a rollback to step 20
    store.update_run(run_id, branch=1)
    store.insert_metrics(run_id, _rows(range(21, 25), branch=1))
    fresh = cache.metrics(store, run_id, branch=1)
    assert int(fresh["superseded"].sum()) == 19
    _same(fresh, store.metrics(run_id, include_superseded=True).drop(columns=["id"]))


def test_long_curves_are_bounded_and_keep_their_spikes_and_nans(tmp_path):
    store, run_id = _store(tmp_path)
    n = 200_000
    values = np.linspace(3.0, 1.0, n)
    values[123_456], values[7_777] = 40.0, np.nan
    store.append_points(run_id, "loss", np.arange(n), values, 1e9 + np.arange(n) * 0.1)
    cache = CurveCache()
    view = cache.view(store, run_id, ["loss"], max_points=500)
    assert len(view) <= 500
    pts = cache.metrics(store, run_id, names=["loss"], max_points=500)
    assert len(pts) <= 5 * 500
    assert pts["value"].max() == 40.0 and pts.step[pts["value"].idxmax()] == 123_456
    nan = pts[pts["value"].isna()]
    assert nan.step.tolist() == [7_777]
    assert (np.diff(pts.step) >= 0).all()
    assert pts.time.between(1e9, 1e9 + n * 0.1).all()
    # a zoom reads that range at full detail: single steps
    zoomed = cache.metrics(store, run_id, names=["loss"], x_range=(123_400, 123_500))
    assert zoomed.step.tolist() == list(range(123_400, 123_501))
    np.testing.assert_array_equal(zoomed["value"], values[123_400:123_501])


def test_the_cache_is_bounded_in_bytes(tmp_path):
    store, run_id = _store(tmp_path)
    store.append_points(run_id, "loss", np.arange(100_000), np.random.default_rng(0).random(100_000))
    cache = CurveCache(max_bytes=1 << 20)
    for i in range(40):    # 40 zooms of ~2000 buckets each: far more than a megabyte
        cache.view(store, run_id, x_range=(i * 2000, i * 2000 + 50_000))
    assert cache.nbytes <= 1 << 20
    assert 0 < len(cache._entries) < 40


def test_bucket_points_draws_first_min_max_last_at_their_steps():
    buckets = pd.DataFrame({
        "name": ["loss", "loss"], "branch": [0, 0], "superseded": [False, False],
        "level": [6, 6], "step_lo": [0, 64], "step_hi": [63, 127], "count": [64, 64],
        "first": [1.0, 2.0], "last": [2.0, 1.0], "min": [0.5, 1.0], "max": [9.0, 2.0],
        "step_min": [10.0, 127.0], "step_max": [20.0, 64.0], "nonfinite": [0, 1], "nan": [0, 1],
        "posinf": [0, 0], "neginf": [0, 0], "step_nonfinite": [np.nan, 100.0],
        "time": [63.0, 127.0], "day": [0, 1]})
    pts = bucket_points(buckets)
    assert pts.step.tolist() == [0, 10, 20, 63, 64, 100, 127]
    np.testing.assert_array_equal(pts["value"], [1.0, 0.5, 9.0, 2.0, 2.0, np.nan, 1.0])
    assert bucket_points(buckets.iloc[:0]).columns.tolist() == list(POINT_COLUMNS)


def test_chart_window_reads_plotly_relayout_events():
    assert chart_window({"xaxis.range[0]": 10.5, "xaxis.range[1]": 3}) == (3.0, 10.5)
    assert chart_window({"xaxis2.range": [5, 7]}) == (5.0, 7.0)
    assert chart_window({"xaxis.autorange": True}) is None           # a double click
    assert chart_window({"yaxis.range[0]": 1, "yaxis.range[1]": 2}) is None
    assert chart_window({}) is None and chart_window(None) is None
    assert chart_window({"xaxis.range": ["2026-01-02", "2026-01-01 12:00"]}) == \
        ("2026-01-01 12:00", "2026-01-02")
    # what a crafted message could send is refused, never turned into a range
    for bad in ({"xaxis.range": ["<b>x</b>", 3]}, {"xaxis.range": [float("nan"), 3]},
                {"xaxis.range": [1, float("inf")]}, {"xaxis.range": [True, 3]},
                {"xaxis.range": [1]}, {"xaxis.range": "1,2"}, {"xaxis.range": [1, "2026-01-01"]},
                {"xaxis.range": ["2026-01-01T00:00+05:00", "2026-01-02"]},
                {"xaxis.range": [{"a": 1}, 2]}):
        assert chart_window(bad) is None, bad


def test_window_steps_maps_a_window_to_the_steps_to_reread():
    # a step axis: the window's own steps, rounded outwards
    assert window_steps((10.2, 99.7), np.arange(1000)) == (10, 100)
    assert window_steps(None, np.arange(10)) is None
    assert window_steps(("2026-01-01", "2026-01-02"), np.arange(10)) is None
    # a day axis: the points just outside the window, so the re-read covers it
    steps = np.array([0, 50, 100, 150, 200])
    days = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    assert window_steps((0.7, 1.2), steps, days) == (50, 150)
    assert window_steps((1.0, 1.0), steps, days) == (100, 100)
    assert window_steps((-5.0, 0.2), steps, days) == (0, 50)
    assert window_steps((1.9, 9.0), steps, days) == (150, 200)
    # a time axis: plotly's local date strings against the drawn datetimes
    times = np.array(["2026-01-01T00:00", "2026-01-01T01:00", "2026-01-01T02:00",
                      "2026-01-01T03:00", "2026-01-01T04:00"], dtype="datetime64[ms]")
    assert window_steps(("2026-01-01 01:30", "2026-01-01 02:10:00.5"), steps, times) == \
        (50, 150)
    assert window_steps((1.0, 2.0), np.array([], np.int64), days[:0]) is None


def test_zoom_steps_inverts_the_run_pages_day_and_time_axes(tmp_path):
    store, run_id = _store(tmp_path)
    # 1000 steps, a day every 100 steps, a second per step
    store.insert_metrics(run_id, [(s, s // 100, "loss", 1.0, 5000.0 + s, 0)
                                  for s in range(1000)])
    metrics = CurveCache().metrics(store, run_id)
    assert zoom_steps((250.3, 260.9), metrics, x="step") == (250, 261)
    days = panels_figure(metrics, x="day")
    xs = np.asarray(days.data[0].x, dtype=float)
    lo, hi = zoom_steps((float(xs[300]), float(xs[400])), metrics, x="day")
    assert lo <= 300 and hi >= 400 and hi - lo <= 110
    times = panels_figure(metrics, x="time")
    tx = np.asarray(times.data[0].x).astype("datetime64[ms]")
    window = (str(tx[500]).replace("T", " "), str(tx[520]).replace("T", " "))
    lo, hi = zoom_steps(window, metrics, x="time")
    assert lo <= 500 and hi >= 520 and hi - lo <= 30
    # ... and the re-read of that range is step by step, every point exact
    zoomed_view = CurveCache().metrics(store, run_id, x_range=(lo, hi))
    assert zoomed_view["step"].tolist() == list(range(lo, hi + 1))
    # drawn on the day axis of the whole run: a step sits at the same day as before the zoom
    # (a window inside one day: its own rows hold no day boundary to place days by)
    part = CurveCache().metrics(store, run_id, x_range=(310, 390))
    zx = np.asarray(panels_figure(part, x="day", whole=metrics).data[0].x, dtype=float)
    assert zx[0] == xs[310] and zx[-1] == xs[390]
    store.close()


def test_zoomed_figure_keeps_the_window_or_autoranges():
    fig = panels_figure(pd.DataFrame({"step": [0, 1], "name": "loss", "value": [2.0, 1.0]}))
    assert list(zoomed(fig, (0.2, 0.8)).layout.xaxis.range) == [0.2, 0.8]
    assert fig.layout.xaxis.autorange is False
    assert zoomed(fig, None).layout.xaxis.autorange is True


def test_latest_metric_reads_one_row(tmp_path):
    store, run_id = _store(tmp_path)
    assert store.latest_metric(run_id, "loss") is None
    store.insert_metrics(run_id, _rows(range(30)))
    assert store.latest_metric(run_id, "loss") == 29 * 0.5


def test_study_curves_read_the_pyramid_not_the_history(tmp_path, monkeypatch):
    """The Study page's objective curve of a 300,000-step run: a few hundred buckets, the
    single-step spike still there at its own step."""
    from babysit.ui import state, study_state

    store, run_id = _store(tmp_path)
    n = 300_000
    values = np.linspace(2.0, 0.5, n)
    values[123_456] = 50.0
    store.append_points(run_id, "val_loss", np.arange(n), values, 1e9 + np.arange(n),
                        np.arange(n) // 10_000)
    store.close()
    monkeypatch.setenv("BABYSIT_ROOT", str(tmp_path))
    monkeypatch.delenv("BABYSIT_STORE_URL", raising=False)
    state.refresh()
    curve = study_state.curve(run_id, "val_loss")
    assert len(curve) <= 5 * study_state.CURVE_BUCKETS
    assert curve.loc[curve["value"].idxmax(), "step"] == 123_456
    assert curve["value"].max() == 50.0 and curve["step"].max() == n - 1


def test_chart_frame_writes_no_markup_and_fetches_only_its_plotly():
    """The chart frame runs in the dashboard's origin: it must never turn what it reads into
    markup or code, and it loads nothing but the plotly bundle beside it (no network, no CDN)."""
    from pathlib import Path

    from babysit.ui import chart

    folder = Path(chart.__file__).with_name("chart_frontend")
    page = (folder / "index.html").read_text()
    script = page.split("<script>", 1)[1]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "Function(", "setTimeout(\"", "href=", "fetch(", "XMLHttpRequest", "import("):
        assert sink not in script, sink
    # one script loaded, the bundle beside the page; no other source of code or style
    assert re.findall(r"\.src = ([^;]+);", script) == [f'"./{chart.PLOTLY}"']
    assert "<script src" not in page and "<link" not in page
    assert (folder / chart.PLOTLY).read_text(encoding="utf-8").startswith(
        "/**\n* plotly.js (basic - minified) v")
    # the figure goes to plotly as data: parsed as JSON, never evaluated
    assert "JSON.parse(args.figure)" in script


def test_compare_zoom_on_steps_since_the_fork_keeps_each_runs_origin():
    """A zoomed frame starts inside the run: "steps since the fork point" still count from
    the run's first step (``starts``), not from the first step of the window."""
    from babysit.ui.compare_figures import compare_panels_figure, first_live_step

    whole = pd.DataFrame({"step": np.arange(100, 1100), "name": "loss",
                          "value": np.linspace(2, 1, 1000), "superseded": False})
    assert first_live_step(whole) == 100.0
    window = whole[(whole.step >= 600) & (whole.step <= 610)]
    fig = compare_panels_figure({7: window}, ["loss"], align="fork", starts={7: 100.0})
    assert list(np.asarray(fig.data[0].x, dtype=float)) == list(np.arange(500.0, 511.0))
    unzoomed = compare_panels_figure({7: window}, ["loss"], align="fork")
    assert float(np.asarray(unzoomed.data[0].x, dtype=float)[0]) == 0.0
