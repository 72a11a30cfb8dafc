"""Store.events can read just the events a client needs to confirm one command."""

from __future__ import annotations

from babysit.store import Store
from babysit.store.outbox import EventRow


def test_events_filtered_by_kind_and_step(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'babysit.db'}", tmp_path)
    try:
        run = store.create_run(project="p", name="n", config={}, hp={}, day_spec="10 steps")
        store.apply([EventRow(run, 5, 1, "nudge", "ui", {"lr": {"old": 1, "new": 2}}, 0),
                     EventRow(run, 5, 1, "pause", "ui", {}, 0),
                     EventRow(run, 9, 1, "nudge", "cli", {"lr": {"old": 2, "new": 3}}, 0)])
        assert len(store.events(run)) == 3
        nudges = store.events(run, kind="nudge")
        assert list(nudges["step"]) == [5, 9]
        at5 = store.events(run, kind="nudge", step=5)
        assert list(at5["source"]) == ["ui"] and at5["detail"].iloc[0]["lr"]["new"] == 2
        assert list(store.events(run, step=5)["kind"]) == ["nudge", "pause"]
        assert store.events(run, kind="stop").empty
    finally:
        store.close()
