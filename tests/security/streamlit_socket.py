"""A raw Streamlit websocket client: what a script of another local user, or a page's JavaScript,
can send to the dashboard without a browser's help. It speaks Streamlit's own protobufs."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlparse

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.sync.client import ClientConnection, connect


def rerun_message(page: str, query: str = "", widgets: Iterable[WidgetState] = (),
                  fragment_id: str = "", page_script_hash: str = "") -> bytes:
    """The BackMsg a browser sends to run ``page`` with ``query`` and these widget values (with
    ``fragment_id``: to rerun that fragment only, as its ``run_every`` timer does, on the page
    of ``page_script_hash``, which a browser sends once it knows it)."""
    msg = BackMsg()
    state = msg.rerun_script
    state.query_string = query
    state.page_name = page
    state.page_script_hash = page_script_hash
    state.widget_states.widgets.extend(list(widgets))
    if fragment_id:
        state.fragment_id = fragment_id
        state.is_auto_rerun = True
    return msg.SerializeToString()


def trigger(widget_id: str) -> WidgetState:
    """A button click: the widget's id with trigger_value set."""
    return WidgetState(id=widget_id, trigger_value=True)


def text(widget_id: str, value: str) -> WidgetState:
    return WidgetState(id=widget_id, string_value=value)


class Elements:
    """The elements one script run drew: (kind, proto) pairs in order."""

    def __init__(self, items: list[tuple[str, Any]]):
        self.items = items

    def of(self, kind: str) -> list[Any]:
        return [e for k, e in self.items if k == kind]

    def widget(self, kind: str, label: str) -> Any:
        found = [e for e in self.of(kind) if e.label == label]
        assert found, f"no {kind} labelled {label!r}: {[e.label for e in self.of(kind)]}"
        return found[0]

    def texts(self) -> str:
        out = []
        for _, e in self.items:
            for field in ("body", "label", "value"):
                value = getattr(e, field, None)
                if isinstance(value, str):
                    out.append(value)
        return "\n".join(out)


class StreamlitSocket:
    """One websocket session with a running Streamlit server."""

    def __init__(self, base_url: str, origin: str | None = None, host: str | None = None):
        """``host``: the Host header to send (the name a rebinding page would use), while the
        connection still goes to ``base_url``'s address."""
        uri = base_url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        sock = None
        if host is not None:
            address = urlparse(base_url)
            sock = socket.create_connection((address.hostname, address.port), timeout=30)
            uri = f"ws://{host}/_stcore/stream"
        self._connection = connect(uri, origin=origin, subprotocols=["streamlit"],
                                   max_size=None, open_timeout=30, sock=sock)
        self.ws: ClientConnection = self._connection.__enter__()
        self.new_session: Any = None     # the server's NewSession message: its client config
        self.page_script_hash = ""       # the page drawn last (a fragment rerun names it)
        #: fragment id -> seconds between its redraws (the server's AutoRerun messages)
        self.auto_reruns: dict[str, float] = {}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.__exit__(None, None, None)

    def __enter__(self) -> StreamlitSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def messages(self, timeout: float) -> Iterator[ForwardMsg]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no script_finished from the server")
            data = self.ws.recv(timeout=left)
            msg = ForwardMsg()
            msg.ParseFromString(data)
            yield msg

    def run(self, page: str, query: str = "", widgets: Iterable[WidgetState] = (),
            timeout: float = 60.0, fragment_id: str = "") -> Elements:
        """Send a rerun; collect what the script draws until it finishes (fragments ignored;
        with ``fragment_id``, that fragment's run, and the full run it may ask for)."""
        known = self.page_script_hash if fragment_id else ""
        self.ws.send(rerun_message(page, query, widgets, fragment_id, known))
        items: list[tuple[str, Any]] = []
        for msg in self.messages(timeout):
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self.new_session = msg.new_session
            elif kind == "navigation":         # the page st.navigation chose
                self.page_script_hash = msg.navigation.page_script_hash
            elif kind == "auto_rerun":
                self.auto_reruns[msg.auto_rerun.fragment_id] = msg.auto_rerun.interval
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                which = element.WhichOneof("type")
                items.append((which, getattr(element, which)))
            elif kind == "script_finished":
                status = msg.script_finished
                if status == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    items = []          # st.rerun() after an action: the next run is the page
                elif status != ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY or fragment_id:
                    return Elements(items)
        raise AssertionError("unreachable")
