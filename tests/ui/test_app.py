"""The dashboard rendered headless with Streamlit's AppTest, on real stores and real trainers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

import babysit
from babysit.ui import auth
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "babysit" / "ui" / "app.py")
PAGES = ("runs", "run", "compare", "lineage")
TOKEN = "test-token-0123456789"     # this server start's secret: the tests pass it as ?token=


def page_script(name: str) -> str:
    return (f"from babysit.ui.views import {name} as page\n"
            "page.render()\n")


def render(name: str) -> AppTest:
    at = AppTest.from_string(page_script(name), default_timeout=30)
    at.run()
    return at


@pytest.fixture(autouse=True)
def local_server(monkeypatch):
    """Pretend the server binds 127.0.0.1, as `babysit ui` does, with a known token; clear
    cached handles."""
    old = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    monkeypatch.delenv("BABYSIT_STORE_URL", raising=False)
    monkeypatch.delenv("BABYSIT_OPEN_RUN", raising=False)
    auth.forget()
    monkeypatch.setenv(auth.TOKEN_ENV, TOKEN)
    yield
    auth.forget()
    st_config.set_option("server.address", old)
    import streamlit as st
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def store_with_runs(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "store"
    for lr in (0.1, 0.05):
        run = babysit.init(project="t", config={"lr": lr, "momentum": 0.9}, root=root,
                           day="100 steps")
        model = torch.nn.Linear(2, 1)
        run.attach(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=lr,
                                                          momentum=0.9))
        for step in run.loop(steps=300):
            run.log(loss=1.0 / (1 + step), val_loss=2.0 / (1 + step))
        run.finish()
    monkeypatch.setenv("BABYSIT_ROOT", str(root))
    return root


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(at: AppTest, kind: str) -> str:
    return " ".join(str(e.value) for e in getattr(at, kind))


def chart_figure(at: AppTest, key: str) -> dict:
    """The figure the chart ``key`` (``babysit.ui.chart.draw``) sends its frame, as a dict."""
    import json

    from babysit.ui import chart
    frames = [e for e in at.get("component_instance")
              if e.proto.component_name == chart.COMPONENT and e.proto.id.endswith(f"-{key}")]
    assert frames, f"no chart {key!r} drawn"
    return json.loads(json.loads(frames[-1].proto.json_args)["figure"])


def test_router_renders_runs_page_on_empty_store(tmp_path, monkeypatch):
    monkeypatch.setenv("BABYSIT_ROOT", str(tmp_path / "nothing"))
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    no_exceptions(at)
    assert "babysit demo" in texts(at, "info")
    assert not (tmp_path / "nothing").exists()    # looking never creates a store


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_on_empty_store(name, tmp_path, monkeypatch):
    monkeypatch.setenv("BABYSIT_ROOT", str(tmp_path / "nothing"))
    at = render(name)
    no_exceptions(at)
    assert "No runs yet" in texts(at, "info")


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_on_store_with_runs(name, store_with_runs):
    at = render(name)
    no_exceptions(at)
    assert not at.error, texts(at, "error")


def test_runs_page_lists_runs(store_with_runs):
    at = render("runs")
    table = at.dataframe[0].value
    assert sorted(table["id"]) == [1, 2]
    assert set(table["status"]) == {"✅ finished"}
    assert set(table["lr"]) == {0.1, 0.05}
    assert all(table["best val"].str.startswith("val_loss"))


def test_run_page_opens_run_from_env_and_query(store_with_runs, monkeypatch):
    monkeypatch.setenv("BABYSIT_OPEN_RUN", "1")
    at = render("run")
    assert at.title[0].value.startswith("Run #1")
    at = AppTest.from_string(page_script("run"), default_timeout=30)
    at.query_params["run"] = "2"
    at.query_params["token"] = TOKEN
    at.run()
    assert at.title[0].value.startswith("Run #2")
    # a finished run has no process: its knobs are off, fork stays on
    assert at.button(key="lr_half").disabled
    assert not at.button(key="run_fork").disabled


def test_newer_schema_is_an_error_not_a_traceback(store_with_runs):
    with sqlite3.connect(store_with_runs / "babysit.db") as db:
        db.execute("update meta set value='999' where key='schema_version'")
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    no_exceptions(at)
    assert "newer" in texts(at, "error")


def test_remote_server_disables_controls_without_password(store_with_runs):
    st_config.set_option("server.address", "0.0.0.0")
    at = render("run")
    no_exceptions(at)
    assert at.button(key="run_fork").disabled
    assert "read-only" in texts(at, "info")


def test_local_server_without_token_only_looks(store_with_runs):
    at = render("run")
    no_exceptions(at)
    assert at.button(key="run_fork").disabled
    assert "read-only: open the link printed by `babysit ui`" in texts(at, "info")


def commands(trainers) -> int:
    return trainers.client.store.read(
        lambda c: c.exec_driver_sql("select count(*) from commands").scalar())


@pytest.mark.slow
def test_run_page_controls_steer_a_live_trainer(trainers, monkeypatch):
    proc, run_id = trainers.start("--pace", "0.01", "--day", "20 steps")
    monkeypatch.setenv("BABYSIT_ROOT", str(trainers.root))
    at = AppTest.from_string(page_script("run"), default_timeout=30)
    at.query_params["run"] = str(run_id)
    at.query_params["token"] = TOKEN
    at.run()
    no_exceptions(at)
    old = trainers.client.run(run_id).hp["lr"]

    at.button(key="lr_half").click().run()
    no_exceptions(at)
    assert not at.error, texts(at, "error")
    assert "applied" in texts(at, "success")
    # the confirmation outlives the next redraw (the controls redraw every 2 s): a user who
    # looked at the chart meanwhile still reads it
    at.run()
    assert "applied" in texts(at, "success")
    nudges = trainers.client.events(run_id).query("kind == 'nudge'")
    assert nudges.iloc[-1]["source"] == "ui"
    assert nudges.iloc[-1]["detail"]["lr"]["new"] == pytest.approx(old / 2)
    assert trainers.client.run(run_id).hp["lr"] == pytest.approx(old / 2)

    before = commands(trainers)
    for bad in ("nan", "-1", "abc"):
        at.text_input(key="lr_exact").input(bad)
        at.button(key="lr_set").click().run()
        assert "lr" in texts(at, "error"), bad
        assert commands(trainers) == before, bad

    # what was typed is what is sent, typed and clicked in one go (the click's callback reads
    # the box's value of that click, not of the run before)
    at.text_input(key="lr_exact").input("0.03")
    at.button(key="lr_set").click().run()
    assert not at.error, texts(at, "error")
    assert trainers.client.run(run_id).hp["lr"] == pytest.approx(0.03)
    at.text_input(key="hp_clip").input("0.5")
    at.button(key="hp_set_clip").click().run()
    assert not at.error, texts(at, "error")
    assert trainers.client.run(run_id).hp["clip"] == pytest.approx(0.5)
    assert "clip 1 → 0.5 applied at step" in texts(at, "success").replace("\\", "")

    at.button(key="momentum_more").click().run()
    assert not at.error, texts(at, "error")
    assert trainers.client.run(run_id).hp["momentum"] == pytest.approx(0.95)

    at.button(key="run_pause").click().run()
    assert not at.error, texts(at, "error")
    wait_for(lambda: trainers.client.run(run_id).status == "paused", 15, "pause")
    at.button(key="run_resume").click().run()
    assert not at.error, texts(at, "error")
    wait_for(lambda: trainers.client.run(run_id).status == "running", 15, "resume")
    # a rollback unticks its confirmation: the next one needs a new tick
    wait_for(lambda: len(trainers.client.checkpoints(run_id)) >= 2, 60, "two days")
    # the page's queries are cached for a second: the new day shows on a later run
    wait_for(lambda: "1" in at.run().selectbox(key="rollback_day").options, 30, "day 1 listed")
    at.selectbox(key="rollback_day").select(1)
    confirm = next(b for b in at.checkbox if b.label.startswith("Yes, roll back"))
    confirm.check()
    at.button(key="run_rollback").click().run()
    assert not at.error, texts(at, "error")
    assert "rollback" in trainers.client.events(run_id).kind.tolist()
    assert next(b for b in at.checkbox if b.label.startswith("Yes, roll back")).value is False

    at.button(key="run_stop").click().run()
    assert not at.error, texts(at, "error")
    wait_for(lambda: trainers.client.run(run_id).status == "stopped", 15, "stop")


def test_run_header_shows_effective_values_and_days(store_with_runs):
    client = babysit.Client(store_with_runs)
    # what the trainer reports its optimizer uses, not the configured value
    client.store.update_run(1, effective={"step": 299, "lr": 0.025, "momentum": 0.9})
    at = AppTest.from_string(page_script("run"), default_timeout=30)
    at.query_params["run"] = "1"
    at.run()
    no_exceptions(at)
    header = {m.label: m.value.replace("\\", "") for m in at.metric}   # markdown-escaped
    assert header["lr"] == "0.025 · schedule ×0.25 of 0.1"
    assert header["days saved"] == "3"           # finished: 300 steps of 100-step days
    assert "now 0.025 · schedule ×0.25 of 0.1" in texts(at, "markdown").replace("\\", "")


def test_run_page_panels_picker_log_and_memory(store_with_runs):
    at = AppTest.from_string(page_script("run"), default_timeout=30)
    at.query_params["run"] = "1"
    at.run()
    no_exceptions(at)
    picker = at.multiselect(key="run_panels")
    # the process's sys/* samples (one every 5 s, the first after 1 s: on a loaded machine the
    # fixture's runs last that long) come after the run's own metrics
    assert [o for o in picker.options if not o.startswith("sys/")] == ["loss", "val_loss"]
    names = [t["name"] for t in chart_figure(at, "run_figure")["data"]]
    assert "loss" in names and "val_loss" in names
    picker.set_value(["val_loss"]).run()
    no_exceptions(at)
    from babysit.ui import prefs
    assert prefs.load_panels(store_with_runs, "t") == ["val_loss"]
    at.multiselect(key="run_log_panels").set_value(["val_loss"]).run()
    at.toggle(key="run_superseded").set_value(True).run()
    no_exceptions(at)
    spec = chart_figure(at, "run_figure")
    assert [a["text"] for a in spec["layout"]["annotations"]][0] == "val_loss"
    assert spec["layout"]["yaxis"]["type"] == "log"
    # a fresh session of the same project starts from the remembered choice
    again = AppTest.from_string(page_script("run"), default_timeout=30)
    again.query_params["run"] = "2"
    again.run()
    assert again.multiselect(key="run_panels").value == ["val_loss"]


def test_run_page_console_tail(store_with_runs):
    from babysit.ui import console
    at = AppTest.from_string(page_script("run"), default_timeout=30)
    at.query_params["run"] = "1"
    at.run()
    assert "No console output saved" in texts(at, "caption")
    path = console.log_path(store_with_runs, 1)
    path.write_text("".join(f"line {i}\n" for i in range(500)) + "Traceback: boom\n")
    at.run()
    no_exceptions(at)
    shown = next(t.value for t in at.text if "Traceback" in t.value)
    assert shown.endswith("Traceback: boom") and "line 499" in shown and "line 100\n" not in shown


def test_compare_page_several_metrics_aligned_by_fork(store_with_runs):
    at = render("compare")
    no_exceptions(at)
    assert at.multiselect(key="compare_metrics").value == ["loss", "val_loss"]
    spec = chart_figure(at, "compare_figure")
    assert [a["text"] for a in spec["layout"]["annotations"]] == ["loss", "val_loss"]
    legend = [t["name"] for t in spec["data"] if t.get("showlegend", True)]
    assert len(legend) == 2 and all(n.startswith(("#1", "#2")) for n in legend)
    assert any("lr=0.1" in t["hovertemplate"] and "m=0.9" in t["hovertemplate"]
               for t in spec["data"])
    at.radio(key="compare_align").set_value("fork").run()
    at.multiselect(key="compare_log_panels").set_value(["loss"]).run()
    no_exceptions(at)
    spec = chart_figure(at, "compare_figure")
    assert spec["layout"]["xaxis"]["title"]["text"] == "steps since the fork point"
    assert spec["layout"]["yaxis"]["type"] == "log"


def test_run_page_downloads_shown_metrics(store_with_runs):
    at = AppTest.from_string(page_script("run"), default_timeout=30)
    at.query_params["run"] = "1"
    at.run()
    at.multiselect(key="run_panels").set_value(["val_loss"]).run()
    no_exceptions(at)
    from babysit.ui import state
    from babysit.ui.frames import metrics_csv
    csv = metrics_csv(state.metrics(1), ["val_loss"]).decode().splitlines()
    assert csv[0].startswith("step,") and len(csv) == 301
    assert all(",val_loss," in line for line in csv[1:])
    assert at.get("download_button")[0].proto.label == "Download shown metrics (CSV)"


def test_runs_page_search_and_hp_range(store_with_runs):
    at = render("runs")
    at.selectbox(key="runs_hp").select("lr").run()
    at.number_input(key="runs_hp_low").set_value(0.08).run()
    no_exceptions(at)
    assert list(at.dataframe[0].value["id"]) == [1]          # lr 0.1 only
    at.number_input(key="runs_hp_low").set_value(None).run()
    at.text_input(key="runs_search").input("t-2").run()
    no_exceptions(at)
    assert list(at.dataframe[0].value["name"]) == ["t-2"]


def test_empty_run_page_title_first_and_a_way_back(tmp_path, monkeypatch, store_with_runs):
    at = render("run")
    assert at.get("page_link")[0].proto.label == "← All runs"
    monkeypatch.setenv("BABYSIT_ROOT", str(tmp_path / "nothing"))
    at = render("run")
    no_exceptions(at)
    assert at.title[0].value == "Run" and "No runs yet" in texts(at, "info")
    first = at.main.children[0]          # the title's container comes before the message
    assert [type(e).__name__ for e in first.children.values()] == ["Title"]


def test_run_page_note_tags_config_and_search_by_tag(store_with_runs):
    client = babysit.Client(store_with_runs)
    at = AppTest.from_string(page_script("run"), default_timeout=30)
    at.query_params["run"] = "1"
    at.query_params["token"] = TOKEN
    at.run()
    no_exceptions(at)
    # closed, the section builds nothing: a fresh tab loads none of it
    assert not at.text_area and not at.json
    at.session_state["run_about_open"] = True          # opened
    at.run()
    at.text_area(key="run_note_1").input("too timid after day 2").run()
    at.text_input(key="run_tags_1").input("baseline sgd baseline").run()
    at.button(key="run_note_save").click().run()
    no_exceptions(at)
    assert not at.error, texts(at, "error")
    record = client.run(1)
    assert record.note == "too timid after day 2" and record.tags == ["baseline", "sgd"]
    assert '"lr"' in at.json[0].proto.body            # the full config is shown
    # the tags are in the section's label now: a new label, and the section stays open
    assert "#baseline #sgd" in at.expander[-1].label.replace("\\", "") \
        and at.text_area(key="run_note_1")
    at.text_input(key="run_tags_1").input("bad\u0007tag").run()
    at.button(key="run_note_save").click().run()
    assert "tag" in texts(at, "error") and client.run(1).tags == ["baseline", "sgd"]

    runs = render("runs")
    runs.text_input(key="runs_search").input("sgd").run()
    assert list(runs.dataframe[0].value["id"]) == [1]


def test_client_note_and_tags_validation(store_with_runs):
    from babysit.errors import InvalidValue
    client = babysit.Client(store_with_runs)
    assert client.set_tags(2, ["a", "b:c", "a"]) == ["a", "b:c"]
    for bad in ("one string", ["has space"], [""], ["x" * 41], [3]):
        with pytest.raises(InvalidValue):
            client.set_tags(2, bad)
    with pytest.raises(InvalidValue):
        client.set_note(2, "\x1b[31mred")
    with pytest.raises(InvalidValue):
        client.set_note(2, "x" * 10_001)
    client.set_note(2, "line one\nline two")
    assert client.run(2).note == "line one\nline two" and client.run(2).tags == ["a", "b:c"]


def test_cli_note_and_tag(store_with_runs):
    import subprocess
    import sys
    env = dict(__import__("os").environ, PYTHONPATH=str(REPO))
    def cli(*argv: str) -> str:
        return subprocess.run([sys.executable, "-m", "babysit", "--root", str(store_with_runs),
                               *argv], env=env, capture_output=True, text=True, check=True).stdout
    assert "tags a b" in cli("tag", "1", "+a", "b")
    assert "tags b c" in cli("tag", "1", "-a", "+c")
    assert "saved" in cli("note", "1", "plateau", "after", "day", "2")
    record = babysit.Client(store_with_runs).run(1)
    assert record.tags == ["b", "c"] and record.note == "plateau after day 2"


def test_runs_page_asks_the_store_for_all_runs_at_once(store_with_runs):
    import sqlalchemy as sa

    from babysit.ui import state
    client = babysit.Client(store_with_runs)
    assert client.store.latest_metric_of([1, 2, 99], "loss") == {
        1: pytest.approx(1 / 300), 2: pytest.approx(1 / 300)}
    render("runs")                                  # opens the dashboard's client

    def statements() -> int:
        import streamlit as st
        st.cache_data.clear()
        seen = []
        engine = state.client().store._read_engine
        listener = lambda *a: seen.append(1)       # noqa: E731
        sa.event.listen(engine, "before_cursor_execute", listener)
        at = render("runs")
        sa.event.remove(engine, "before_cursor_execute", listener)
        no_exceptions(at)
        return len(seen)
    few = statements()
    for i in range(6):
        client.store.create_run(project="t", name=f"more-{i}", config={}, hp={"lr": 0.1},
                                strict=False, day_spec="", status="finished")
    assert statements() == few                       # not one query per run


def test_a_knob_the_loop_does_not_read_says_so(tmp_path, monkeypatch):
    """`clip` is read every step, `batch_size` only before the loop, `warmup` never: the Run
    page marks the two the loop does not read, from what the trainer reported."""
    root = tmp_path / "store"
    run = babysit.init(project="t", config={"lr": 0.1, "clip": 1.0, "batch_size": 64,
                                            "warmup": 10}, root=root, day="100 steps")
    model = torch.nn.Linear(2, 1)
    run.attach(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert run.hp["batch_size"] == 64                 # read once, before the loop
    for _ in run.loop(steps=300):
        run.log(loss=run.hp["clip"])
    run.finish()
    reads = babysit.Client(root).run(run.id).effective["reads"]
    assert reads["clip"] >= 250 and reads["batch_size"] == 0 and "warmup" not in reads
    monkeypatch.setenv("BABYSIT_ROOT", str(root))
    monkeypatch.setenv("BABYSIT_OPEN_RUN", str(run.id))
    at = render("run")
    no_exceptions(at)
    notes = texts(at, "caption")
    assert "batch_size: not read by the loop since step 0" in notes.replace("\\", "")
    assert "warmup: never read by the loop" in notes.replace("\\", "")
    assert "clip:" not in notes.replace("\\", "")


def test_one_vocabulary_of_days(store_with_runs):
    """Day N is the N-th stretch of training; a day checkpoint is the end of its day (day 0:
    the start); a count is "days saved". The same words in the header, its hover, the Runs,
    Days and Events tables, the pickers and the event details, and in the CLI."""
    import subprocess
    import sys
    import time

    client = babysit.Client(store_with_runs)
    # run 1 as a live run that saved 2 days and trains on day 3; it was rolled back once
    client.store.update_run(1, status="running", day=2, step=250, heartbeat=time.time(),
                            ended=None)
    client.store.add_event(1, 250, 3, "rollback", "cli",
                           {"to_day": 1, "to_step": 100, "from_step": 250}, 0)
    at = AppTest.from_string(page_script("run"), default_timeout=30)
    at.query_params["run"] = "1"
    at.run()
    no_exceptions(at)
    # the Events section is built only while open: closed, no table (its label counts them)
    assert not [d for d in at.dataframe if "what" in d.value.columns]
    assert [e.label for e in at.expander if e.label.startswith("Events")] == ["Events (3)"], \
        [e.label for e in at.expander]
    at.session_state["run_events_open"] = True
    at.run()
    header = {m.label: m for m in at.metric}
    assert header["day in progress"].value == "3"
    assert header["day in progress"].proto.help.replace("\\", "") == \
        "day 3 in progress, 2 days saved"
    tables = [d.value for d in at.dataframe]
    days = next(t for t in tables if "end of day" in t.columns)     # the Days table
    assert list(days["end of day"]) == [0, 1, 2, 3] and "day" not in days.columns
    assert at.selectbox(key="rollback_day").label == "roll back to the end of day"
    assert at.selectbox(key="fork_day").label == "fork from the end of day"
    events = next(t for t in tables if "what" in t.columns)         # the Events table
    assert "rollback to the end of day 1 (step 100) from step 250" in \
        " ".join(events["what"].astype(str))
    assert "days of 100 steps" in " ".join(events["what"].astype(str))   # a length, not a day

    finished = AppTest.from_string(page_script("run"), default_timeout=30)
    finished.query_params["run"] = "2"
    finished.run()
    saved = {m.label: m for m in finished.metric}["days saved"]
    assert saved.value == "3" and saved.proto.help == "3 days saved"

    runs = render("runs")
    table = runs.dataframe[0].value
    assert "days saved" in table.columns and "day" not in table.columns
    assert table.set_index("id").loc[1, "days saved"] == 2

    env = dict(__import__("os").environ, PYTHONPATH=str(REPO))
    ls = subprocess.run([sys.executable, "-m", "babysit", "--root", str(store_with_runs), "ls"],
                        env=env, capture_output=True, text=True, check=True).stdout
    assert "days_saved" in ls.splitlines()[0] and " day " not in f" {ls.splitlines()[0]} "


def _repeated_click_script() -> None:
    import streamlit as st

    from babysit.ui.views import control_access
    from babysit.ui.views import run as page

    assert control_access()[0]                 # the token of the link: this tab may steer
    acted = st.session_state.setdefault("acted", [])
    for ticket in (7, 7, 8, 7):                 # one drawing's click delivered twice, then a new one
        page._clicked("acting", lambda t=ticket: acted.append(t) or "done", ticket)


def test_a_click_delivered_twice_acts_once():
    """A button's callback carries the ticket of the drawing it was clicked on: Streamlit can
    deliver a click's callback again (a CI run saw one lr ×0.5 click halve the lr twice), and a
    spent ticket does nothing; a click on the next drawing (a new ticket) acts."""
    at = AppTest.from_function(_repeated_click_script, default_timeout=30)
    at.query_params["token"] = TOKEN
    at.run()
    no_exceptions(at)
    assert at.session_state["acted"] == [7, 8]


def test_the_run_picker_shows_nothing_that_goes_stale(store_with_runs):
    """The picker is drawn by the page's full run, which an open page does not repeat: a status
    in its labels ("paused") stayed beside a live header saying "running". It names the runs;
    the header, redrawn on its own, says the chosen run's status."""
    client = babysit.Client(store_with_runs)
    runs = client.runs()
    client.store.update_run(1, status="paused")
    at = AppTest.from_string(page_script("run"), default_timeout=30)
    at.query_params["run"] = "1"
    at.run()
    no_exceptions(at)
    picker = next(s for s in at.selectbox if s.label == "Run")
    assert picker.options == [f"#{int(i)} {n}" for i, n in
                              sorted(zip(runs["id"], runs["name"], strict=True), reverse=True)]
    assert "⏸️ paused" in " ".join(m.value for m in at.markdown)   # said where it is live
    # Compare's run list the same way (its chart redraws on its own, the list does not)
    compare = AppTest.from_string(page_script("compare"), default_timeout=30)
    compare.run()
    no_exceptions(compare)
    chosen = compare.multiselect(key="compare_select")
    assert set(chosen.options) == {f"#{int(i)} {n}" for i, n in
                                   zip(runs["id"], runs["name"], strict=True)}
