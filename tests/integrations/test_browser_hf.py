"""End to end: a real Hugging Face Trainer subprocess babysat from the dashboard in Chromium.

Buttons and fields are found by their labels (lr ×0.5, the day picker, Roll back), never by
their place on the page, so a new layout of the run page does not break it. What is asserted is
what the Trainer itself logged (its ``learning_rate``), not what the page or the store says.
"""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from tests.conftest import wait_for
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, TOKEN, server  # noqa: F401 - the streamlit fixture
from tests.integrations.conftest import TRAINERS, curve, scale_nudges

pytest.importorskip("transformers")
pytestmark = [pytest.mark.slow, pytest.mark.e2e]

STEPS, BASE_LR, WARMUP = 400, 1e-3, 5       # hf_tiny.py's defaults (linear warmup + decay)


def linear(step: int) -> float:
    """transformers' linear schedule: the lr the (0-based) step ``step`` uses."""
    if step < WARMUP:
        return BASE_LR * step / WARMUP
    return BASE_LR * max(0.0, (STEPS - step) / (STEPS - WARMUP))


def url(base: str, path: str, **query: object) -> str:
    """``base`` + ``path`` keeping the query ``base`` carries (the dashboard's ?token=...)."""
    parts = urlsplit(base)
    merged = dict(parse_qsl(parts.query)) | {k: str(v) for k, v in query.items()}
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(merged), ""))


def steering(page) -> None:
    """Wait until the tab may steer and the rerun after its proof is drawn (enabled buttons)."""
    from playwright.sync_api import expect
    expect(page.get_by_text("🔓 you can steer runs")).to_be_visible(timeout=90_000)
    for name in ("lr ×0.5", "Roll back"):
        expect(page.get_by_role("button", name=name)).to_have_count(1, timeout=60_000)
        expect(page.get_by_role("button", name=name)).to_be_enabled(timeout=60_000)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
@pytest.mark.skipif(not scale_nudges(), reason="the ×0.5 button posts scale={'lr': 0.5}: the "
                    "trainer's handling of it (core's commands.nudge) is not on this branch yet")
def test_nudge_and_roll_back_an_hf_trainer_from_the_browser(trainers, server, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    c = trainers.client
    # (started here rather than by trainers.start: importing transformers on a loaded machine
    # takes longer than the minute it waits for the run)
    log = open(tmp_path / "hf_tiny.log", "wb")  # noqa: SIM115 - closed at the end
    proc = subprocess.Popen([sys.executable, str(TRAINERS / "hf_tiny.py"), "--out",
                             str(tmp_path / "out"), "--steps", str(STEPS), "--pace", "0.05",
                             "--day", "10 steps"], env=trainers.env(), stdout=log,
                            stderr=subprocess.STDOUT)
    trainers.procs.append(proc)     # killed at the end if still alive
    wait_for(lambda: len(c.runs()) == 1 and c.run(int(c.runs().iloc[0]["id"])).step > 0, 300,
             "the Trainer's first steps")
    run_id = int(c.runs().iloc[0]["id"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url(server, "/run", run=run_id, token=TOKEN))    # the link babysit ui prints
        steering(page)
        half = page.get_by_role("button", name="lr ×0.5")
        wait_for(lambda: c.store.checkpoint(run_id, 1) is not None, 120, "day 1")
        half.click()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "e2e-hf-1-after-nudge.png"), full_page=True)
        wait_for(lambda: not c.events(run_id).query("kind == 'nudge'").empty, 60, "the nudge")
        nudge = c.events(run_id).query("kind == 'nudge'").iloc[-1]
        applied = int(nudge["step"])
        assert nudge["source"] == "ui" and applied > 10
        trainers.wait_step(run_id, applied + 2, timeout=120)
        lr, _ = curve(c, run_id, "learning_rate")
        # the Trainer's own log: unchanged before, exactly half of its schedule from there on
        assert lr[applied - 1] == pytest.approx(linear(applied - 1), rel=1e-9)
        for step in (applied, applied + 1):
            assert lr[step] == pytest.approx(0.5 * linear(step), rel=1e-9), step

        page.reload()       # the tab keeps steering: it sends its proof, the page reruns
        steering(page)
        days = page.get_by_role("combobox", name="roll back to the end of day")

        def offered() -> bool:
            # typing filters the (virtualised) list; then the option by its own label (Enter
            # picked whatever was highlighted)
            days.click()
            page.keyboard.type("1")
            found = page.get_by_role("option", name="1", exact=True).count() > 0
            if not found:
                page.keyboard.press("Escape")
            return found
        try:
            wait_for(offered, 60, "day 1 in the rollback list")
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "e2e-hf-2-no-day-1.png"), full_page=True)
            raise
        page.get_by_role("option", name="1", exact=True).click()
        page.get_by_text("Yes, roll back").click()
        page.get_by_role("button", name="Roll back").click()
        wait_for(lambda: not c.events(run_id).query("kind == 'rollback'").empty, 60,
                 "the rollback")
        browser.close()
    rollback = c.events(run_id).query("kind == 'rollback'").iloc[-1]
    assert rollback["source"] == "ui" and rollback["detail"]["to_day"] == 1
    assert rollback["step"] == 10
    wait_for(lambda: c.run(run_id).branch == 1 and c.run(run_id).step >= 13, 120,
             "the run to go on from day 1")
    lr, old = curve(c, run_id, "learning_rate")
    assert lr[10] == pytest.approx(linear(10), rel=1e-9)    # day 1's schedule, the nudge undone
    assert applied in old                                   # the nudged steps are superseded
    c.stop(run_id)
    assert proc.wait(timeout=120) == 0
    log.close()
