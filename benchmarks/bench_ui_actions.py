"""How fast the dashboard answers: a click to its confirmation, and a fresh dashboard's first chart.

Everything real: a store in a temp folder, the demo trainer in a subprocess (``python -m
babysit.demo``), the dashboard as ``babysit ui`` starts it (its own process, a token), and a
headless Chromium driven by Playwright.

(a) **click → confirmation**: on the live run's page, click "lr ×0.5" / "lr ×2" in turn and
    time until the new "… applied at step N" message is on screen; beside it, in the same run,
    the Python Client's own nudge latency (``Client.nudge(..., wait=True)``) and the trainer's
    step time. Target: under 1 s plus one training step.
(b) **first chart**: a finished run of ``--chart-steps`` steps (loss, val_loss and the lr trace,
    written to the store directly); a fresh browser on the freshly started dashboard opens its
    page: time until the loss curve is drawn, by the page's own clock (from the start of the
    navigation to the curve in the document), with Playwright's wall time beside it. Then the
    same navigation again (warm server, warm caches). Target: under 3 s for 1,000 steps.

    python benchmarks/bench_ui_actions.py                    # 10 clicks, 1,000-step chart
    python benchmarks/bench_ui_actions.py --clicks 5 --pace 0.05 --chart-steps 5000
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from babysit import Client  # noqa: E402

TOKEN = "bench-ui-token"
CLICK_TARGET_MS = 1000.0
CHART_TARGET_S = 3.0
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]
CONFIRMATION = re.compile(r"applied at step \d+")
DRAWN_CURVE = ".js-plotly-plot .scatterlayer .trace path.js-line"
#: records in the page when the first curve was drawn (ms since the page's navigation started,
#: by the page's own clock), also when a chart's frame draws it. An init script runs in every
#: frame, but a frame's first navigation keeps the window of its initial about:blank document
#: (so the script is not run again): it watches each new document of its window as it loads.
#: A frame's clock starts at its own navigation: its time is moved to the page's.
DRAWN_PROBE = """
(() => {
  const watched = new WeakSet();
  function watch() {
    const doc = document;
    if (watched.has(doc)) return;
    watched.add(doc);
    new MutationObserver((_, observer) => {
      if (!doc.querySelector(SELECTOR)) return;
      observer.disconnect();
      const top = window.top;
      if (top.__drawn === undefined)
        top.__drawn = performance.timeOrigin + performance.now() - top.performance.timeOrigin;
    }).observe(doc, {subtree: true, childList: true});
  }
  watch();
  window.addEventListener("DOMContentLoaded", watch);
})();
""".replace("SELECTOR", repr(DRAWN_CURVE))


def wait_drawn(page, timeout_ms: float = 120_000) -> float:
    """Seconds from the page's navigation to its first curve (see ``DRAWN_PROBE``, which must
    have been added to the page before it navigated)."""
    page.wait_for_function("window.__drawn !== undefined", timeout=timeout_ms)
    return page.evaluate("window.__drawn") / 1000.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Stop the processes a benchmark started, last first: SIGTERM, then SIGKILL after 30 s."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def describe(tree: Path) -> str:
    """The commit checked out in ``tree``, with "+" when it has changes."""
    return subprocess.run(["git", "describe", "--always", "--dirty=+"], cwd=tree, text=True,
                          capture_output=True).stdout.strip()


def finished_run(client: Client, steps: int) -> int:
    """A finished run with ``steps`` steps of loss and lr, val_loss per 100-step day."""
    store = client.store
    now = time.time() - steps * 0.05
    run_id = store.create_run(project="bench-chart", name="long", config={"lr": 0.1},
                              hp={"lr": 0.1, "momentum": 0.9}, day_spec="100 steps",
                              strict=False, created=now)
    rows = [(s, s // 100 + 1, "loss", 2.0 / (1 + 0.01 * s), now + 0.05 * s, 0)
            for s in range(steps)]
    rows += [(s, s // 100 + 1, "hp/lr", 0.1, now + 0.05 * s, 0) for s in range(steps)]
    rows += [(s, s // 100, "val_loss", 2.2 / (1 + 0.01 * s), now + 0.05 * s, 0)
             for s in range(100, steps + 1, 100)]
    store.insert_metrics(run_id, rows)
    store.update_run(run_id, status="finished", step=steps, day=steps // 100)
    return run_id


def step_ms(client: Client, run_id: int) -> float:
    t = client.metrics(run_id, ["loss"]).sort_values("step")["time"].to_numpy()[-200:]
    return statistics.median(b - a for a, b in zip(t[:-1], t[1:], strict=True)) * 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=10, help="lr clicks to time (default 10)")
    parser.add_argument("--pace", type=float, default=0.02,
                        help="the demo trainer's sleep per step, s (default 0.02)")
    parser.add_argument("--chart-steps", type=int, default=1000,
                        help="steps of the run whose first chart is timed (default 1000)")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("bench_ui_actions: needs Debian's chromium on PATH", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    root = tmp / "store"
    env = dict(os.environ, BABYSIT_ROOT=str(root), PYTHONPATH=str(REPO), BABYSIT_TOKEN=TOKEN)
    env.pop("BABYSIT_RUN_ID", None)
    client = Client(root)
    chart_run = finished_run(client, args.chart_steps)
    port = _free_port()
    procs: list[subprocess.Popen] = []
    try:
        trainer = subprocess.Popen(
            [sys.executable, "-m", "babysit.demo", "--project", "bench-ui", "--pace",
             str(args.pace), "--epochs", "0", "--day", "300 steps"],
            env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=open(tmp / "trainer.log", "wb"))  # noqa: SIM115
        procs.append(trainer)
        t_start = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "babysit", "--root", str(root), "ui", "--port", str(port)],
            env=env, stdout=open(tmp / "ui.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        procs.append(server)
        _wait(lambda: _serving(port), 180, "the dashboard")
        server_s = time.perf_counter() - t_start
        live = _wait(lambda: next((r.id for r in map(client.run, client.runs(project="bench-ui")
                                                         ["id"]) if r.status == "running"
                                   and r.step > 50), None), 180, "the demo trainer")
        base = f"http://127.0.0.1:{port}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            # (b) the first chart a fresh dashboard draws, then the same page again
            chart, shell, drawn = [], [], []
            for _ in range(2):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                # the page's own clock: when the first curve is in the document, in ms since
                # the navigation started (Playwright's round trips and polling left out)
                page.add_init_script(DRAWN_PROBE)
                t0 = time.perf_counter()
                page.goto(f"{base}/run?run={chart_run}&token={TOKEN}")
                # where the time goes: the page's title (app shell, websocket, script start)
                page.get_by_text(f"Run #{chart_run}").first.wait_for(state="visible",
                                                                    timeout=120_000)
                shell.append(time.perf_counter() - t0)
                drawn.append(wait_drawn(page))
                chart.append(time.perf_counter() - t0)
                page.close()

            # (a) click -> confirmation on the live run's page
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.add_init_script(DRAWN_PROBE)
            page.goto(f"{base}/run?run={live}&token={TOKEN}")
            buttons = [page.get_by_role("button", name="lr ×0.5"),
                       page.get_by_role("button", name="lr ×2")]
            buttons[0].wait_for(state="visible", timeout=120_000)
            wait_drawn(page)
            clicks: list[float] = []
            shown = ""
            for i in range(args.clicks):
                _wait(lambda b=buttons[i % 2]: b.is_enabled(), 60, "the button")
                t0 = time.perf_counter()
                buttons[i % 2].click()

                def confirmed(before: str = shown) -> str:
                    box = page.get_by_text(CONFIRMATION)
                    text = box.first.inner_text() if box.count() else ""
                    return text if text and text != before else ""
                try:
                    shown = _wait(confirmed, 60, f"the confirmation of click {i + 1}")
                except RuntimeError:
                    page.screenshot(path=str(REPO / "bench-ui-actions-failed.png"), full_page=True)
                    raise
                clicks.append((time.perf_counter() - t0) * 1000.0)
                page.wait_for_timeout(300)      # a few steps between clicks, as a person would
            browser.close()

        nudges: list[float] = []
        for i in range(args.clicks):
            t0 = time.perf_counter()
            client.nudge(live, scale={"lr": (0.5, 2.0)[i % 2]}, wait=True, timeout=30.0)
            nudges.append((time.perf_counter() - t0) * 1000.0)
            time.sleep(0.3)
        step = step_ms(client, live)
        client.stop(live, timeout=20.0)
    finally:
        stop_all(procs)
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()[0]
    click_limit = CLICK_TARGET_MS + step
    med = statistics.median(clicks)
    print(f"dashboard (babysit ui, up in {server_s:.1f} s), demo trainer pace {args.pace:g} s, "
          f"headless Chromium; load average {load:.2f} on {os.cpu_count()} cores")
    print(f"{'':42} {'median':>9} {'max':>9}")
    print(f"{'trainer step time (baseline)':42} {step:7.1f} ms")
    print(f"{'Client.nudge(wait=True) (baseline)':42} {statistics.median(nudges):7.0f} ms "
          f"{max(nudges):7.0f} ms")
    print(f"{'click lr x0.5/x2 -> confirmation shown':42} {med:7.0f} ms {max(clicks):7.0f} ms"
          f"   (first click {clicks[0]:.0f} ms)")
    print(f"  target: median < {CLICK_TARGET_MS:.0f} ms + one step = {click_limit:.0f} ms   "
          f"{'PASS' if med < click_limit else 'MISS'}")
    print(f"{f'first chart, {args.chart_steps}-step run, fresh dashboard':42} {drawn[0]:7.2f} s"
          f"   (page clock; {chart[0]:.2f} s by Playwright, title at {shell[0]:.2f} s)")
    print(f"{'  the same page again (warm, baseline)':42} {drawn[1]:7.2f} s"
          f"   (page clock; {chart[1]:.2f} s by Playwright, title at {shell[1]:.2f} s)")
    print(f"  target: < {CHART_TARGET_S:.0f} s   {'PASS' if drawn[0] < CHART_TARGET_S else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
