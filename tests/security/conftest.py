"""A real `streamlit run app.py` for the attack tests: the token in its environment, as
`babysit ui` hands it over, and optionally a password and throttle settings in a secrets file."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from babysit.ui.auth import TOKEN_ENV
from babysit.ui.server import streamlit_argv
from tests.conftest import REPO, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Dashboard:
    url: str
    token: str
    log: Path
    proc: subprocess.Popen

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_dashboard(root: Path, env: dict[str, str], *, password: str | None = None,
                    settings: str = "", address: str = "127.0.0.1",
                    as_babysit_ui: bool = False) -> Dashboard:
    """``streamlit run app.py``; with ``as_babysit_ui``, the server ``babysit ui`` starts (its
    options, and the pages imported before the server runs by babysit.ui.warm)."""
    port = free_port()
    token = secrets.token_urlsafe(32)      # as babysit ui makes it
    env = dict(env, BABYSIT_ROOT=str(root))
    env[TOKEN_ENV] = token
    if as_babysit_ui:
        argv = streamlit_argv(address, port, app=REPO / "app.py")
    else:
        argv = [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"),
                "--server.port", str(port), "--server.address", address]
    secrets_file = root.parent / "secrets.toml"
    if password is not None or settings:
        body = "[babysit]\n" + (f'password = "{password}"\n' if password else "") + settings
        secrets_file.write_text(body)
        argv += ["--secrets.files", str(secrets_file)]
    log = root.parent / f"streamlit-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_for(up, 60, "the streamlit server")
    return Dashboard(f"http://127.0.0.1:{port}", token, log, proc)


@pytest.fixture
def dashboards(trainers) -> Iterator[Callable[..., Dashboard]]:
    """start(password=None, settings="") -> a running dashboard on the trainers' store."""
    started: list[Dashboard] = []

    def start(**kwargs) -> Dashboard:
        board = start_dashboard(trainers.root, trainers.env(), **kwargs)
        started.append(board)
        return board
    yield start
    for board in started:
        board.proc.terminate()
        try:
            board.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            board.proc.kill()
            board.proc.wait()
