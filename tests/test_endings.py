"""How a trainer process ends is how its run ends: sys.exit(1) is a crash with its code, Ctrl-C a
stop ("interrupted"), with or without ``with run:`` (real trainer subprocesses)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.conftest import TRAINERS, wait_for

pytestmark = pytest.mark.slow


def _ended(trainers, run_id):
    c = trainers.client
    wait_for(lambda: c.run(run_id).status in ("finished", "stopped", "crashed"), 120,
             "the run to end")
    record = c.run(run_id)
    last = c.events(run_id).iloc[-1]
    return record, last


@pytest.mark.parametrize("with_run", [True, False])
def test_sys_exit_1_inside_the_loop_is_a_crash(trainers, with_run):
    proc, run_id = trainers.start("--exit-at", "12", "--exit-code", "3", "--pace", "0.01",
                                  *([] if with_run else ["--no-with"]))
    assert proc.wait(timeout=120) == 3
    record, last = _ended(trainers, run_id)
    assert record.status == "crashed" and last.kind == "crashed"
    assert record.step == 12
    # with `with run:` the exception says it; without, babysit's sys.exit wrapper remembered it
    assert "exited with code 3" in record.error and "step 12" in record.error


def test_raise_system_exit_without_with_run_is_still_a_crash(trainers):
    """``raise SystemExit(3)`` bypasses sys.exit: the run still ends crashed, and says how to
    keep the code."""
    proc, run_id = trainers.start("--exit-at", "12", "--exit-code", "3", "--pace", "0.01",
                                  "--no-with", "--raise-exit")
    assert proc.wait(timeout=120) == 3
    record, last = _ended(trainers, run_id)
    assert record.status == "crashed" and last.kind == "crashed"
    assert "exited from inside the training loop at step 12" in record.error


def test_sys_exit_0_inside_the_loop_ends_as_a_normal_end(trainers):
    proc, run_id = trainers.start("--exit-at", "12", "--exit-code", "0", "--pace", "0.01")
    assert proc.wait(timeout=120) == 0
    record, last = _ended(trainers, run_id)
    assert record.status == "finished" and record.error is None


@pytest.mark.parametrize("with_run", [True, False])
def test_ctrl_c_stops_the_run_as_interrupted(trainers, with_run):
    proc, run_id = trainers.start("--sigint-at", "12", "--pace", "0.01",
                                  *([] if with_run else ["--no-with"]))
    assert proc.wait(timeout=120) in (1, -signal.SIGINT, 130)
    record, last = _ended(trainers, run_id)
    assert record.status == "stopped" and record.error == "interrupted"
    assert last.kind == "stopped" and last.detail == {"reason": "interrupted"}


def test_sys_exit_without_with_run_under_babysit_run_keeps_the_code(trainers):
    """`babysit run` sees the exit code the script's own trainer cannot (no `with run:`)."""
    proc = subprocess.run(
        [sys.executable, "-m", "babysit", "run", "--", sys.executable,
         str(TRAINERS / "tiny.py"), "--exit-at", "12", "--exit-code", "3", "--pace", "0.01",
         "--no-with"], env=trainers.env(), capture_output=True, text=True, timeout=180,
        cwd=trainers.root.parent)
    assert proc.returncode == 3, proc.stderr
    record = trainers.client.runs().iloc[-1]
    assert record["status"] == "crashed" and "exited with code 3" in record["error"]
