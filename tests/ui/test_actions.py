"""The dashboard's handlers: parsing and validation happen before anything is sent."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from babysit.errors import InvalidValue
from babysit.store import Store
from babysit.ui import actions


class RecordingClient:
    """Stands in for the Client's command side only, to prove what is (or is not) sent; its
    answer carries the trainer's account, which is all a confirmation may show."""

    def __init__(self, hp: dict, detail: dict | None = None):
        self.hp = hp
        self.detail = detail or {}
        self.sent: list[tuple] = []

    def run(self, run_id):
        return type("R", (), {"hp": self.hp})()

    def nudge(self, run_id, hp=None, /, **kw):
        self.sent.append(("nudge", run_id, hp, kw))
        return type("Result", (), {"step": 7, "detail": self.detail})()

    def rollback(self, *a, **kw):
        self.sent.append(("rollback", a, kw))

    def fork(self, *a, **kw):
        self.sent.append(("fork", a, kw))
        return 9


def test_relative_buttons_post_factors_and_show_the_trainers_account():
    """×0.5 / ×2 post scale, momentum more / less post scale_1m; the line shown is the
    trainer's detail (lr 0.0125 → 0.00625), not a value computed from the configured 0.1."""
    trainer_says = {"lr": {"old": 0.0125, "new": 0.00625, "op": "scale", "arg": 0.5}}
    client = RecordingClient({"lr": 0.1, "momentum": 0.9}, trainer_says)
    assert actions.lr_times(client, np.int64(3), 0.5) == "lr 0.0125 → 0.00625 applied at step 7"
    assert client.sent[-1] == ("nudge", 3, None, {"scale": {"lr": 0.5}, "source": "ui",
                                                   "timeout": actions.ACTION_TIMEOUT_S})
    assert type(client.sent[-1][1]) is int
    actions.lr_times(client, 3, 2)
    assert client.sent[-1][3]["scale"] == {"lr": 2.0}
    actions.momentum_nudge(client, 3, "more")
    assert client.sent[-1][3]["scale_1m"] == {"momentum": 0.5}
    actions.momentum_nudge(client, 3, "less")
    assert client.sent[-1][3]["scale_1m"] == {"momentum": 2.0}
    assert "0.1" not in actions.set_value(client, 3, "weight_decay", "1e-4")
    assert client.sent[-1][2] == {"weight_decay": 1e-4}
    sent = len(client.sent)
    for bad in (lambda: actions.lr_times(client, 3, math.nan),
                lambda: actions.lr_times(client, 3, 0),
                lambda: actions.momentum_nudge(client, 3, "sideways")):
        with pytest.raises(InvalidValue):
            bad()
    assert len(client.sent) == sent
    assert actions.lr_times(RecordingClient({"lr": 0.1}), 3, 0.5) == "nudge applied at step 7"


@pytest.mark.parametrize("text", ["nan", "-1", "abc", "", "inf", "0"])
def test_bad_lr_text_is_refused_and_nothing_is_sent(text):
    client = RecordingClient({"lr": 0.1})
    with pytest.raises(InvalidValue, match="lr"):
        actions.set_value(client, 1, "lr", text)
    assert client.sent == []


def test_parse_number_names_the_value():
    assert actions.parse_number(" 1e-3 ", "lr") == 0.001
    with pytest.raises(InvalidValue, match="lr must be a number, got 'abc'"):
        actions.parse_number("abc", "lr")
    with pytest.raises(InvalidValue, match="momentum"):
        actions.parse_number("1.5", "momentum")


def test_overrides_and_rollback_confirmation():
    assert actions.parse_overrides("lr=0.1 momentum=0.95") == {"lr": 0.1, "momentum": 0.95}
    assert actions.parse_overrides("lr=0.1,\nbatch=64") == {"lr": 0.1, "batch": 64}
    assert actions.parse_overrides("  ") == {}
    client = RecordingClient({"lr": 0.1})
    for bad in ("lr", "lr=abc", "lr=nan", "lr=-1"):
        with pytest.raises(InvalidValue):
            actions.fork(client, 1, 2, bad)
    with pytest.raises(InvalidValue, match="confirmation"):
        actions.rollback(client, 1, 2, confirmed=False)
    with pytest.raises(InvalidValue, match="day"):
        actions.rollback(client, 1, "-2", confirmed=True)
    assert client.sent == []
    message, child = actions.fork(client, 1, 2, "lr=0.02")
    assert child == 9 and "lr=0.02" in message


def test_password_and_locality():
    assert actions.password_ok("s3cret", "s3cret")
    assert not actions.password_ok("wrong", "s3cret")
    assert not actions.password_ok("", "")
    assert not actions.password_ok("x", None)
    assert actions.is_local("127.0.0.1", "localhost:8501")
    assert actions.is_local("localhost", None)
    assert actions.is_local("::1", "[::1]:8501")
    assert not actions.is_local(None, "localhost:8501")          # bound to every interface
    assert not actions.is_local("0.0.0.0", "localhost:8501")
    assert not actions.is_local("127.0.0.1", "evil.example:8501")  # DNS rebinding


def test_runs_table_marks_bad_runs_and_best_val():
    runs = pd.DataFrame([
        {"id": 1, "project": "p", "name": "a", "status": "crashed", "day": 2, "step": 40,
         "hp": {"lr": 0.1, "momentum": 0.9}, "parent_id": None, "parent_day": None,
         "heartbeat_age": 3.0, "error": "boom"},
        {"id": 2, "project": "p", "name": "b", "status": "running", "day": 1, "step": 20,
         "hp": {"lr": 0.05}, "parent_id": 1, "parent_day": 1, "heartbeat_age": None,
         "error": None},
    ])
    ck = pd.DataFrame({"day": [0, 1, 2], "metrics": [{"val_loss": 0.5}, {"val_loss": 0.3},
                                                      {"val_loss": 0.4}]})
    assert actions.best_val(ck) == "val_loss 0.3 (day 1)"
    acc = pd.DataFrame({"day": [0, 1], "metrics": [{"val_acc": 0.5}, {"val_acc": 0.3}]})
    assert actions.best_val(acc) == "val_acc 0.5 (day 0)"
    table = actions.runs_table(runs, {1: 0.7, 2: None}, {1: "val_loss 0.3 (day 1)"})
    assert table.loc[0, "status"] == "💥 crashed"
    assert table.loc[1, "parent"] == "#1, end of day 1"
    assert table.loc[0, "heartbeat"] == "3s ago"
    assert table.loc[0, "lr"] == 0.1
    # the effective value the trainer reports wins over the configured one
    now = actions.runs_table(runs.assign(effective=[{"lr": 0.025, "momentum": 0.95}, {}]),
                             {}, {})
    assert now.loc[0, ["lr", "momentum"]].tolist() == [0.025, 0.95]
    assert now.loc[1, "lr"] == 0.05


def test_events_table_newest_first(tmp_path):
    store = Store.open(tmp_path)
    run_id = store.create_run(project="p", name="a", status="running", config={}, hp={},
                              strict=False, day_spec="")
    store.add_event(run_id, 5, 1, "nudge", "ui", {"lr": {"old": 0.1, "new": 0.05}}, 0)
    store.add_event(run_id, 9, 1, "pause", "cli", {}, 0)
    table = actions.events_table(store.events(run_id))
    assert list(table["kind"]) == ["pause", "nudge"]
    assert table.loc[1, "what"].startswith("nudge lr 0.1 → 0.05")
    store.close()
