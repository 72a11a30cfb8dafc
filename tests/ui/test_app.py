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
    proc, run_id = trainers.start("--pace", "0.01")
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

    at.button(key="momentum_more").click().run()
    assert not at.error, texts(at, "error")
    assert trainers.client.run(run_id).hp["momentum"] == pytest.approx(0.95)

    at.button(key="run_pause").click().run()
    assert not at.error, texts(at, "error")
    wait_for(lambda: trainers.client.run(run_id).status == "paused", 15, "pause")
    at.button(key="run_resume").click().run()
    assert not at.error, texts(at, "error")
    wait_for(lambda: trainers.client.run(run_id).status == "running", 15, "resume")
    at.button(key="run_stop").click().run()
    assert not at.error, texts(at, "error")
    wait_for(lambda: trainers.client.run(run_id).status == "stopped", 15, "stop")
