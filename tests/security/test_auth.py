"""The gate in front of every action: token, password, throttle, and what a session without
them can do (look). AppTest runs the real pages; the launcher test runs the real `babysit ui`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from babysit.ui import auth
from tests.conftest import REPO, wait_for
from tests.security.conftest import free_port

APP = str(REPO / "babysit" / "ui" / "app.py")
TOKEN = "a-test-token-for-this-start"


def shown(markdown: str) -> str:
    """What Markdown that escapes every punctuation character reads as."""
    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.fixture(autouse=True)
def fresh_gate(monkeypatch, tmp_path):
    old = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    monkeypatch.setenv("BABYSIT_ROOT", str(tmp_path / "store"))
    auth.forget()
    monkeypatch.setenv(auth.TOKEN_ENV, TOKEN)
    yield
    auth.forget()
    st_config.set_option("server.address", old)
    st_config.set_option("server.sslCertFile", None)


def test_throttle_doubles_after_the_free_attempts_and_is_per_client():
    now = [0.0]
    t = auth.Throttle(free=3, delay_s=1.0, max_delay_s=8.0, clock=lambda: now[0])
    waits = [t.failed("mallory") for _ in range(7)]
    assert waits == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert t.wait_s("mallory") == 8.0 and t.wait_s("alice") == 0.0
    now[0] = 8.0
    assert t.wait_s("mallory") == 0.0
    t.succeeded("mallory")
    assert t.failures("mallory") == 0


def test_gate_admits_the_token_the_password_or_a_tab_proof_and_counts_the_rest():
    gate = auth.Gate("tok", auth.Throttle(free=1, delay_s=60.0))
    assert gate.attempt("tok", None, "a", "token").ok
    assert gate.attempt("pw", "pw", "a", "password").ok
    assert gate.attempt(gate.tab_proof(), None, "a", "tab proof").ok
    assert not gate.attempt("", None, "a", "token").ok          # empty never matches
    assert not gate.attempt("pw", None, "b", "password").ok     # no password configured
    assert gate.failed_total == 2 and gate.last_failure[0] == "b"
    # b now waits a minute: even the right token is not looked at meanwhile
    late = gate.attempt("tok", None, "b", "token")
    assert not late.ok and "try again in 60 s" in late.message
    assert gate.failed_total == 2
    # a random token (as babysit ui makes) still gets in: a guesser cannot lock the owner out
    strong = auth.Gate("t" * 43, auth.Throttle(free=0, delay_s=60.0))
    assert not strong.attempt("guess", None, "b", "token").ok
    assert not strong.attempt("guess", None, "b", "token").ok          # unchecked
    assert strong.attempt("t" * 43, None, "b", "token").ok
    assert strong.attempt(strong.tab_proof(), None, "b", "tab proof").ok
    # a proof of another server (an older token) is no proof
    assert not auth.Gate("other").attempt(gate.tab_proof(), None, "c", "tab proof").ok


def test_the_token_leaves_the_environment_so_started_processes_do_not_inherit_it():
    assert auth.gate().token == TOKEN
    assert auth.TOKEN_ENV not in os.environ
    out = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get("
                          f"{auth.TOKEN_ENV!r}, 'absent'))"], capture_output=True, text=True)
    assert out.stdout.strip() == "absent"
    assert auth.gate().token == TOKEN                    # kept for this server's lifetime


def test_without_a_handed_token_the_server_makes_one_and_prints_its_link(monkeypatch, capfd):
    monkeypatch.delenv(auth.TOKEN_ENV)
    auth.forget()
    token = auth.gate().token
    assert len(token) >= 40 and token != TOKEN
    assert f"/?token={token}" in capfd.readouterr().err
    assert auth.gate().token == token                    # one per server, not per session


ACT = """
import streamlit as st
from babysit.ui.views import {page}
calls = []
{page}._act(st, "changing a run", lambda: calls.append(1) or "done")
st.text(f"calls={{len(calls)}}")
"""


@pytest.mark.parametrize("page", ["run", "study"])
def test_every_action_of_a_page_is_refused_without_the_token(page):
    """What a forged click reaches: the pages' one action path refuses before it acts."""
    at = AppTest.from_string(ACT.format(page=page), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    assert "calls=0" in at.text[0].value
    assert "read-only: open the link printed by `babysit ui`" in shown(at.error[0].value)


def test_the_token_in_the_link_admits_the_session_and_leaves_the_url(monkeypatch):
    script = ("import streamlit as st\nfrom babysit.ui.views import control_access\n"
              "ok, why = control_access()\nst.text(f'steer={ok}')\n")
    at = AppTest.from_string(script, default_timeout=30)
    at.query_params["token"] = TOKEN
    at.run()
    assert at.text[0].value == "steer=True"
    assert "token" not in at.query_params
    at.run()                                             # the session keeps its proof
    assert at.text[0].value == "steer=True"

    fresh = AppTest.from_string(script, default_timeout=30)
    fresh.query_params["token"] = "not-it"
    fresh.run()
    assert fresh.text[0].value == "steer=False"
    assert auth.gate().failed_total == 1


def test_password_from_the_sidebar_and_the_failures_the_user_sees():
    at = AppTest.from_file(APP, default_timeout=30)
    at.secrets["babysit"] = {"password": "s3cret pass", "free_attempts": 5}
    at.run()
    box = at.sidebar.text_input(key="_babysit_secret")
    assert box.label == "Password or token"
    box.input("guess").run()
    assert "Wrong password" in shown(" ".join(e.value for e in at.sidebar.error))
    at.sidebar.text_input(key="_babysit_secret").input("s3cret pass").run()
    sidebar = shown(" ".join(str(e.value) for e in [*at.sidebar.caption, *at.sidebar.warning]))
    assert "you can steer runs" in sidebar
    assert "1 failed sign-in attempt(s)" in sidebar


def test_exposed_without_tls_shows_the_two_lines_that_enable_it():
    st_config.set_option("server.address", "0.0.0.0")
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    warning = shown(" ".join(e.value for e in at.sidebar.warning))
    assert "sslCertFile" in warning and "sslKeyFile" in warning
    st_config.set_option("server.sslCertFile", "/etc/cert.pem")
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not any("sslCertFile" in e.value for e in at.sidebar.warning)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0"])
def test_babysit_ui_hands_the_token_over_out_of_sight_of_ps(tmp_path, address):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), BABYSIT_ROOT=str(tmp_path / "store"))
    env.pop(auth.TOKEN_ENV, None)
    out, err = tmp_path / "ui.out", tmp_path / "ui.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "babysit", "ui", "--address", address,
                                 "--port", str(port)], env=env, stdout=o, stderr=e,
                                cwd=tmp_path, start_new_session=True)
    try:
        link = wait_for(lambda: re.search(rf"http://\S+:{port}/\?token=(\S+)",
                                          out.read_text()), 60, "the printed link")
        token = link.group(1)
        servers = wait_for(lambda: [p for p in _descendants(proc.pid) if b"--server.port" in
                                    Path(f"/proc/{p}/cmdline").read_bytes()], 60, "the server")
        for pid in [proc.pid, *servers]:
            assert token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert f"{auth.TOKEN_ENV}={token}".encode() in Path(f"/proc/{servers[0]}/environ").read_bytes()
        assert oct(os.stat(f"/proc/{servers[0]}/environ").st_mode & 0o777) == "0o400"
        cmdline = Path(f"/proc/{servers[0]}/cmdline").read_bytes().split(b"\0")
        for flag, value in ((b"--browser.gatherUsageStats", b"false"),
                            (b"--server.enableXsrfProtection", b"true"),
                            (b"--server.enableCORS", b"true"),
                            (b"--client.toolbarMode", b"minimal"),
                            (b"--server.enableAgentApi", b"false")):
            assert cmdline[cmdline.index(flag) + 1] == value
        tls_warned = "sslCertFile" in err.read_text()
        assert tls_warned == (address != "127.0.0.1")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        time.sleep(0.2)
