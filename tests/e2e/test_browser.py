"""End to end, everything real: a training subprocess, `streamlit run`, headless Chromium."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "e2e-test-token"      # handed to the server in $BABYSIT_TOKEN, as `babysit ui` does


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(trainers):
    port = _free_port()
    env = dict(trainers.env(), BABYSIT_TOKEN=TOKEN)
    log = open(trainers.root.parent / "streamlit.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.address",
         "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"], env=env, stdout=log, stderr=subprocess.STDOUT)

    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_for(up, 60, "the streamlit server")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_babysit_a_run_from_the_browser(trainers, server):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    _, run_id = trainers.start("--pace", "0.02", "--day", "20 steps")
    c = trainers.client
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(f"{server}/run?run={run_id}&token={TOKEN}")    # the link babysit ui prints
        expect(page.get_by_role("button", name="lr ×0.5")).to_be_visible(timeout=60_000)
        # the live curve is drawn and grows
        expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
        step_before = c.run(run_id).step
        page.screenshot(path=str(ARTIFACTS / "e2e-1-run-page.png"), full_page=True)

        lr_before = c.run(run_id).hp["lr"]
        page.get_by_role("button", name="lr ×0.5").click()
        wait_for(lambda: c.run(run_id).hp["lr"] == lr_before / 2, 30, "the UI nudge")
        nudge = c.events(run_id).query("kind == 'nudge'").iloc[-1]
        assert nudge.source == "ui" and nudge.detail["lr"]["new"] == lr_before / 2
        expect(page.get_by_text("applied at step")).to_be_visible(timeout=30_000)
        wait_for(lambda: c.metrics(run_id, ["hp/lr"]).value.iloc[-1] == lr_before / 2, 30,
                 "the lr trace to change")
        assert c.run(run_id).step > step_before
        page.screenshot(path=str(ARTIFACTS / "e2e-2-after-nudge.png"), full_page=True)

        # roll back to day 1 via the UI
        wait_for(lambda: len(c.checkpoints(run_id)) >= 3, 60, "day 2")
        page.reload()       # the tab keeps steering: it sends its proof, the page reruns
        expect(page.get_by_text("🔓 you can steer runs")).to_be_visible(timeout=60_000)
        # the rerun that follows the proof has finished: no element of the read-only run left
        expect(page.get_by_role("button", name="Roll back")).to_have_count(1, timeout=60_000)
        expect(page.get_by_role("button", name="Roll back")).to_be_enabled(timeout=60_000)
        page.get_by_role("combobox", name="day to roll back to").click()
        page.keyboard.type("1")         # filters the days; the first match is day 1
        page.keyboard.press("Enter")
        page.get_by_text("Yes, roll back").click()
        page.get_by_role("button", name="Roll back").click()
        wait_for(lambda: "rollback" in c.events(run_id).kind.tolist(), 30, "the UI rollback")
        rollback = c.events(run_id).query("kind == 'rollback'").iloc[-1]
        assert rollback.detail["to_day"] == 1 and rollback.source == "ui"
        trainers.wait_step(run_id, 25)
        live = c.metrics(run_id, ["loss"])
        assert live.step.is_unique and (live.step >= 20).any()
        page.screenshot(path=str(ARTIFACTS / "e2e-3-after-rollback.png"), full_page=True)

        # fork via the UI
        page.get_by_role("button", name="Fork", exact=True).click()
        wait_for(lambda: len(c.runs()) == 2, 60, "the forked run")
        child = int(c.runs().id.max())
        assert c.run(child).parent_id == run_id
        expect(page.get_by_role("button", name=f"Open run #{child}")).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "e2e-4-after-fork.png"), full_page=True)
        browser.close()
    c.stop(child)
