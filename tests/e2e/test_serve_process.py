"""`babysit demo` / `babysit ui` as a service manager sees them: real processes, real signals.

SIGTERM to the babysit process stops its Streamlit server (the port is free again, no server
left serving) and the demo's training run (stopped, its process gone); a busy port is refused
before any run exists.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from babysit import Client
from tests.conftest import REPO, wait_for

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    for name in ("BABYSIT_RUN_ID", "BABYSIT_ROOT", "BABYSIT_STORE_URL", "BABYSIT_TOKEN"):
        env.pop(name, None)
    return env


def _babysit(root: Path, *args: str, log: Path, **env: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "babysit", "--root", str(root), *args],
                                env={**_env(), **env}, stdout=out, stderr=subprocess.STDOUT)


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _kill_tree(proc: subprocess.Popen) -> None:
    """A failed test's cleanup: the babysit process and whatever it started (a SIGKILL reaches
    only the process it is sent to, so its Streamlit server would live on, orphaned)."""
    if proc.poll() is None:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        proc.kill()
        proc.wait()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_training(client: Client, proc: subprocess.Popen, log: Path) -> None:
    """Wait until the demo's run trains; if it does not, fail with what the demo said (seen
    once in a CI run): its exit code, its runs and the tail of its log."""
    try:
        wait_for(lambda: len(client.runs()) and client.runs().iloc[0]["status"] == "running"
                 and int(client.runs().iloc[0]["step"]) > 0, 120, "the demo run to train")
    except AssertionError as exc:
        runs = client.runs()[["id", "status", "step"]].to_string() if len(client.runs()) \
            else "no run"
        raise AssertionError(f"{exc}; demo exit code {proc.poll()}; runs:\n{runs}\n"
                             f"demo log:\n{log.read_text(errors='replace')[-3000:]}") from None


def test_sigterm_stops_the_demo_server_and_its_training(tmp_path):
    root, port = tmp_path / "store", _free_port()
    log = tmp_path / "demo.log"
    proc = _babysit(root, "demo", "--port", str(port), "--pace", "0.02", "--day", "50 steps",
                    log=log)
    try:
        wait_for(lambda: proc.poll() is not None or _serving(port), 120, "the demo's dashboard")
        assert proc.poll() is None, log.read_text()
        client = Client(root)
        _wait_training(client, proc, log)
        run = client.run(int(client.runs().iloc[0]["id"]))
        # the demo trains until stopped: a newcomer coming back later still has live controls
        argv = run.launch["argv"]
        assert argv[argv.index("--epochs") + 1] == "0"
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        servers = [pid for pid in children if pid != run.pid]
        assert run.pid in children and servers, children   # the trainer and Streamlit

        proc.send_signal(signal.SIGTERM)          # as systemd / docker stop does
        assert proc.wait(timeout=90) == 0, log.read_text()
        wait_for(lambda: _port_free(port), 30, "the port to be free")
        for pid in servers + [run.pid]:
            assert _gone(pid), f"process {pid} outlived babysit demo:\n{log.read_text()}"
        after = client.run(run.id)
        assert after.status == "stopped" and after.step >= run.step
        assert "stopped" in log.read_text()
    finally:
        _kill_tree(proc)


def test_a_killed_demo_leaves_no_training_behind(tmp_path):
    """SIGKILL gives babysit demo no chance to clean up: its run notices and stops itself."""
    root, port = tmp_path / "store", _free_port()
    log = tmp_path / "demo.log"
    proc = _babysit(root, "demo", "--port", str(port), "--pace", "0.01", "--day", "50 steps",
                    log=log)
    servers: list[int] = []
    try:
        wait_for(lambda: proc.poll() is not None or _serving(port), 120, "the demo's dashboard")
        client = Client(root)
        _wait_training(client, proc, log)
        run = client.run(int(client.runs().iloc[0]["id"]))
        servers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)
                   if c.pid != run.pid]
        proc.kill()
        proc.wait()
        wait_for(lambda: client.run(run.id).status == "stopped", 60, "the demo run to stop")
        wait_for(lambda: _gone(run.pid), 30, "the demo's trainer to exit")
        assert "the babysit demo that started this run is gone" in \
            (client.console(run.id, lines=50) or "")
    finally:
        _kill_tree(proc)
        for pid in servers:           # the orphaned Streamlit server (SIGKILL skips its stop)
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


def _get(port: int, path: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def test_sigterm_stops_the_ui_server(tmp_path):
    root, port, tmp = tmp_path / "store", _free_port(), tmp_path / "tmp"
    tmp.mkdir()
    # an environment that turns Streamlit's agent API on (the app's widgets over HTTP / MCP,
    # without a browser): babysit ui keeps it off all the same
    proc = _babysit(root, "ui", "--port", str(port), log=tmp_path / "ui.log", TMPDIR=str(tmp),
                    STREAMLIT_SERVER_ENABLE_AGENT_API="true")
    try:
        wait_for(lambda: proc.poll() is not None or _serving(port), 120, "the dashboard")
        assert proc.poll() is None, (tmp_path / "ui.log").read_text()
        agent = urllib.request.Request(f"http://127.0.0.1:{port}/_stcore/agent/interact",
                                       data=b"{}", method="POST",
                                       headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(agent, timeout=10)
        assert refused.value.code == 403 and b"not_available" in refused.value.read()
        # what a newcomer reads: the link, not Streamlit's warnings from warming the pages
        printed = (tmp_path / "ui.log").read_text()
        assert "?token=" in printed
        for noise in ("No runtime found", "ScriptRunContext", "please restart streamlit",
                      "warming the dashboard failed"):
            assert noise not in printed, printed
        # the page shell imports Streamlit's plotly bundle on the pages that draw
        # st.plotly_chart, and the bundle it names is served: a fresh browser downloads and
        # evaluates it while the page waits for the server. The Run page (babysit's own chart
        # frame) is served the same shell; it tests the address and loads none of it.
        for path in ("/", "/run?run=1", "/study"):
            status, kind, shell = _get(port, path)
            assert status == 200 and kind.startswith("text/html")
            importer = re.search(rb'import\("\./(static/js/PlotlyChart\.[^"]+\.js)"\)', shell)
            assert importer and shell.index(importer.group(0)) > shell.index(
                b'<script type="module"')
            assert b"(lineage|study)" in shell and b"modulepreload crossorigin href=\"./static/js" \
                b"/PlotlyChart" not in shell
        status, kind, bundle = _get(port, "/" + importer.group(1).decode())
        assert status == 200 and "javascript" in kind and len(bundle) > 1_000_000
        assert _get(port, "/favicon.png")[0] == 200        # the rest of Streamlit's files too
        servers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        wait_for(lambda: _port_free(port), 30, "the port to be free")
        assert servers and all(_gone(pid) for pid in servers)
        assert not list(tmp.iterdir())         # the served shell's folder went with the server
    finally:
        _kill_tree(proc)


@pytest.mark.parametrize("verb", ["demo", "ui"])
def test_a_busy_port_is_refused_before_anything_starts(tmp_path, verb):
    root = tmp_path / "store"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "babysit", "--root", str(root), verb,
                               "--port", str(port)], env=_env(), capture_output=True,
                              text=True, timeout=120)
    assert done.returncode == 2, done
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert "--port" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 60
    # nothing was created: no store, so no run and no training process
    assert not root.exists() or Client(root).runs().empty
