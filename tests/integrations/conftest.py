"""Shared helpers for the framework integration tests: no network, trainers built in code."""

from __future__ import annotations

import os
import sys
from pathlib import Path

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
