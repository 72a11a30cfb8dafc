"""Who may steer runs from the dashboard: whoever shows the server's token or the password.

Like Jupyter: every start of the dashboard has a random token (``$BABYSIT_TOKEN``, handed over
by ``babysit ui`` in the environment, never on the command line; or made here and printed when
the server was started some other way, e.g. ``streamlit run app.py``). The link the launcher
prints, ``http://127.0.0.1:8501/?token=...``, proves it once: the page keeps the proof in this
browser session's state and takes the token off the address bar; a reload of that tab keeps
steering through a proof kept in the tab's sessionStorage (``remember_tab``). A configured password
(``[babysit] password`` in ``.streamlit/secrets.toml``) does the same from the sidebar. Without
either, a session only looks: every action that changes a run calls ``require()`` first, so a
button clicked by a crafted websocket message (the browser's ``disabled`` is only a hint) is
refused too.

Guesses are throttled per client address, logged, and counted for the user to see: the first
``free_attempts`` (3) failures are free, then each further attempt waits ``retry_delay_s`` (1 s)
doubled per failure, at most 5 minutes; meanwhile only a random token (32 characters or more,
as ``babysit ui`` makes) or a tab's proof gets in, so a guesser on the same machine cannot lock
the owner out of the printed link. Secrets are compared in constant time.

The page also refuses to show anything to a page of another origin (Streamlit's websocket lets
any ``localhost`` port in, so a page served on another local port could read and click), to a
Host header that is not this machine while bound to loopback (DNS rebinding), and to other
machines when the server listens on every interface only because nothing chose an address.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from babysit.errors import BabysitError

TOKEN_ENV = "BABYSIT_TOKEN"
TOKEN_PARAM = "token"                 # the query parameter of the printed link
SECTION = "babysit"                   # secrets.toml section: password, free_attempts, retry_delay_s
_PROOF = "_babysit_steer"             # session_state key: the token epoch this session proved
_NOTICE = "_babysit_auth_notice"      # session_state key: (kind, message) of the last attempt
MAX_DELAY_S = 300.0
STRONG_TOKEN = 32          # a token this long gets in even while its client's guesses wait
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
READ_ONLY = "read-only: open the link printed by `babysit ui`"

log = logging.getLogger("babysit.ui.auth")
if not log.handlers:
    # Streamlit configures only its own loggers: without a handler, failed attempts would be lost
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(asctime)s babysit: %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class ReadOnly(BabysitError):
    """This browser session has not shown the token or the password: it may only look."""


# --------------------------------------------------------------------------- pure parts


def secret_matches(given: object, expected: str | None) -> bool:
    """Constant-time comparison; an empty or missing secret never matches.

    >>> secret_matches("s3cret", "s3cret"), secret_matches("", ""), secret_matches("x", None)
    (True, False, False)
    """
    if not expected or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class Throttle:
    """Failed attempts per client: ``free`` are free, then ``delay_s`` doubling per failure.

    >>> clock = [0.0]
    >>> t = Throttle(free=2, delay_s=1.0, clock=lambda: clock[0])
    >>> t.failed("a"), t.failed("a"), t.failed("a"), t.wait_s("a"), t.wait_s("b")
    (0.0, 1.0, 2.0, 2.0, 0.0)
    >>> clock[0] = 2.0; t.wait_s("a")
    0.0
    """

    free: int = 3
    delay_s: float = 1.0
    max_delay_s: float = MAX_DELAY_S
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, int] = field(default_factory=dict)
    _next_try: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def delay_after(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        return min(self.delay_s * 2.0 ** (failures - self.free), self.max_delay_s)

    def wait_s(self, client: str) -> float:
        """Seconds before an attempt from ``client`` is checked at all (0: go ahead)."""
        with self._lock:
            return max(0.0, self._next_try.get(client, 0.0) - self.clock())

    def failed(self, client: str) -> float:
        """Count a failure; returns the wait before the next attempt is checked."""
        with self._lock:
            n = self._failures.get(client, 0) + 1
            self._failures[client] = n
            wait = self.delay_after(n)
            self._next_try[client] = self.clock() + wait
            return wait

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
            self._next_try.pop(client, None)

    def failures(self, client: str) -> int:
        with self._lock:
            return self._failures.get(client, 0)


@dataclass(frozen=True)
class Attempt:
    """What came of showing a secret: admitted, or why not (and how long to wait)."""

    ok: bool
    message: str
    wait_s: float = 0.0


class Gate:
    """The server's token, the throttle, and the failed attempts seen since the server started.

    One per server process (``gate()``): sessions come and go, the throttle must not.
    """

    def __init__(self, token: str, throttle: Throttle | None = None):
        self.token = token
        self.epoch = secrets.token_hex(8)     # a session proved *this* token, not an older one
        self.throttle = throttle or Throttle()
        self.failed_total = 0
        self.last_failure: tuple[str, float] | None = None    # (client, wall time)
        self._lock = threading.Lock()

    def tab_proof(self) -> str:
        """What a browser tab keeps (sessionStorage) to steer again after a reload: derived from
        the token, so it ends with this server; never the token or the password themselves."""
        return hmac.new(self.token.encode(), f"babysit tab {self.epoch}".encode(),
                        "sha256").hexdigest()

    def _strong_match(self, given: object) -> bool:
        """The token (when long enough to be random, not a chosen word) or a tab proof."""
        return (len(self.token) >= STRONG_TOKEN and secret_matches(given, self.token)) or \
            secret_matches(given, self.tab_proof())

    def attempt(self, given: object, password: str | None, client: str, kind: str) -> Attempt:
        """Check ``given`` against the token and the password, unless ``client`` must wait."""
        wait = self.throttle.wait_s(client)
        if wait > 0 and self._strong_match(given):
            # 256 random bits need no throttle, and a guesser on this machine must not lock
            # the owner out of the link `babysit ui` printed (or of a reload)
            log.info("%s accepted from %s while its guesses wait", kind, client)
            return Attempt(True, "You can steer runs from this browser tab.")
        if wait > 0:
            log.warning("%s attempt from %s refused unchecked: %d failures, next in %.0f s",
                        kind, client, self.throttle.failures(client), wait)
            return Attempt(False, f"Too many failed attempts from {client}: try again in "
                           f"{math.ceil(wait)} s.", wait)
        if secret_matches(given, self.token) or secret_matches(given, password) or \
                secret_matches(given, self.tab_proof()):
            self.throttle.succeeded(client)
            log.info("%s accepted from %s: this session may steer runs", kind, client)
            return Attempt(True, "You can steer runs from this browser tab.")
        wait = self.throttle.failed(client)
        with self._lock:
            self.failed_total += 1
            self.last_failure = (client, time.time())
        log.warning("wrong %s from %s (%d failures from it, %d in all; next attempt checked "
                    "in %.0f s)", kind, client, self.throttle.failures(client),
                    self.failed_total, wait)
        later = f" Next attempt in {math.ceil(wait)} s." if wait > 0 else ""
        return Attempt(False, f"Wrong {kind}.{later}", wait)


_gate: Gate | None = None
_gate_lock = threading.Lock()


def _announce(token: str) -> None:
    address = _option("server.address") or "localhost"
    host = f"[{address}]" if ":" in address else address
    scheme = "https" if _option("server.sslCertFile") else "http"
    print(f"\n  babysit: to steer runs, open {scheme}://{host}:{_option('server.port')}/"
          f"?{TOKEN_PARAM}={token}\n", file=sys.stderr, flush=True)


def gate() -> Gate:
    """The server's Gate: its token from ``$BABYSIT_TOKEN`` (then removed from the environment,
    so processes the dashboard starts do not inherit it), or made here and printed."""
    global _gate
    with _gate_lock:
        handed = os.environ.pop(TOKEN_ENV, None)
        if handed and (_gate is None or _gate.token != handed):
            _gate = Gate(handed, _throttle())
        elif _gate is None:
            _gate = Gate(secrets.token_urlsafe(32), _throttle())
            _announce(_gate.token)
        return _gate


def forget() -> None:
    """Drop the server's Gate (tests: a fresh token and throttle; sessions lose their proof)."""
    global _gate
    with _gate_lock:
        _gate = None


# --------------------------------------------------------------------------- Streamlit side


def _st() -> Any:
    import streamlit as st

    return st


def _option(name: str) -> Any:
    try:
        return _st().get_option(name)
    except Exception:
        return None


def _settings() -> dict[str, Any]:
    try:
        section = _st().secrets.get(SECTION)
        return dict(section) if section is not None else {}
    except Exception:               # no secrets.toml at all: Streamlit raises on access
        return {}


def password() -> str | None:
    value = _settings().get("password")
    return str(value) if value else None


def _throttle() -> Throttle:
    settings = _settings()
    try:
        free = int(settings.get("free_attempts", 3))
        delay = float(settings.get("retry_delay_s", 1.0))
    except (TypeError, ValueError):
        free, delay = 3, 1.0
    return Throttle(free=max(free, 0), delay_s=max(delay, 0.0))


def _hostname(host: str | None) -> str:
    host = (host or "").strip().lower()
    if host.startswith("["):                      # [::1]:8501
        return host[1:].partition("]")[0]
    if host.count(":") == 1:                      # localhost:8501
        return host.partition(":")[0]
    return host


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` (a bind address or a host name) is this machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost:8501"), is_loopback("0.0.0.0")
    (True, True, False)
    >>> is_loopback("::ffff:127.0.0.1"), is_loopback("[::1]:8501"), is_loopback("192.0.2.2")
    (True, True, False)
    >>> is_loopback(None)     # unset: Streamlit listens on every interface
    False
    """
    name = _hostname(address)
    if name in LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    # a server listening on "::" sees an IPv4 client on 127.0.0.1 as ::ffff:127.0.0.1
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _headers() -> Any:
    try:
        return _st().context.headers
    except Exception:
        return {}


def client_address() -> str:
    """The address throttling counts against: the peer's IP ("this machine" for loopback)."""
    try:
        ip = _st().context.ip_address
    except Exception:
        ip = None
    return "this machine" if not ip or is_loopback(str(ip)) else str(ip)


def refusal() -> str | None:
    """Why this connection may not even look, or None.

    - a page of another origin (another localhost port included) opened the websocket;
    - bound to loopback, but the browser asked for another host name (DNS rebinding);
    - the server listens on every interface because no address was chosen, and the
      connection comes from another machine.
    """
    headers = _headers()
    origin, host = headers.get("Origin"), headers.get("Host")
    if origin and host:
        allowed = {o.strip() for o in (_option("server.corsAllowedOrigins") or [])}
        if urlparse(origin).netloc.lower() != host.lower() and origin not in allowed:
            return (f"This page was opened from another origin ({origin}): the dashboard "
                    f"answers only pages it served itself.")
    address = _option("server.address")
    if is_loopback(address) and host and not is_loopback(host):
        return (f"This dashboard serves only this machine, but was asked for {host}: open it "
                "at the address `babysit ui` printed.")
    if not address and client_address() != "this machine":
        return ("This dashboard was started without `server.address`, so it listens on every "
                "interface; babysit shows it only to this machine then. To share it, choose the "
                "address (`babysit ui --address 0.0.0.0`) and set a password.")
    return None


def exposed() -> bool:
    """True when other machines may reach this server (bind address unset or not loopback)."""
    return not is_loopback(_option("server.address"))


def tls_warning() -> str | None:
    """The warning for a dashboard other machines reach over plain HTTP, or None."""
    if not exposed() or _option("server.sslCertFile"):
        return None
    return TLS_HELP


TLS_HELP = ("This dashboard is reachable from other machines over plain HTTP: the password and "
            "the token cross the network readable. Enable TLS with two lines in "
            "`.streamlit/config.toml`, under `[server]`:\n\n"
            "    sslCertFile = \"/path/to/cert.pem\"\n"
            "    sslKeyFile = \"/path/to/key.pem\"")


def may_steer() -> bool:
    """Whether this browser session showed the token or the password."""
    st = _st()
    return st.session_state.get(_PROOF) == gate().epoch


def require() -> None:
    """Raise ReadOnly unless this session may steer: call before every action that changes a run."""
    if not may_steer():
        raise ReadOnly(f"This browser tab is {READ_ONLY}" +
                       (" or enter the password in the sidebar." if password() else "."))


def _try(given: object, kind: str) -> Attempt:
    st = _st()
    outcome = gate().attempt(given, password(), client_address(), kind)
    if outcome.ok:
        st.session_state[_PROOF] = gate().epoch
    if not outcome.ok or kind != "tab proof":      # a reload that keeps steering says nothing
        st.session_state[_NOTICE] = ("success" if outcome.ok else "error", outcome.message)
    return outcome


def admit() -> None:
    """At the top of every script run: take ``?token=`` off the address bar and check it."""
    st = _st()
    given = st.query_params.get(TOKEN_PARAM)
    if given is None:
        return
    # rewrite the URL first: the token must not stay in the address bar, history or a shared link
    del st.query_params[TOKEN_PARAM]
    if not may_steer():
        _try(given, "token")


def note() -> str:
    """The line a read-only page shows where its controls are."""
    extra = " (or enter the password in the sidebar)" if password() else ""
    return f"🔒 {READ_ONLY}{extra} to steer runs. You can still look."


_KEPT = "_babysit_tab_kept"          # session_state key: this tab stored its proof already
_TAB_JS = """
export default function (component) {
  // sessionStorage belongs to this tab and this origin (scheme, host and port): a page served
  // on another port cannot read it, unlike a cookie, which every port of the host shares.
  const { data, setTriggerValue } = component;
  const KEY = "babysit.proof";
  if (!data) return;
  if (data.keep) { sessionStorage.setItem(KEY, JSON.stringify(data.keep)); return; }
  let kept = null;
  try { kept = JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch (e) { kept = null; }
  if (!kept) return;
  if (kept.epoch !== data.epoch) { sessionStorage.removeItem(KEY); return; }  // an older server
  setTriggerValue("kept", kept.proof);
}
"""


def _tab_memory() -> Any:
    st = _st()
    return st.components.v2.component("babysit_tab_proof", js=_TAB_JS)


def _on_kept() -> None:
    st = _st()
    given = st.session_state.get("_babysit_tab_proof", {})
    value = given.get("kept") if isinstance(given, dict) else getattr(given, "kept", None)
    if value:
        _try(value, "tab proof")


def remember_tab() -> None:
    """A reload of a tab that proved the token keeps steering; a new tab needs the link again.

    After a session proves the token or the password, the page stores a proof derived from the
    token in the tab's sessionStorage; a reloaded tab sends it back (throttled like a guess).
    """
    st = _st()
    g = gate()
    try:
        mount = _tab_memory()
        if may_steer():
            if st.session_state.get(_KEPT) != g.epoch:
                mount(key="_babysit_tab_proof", height=0,
                      data={"keep": {"epoch": g.epoch, "proof": g.tab_proof()}})
                st.session_state[_KEPT] = g.epoch
        else:
            mount(key="_babysit_tab_proof", height=0, data={"epoch": g.epoch},
                  on_kept_change=_on_kept)
    except Exception as exc:       # no browser runtime (AppTest): the tab just forgets on reload
        log.debug("tab memory unavailable: %r", exc)


def _submit_login(key: str) -> None:
    st = _st()
    given = st.session_state.get(key) or ""
    if not given or may_steer():
        return           # the box cleared (a rerun, a reload), or the tab proved itself meanwhile
    _try(given, "password" if password() else "token")
    st.session_state[key] = ""


def sidebar() -> None:
    """Sign-in box when read-only; who tried and failed when the user may steer."""
    st = _st()
    with st.sidebar:
        remember_tab()
    notice = st.session_state.pop(_NOTICE, None)
    if may_steer():
        g = gate()
        if g.failed_total:
            who, when = g.last_failure or ("?", time.time())
            st.sidebar.warning(f"{g.failed_total} failed sign-in attempt(s) since the dashboard "
                               f"started, the last from {who} at "
                               f"{time.strftime('%H:%M:%S', time.localtime(when))}.")
        st.sidebar.caption("🔓 you can steer runs")
    else:
        st.sidebar.caption("🔒 read-only: to steer runs, open the link `babysit ui` printed" +
                           (" or enter the password." if password() else "."))
        label = "Password or token" if password() else "Token"
        key = "_babysit_secret"
        st.sidebar.text_input(label, type="password", key=key, on_change=_submit_login,
                              args=(key,), help="the token is in the link `babysit ui` printed")
    if notice is not None:
        kind, message = notice
        (st.sidebar.success if kind == "success" else st.sidebar.error)(message)
    warning = tls_warning()
    if warning:
        st.sidebar.warning(warning)
