"""Every CLI verb against a real store and a real trainer process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from babysit.cli import build_parser
from tests.conftest import wait_for

README = Path(__file__).resolve().parent.parent / "README.md"


def cli(trainers, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "babysit", *args], env=trainers.env(),
                          capture_output=True, text=True, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_cli_verbs(trainers):
    _, run_id = trainers.start("--pace", "0.01", "--day", "20 steps")
    rid = str(run_id)
    c = trainers.client
    assert re.search(rf"^\s*{rid}\s+tiny-{rid}\s+tiny\s+running", cli(trainers, "ls").stdout, re.M)
    assert json.loads(cli(trainers, "ls", "--json").stdout)[0]["id"] == run_id
    assert "applied" in cli(trainers, "nudge", rid, "lr=0.02", "momentum=0.95").stdout
    assert c.run(run_id).hp["lr"] == 0.02
    events = c.events(run_id)
    assert events.query("kind == 'nudge'").source.tolist() == ["cli"]
    cli(trainers, "pause", rid)
    assert c.run(run_id).status == "paused"
    cli(trainers, "resume", rid)
    wait_for(lambda: len(c.checkpoints(run_id)) >= 3, 60, "day 2")
    assert "rolled back to day 1" in cli(trainers, "rollback", rid, "1", "lr=0.03").stdout
    assert "forked" in cli(trainers, "fork", rid, "--day", "1", "lr=0.01").stdout
    child = int(c.runs().id.max())
    assert c.run(child).parent_id == run_id
    assert "loss" in cli(trainers, "metrics", rid, "--name", "loss", "--tail", "3").stdout
    assert "rollback" in cli(trainers, "events", rid).stdout
    assert "day" in cli(trainers, "checkpoints", rid).stdout
    cli(trainers, "stop", str(child))
    cli(trainers, "stop", rid)
    assert c.run(run_id).status == "stopped"
    assert "restarted" in cli(trainers, "restart", rid).stdout
    wait_for(lambda: c.run(run_id).status == "running", 60, "restart")
    cli(trainers, "stop", rid)


@pytest.mark.slow
def test_cli_errors_are_clear_and_change_nothing(trainers):
    _, run_id = trainers.start("--pace", "0.01")
    rid = str(run_id)
    for args, message in [
        (("nudge", rid, "lr=nan"), "lr must be a finite number"),
        (("nudge", rid, "lr=-1"), "lr must be >= 0"),
        (("nudge", rid, "lr=fast"), "lr must be a number, got 'fast'"),
        (("nudge", rid, "lr"), "expected key=value"),
        (("nudge", "42", "lr=0.1"), "no run '42'"),
        (("rollback", rid, "999"), "has no checkpoint for day 999"),
        (("restart", rid), "only a crashed or stopped run"),
        (("resume", rid), "not paused"),
    ]:
        proc = cli(trainers, *args, ok=False)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert trainers.client.run(run_id).hp["lr"] == 0.05


@pytest.mark.slow
def test_babysit_run_supervises_a_script(trainers, tmp_path):
    script = Path(__file__).parent / "trainers" / "tiny.py"
    proc = cli(trainers, "run", "--", sys.executable, str(script), "--steps", "30", "--day",
               "10 steps")
    runs = trainers.client.runs()
    assert runs.status.tolist() == ["finished"] and runs.project.tolist() == ["tiny"]
    assert runs.name.tolist() == [f"tiny-{runs.id[0]}"]    # not the launch placeholder run-N
    assert runs.hp[0]["lr"] == 0.05
    assert proc.returncode == 0


def test_readme_documents_every_verb_option_and_variable():
    text = README.read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for verb, verb_parser in sub.choices.items():
        assert f"babysit {verb}" in text, f"README does not document `babysit {verb}`"
        for action in verb_parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert option in text, f"README does not document {verb} {option}"
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                assert option in text
    for variable in ("BABYSIT_ROOT", "BABYSIT_STORE_URL", "BABYSIT_RUN_ID", "BABYSIT_OPEN_RUN"):
        assert variable in text
