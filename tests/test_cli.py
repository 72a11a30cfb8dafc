"""Every CLI verb against a real store and a real trainer process."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
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
    assert "rolled back to the end of day 1" in cli(trainers, "rollback", rid, "1", "lr=0.03").stdout
    assert f"forked from run {rid} at the end of day 1" in \
        cli(trainers, "fork", rid, "--day", "1", "lr=0.01").stdout
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


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process (same code path as `python -m babysit`), for the quick checks."""
    from babysit.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


READ_VERBS = [["ls"], ["ls", "--json"], ["metrics", "1"], ["events", "1"], ["checkpoints", "1"],
              ["study", "list"], ["study", "show", "s"], ["study", "best", "s"],
              ["study", "decisions", "s"], ["retest", "1", "--report"]]


@pytest.mark.parametrize("verb", READ_VERBS, ids=" ".join)
def test_read_commands_never_create_a_store(tmp_path, capsys, verb):
    """Issue 10: a read on a missing store says so; it never makes an empty one appear (the
    next run would get id 1 again and could delete a live orphan's checkpoints)."""
    root = tmp_path / "gone"
    code, out, err = run_main(capsys, "--root", str(root), *verb)
    assert code == 2 and out == ""
    assert f"babysit: error: no babysit store at {root}" in err
    assert not root.exists()


def test_a_malformed_store_is_a_babysit_error_not_a_traceback(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    (root / "babysit.db").write_bytes(b"this is not a database\x00" * 200)
    for verb in (["ls"], ["events", "1"], ["study", "list"], ["nudge", "1", "lr=0.1"]):
        proc = subprocess.run([sys.executable, "-m", "babysit", "--root", str(root), *verb],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (verb, proc.stderr)
        assert proc.stderr.startswith("babysit: error: "), (verb, proc.stderr)
        assert "Traceback" not in proc.stderr and "sqlalchemy" not in proc.stderr.lower()


@pytest.mark.slow
def test_cli_text_is_safe_and_local_and_json_stays_exact(trainers):
    """Issue 10 item 4 and issue 15 item 8: a run name with terminal escapes never reaches the
    terminal raw (ls, events, metrics...); text shows local clock times, --json epoch seconds
    and the exact name."""
    from datetime import datetime, timedelta, timezone

    _, run_id = trainers.start("--pace", "0.01", "--day", "10 steps")
    evil = "\x1b[2J\x1b]0;pwned\x07run\u202egpj.exe\rX"
    trainers.client.store.update_run(run_id, name=evil)
    env = dict(trainers.env(), TZ="XYZ-05:30")   # POSIX TZ: local clock = UTC + 5:30
    run = lambda *a: subprocess.run([sys.executable, "-m", "babysit", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    for verb in (["ls"], ["events", str(run_id)], ["metrics", str(run_id), "--tail", "2"],
                 ["checkpoints", str(run_id)], ["nudge", evil, "lr=0.02"]):
        proc = run(*verb)
        for stream in (proc.stdout, proc.stderr):
            assert not any(ch in stream for ch in "\x1b\x07\r\u202e"), (verb, stream)
    listing = run("ls").stdout
    assert "\\x1b[2J\\x1b]0;pwned\\x07run\\u202egpj.exe\\rX" in listing
    assert json.loads(run("ls", "--json").stdout)[0]["name"] == evil
    events = json.loads(run("events", str(run_id), "--json").stdout)
    text = run("events", str(run_id)).stdout
    shown = datetime.fromtimestamp(events[0]["time"], timezone(timedelta(hours=5, minutes=30)))
    assert shown.strftime("%Y-%m-%d %H:%M:%S") in text
    assert isinstance(events[0]["time"], float)


@pytest.mark.slow
def test_metrics_into_head_ends_quietly(trainers, tmp_path):
    script = Path(__file__).parent / "trainers" / "tiny.py"
    cli(trainers, "run", "--", sys.executable, str(script), "--steps", "1500", "--day",
        "500 steps")
    proc = subprocess.Popen([sys.executable, "-m", "babysit", "metrics", "1"],
                            env=trainers.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()   # head -1
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err and not err


@pytest.mark.slow
def test_babysit_run_records_the_absolute_interpreter_so_forks_work_without_the_venv(
        trainers, tmp_path):
    """Issue 9 item 6: `babysit run -- python train.py` records where `python` was; a fork
    started from a shell whose PATH lacks the venv still runs the same interpreter."""
    script = Path(__file__).parent / "trainers" / "tiny.py"
    venv_bin = str(Path(sys.executable).parent)
    env = dict(trainers.env(), PATH=os.pathsep.join([venv_bin, "/usr/bin", "/bin"]))
    assert shutil.which("python", path=env["PATH"]) == os.path.join(venv_bin, "python")
    proc = subprocess.run([sys.executable, "-m", "babysit", "run", "--detach", "--", "python",
                           str(script), "--pace", "0.01", "--day", "10 steps"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    c = trainers.client
    [run_id] = c.runs()["id"].tolist()
    assert c.run(run_id).launch["executable"] == os.path.join(venv_bin, "python")
    wait_for(lambda: len(c.checkpoints(run_id)) >= 2, 90, "day 1")
    bare = dict(env, PATH="/usr/bin:/bin")       # no venv: `python` is another one, or none
    fork = subprocess.run([sys.executable, "-m", "babysit", "fork", str(run_id), "--day", "1"],
                          env=bare, capture_output=True, text=True, timeout=120)
    assert fork.returncode == 0, fork.stderr
    child = int(c.runs()["id"].max())
    wait_for(lambda: len(c.metrics(child)) > 0 or c.check_runs(child), 90, "the fork to train")
    assert c.run(child).status == "running", c.run(child).error


@pytest.mark.slow
def test_crash_reasons_say_what_is_known(trainers, tmp_path):
    """Issue 9 item 6: exit code or signal and host; never "on None"."""
    host = socket.gethostname()
    quitter = tmp_path / "quit.py"
    quitter.write_text("import sys\nsys.exit(3)\n")
    proc = cli(trainers, "run", "--", sys.executable, str(quitter), ok=False)
    assert proc.returncode == 3
    c = trainers.client
    [first] = c.runs()["id"].tolist()
    assert re.fullmatch(rf"process \d+ on {re.escape(host)} ended with exit code 3",
                        c.run(first).error)
    crashed = c.events(first).query("kind == 'crashed'")
    assert crashed.source.tolist() == ["monitor"]
    trainer, second = trainers.start("--pace", "0.01")
    trainer.kill()
    trainer.wait()
    assert f"{second}" in cli(trainers, "ls").stdout
    record = c.run(second)
    assert record.status == "crashed"
    assert record.error == f"process {record.pid} on {host} ended without finishing"
    assert "None" not in record.error


def test_ls_shows_what_the_optimizer_uses_beside_the_configured_value():
    from babysit.cli import _now

    assert _now({"lr": 0.05, "momentum": 0.9}, {"lr": 0.0125, "momentum": 0.95}) == \
        "lr 0.0125 · schedule ×0.25 of 0.05  momentum 0.95 · configured 0.9"
    assert _now({"lr": 0.05, "momentum": 0.9}, {}) == "lr 0.05  momentum 0.9"   # not reported yet
    assert _now({"clip": 1}, {}) == ""
