"""Retake the README's dashboard screenshots (docs/run.png, docs/runs.png, docs/compare.png).

Reproducible and real: a fresh store in a temp folder, the built-in demo trained in a
subprocess (5 spirals, 100-step days), nudged (lr ×2, more momentum), rolled back to the end
of day 4 and forked from there with other hyperparameters; the dashboard as ``babysit ui``
serves it; a headless Chromium clicks ``lr ×2`` on the Run page (so its confirmation shows) and
takes the pictures.

    python scripts/screenshots.py                 # writes docs/*.png
    python scripts/screenshots.py --out /tmp/shots --days 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from babysit import Client  # noqa: E402

TOKEN = "screenshots"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return value


def days_saved(client: Client, run_id: int) -> int:
    return client.run(run_id).day


def serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--days", type=int, default=9, help="days the demo run trains (9)")
    parser.add_argument("--pace", type=float, default=0.01, help="demo seconds per step")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("screenshots: needs Debian's chromium on PATH", file=sys.stderr)
        return 2
    from playwright.sync_api import expect, sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="babysit-shots-"))
    root = tmp / "checkpoints"
    client = Client(root)
    demo = [sys.executable, "-m", "babysit.demo", "--pace", str(args.pace), "--day", "100 steps",
            "--epochs", "0"]
    server = None
    runs: list[int] = []
    try:
        run = client.launch(demo, project="demo", name="spirals", cwd=str(tmp))
        runs.append(run)
        wait(lambda: days_saved(client, run) >= 2, 300, "day 2")
        client.nudge(run, scale={"lr": 2.0}, timeout=60)
        client.nudge(run, scale_1m={"momentum": 0.5}, timeout=60)
        wait(lambda: days_saved(client, run) >= 6, 600, "day 6")
        client.rollback(run, 4, timeout=60)            # days 5-6 stay, superseded
        child = client.fork(run, 4, hp={"lr": 0.05, "momentum": 0.95}, name="spirals-fork")
        runs.append(child)
        wait(lambda: days_saved(client, run) >= args.days and days_saved(client, child) >= 7,
             900, f"day {args.days}")

        port = 8700
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, BABYSIT_TOKEN=TOKEN, PYTHONPATH=str(REPO))
        server = subprocess.Popen([sys.executable, "-m", "babysit", "--root", str(root), "ui",
                                   "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait(lambda: serving(port), 180, "the dashboard")
        base = f"http://127.0.0.1:{port}"
        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/run?run={run}&token={TOKEN}")
            expect(page.get_by_role("button", name="lr ×2")).to_be_enabled(timeout=120_000)
            # the Run and Compare charts draw in babysit's own frame (babysit.ui.chart)
            expect(page.frame_locator(".st-key-run_figure iframe").locator(".js-plotly-plot")
                   ).to_be_visible(timeout=120_000)
            page.get_by_role("button", name="lr ×2").click()
            expect(page.get_by_text("applied at step")).to_be_visible(timeout=60_000)
            page.set_viewport_size({"width": 1400, "height": 2000})
            page.wait_for_timeout(3000)          # a refresh or two: the marker is drawn
            # the click scrolled the page to the buttons: back to the top (Streamlit scrolls
            # its main section, not the window)
            page.evaluate("() => { for (const e of document.querySelectorAll('*'))"
                          " if (e.scrollTop > 0) e.scrollTop = 0; window.scrollTo(0, 0); }")
            page.wait_for_timeout(500)
            page.screenshot(path=str(args.out / "run.png"))

            page.set_viewport_size({"width": 1700, "height": 700})   # every column shows
            page.goto(f"{base}/?token={TOKEN}")
            expect(page.get_by_role("button", name="Open run")).to_be_visible(timeout=120_000)
            page.wait_for_timeout(2000)
            page.screenshot(path=str(args.out / "runs.png"))

            page.set_viewport_size({"width": 1400, "height": 1300})
            page.goto(f"{base}/compare?token={TOKEN}")
            expect(page.frame_locator(".st-key-compare_figure iframe").locator(".js-plotly-plot")
                   ).to_be_visible(timeout=120_000)
            page.wait_for_timeout(3000)
            page.screenshot(path=str(args.out / "compare.png"))
            browser.close()
        print(f"wrote {', '.join(str(args.out / n) for n in ('run.png', 'runs.png', 'compare.png'))}")
    finally:
        for run_id in runs:
            try:
                if client.run(run_id).live:
                    client.stop(run_id, timeout=30)
            except Exception as exc:  # noqa: BLE001 - cleanup goes on
                print(f"screenshots: stopping run {run_id}: {exc}", file=sys.stderr)
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
