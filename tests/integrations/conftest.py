"""Shared helpers for the framework integration tests: no network, trainers built in code."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

import pytest

import babysit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TRAINERS = Path(__file__).parent / "trainers"
sys.path.insert(0, str(TRAINERS))


def curve(client, run_id: int, name: str = "loss") -> tuple[dict[int, float], dict[int, float]]:
    """(live branch, superseded) values of one metric, by step."""
    m = client.metrics(run_id, [name], include_superseded=True)
    live = {int(r.step): float(r.value) for r in m[~m["superseded"]].itertuples()}
    old = {int(r.step): float(r.value) for r in m[m["superseded"]].itertuples()}
    return live, old


def half_lr(c, lr_then: float, how: str):
    """A nudge that halves the lr: ``scale`` (the trainer computes it from the live value at
    the applying step) or an absolute ``lr`` computed here from the schedule."""
    if how == "scale":
        if "scale" not in inspect.signature(babysit.Client.nudge).parameters:
            pytest.skip("Client.nudge(scale=...) of issue 9 is not on this branch yet")
        return lambda run_id: c.nudge(run_id, scale={"lr": 0.5}, wait=False)
    return lambda run_id: c.nudge(run_id, lr=lr_then * 0.5, wait=False)
