"""End to end: select a region in a hyperparameter chart in Chromium, launch the next batch.

Streamlit's AppTest cannot draw a box on a plotly chart, so this is the test of the selection
path: real `streamlit run`, real headless Chromium, real box drag, a real follow-up study.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO, wait_for
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, _free_port
from tests.ui.test_study_page import study_store  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
TOKEN = "study-browser-test-token"


@pytest.fixture
def study_server(study_store):  # noqa: F811
    port = _free_port()
    root = study_store["root"]
    log = open(root.parent / "streamlit.log", "wb")  # noqa: SIM115 - closed below
    env = {**__import__("os").environ, "BABYSIT_ROOT": str(root), "BABYSIT_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.address",
         "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        env=env, stdout=log, stderr=subprocess.STDOUT)

    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_for(up, 60, "the streamlit server")
    yield f"http://127.0.0.1:{port}", study_store
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_box_select_runs_and_launch_the_next_batch(study_server):
    from playwright.sync_api import expect, sync_playwright

    url, store = study_server
    client, sid = store["client"], store["study"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(f"{url}/study?study={sid}&token={TOKEN}")    # the link babysit ui prints
        chart = page.locator(f".st-key-study_hp_{sid}_lr")
        chart.locator(".nsewdrag").first.wait_for(timeout=60_000)
        chart.scroll_into_view_if_needed()
        box = chart.locator(".nsewdrag").first.bounding_box()
        assert box is not None
        # the runs have lr 0.003, 0.03 and 0.5 on a log axis from 1e-3 to 1: a box over the
        # left half of the plot holds the first two
        x0, x1 = box["x"] + 0.02 * box["width"], box["x"] + 0.6 * box["width"]
        page.mouse.move(x0, box["y"] + 2)
        page.mouse.down()
        page.mouse.move((x0 + x1) / 2, box["y"] + box["height"] / 2, steps=5)
        page.mouse.move(x1, box["y"] + box["height"] - 2, steps=5)
        page.mouse.up()
        expect(page.get_by_text("Region: lr log")).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "e2e-study-1-selected.png"))
        page.get_by_role("button", name="Launch next batch").click()
        expect(page.get_by_text("launched 'sweep-fine1'")).to_be_visible(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "e2e-study-2-next-batch.png"))
        browser.close()
    try:
        child = client.study("sweep-fine1")
        assert child.parent_id == sid
        lr = child.space["lr"]
        # the two picked runs, widened by 5% of the 3 decades on each side, no further
        assert 1e-3 <= lr["low"] < 0.003 and 0.03 < lr["high"] < 0.1
        assert child.space["momentum"] == client.study(sid).space["momentum"]
        assert child.strategy["kind"] == "pbt" and child.budget["runs"] == 3
    finally:
        client.stop_study("sweep-fine1", timeout=30)
