"""The study verbs of the CLI against a real store, real trial processes and a real
orchestrator process; and the README documents every one of them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from babysit.cli import build_parser
from tests.conftest import wait_for
from tests.test_cli import README, cli

TINY = str(Path(__file__).resolve().parents[1] / "trainers" / "tiny.py")


def _subparsers(parser):
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")


def test_readme_documents_every_study_verb_and_option():
    text = README.read_text()
    study = _subparsers(build_parser()).choices["study"]
    for verb, verb_parser in _subparsers(study).choices.items():
        assert f"babysit study {verb}" in text, f"README does not document `babysit study {verb}`"
        for action in verb_parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert option in text, f"README does not document study {verb} {option}"


@pytest.mark.slow
def test_study_verbs_end_to_end(trainers, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    c = trainers.client
    space = tmp_path / "space.yaml"
    space.write_text("lr: {scale: log, low: 1e-3, high: 0.5}\n")
    trial = ["--", sys.executable, TINY, "--day", "20 steps", "--pace", "0.02"]
    bad = cli(trainers, "study", "create", "bad", "--objective", "loss", "--space", str(space),
              "--stop", "nope", *trial, ok=False)
    assert bad.returncode == 2 and "stopping: unknown stopping rule 'nope'" in bad.stderr
    assert "Traceback" not in bad.stderr and c.store.list_studies() == []

    out = cli(trainers, "study", "create", "cli", "--objective", "loss", "--space", str(space),
              "--strategy", "random", "--seed", "5", "--runs", "2", "--days", "1000",
              "--parallel", "2", "--stop", "threshold:1:0.0", "--autopilot", "supervised",
              *trial)
    assert "study 1 (cli) created" in out.stdout
    assert c.study("cli").stopping == [{"rule": "threshold", "day": 1, "worse_than": 0.0}]
    assert c.study("cli").command["argv"][-4:] == ["--day", "20 steps", "--pace", "0.02"]
    assert "orchestrator started" in cli(trainers, "study", "launch", "cli").stdout

    # every run is worse than 0.0 at day 1: a stop is proposed for each, and waits
    wait_for(lambda: len(c.decisions("cli", status="proposed")) == 2, 120, "two proposals")
    listed = json.loads(cli(trainers, "study", "decisions", "cli", "--status", "proposed",
                            "--json").stdout)
    (keep, kept_run), (drop, dropped_run) = [(d["id"], d["run_id"]) for d in listed]
    assert "worse than 0" in cli(trainers, "study", "decisions", "cli").stdout
    assert "vetoed" in cli(trainers, "study", "veto", str(keep)).stdout
    assert "approved" in cli(trainers, "study", "approve", str(drop)).stdout
    again = cli(trainers, "study", "approve", str(keep), ok=False)
    assert again.returncode == 2 and "already vetoed by cli" in again.stderr
    wait_for(lambda: c.run(dropped_run).status == "stopped", 60, "the approved stop")
    stop = c.events(dropped_run).query("kind == 'stop'").iloc[-1]
    assert stop.source == "autopilot" and "worse than 0" in stop.detail["reason"]
    assert c.run(kept_run).status == "running"

    listing = cli(trainers, "study", "list").stdout
    assert "cli" in listing and "running" in listing and "2/2" in listing
    assert json.loads(cli(trainers, "study", "list", "--json").stdout)[0]["name"] == "cli"
    shown = cli(trainers, "study", "show", "cli").stdout
    assert "objective: loss (min)" in shown and "cli-0" in shown and "cli-1" in shown
    assert len(json.loads(cli(trainers, "study", "show", "cli", "--json").stdout)["runs"]) == 2
    assert "best run" in cli(trainers, "study", "best", "cli").stdout
    cli(trainers, "study", "autopilot", "cli", "off")
    assert c.study("cli").autopilot == "off"

    assert "stopped" in cli(trainers, "study", "stop", "cli").stdout
    assert c.study("cli").status == "stopped" and not c.orchestrator_alive("cli")
    assert c.run(kept_run).status == "stopped"
    assert c.decisions("cli").set_index("id").status.to_dict() == {keep: "vetoed",
                                                                   drop: "applied"}
