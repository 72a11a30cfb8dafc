"""Exact resume, the loud part: when the data position cannot be restored (the loader changed
between two processes of a run), the resumed run says so and is marked non-reproducible.

(Bit-exact resume itself is proven in tests/test_process.py.)"""

from __future__ import annotations

import pytest

from tests.conftest import wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


@pytest.mark.parametrize("change,why", [
    ("generator", "generators differ"),      # the loader gained a generator of its own
    ("short", "data position"),               # 4 batches per epoch; day 1 ends at batch 20
])
def test_a_resume_that_cannot_be_exact_says_so(trainers, forked, change, why):
    pid, run_id = forked.start("--pace", "0.01", "--day", "20 steps",
                               "--changed-loader-on-restart", change)
    c = forked.client
    wait_for(lambda: len(c.checkpoints(run_id)) >= 2, 60, "day 1")
    forked.kill(pid, run_id)
    assert c.run(run_id).reproducible
    c.restart(run_id, day=1)     # step 20: in the middle of the first epoch

    def event():
        found = c.events(run_id).query("kind == 'not_reproducible'")
        return found.iloc[-1].to_dict() if len(found) else None
    found = wait_for(event, 60, "the not_reproducible event")
    assert why in found["detail"]["reason"]
    assert found["step"] == 20
    wait_for(lambda: not c.run(run_id).reproducible, 10, "the run marked non-reproducible")
    assert bool(c.runs().query(f"id == {run_id}").reproducible.iloc[0]) is False
    log = (c.store.root / "runs" / str(run_id) / "process.log").read_text()
    assert "no longer exactly reproducible" in log
    trainers.wait_step(run_id, 30)        # loudly, but it goes on
    c.stop(run_id)
