"""Attacks on a real dashboard through its websocket, the way another local user's script or a
page's JavaScript would make them: forged clicks without the token change nothing in the store;
a page of another origin is answered with a refusal; password guesses are throttled and logged.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, wait_for
from tests.security.conftest import free_port
from tests.security.streamlit_socket import StreamlitSocket, text, trigger

pytestmark = [pytest.mark.slow]
READ_ONLY = "read-only: open the link printed by `babysit ui`"


def count(trainers, table: str) -> int:
    return trainers.client.store.read(
        lambda c: c.exec_driver_sql(f"select count(*) from {table}").scalar())


def test_forged_clicks_without_the_token_change_nothing_with_it_they_work(trainers, dashboards):
    _, run_id = trainers.start("--pace", "0.02", "--day", "20 steps")
    board = dashboards()
    c = trainers.client
    lr = c.run(run_id).hp["lr"]
    commands, runs, studies = count(trainers, "commands"), len(c.runs()), count(trainers, "studies")

    # another local user's script: no Origin header, no token; it knows the widget ids
    with StreamlitSocket(board.url) as ws:
        page = ws.run("run", f"run={run_id}")
        assert READ_ONLY in page.texts()
        buttons = {b.label: b for b in page.of("button")}
        assert all(buttons[label].disabled for label in
                   ("lr ×0.5", "Pause", "Stop", "Fork", "Roll back")), buttons.keys()
        exact = page.widget("text_input", "exact lr")
        for label in ("lr ×0.5", "Set lr", "Pause", "Stop", "Fork"):
            ws.run("run", f"run={run_id}", [trigger(buttons[label].id), text(exact.id, "9")])
        # a wrong token in the link is a failed attempt, not a way in
        after = ws.run("run", f"token=guess&run={run_id}", [trigger(buttons["lr ×0.5"].id)])
        assert "Wrong token" in after.texts()

        study = ws.run("study")
        name = study.widget("text_input", "Study name")
        launch = study.widget("button", "Launch study")
        assert launch.disabled
        ws.run("study", "", [text(name.id, "evil"), trigger(launch.id)])

    trainers.wait_step(run_id, c.run(run_id).step + 10)
    assert count(trainers, "commands") == commands
    assert c.run(run_id).hp["lr"] == lr and c.run(run_id).status == "running"
    assert len(c.runs()) == runs and count(trainers, "studies") == studies
    assert "nudge" not in set(c.events(run_id)["kind"])

    # the link babysit ui printed: the token once, then this session steers
    with StreamlitSocket(board.url) as ws:
        page = ws.run("run", f"token={board.token}&run={run_id}")
        assert READ_ONLY not in page.texts()
        half = page.widget("button", "lr ×0.5")
        assert not half.disabled
        done = ws.run("run", f"run={run_id}", [trigger(half.id)])   # the URL no longer has it
        assert "applied" in done.texts(), done.texts()
    wait_for(lambda: c.run(run_id).hp["lr"] == pytest.approx(lr / 2), 30, "the nudge")
    nudge = c.events(run_id).query("kind == 'nudge'").iloc[-1]
    assert nudge.source == "ui"

    # the proof belongs to that session: a new one (a reload, another tab, a script) only looks
    with StreamlitSocket(board.url) as ws:
        assert READ_ONLY in ws.run("run", f"run={run_id}").texts()
    assert "wrong token from this machine" in board.log_text()


def test_a_page_of_another_origin_is_refused_even_with_the_token(trainers, dashboards):
    """Streamlit lets websockets from any localhost port in; the app answers them nothing."""
    _, run_id = trainers.start("--pace", "0.02", "--day", "20 steps")
    board = dashboards()
    c = trainers.client
    lr, commands = c.run(run_id).hp["lr"], count(trainers, "commands")
    with StreamlitSocket(board.url) as ws:     # the ids, as an attacker would learn them
        half = ws.run("run", f"run={run_id}").widget("button", "lr ×0.5")
    for origin in ("http://127.0.0.1:9", "http://localhost:9", "http://evil.example"):
        try:
            ws = StreamlitSocket(board.url, origin=origin)
        except Exception:          # Streamlit itself closed it: refused, fine
            continue
        with ws:
            page = ws.run("run", f"token={board.token}&run={run_id}", [trigger(half.id)])
            assert "another origin" in page.texts()
            assert not page.of("button") and not page.of("plotly_chart") \
                and not page.of("component_instance") and not page.of("dataframe")
    time.sleep(1.0)
    assert count(trainers, "commands") == commands and c.run(run_id).hp["lr"] == lr


def test_password_guesses_are_throttled_logged_and_counted(trainers, dashboards):
    board = dashboards(password="correct horse battery", settings="free_attempts = 2\n"
                                                                   "retry_delay_s = 5.0\n")

    def outcome(page) -> str:
        found = [a.body for a in page.of("alert") if "Wrong password" in a.body
                 or "Too many" in a.body or "You can steer" in a.body]
        assert len(found) == 1, [a.body for a in page.of("alert")]
        return found[0]

    with StreamlitSocket(board.url) as ws:
        box = ws.run("runs").widget("text_input", "Password or token")

        def guess(value: str) -> str:
            return outcome(ws.run("runs", "", [text(box.id, value)]))

        # two free guesses, then the client waits 5 s, even with the right password
        assert guess("guess1") == "Wrong password."
        assert guess("guess2") == "Wrong password. Next attempt in 5 s."
        second = time.monotonic()
        assert guess("correct horse battery").startswith("Too many failed attempts")
        refused, n = 1, 2
        while time.monotonic() - second < 3.0:             # a guessing loop meanwhile
            n += 1
            assert guess(f"guess{n}").startswith("Too many failed attempts"), n
            refused += 1
        # once the wait is over, one more guess is looked at, and the next wait doubles
        time.sleep(max(0.0, 5.2 - (time.monotonic() - second)))
        assert guess("guess-late") == "Wrong password. Next attempt in 10 s."
        assert guess("guess-later").startswith("Too many failed attempts")
        refused += 1
    # in all that time, 3 guesses were checked; every attempt is in the server's log
    log = board.log_text()
    assert len(re.findall(r"wrong password from this machine", log)) == 3
    assert len(re.findall(r"password attempt from this machine refused unchecked", log)) \
        == refused

    # the owner's link still works meanwhile (a guesser cannot lock them out), and the owner
    # sees how many guesses there were
    with StreamlitSocket(board.url) as ws:
        page = ws.run("runs", f"token={board.token}")
        assert "🔓 you can steer runs" in page.texts()
        assert "3 failed sign-in attempt(s)" in page.texts()


def test_a_rebinding_host_name_is_refused(trainers, dashboards):
    """A page of evil.example whose DNS now says 127.0.0.1 is same-origin to itself: the Host
    header gives it away, and a dashboard bound to loopback answers it nothing."""
    board = dashboards()
    port = board.url.rsplit(":", 1)[1]
    with StreamlitSocket(board.url, host=f"evil.example:{port}",
                         origin=f"http://evil.example:{port}") as ws:
        page = ws.run("runs", f"token={board.token}")
        assert "serves only this machine" in page.texts()
        assert not page.of("dataframe") and not page.of("text_input")
    with StreamlitSocket(board.url, host=f"localhost:{port}") as ws:
        assert "serves only this machine" not in ws.run("runs").texts()


def _other_address() -> str | None:
    """This machine's address on a real interface, for a client that is not loopback."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))            # no packet is sent: it only picks a route
        address = s.getsockname()[0]
        return None if address.startswith("127.") else address
    return None


@pytest.mark.skipif(_other_address() is None, reason="no non-loopback interface")
def test_without_a_chosen_address_other_machines_see_nothing(trainers, tmp_path):
    """`streamlit run` of the app without babysit's config.toml listens on every interface:
    babysit then shows nothing to a client that is not this machine."""
    app = tmp_path / "elsewhere" / "app.py"           # no .streamlit/config.toml next to it
    app.parent.mkdir()
    app.write_text("from babysit.ui.app import main\nmain()\n")
    port = free_port()
    log = tmp_path / "st.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app),
                                 "--server.port", str(port), "--server.headless", "true"],
                                env=trainers.env(), cwd=app.parent, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 60, "streamlit")
        with StreamlitSocket(f"http://{_other_address()}:{port}") as ws:
            page = ws.run("runs")
            assert "listens on every interface" in page.texts()
            assert not page.of("dataframe") and not page.of("text_input")
        with StreamlitSocket(f"http://127.0.0.1:{port}") as ws:
            assert "listens on every interface" not in ws.run("runs").texts()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _listening(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp*)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(OSError), open(table) as f:
            for line in list(f)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:      # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    if width == 8:
                        found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                    else:
                        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                        found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def test_streamlit_run_app_py_from_anywhere_is_locked_down(trainers, tmp_path):
    """No flags, another working directory: the config.toml next to app.py still applies."""
    port = free_port()
    env = trainers.env()
    env.pop("BABYSIT_TOKEN", None)
    log = tmp_path / "st.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run",
                                 str(REPO / "app.py"), "--server.port", str(port)],
                                env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 60, "streamlit")
        assert _listening(port) == {"127.0.0.1"}
        with StreamlitSocket(f"http://127.0.0.1:{port}") as ws:
            page = ws.run("runs")
            config = ws.new_session.config
            assert not config.gather_usage_stats
            assert config.toolbar_mode == config.MINIMAL          # no Deploy button
            assert "🔒 read-only" in page.texts()
        # no launcher handed a token: the server made one and printed its link
        link = wait_for(lambda: re.search(rf"http://127\.0\.0\.1:{port}/\?token=(\S+)",
                                          log.read_text()), 30, "the printed link")
        with StreamlitSocket(f"http://127.0.0.1:{port}") as ws:
            page = ws.run("runs", f"token={link.group(1)}")
            assert "🔓 you can steer runs" in page.texts() and "🔒" not in page.texts()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
