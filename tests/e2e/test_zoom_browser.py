"""Zoom is real: a drag on the Run page's chart re-reads that range at full detail.

A real store holding a long run (200,000 steps through the store's bulk path, one single-step
spike), the Streamlit server `babysit ui` starts (pages imported before it serves: a component
declared then was never served), headless Chromium dragging on the chart (drawn in babysit's
own component frame, `babysit.ui.chart`) with the mouse.
The whole-run view holds ~2,000 buckets; after two zooms the chart must hold every step of
the window, the spike at its exact step and value among them, and keep that range when the
page refreshes itself with new data.
"""

from __future__ import annotations

import numpy as np
import pytest

from babysit.store import Store
from tests.conftest import wait_for
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM
from tests.security.conftest import start_dashboard

pytestmark = [pytest.mark.slow, pytest.mark.e2e,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
N = 200_000
SPIKE_STEP, SPIKE = 123_457, 9.875
#: the chart's frame (babysit.ui.chart draws the figure in a component frame of its own)
CHART = ".st-key-run_figure iframe"

# the x range, and the loss trace's points inside it, as the browser holds them
STATE = """(arg) => {
    const [sel, trace] = Array.isArray(arg) ? arg : [arg, "loss"];
    const gd = document.querySelector(sel);
    if (!gd || !gd._fullLayout || !gd._fullLayout.xaxis) return null;
    const r = gd._fullLayout.xaxis.range.map(Number);
    const t = (gd._fullData || []).find(d => d.name === trace && d.mode === "lines");
    const xs = t ? Array.from(t.x, Number) : [];
    const ys = t ? Array.from(t.y, Number) : [];
    const inside = xs.map((x, i) => [x, ys[i]]).filter(p => p[0] >= r[0] && p[0] <= r[1]);
    const names = Array.from(gd.querySelectorAll('.annotation-text'), a => a.textContent);
    return {range: r, n: xs.length, inside: inside, panels: names};
}"""


def _state(page, chart: str = CHART, trace: str = "loss") -> dict | None:
    """``STATE`` of the plot in the chart's frame (None: no frame, or it is being replaced)."""
    handle = page.query_selector(chart)
    frame = handle.content_frame() if handle else None
    if frame is None:
        return None
    try:
        return frame.evaluate(STATE, [".js-plotly-plot", trace])
    except Exception:      # the frame navigated or went away between the two calls
        return None


def _box(page, chart: str = CHART) -> dict:
    """The plot's drag area, in the page's coordinates (where the mouse moves)."""
    return page.frame_locator(chart).locator(".nsewdrag").first.bounding_box()


def _long_run(root, name: str = "long") -> int:
    store = Store.open(root)
    try:
        run_id = store.create_run(project="p", name=name, config={"lr": 0.1},
                                  hp={"lr": 0.1}, day_spec="10000 steps")
        steps = np.arange(N)
        loss = 2.0 / np.sqrt(1.0 + steps / 1000.0) + 0.01 * np.sin(steps / 7.0)
        loss[SPIKE_STEP] = SPIKE
        store.append_points(run_id, "loss", steps, loss, 1.7e9 + steps * 0.01,
                            steps // 10_000)
        return run_id
    finally:
        store.close()


def _drag(page, box: dict, x0: float, x1: float) -> None:
    """A horizontal drag in the chart's top panel: plotly zooms the x axis only."""
    y = box["y"] + box["height"] / 2
    page.mouse.move(x0, y)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x0 + (x1 - x0) * k / 10, y + 1)
    page.mouse.up()


def _listening(page, chart: str = CHART) -> None:
    """Wait until the chart's frame has subscribed to plotly's relayout events (right after its
    first draw): a drag before that is only a magnification."""
    from playwright.sync_api import expect

    expect(page.frame_locator(chart).locator(".js-plotly-plot[data-babysit-zoom=listening]")
           ).to_have_count(1, timeout=60_000)


def _zoom_around(page, step: float, half_px: float, chart: str = CHART) -> list[float]:
    """Drag from ``half_px`` left of ``step`` to ``half_px`` right of it; the range before."""
    state = _state(page, chart)
    box = _box(page, chart)
    lo, hi = state["range"]
    at = box["x"] + (step - lo) / (hi - lo) * box["width"]
    _drag(page, box, at - half_px, at + half_px)
    return state["range"]


def test_zoom_rereads_the_range_step_by_step_and_keeps_it(root, trainers):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    run_id = _long_run(root)
    board = start_dashboard(root, trainers.env(), as_babysit_ui=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1100})
            page.goto(f"{board.url}/run?run={run_id}&token={board.token}")
            expect(page.frame_locator(CHART).locator(".js-plotly-plot")).to_be_visible(
                timeout=120_000)
            whole = wait_for(lambda: _state(page), 60, "the whole-run chart")
            # the whole run: bounded, the spike drawn (a bucket's max), but not step by step
            assert whole["n"] <= 12_000 and whole["range"][1] >= N - 1 - 2_000
            assert any(x == SPIKE_STEP and y == SPIKE for x, y in whole["inside"])
            near = [x for x, _ in whole["inside"] if abs(x - SPIKE_STEP) <= 300]
            assert len(near) < 100

            # zoom 1: ~1/50 of the run around the spike; zoom 2: a few hundred steps
            _listening(page)
            _zoom_around(page, SPIKE_STEP, 12)
            # re-read: far more points inside the window than the whole-run view had there
            first = wait_for(lambda: (s := _state(page)) and
                             s["range"][1] - s["range"][0] < N / 10 and len(s["inside"]) > 500
                             and s, 90, "zoom 1 re-read")
            _listening(page)
            _zoom_around(page, SPIKE_STEP, 15)

            def fine():
                s = _state(page)
                if not s or s["range"][1] - s["range"][0] > 2_000:
                    return None
                xs = [x for x, _ in s["inside"]]
                # re-read: every step of the window drawn, not a magnified bucket
                return s if len(xs) > 50 and xs == list(range(int(xs[0]), int(xs[-1]) + 1)) \
                    else None
            zoomed = wait_for(fine, 90, "the zoomed range re-read step by step")
            lo, hi = zoomed["range"]
            assert lo < SPIKE_STEP < hi and hi - lo < first["range"][1] - first["range"][0]
            values = dict(zoomed["inside"])
            assert values[SPIKE_STEP] == SPIKE
            steps = np.arange(SPIKE_STEP - 3, SPIKE_STEP + 4)
            expected = 2.0 / np.sqrt(1.0 + steps / 1000.0) + 0.01 * np.sin(steps / 7.0)
            for s, v in zip(steps, expected, strict=True):
                if s != SPIKE_STEP:
                    assert values[int(s)] == pytest.approx(float(v), rel=1e-12)
            page.screenshot(path=str(ARTIFACTS / "zoom-1-zoomed.png"), full_page=True)

            # the run logs a new metric: the live refresh redraws (a new panel) in the zoom
            store = Store.open(root)
            try:
                window = np.arange(int(lo) - 50, int(hi) + 50)
                store.append_points(run_id, "val_loss", window, np.full(len(window), 0.5),
                                    1.7e9 + window * 0.01, window // 10_000)
            finally:
                store.close()
            after = wait_for(lambda: (s := _state(page)) and
                             "val_loss" in s["panels"] and s, 90, "the refresh with val_loss")
            assert after["range"] == pytest.approx(zoomed["range"])
            assert dict(after["inside"])[SPIKE_STEP] == SPIKE
            page.screenshot(path=str(ARTIFACTS / "zoom-2-refreshed.png"), full_page=True)

            # a double click: the whole run again (clicked again if a loaded machine made two
            # slow clicks of it: plotly counts a double click within 300 ms)
            def whole_again():
                s = _state(page)
                if s and s["range"][1] - s["range"][0] > N * 0.9:
                    return s
                box = _box(page)
                page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.wait_for_timeout(3000)
                return None
            wait_for(whole_again, 90, "the whole run again")

            # on the day axis (a new listener: the old one must not swallow the event)
            page.get_by_test_id("stRadioGroup").first.get_by_text("day", exact=True).click()
            days = wait_for(lambda: (s := _state(page)) and
                            s["range"][1] < N / 1000 and s, 60, "the day axis")
            spike_day = next(x for x, y in days["inside"] if y == SPIKE)   # where it is drawn
            box = _box(page)
            at = box["x"] + (spike_day - days["range"][0]) / (
                days["range"][1] - days["range"][0]) * box["width"]
            _drag(page, box, at - 6, at + 6)
            by_day = wait_for(lambda: (s := _state(page)) and
                              len(s["inside"]) > 500 and s, 90, "the day-axis zoom re-read")
            assert max(y for _, y in by_day["inside"]) == SPIKE
            page.screenshot(path=str(ARTIFACTS / "zoom-4-day-axis.png"), full_page=True)
            browser.close()
    finally:
        board.proc.terminate()
        board.proc.wait(timeout=20)


def test_compare_page_zoom_rereads_every_run(root, trainers):
    """Two long runs overlaid: a zoom re-reads the window of both, step by step."""
    from playwright.sync_api import expect, sync_playwright

    chart = ".st-key-compare_figure iframe"
    ids = [_long_run(root, "a"), _long_run(root, "b")]
    board = start_dashboard(root, trainers.env(), as_babysit_ui=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1100})
            page.goto(f"{board.url}/compare?token={board.token}")
            expect(page.frame_locator(chart).locator(".js-plotly-plot")).to_be_visible(
                timeout=120_000)
            names = [f"#{i} {n}" for i, n in zip(ids, "ab", strict=True)]
            whole = wait_for(lambda: (s := _state(page, chart, names[0])) and s["n"]
                             and s, 60, "the whole-run chart")
            assert whole["range"][1] >= N - 1 - 2_000
            _listening(page, chart)
            _zoom_around(page, SPIKE_STEP, 12, chart)
            wait_for(lambda: (s := _state(page, chart, names[0])) and
                     len(s["inside"]) > 500 and s, 90, "zoom 1 re-read")
            _listening(page, chart)
            _zoom_around(page, SPIKE_STEP, 15, chart)

            def fine(name):
                s = _state(page, chart, name)
                if not s or s["range"][1] - s["range"][0] > 2_000:
                    return None
                xs = [x for x, _ in s["inside"]]
                return s if len(xs) > 50 and xs == list(range(int(xs[0]), int(xs[-1]) + 1)) \
                    else None
            for name in names:
                zoomed = wait_for(lambda n=name: fine(n), 90, f"{name} re-read step by step")
                assert dict(zoomed["inside"])[SPIKE_STEP] == SPIKE
            page.screenshot(path=str(ARTIFACTS / "zoom-3-compare.png"), full_page=True)
            browser.close()
    finally:
        board.proc.terminate()
        board.proc.wait(timeout=20)
