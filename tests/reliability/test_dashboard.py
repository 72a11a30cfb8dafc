"""Dashboard restarts: killing and restarting the Streamlit server leaves a training run alone;
a dashboard pointed at a store that is missing, locked, from a newer babysit or not a database
at all shows a clear message, not a traceback."""

from __future__ import annotations

import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

import babysit
from tests.conftest import REPO, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
APP = str(REPO / "babysit" / "ui" / "app.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(trainers, port: int) -> subprocess.Popen:
    log = open(trainers.root.parent / f"streamlit-{time.time():.0f}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.address",
         "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"], env=trainers.env(), stdout=log,
        stderr=subprocess.STDOUT)
    log.close()

    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_for(up, 60, "the streamlit server")
    return proc


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_killing_and_restarting_the_dashboard_leaves_the_run_alone(trainers, forked):
    from playwright.sync_api import expect, sync_playwright

    _, run_id = forked.start("--pace", "0.01", "--day", "20 steps")
    c = trainers.client
    port = _free_port()
    server = serve(trainers, port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/run?run={run_id}")
            # the page has read the store: the run's knobs are drawn
            expect(page.get_by_role("button", name="lr ×0.5")).to_be_visible(timeout=60_000)
            events = c.events(run_id)
            server.send_signal(signal.SIGKILL)        # mid-refresh, readers open: no matter
            server.wait()
            step = c.run(run_id).step
            trainers.wait_step(run_id, step + 30)
            assert c.run(run_id).status == "running"

            server = serve(trainers, port)
            page.reload()
            expect(page.get_by_role("button", name="lr ×0.5")).to_be_visible(timeout=60_000)
            step = c.run(run_id).step
            trainers.wait_step(run_id, step + 10)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert c.run(run_id).status == "running"
    after = c.events(run_id)
    assert after.id.tolist() == events.id.tolist()         # not a single event: untouched
    live = c.metrics(run_id, ["loss"])
    assert live.step.is_unique and live.step.max() + 1 == len(live)
    c.stop(run_id)


# ---------------------------------------------------------------------- broken stores
@pytest.fixture
def local_dashboard(monkeypatch):
    old = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    monkeypatch.delenv("BABYSIT_STORE_URL", raising=False)
    yield
    st_config.set_option("server.address", old)
    import streamlit as st
    st.cache_resource.clear()
    st.cache_data.clear()


def store_with_a_run(root: Path) -> Path:
    c = babysit.Client(root)
    c.store.create_run(project="p", name="done", status="finished", config={"lr": 0.1},
                       hp={"lr": 0.1}, day_spec="10 steps")
    c.close()
    return root / "babysit.db"


def page(name: str) -> AppTest:
    return AppTest.from_string(f"from babysit.ui.views import {name} as page\npage.render()\n",
                               default_timeout=60)


def shows(at: AppTest, kind: str) -> str:
    return " ".join(str(e.value) for e in getattr(at, kind))


@pytest.mark.parametrize("name", ["runs", "run"])
@pytest.mark.parametrize("situation", ["missing", "locked", "newer", "garbage"])
def test_a_broken_store_is_a_message_not_a_traceback(name, situation, tmp_path, monkeypatch,
                                                     local_dashboard):
    root = tmp_path / "store"
    monkeypatch.setenv("BABYSIT_ROOT", str(root))
    lock = None
    if situation != "missing":
        db = store_with_a_run(root)
    if situation == "locked":
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")          # another process in a long write transaction
    elif situation == "newer":
        with sqlite3.connect(db) as conn:
            conn.execute("update meta set value = '999' where key = 'schema_version'")
    elif situation == "garbage":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        db.write_bytes(b"this is not a database" * 100)
    try:
        at = page(name)
        at.run()
        if name == "runs":          # the router, around the runs page (the default)
            router = AppTest.from_file(APP, default_timeout=60)
            router.run()
            assert not router.exception, [e.value for e in router.exception]
    finally:
        if lock is not None:
            lock.rollback()
            lock.close()
    assert not at.exception, [e.value for e in at.exception]
    if situation == "locked":
        # WAL: a writer's long transaction does not stop readers, so the page shows the data
        assert not shows(at, "error"), shows(at, "error")
        text = " ".join(str(getattr(e, "value", "")) for e in at.main)
        seen = [str(v) for df in at.dataframe for v in df.value.to_numpy().ravel()]
        assert "done" in text or "done" in seen, (text, seen)
        return
    expected = {"missing": ("info", "No runs yet"),
                "newer": ("error", "newer"), "garbage": ("error", "not a database")}[situation]
    assert expected[1] in shows(at, expected[0]), (shows(at, "error"), shows(at, "info"))
    if situation == "missing":
        assert not root.exists()                 # looking never creates a store
