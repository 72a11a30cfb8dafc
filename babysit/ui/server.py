"""Starting the dashboard (``babysit ui``, ``babysit demo``): a Streamlit server locked down.

A fresh random token per start reaches the server in its environment (``$BABYSIT_TOKEN``: other
users cannot read a process's environment, while anyone can read its command line in ``ps``);
the link printed here carries it. Streamlit's options are passed as flags, so a
``config.toml`` elsewhere cannot loosen them: XSRF protection and CORS on, usage statistics and
the developer toolbar (Deploy, Clear cache) off. No Streamlit import here: the CLI starts fast.

>>> link("127.0.0.1", 8501, "abc")
'http://127.0.0.1:8501/?token=abc'
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from babysit.errors import InvalidValue
from babysit.launcher import terminate
from babysit.ui.auth import TLS_HELP, TOKEN_ENV, TOKEN_PARAM, is_loopback

APP = Path(__file__).resolve().parent / "app.py"


def new_token() -> str:
    """A token for one start: ``$BABYSIT_TOKEN`` when the user chose one, else 256 random bits."""
    return os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)


def link(address: str, port: int, token: str, *, tls: bool = False) -> str:
    """The URL to open: the server's address (this host's name when it listens everywhere)."""
    host = address
    if address in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    elif ":" in address:
        host = f"[{address}]"
    return f"{'https' if tls else 'http'}://{host}:{port}/?{TOKEN_PARAM}={token}"


#: What an open page costs the machine that trains. Streamlit runs a full garbage collection
#: (``gc.collect(2)``) after every script run, and the Run page's four live sections each rerun
#: every 2 s: with torch, pandas and plotly in the heap that was 23% of a core for one open
#: tab of a finished run (py-spy: nearly all of the server's CPU). Python's own generational
#: collector still runs. Watching the app's files for edits (to rerun on save) is for
#: developing a Streamlit app, not for using one.
SERVER_LOAD_FLAGS = ("--runner.postScriptGC", "false", "--server.fileWatcherType", "none")


def streamlit_argv(address: str, port: int, *, app: Path = APP, ssl_cert: str | None = None,
                   ssl_key: str | None = None) -> list[str]:
    """``python -m babysit.ui.warm run app.py`` (Streamlit, warmed) with babysit's options."""
    # babysit.ui.warm: streamlit run, after importing what the pages need (a fast first chart)
    argv = [sys.executable, "-m", "babysit.ui.warm", "run", str(app),
            "--server.address", address, "--server.port", str(int(port)),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.enableXsrfProtection", "true", "--server.enableCORS", "true",
            "--client.toolbarMode", "minimal", "--global.developmentMode", "false",
            # Streamlit 1.67 can serve an app's contents and widgets to programs over HTTP and
            # MCP (its "agent API"): off by default, and kept off whatever a config.toml says,
            # as it would be a way in that babysit's browser-side checks were not built for
            "--server.enableAgentApi", "false",
            *SERVER_LOAD_FLAGS]
    if ssl_cert and ssl_key:
        argv += ["--server.sslCertFile", str(ssl_cert), "--server.sslKeyFile", str(ssl_key)]
    return argv


def check_port(address: str, port: int) -> None:
    """Refuse a port another server listens on, before anything starts (a demo run included).

    Binds and releases it as the server will (``SO_REUSEADDR``, so a port in TIME_WAIT after
    the last dashboard stopped is free). Another process may still take it in between: the
    server then fails to start, and the caller stops what it started.

    >>> check_port("127.0.0.1", 0)
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidValue(f"port must be a whole number from 1 to 65535, got {port!r}")
    try:
        infos = socket.getaddrinfo(address or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidValue(f"cannot serve on address {address!r}: {exc.strerror}") from None
    family, kind, proto, _, where = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(where)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InvalidValue(f"port {port} on {address} is in use (another dashboard?): "
                                   "stop it or choose another port with --port") from None
            raise InvalidValue(f"cannot serve on {address}:{port}: {exc.strerror}") from None


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (a service manager stopping us, a closed terminal) raise
    KeyboardInterrupt like Ctrl-C, so the ``finally`` blocks that stop the Streamlit server and
    the demo's training run. Without it the interpreter dies at once and they live on, orphaned.
    """
    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def serve(root: Path | str, *, address: str = "127.0.0.1", port: int = 8501,
          store_url: str | None = None, extra_env: Mapping[str, str] | None = None,
          ssl_cert: str | None = None, ssl_key: str | None = None) -> int:
    """Run the dashboard until Ctrl-C (or SIGTERM/SIGHUP under :func:`stopped_by_signals`);
    prints the link with this start's token. The Streamlit server never outlives this call.

    >>> serve("checkpoints")      # doctest: +SKIP
    dashboard: http://127.0.0.1:8501/?token=...
    """
    if bool(ssl_cert) != bool(ssl_key):
        raise ValueError("TLS needs both --ssl-cert and --ssl-key")
    token = new_token()
    env = dict(os.environ, **(extra_env or {}))
    env["BABYSIT_ROOT"] = str(root)
    env[TOKEN_ENV] = token
    if store_url:
        env["BABYSIT_STORE_URL"] = store_url
    tls = bool(ssl_cert and ssl_key)
    if not is_loopback(address) and not tls:
        print("babysit: warning: " + TLS_HELP.replace("`", "") +
              "\n    (or: babysit ui --ssl-cert cert.pem --ssl-key key.pem)\n", file=sys.stderr)
    print(f"dashboard: {link(address, port, token, tls=tls)}\n"
          "  (this link steers runs: the token in it is this start's secret)", flush=True)
    argv = streamlit_argv(address, port, ssl_cert=ssl_cert, ssl_key=ssl_key)
    server = subprocess.Popen(argv, env=env)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        # Ctrl-C reached the server too (same process group); SIGTERM reached only us.
        with contextlib.suppress(KeyboardInterrupt):   # a second signal: finish stopping it
            terminate(server.pid, lambda: server.poll() is None)
