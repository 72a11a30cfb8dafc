"""The attacks of issue 10 in a real browser: a page served on another localhost port tries to
steer a live run through the dashboard's websocket and through a frame; hostile names render as
text in the DOM and fetch nothing. Screenshots of the read-only and the steering view."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

import babysit
from tests.conftest import wait_for
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, FIRST_DRAW_MS, chart
from tests.security.conftest import free_port
from tests.security.streamlit_socket import StreamlitSocket, rerun_message, trigger

pytestmark = [pytest.mark.slow, pytest.mark.e2e,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


class _Site(http.server.BaseHTTPRequestHandler):
    """Serves one page (the attacker's) and counts every request (the tracker)."""

    body = b""
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def site(body: str = "") -> Iterator[tuple[str, list[str]]]:
    handler = type("Site", (_Site,), {"body": body.encode(), "hits": []})
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", handler.hits
    finally:
        server.shutdown()
        server.server_close()


def count(trainers, table: str) -> int:
    return trainers.client.store.read(
        lambda c: c.exec_driver_sql(f"select count(*) from {table}").scalar())


ATTACK = """<!doctype html><title>cat pictures</title>
<p>Nothing to see here.</p>
<iframe id="framed" src="{dashboard}/run?run={run_id}" width="1200" height="900"></iframe>
<script>
window.result = {{opened: false, frames: [], closed: null}};
const forged = Uint8Array.from(atob("{forged}"), c => c.charCodeAt(0));
const ws = new WebSocket("{ws}/_stcore/stream", ["streamlit"]);
ws.binaryType = "arraybuffer";
ws.onopen = () => {{ window.result.opened = true; ws.send(forged); }};
ws.onmessage = (e) => {{
  const bytes = new Uint8Array(e.data);
  let s = ""; for (const b of bytes) s += String.fromCharCode(b);
  window.result.frames.push(btoa(s));
}};
ws.onclose = (e) => {{ window.result.closed = e.code; }};
</script>
"""


def test_a_page_on_another_local_port_cannot_steer_a_run(trainers, dashboards):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    _, run_id = trainers.start("--pace", "0.02", "--day", "20 steps")
    board = dashboards()
    c = trainers.client
    lr, commands, runs = c.run(run_id).hp["lr"], count(trainers, "commands"), len(c.runs())
    with StreamlitSocket(board.url) as ws:        # widget ids are predictable: learn them
        half = ws.run("run", f"run={run_id}").widget("button", "lr ×0.5")
    # the attacker even has the token (say it leaked): from another origin it is worth nothing
    forged = rerun_message("run", f"token={board.token}&run={run_id}", [trigger(half.id)])
    page_html = ATTACK.format(dashboard=board.url, run_id=run_id, ws=board.url.replace("http", "ws"),
                              forged=base64.b64encode(forged).decode())
    with site(page_html) as (attacker, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1100})
        page.goto(attacker)
        wait_for(lambda: page.evaluate("window.result.frames.length") > 3, 60,
                 "the dashboard's answer to the forged message")
        result = page.evaluate("window.result")
        # Streamlit opened the socket (it lets in every localhost port) ...
        assert result["opened"]
        drawn = []
        for frame in result["frames"]:
            msg = ForwardMsg()
            msg.ParseFromString(base64.b64decode(frame))
            if msg.WhichOneof("type") == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                drawn.append((element.WhichOneof("type"), str(element)))
        # ... and babysit answered it a refusal and nothing else: no button, no chart, no table
        assert any("another origin" in text for _, text in drawn), drawn
        assert not [kind for kind, _ in drawn
                    if kind in ("button", "plotly_chart", "component_instance", "dataframe")]

        # the dashboard in a frame of the attacker's page (clickjacking): a session without the
        # token, so its controls are off, and a forced click does nothing
        framed = page.frame_locator("#framed")
        button = framed.get_by_role("button", name="lr ×0.5")
        expect(button).to_be_disabled(timeout=FIRST_DRAW_MS)
        button.click(force=True)
        page.screenshot(path=str(ARTIFACTS / "security-0-attacker-page.png"))
        browser.close()
    trainers.wait_step(run_id, c.run(run_id).step + 10)
    assert count(trainers, "commands") == commands and len(c.runs()) == runs
    assert c.run(run_id).hp["lr"] == lr and c.run(run_id).status == "running"


def test_read_only_and_steering_views(trainers, dashboards):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    _, run_id = trainers.start("--pace", "0.02", "--day", "20 steps")
    board = dashboards()
    c = trainers.client
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.goto(f"{board.url}/run?run={run_id}")
        expect(page.get_by_text("read-only: open the link printed by")).to_be_visible(
            timeout=FIRST_DRAW_MS)
        expect(page.get_by_role("button", name="lr ×0.5")).to_be_disabled(timeout=FIRST_DRAW_MS)
        expect(chart(page)).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "security-1-read-only.png"), full_page=True)

        page.goto(f"{board.url}/run?run={run_id}&token={board.token}")
        expect(page.get_by_role("button", name="lr ×0.5")).to_be_enabled(timeout=FIRST_DRAW_MS)
        assert "token=" not in page.url                    # taken off the address bar
        lr = c.run(run_id).hp["lr"]
        page.get_by_role("button", name="lr ×0.5").click()
        wait_for(lambda: c.run(run_id).hp["lr"] == pytest.approx(lr / 2), 30, "the nudge")
        expect(page.get_by_text("applied at step")).to_be_visible(timeout=30_000)
        expect(chart(page)).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "security-2-steering.png"), full_page=True)

        page.reload()                 # the same tab keeps steering (its sessionStorage) ...
        expect(page.get_by_text("🔓 you can steer runs")).to_be_visible(timeout=FIRST_DRAW_MS)
        expect(page.get_by_role("button", name="lr ×0.5")).to_be_enabled(timeout=FIRST_DRAW_MS)
        other = browser.new_page()    # ... another tab, without the link, only looks
        other.goto(f"{board.url}/run?run={run_id}")
        expect(other.get_by_role("button", name="lr ×0.5")).to_be_disabled(timeout=FIRST_DRAW_MS)
        browser.close()


IMAGE = "![t]({tracker}/track.png)"
LINK = '<a href="{tracker}/x">click</a>'
JS_LINK = "[js](javascript:alert(1))"
AUTO = "see {tracker}/auto or www.example.com"
TERMINAL = "\x1b[2J\x1b[31mred\x07"


def hostile_store(root, tracker: str) -> None:
    """Finished runs whose names, metric names and config carry every injection."""
    image, link, auto = (s.format(tracker=tracker) for s in (IMAGE, LINK, AUTO))
    for name, project in ((image, JS_LINK), (link, auto)):
        run = babysit.init(project=project, name=name, root=root, day="20 steps",
                           config={"lr": 0.1, "momentum": 0.9, link: "v", "note": TERMINAL,
                                   "blob": "x" * 100_000})
        model = torch.nn.Linear(2, 1)
        run.attach(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1,
                                                          momentum=0.9))
        for step in run.loop(steps=45):
            run.log(loss=1.0 / (1 + step), **{link: 0.5 / (1 + step)})
        run.finish()


def test_hostile_names_render_as_text_and_fetch_nothing(root, dashboards):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with site() as (tracker, hits):
        hostile_store(root, tracker)
        board = dashboards()
        image, link = IMAGE.format(tracker=tracker), LINK.format(tracker=tracker)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.goto(f"{board.url}/run?run=1&token={board.token}")
            title = page.get_by_role("heading", level=1)
            expect(title).to_contain_text("Run #1", timeout=FIRST_DRAW_MS)
            # the name reads as typed (a word joiner, invisible, keeps its URL from autolinking)
            assert title.inner_text().replace("\u2060", "") == f"Run #1 {image}"
            # the metric named like a link: drawn as text in the chart (a panel title), no <a>
            # (90 s: on 2 loaded cores the Run page's first chart has taken over 30 s)
            expect(chart(page).locator("svg text", has_text=link).first).to_be_visible(
                timeout=90_000)
            page.screenshot(path=str(ARTIFACTS / "security-3-hostile-names.png"),
                            full_page=True)
            checked = []
            for path in ("run?run=1", "run?run=2", "runs", "compare", "lineage"):
                page.goto(f"{board.url}/{path}")
                page.locator("[data-testid='stMain']").wait_for(timeout=FIRST_DRAW_MS)
                page.wait_for_timeout(3000)
                found = []        # the page and its frames (the charts draw in one)
                for frame in page.frames:
                    found += frame.evaluate("""() => {
                        const out = [];
                        for (const a of document.querySelectorAll('a'))
                            out.push(a.getAttribute('href') || a.getAttribute('xlink:href') || '');
                        for (const i of document.querySelectorAll('img,image,source,iframe'))
                            out.push(i.getAttribute('src') || i.getAttribute('href') || '');
                        return out; }""")
                bad = [u for u in found if tracker in u or u.strip().lower().startswith(
                    "javascript") or "example.com" in u]
                assert not bad, (path, bad)
                checked.append(path)
            page.goto(f"{board.url}/compare")
            chart(page, "compare_figure").first.wait_for(timeout=FIRST_DRAW_MS)
            assert all("\x1b" not in frame.content() for frame in page.frames)
            browser.close()
        assert len(checked) == 5
        assert hits == [], hits                          # the tracker was never fetched
