"""The headline control under a schedule, in the browser: lr ×0.5 halves the lr the optimizer
uses at the step where it applies (read from the trainer's own log), whatever the schedule did
before, and the page says what the trainer applied (issue 9)."""

from __future__ import annotations

import pytest

from babysit.format import fmt
from tests.conftest import wait_for
from tests.e2e.test_browser import (  # noqa: F401 - server: the fixture
    CHROMIUM,
    FIRST_DRAW_MS,
    TOKEN,
    server,
)
from tests.test_nudges import plain_schedule

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _commands(c, run_id: int) -> list[tuple]:
    """The run's commands as the store has them: who sent what, when, and what became of it."""
    import sqlalchemy as sa
    query = sa.text("select id, kind, source, status, step, created, done from commands "
                    "where run_id = :run order by id")
    return c.store.read(lambda conn: [tuple(r) for r in conn.execute(query, {"run": run_id})])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
@pytest.mark.parametrize("scheduler", ["step", "warmup_cosine"])
def test_lr_x05_in_the_browser_halves_the_scheduled_lr(trainers, server, scheduler):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    _, run_id = trainers.start("--pace", "0.03", "--scheduler", scheduler, "--lr", "0.1",
                               "--log-lr", "--day", "20 steps")
    c = trainers.client
    trainers.wait_step(run_id, 25)                # the schedule has moved the lr from 0.1
    wait_for(lambda: c.run(run_id).effective.get("lr") not in (None, 0.1), 30,
             "the trainer to report a scheduled lr")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        # Paused while the page loads (tens of seconds on loaded CI cores): else the schedule
        # decays the lr to nothing (step: ×0.5 every 10 steps; cosine: 0 from step 410) before
        # the click. It trains again before the click, so the nudge meets a live schedule.
        c.pause(run_id)
        page.goto(f"{server}/run?run={run_id}&token={TOKEN}")
        button = page.get_by_role("button", name="lr ×0.5")
        expect(button).to_be_enabled(timeout=FIRST_DRAW_MS)
        # the header shows the effective lr beside the configured one, not the configured alone
        expect(page.get_by_text("schedule ×").first).to_be_visible(timeout=30_000)
        c.resume(run_id)
        button.click()
        wait_for(lambda: len(c.events(run_id).query("kind == 'nudge'")), 30, "the UI nudge")
        event = c.events(run_id).query("kind == 'nudge'").iloc[-1]
        n = int(event.step)
        assert event.source == "ui" and event.detail["lr"]["op"] == "scale"
        # the confirmation is the trainer's account: its old -> new at its step
        message = f"lr {fmt(event.detail['lr']['old'], 6)} → {fmt(event.detail['lr']['new'], 6)}"
        expect(page.get_by_text(f"{message} applied at step {n}")).to_be_visible(timeout=30_000)
        browser.close()
    trainers.wait_step(run_id, n + 10)
    nudges = c.events(run_id).query("kind == 'nudge'")
    # one click, one nudge (a CI run once saw two: the commands show whether the page sent two)
    assert len(nudges) == 1, (nudges[["step", "source", "detail"]].to_string(),
                              _commands(c, run_id))
    used = c.metrics(run_id, ["used_lr0"]).set_index("step").value
    plain = [lrs[0] for lrs in plain_schedule(scheduler, 0.1, int(used.index.max()) + 50)]
    assert plain[n] != 0.1
    assert used[n - 1] == plain[n - 1]                       # before: the schedule's own lr
    assert used[n] == plain[n] * 0.5                          # at the applying step: half
    assert event.detail["lr"]["old"] == plain[n] and event.detail["lr"]["new"] == plain[n] * 0.5
    for step in used.index[used.index >= n]:                  # and the schedule goes on, halved
        assert used[step] == pytest.approx(plain[step] * 0.5, rel=1e-9), step
