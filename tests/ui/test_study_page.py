"""The Study page rendered headless with Streamlit's AppTest, on real stores.

The study's runs are real babysit runs trained in this process (bound to the study's run rows
the way a launched trial binds); the autopilot's decisions and an exploit event are written
through the store, as the orchestrator writes them.
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

import babysit
from babysit.ui.auth import TOKEN_ENV
from tests.conftest import wait_for

TOKEN = "study-page-test-token"      # this server start's secret, passed as ?token=

PAGE = "from babysit.ui.views import study as page\npage.render()\n"
SPACE = {"lr": {"scale": "log", "low": 1e-3, "high": 1.0},
         "momentum": {"scale": "one_minus_log", "low": 0.5, "high": 0.99}}
DEMO = [sys.executable, "-m", "babysit.demo", "--pace", "0"]


@pytest.fixture(autouse=True)
def local_server(monkeypatch):
    """As in test_app: the server binds 127.0.0.1; cached handles are cleared after each test."""
    old = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    monkeypatch.delenv("BABYSIT_STORE_URL", raising=False)
    monkeypatch.delenv("BABYSIT_RUN_ID", raising=False)
    yield
    st_config.set_option("server.address", old)
    import streamlit as st
    st.cache_resource.clear()
    st.cache_data.clear()


def train(root: Path, run_id: int, monkeypatch, steps: int = 60) -> None:
    """Train the study's run ``run_id`` here, as its launched trial would: val_loss per day."""
    monkeypatch.setenv("BABYSIT_RUN_ID", str(run_id))
    run = babysit.init(project="sweep", config={"lr": 0.1, "momentum": 0.9}, root=root,
                       day="20 steps")
    monkeypatch.delenv("BABYSIT_RUN_ID")
    model = torch.nn.Linear(2, 1)
    run.attach(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=run.hp["lr"],
                                                      momentum=run.hp["momentum"]))
    # a loss that is best at lr = 0.03, so the objective differs between runs
    quality = abs(math.log10(run.hp["lr"]) - math.log10(0.03))

    @run.on_day_end
    def validate(day: int) -> None:
        run.log(val_loss=quality + 1.0 / day)

    for step in run.loop(steps=steps):
        run.log(loss=quality + 1.0 / (1 + step))
    run.finish()


@pytest.fixture
def study_store(tmp_path, monkeypatch) -> dict:
    """A PBT study in supervised mode: 3 finished runs, an exploit event, 2 proposed decisions."""
    root = tmp_path / "store"
    client = babysit.Client(root)
    sid = client.create_study("sweep", objective="val_loss", space=SPACE, strategy="pbt",
                              budget={"runs": 3, "days": 3, "parallel": 3}, command=DEMO,
                              autopilot="supervised")
    ids = []
    for i, (lr, momentum) in enumerate([(0.003, 0.9), (0.03, 0.95), (0.5, 0.6)]):
        rid = client.launch(DEMO, project="sweep", name=f"sweep-{i}", hp={"lr": lr, "momentum": momentum},
                            study_id=sid, trial=i, max_days=3, detach=False)
        train(root, rid, monkeypatch)
        ids.append(rid)
    client.store.add_event(ids[2], 40, 3, "exploit", "autopilot",
                           {"from_run": ids[1], "from_day": 2,
                            "explore": {"lr": {"old": 0.5, "new": 0.036}}}, 0)
    decisions = [client.store.add_decision(sid, ids[2], "exploit", {
        "donor": ids[1], "donor_day": 3, "day": 3, "reason": f"run {ids[2]} in bottom 25%",
        "ops": [{"name": "lr", "old": 0.03, "new": 0.036, "how": "perturb x1.2"}],
        "new_hp": {"lr": 0.036, "momentum": 0.95}}) for _ in range(2)]
    monkeypatch.setenv("BABYSIT_ROOT", str(root))
    yield {"root": root, "client": client, "study": sid, "runs": ids, "decisions": decisions}
    client.close()


def render(**query) -> AppTest:
    """The page in a session that opened the link `babysit ui` printed (token and all)."""
    os.environ[TOKEN_ENV] = TOKEN        # how the launcher hands it to the server
    at = AppTest.from_string(PAGE, default_timeout=60)
    at.query_params["token"] = TOKEN
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    return at


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(at: AppTest, kind: str) -> str:
    """What the user reads: user-supplied text is sent as Markdown with every punctuation
    character backslash-escaped (babysit.ui.text.md), which renders as the text itself."""
    return re.sub(r"\\(.)", r"\1", " ".join(str(e.value) for e in getattr(at, kind)))


def test_renders_on_an_empty_store_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("BABYSIT_ROOT", str(tmp_path / "nothing"))
    at = render()
    no_exceptions(at)
    assert "No studies yet" in texts(at, "info")
    assert at.button(key="study_launch")                  # the form is there
    # the trial command is picked from a list (demo, runs' and studies' commands), never typed
    assert at.selectbox(key="study_command").value == "the built-in demo task"
    assert at.selectbox(key="study_command").options == ["the built-in demo task"]
    assert not (tmp_path / "nothing").exists()            # looking never creates a store


def test_renders_a_study_with_its_runs(study_store):
    at = render(study=str(study_store["study"]))
    no_exceptions(at)
    assert not at.error, texts(at, "error")
    assert "Each hyperparameter against the objective" in texts(at, "subheader")
    assert "Family tree" in texts(at, "subheader")
    # curves, parallel coordinates, one chart per hyperparameter, the family tree
    charts = [c for c in at.get("plotly_chart")]
    assert len(charts) >= 5
    assert "Importance needs 5 finished runs" in texts(at, "caption")
    assert at.metric[1].value == "3 / 3"                  # runs done
    pending = [b for b in at.button if b.key and b.key.startswith("study_approve_")]
    assert len(pending) == 2
    assert "copies run" in texts(at, "markdown")


def test_approve_and_veto_buttons_decide_through_the_api(study_store):
    client, (first, second) = study_store["client"], study_store["decisions"]
    at = render(study=str(study_store["study"]))
    at.button(key=f"study_approve_{first}").click().run()
    no_exceptions(at)
    assert not at.error, texts(at, "error")
    assert f"decision {first} approved" in texts(at, "success")
    decided = client.store.get_decision(first)
    assert (decided.status, decided.decided_by) == ("approved", "ui")

    at.button(key=f"study_veto_{second}").click().run()
    assert not at.error, texts(at, "error")
    decided = client.store.get_decision(second)
    assert (decided.status, decided.decided_by) == ("vetoed", "ui")
    assert not [b for b in at.button if b.key and b.key.startswith("study_approve_")]


def test_autopilot_switch_sets_the_mode(study_store):
    client, sid = study_store["client"], study_store["study"]
    at = render(study=str(sid))
    at.radio(key=f"study_autopilot_{sid}_supervised").set_value("off").run()
    no_exceptions(at)
    assert client.study(sid).autopilot == "off"
    assert "autopilot off" in texts(at, "success")


def test_manual_exploit_needs_a_live_target(study_store):
    at = render(study=str(study_store["study"]))
    no_exceptions(at)
    assert "an exploit needs a live target" in texts(at, "caption")
    assert not [b for b in at.button if b.key == f"study_exploit_{study_store['study']}"]


@pytest.mark.slow
def test_manual_exploit_copies_a_days_weights_into_a_live_run(trainers, monkeypatch):
    """ "Copy run A's day-1 weights into run B" from the page, between two real trainers."""
    from tests.conftest import TRAINERS

    client, root = trainers.client, trainers.root
    argv = [sys.executable, str(TRAINERS / "tiny.py"), "--pace", "0.02", "--day", "20 steps"]
    sid = client.create_study("live", objective="loss", space=SPACE, command=argv,
                              cwd=str(root.parent))
    a, b = (client.launch(argv, project="live", hp={"lr": lr, "momentum": 0.9}, study_id=sid,
                          trial=i, cwd=str(root.parent)) for i, lr in enumerate((0.05, 0.01)))
    wait_for(lambda: client.store.checkpoint(a, 1) is not None, 60, "run a's day 1")
    wait_for(lambda: client.run(b).status == "running", 60, "run b to run")
    monkeypatch.setenv("BABYSIT_ROOT", str(root))
    at = render(study=str(sid))
    no_exceptions(at)
    at.selectbox(key=f"study_exploit_target_{sid}").set_value(b).run()
    at.selectbox(key=f"study_exploit_donor_{sid}").set_value(a).run()
    at.selectbox(key=f"study_exploit_day_{sid}").set_value(1)
    at.text_input(key=f"study_exploit_hp_{sid}").set_value("lr=0.02")
    at.button(key=f"study_exploit_{sid}").click().run()
    no_exceptions(at)
    assert not at.error, texts(at, "error")
    assert f"run #{b} now continues from the end of run #{a}'s day 1 with lr=0.02" in texts(at, "success")
    exploit = client.events(b).query("kind == 'exploit'").iloc[-1]
    assert exploit.source == "ui"
    assert (exploit.detail["from_run"], exploit.detail["from_day"]) == (a, 1)
    assert client.run(b).hp["lr"] == 0.02


@pytest.mark.parametrize(("fill", "field_error"), [
    ({"study_name": "sweep"}, "a study named 'sweep' already exists"),
    ({"study_name": ""}, "the study needs a name"),
    ({"study_name": "new", "study_space_source": "YAML / TOML / JSON",
      "study_space_text": "lr: {scale: log, low: 1, high: 0.1}"}, "low must be < high"),
    ({"study_name": "new", "study_space_source": "YAML / TOML / JSON",
      "study_space_text": "lr: {scale: log, low: 0, high: 1}"}, "scale 'log' needs low > 0"),
])
def test_a_bad_form_entry_shows_an_error_and_creates_nothing(study_store, fill, field_error):
    client = study_store["client"]
    at = render()
    for key, value in fill.items():
        widget = at.radio(key=key) if key == "study_space_source" else \
            at.text_area(key=key) if key == "study_space_text" else at.text_input(key=key)
        widget.set_value(value)
        at.run()
    at.button(key="study_launch").click().run()
    no_exceptions(at)
    assert field_error in texts(at, "error")
    assert list(client.studies()["name"]) == ["sweep"]


@pytest.mark.slow
def test_launch_from_the_form_creates_and_starts_a_study(tmp_path, monkeypatch):
    root = tmp_path / "fresh"
    monkeypatch.setenv("BABYSIT_ROOT", str(root))
    at = render()
    at.text_input(key="study_name").set_value("first")
    at.number_input(key="study_runs").set_value(2)
    at.number_input(key="study_days").set_value(1)
    at.button(key="study_launch").click().run()
    no_exceptions(at)
    assert not at.error, texts(at, "error")
    client = babysit.Client(root)
    try:
        record = client.study("first")
        assert record.budget == {"runs": 2, "days": 1, "parallel": 2}
        assert record.space == {"lr": {"scale": "log", "low": 0.001, "high": 1.0},
                                "momentum": {"scale": "one_minus_log", "low": 0.5, "high": 0.99}}
        assert record.command["argv"][:2] == ["-m", "babysit.demo"]
        wait_for(lambda: client.orchestrator_alive("first"), 30, "the orchestrator")
        assert "launched" in texts(at, "success")
    finally:
        client.stop_study("first", timeout=30)
        client.close()


def test_runs_page_lists_study_runs_with_an_open_study_button(study_store):
    at = AppTest.from_string("from babysit.ui.views import runs as page\npage.render()\n",
                             default_timeout=60)
    at.run()
    no_exceptions(at)
    assert sorted(at.dataframe[0].value["id"]) == sorted(study_store["runs"])
    assert at.button(key="runs_open_study").disabled          # nothing selected yet
