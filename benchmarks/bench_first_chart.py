"""A fresh dashboard's first chart, this checkout beside an earlier commit, in the same run.

Everything real: one store in a temp folder with a finished run of ``--chart-steps`` steps (loss,
val_loss and the lr trace), the demo trainer training beside it (``python -m babysit.demo``, as a
user's dashboard would have), and one dashboard per tree as ``babysit ui`` starts it (the base
commit checked out in a detached ``git worktree``, removed at the end). Headless Chromium opens
the run's page in a fresh browser context each time (nothing cached): the figure is the time
from the start of the navigation to the first curve in the document, by the page's own clock.

The first tab of each dashboard is its first session (a freshly started server); then
``--tabs`` more per dashboard, interleaved (base, head, head, base, ...) so that the machine's
load drifts over both alike. Target (issue 15): under 3 s for a 1,000-step run. Then the
landing page (the link ``babysit ui`` prints, the Runs page) as many times each, to the runs
table drawn: the page shell that speeds up the charts must not slow it down.

    python benchmarks/bench_first_chart.py --base 911cda4            # 8 tabs each
    python benchmarks/bench_first_chart.py --tabs 4                   # this checkout only
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_ui_actions import (  # noqa: E402
    BROWSER_ARGS,
    CHART_TARGET_S,
    DRAWN_CURVE,
    DRAWN_PROBE,
    TOKEN,
    _free_port,
    _serving,
    _wait,
    describe,
    finished_run,
    stop_all,
    wait_drawn,
)

from babysit import Client  # noqa: E402

#: the Runs page's table, drawn (Streamlit's data grid paints a canvas)
DRAWN_TABLE = "[data-testid=stDataFrame] canvas"


def first_drawn(browser, url: str, selector: str = DRAWN_CURVE) -> float:
    """Seconds from navigation to ``selector`` in the document (by default the first curve),
    in a fresh context (empty cache)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.add_init_script(DRAWN_PROBE.replace(repr(DRAWN_CURVE), repr(selector)))
        page.goto(url)
        return wait_drawn(page)
    finally:
        context.close()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} s  [{min(values):.2f} .. {max(values):.2f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="an earlier commit to measure beside this checkout")
    parser.add_argument("--tabs", type=int, default=8,
                        help="fresh tabs per dashboard after its first (default 8)")
    parser.add_argument("--chart-steps", type=int, default=1000)
    parser.add_argument("--pace", type=float, default=0.02,
                        help="the demo trainer's sleep per step, s (default 0.02)")
    args = parser.parse_args(argv)
    if args.tabs < 1:
        parser.error("--tabs must be at least 1")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("bench_first_chart: needs Debian's chromium on PATH", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench-chart-"))
    root = tmp / "store"
    client = Client(root)
    chart_run = finished_run(client, args.chart_steps)
    trees = {"head": REPO}
    if args.base:
        base_tree = tmp / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.base],
                       cwd=REPO, check=True, capture_output=True)
        trees = {"base": base_tree, "head": REPO}
    label = {name: describe(tree) for name, tree in trees.items()}
    procs: list[subprocess.Popen] = []
    times: dict[str, list[float]] = {name: [] for name in trees}
    tables: dict[str, list[float]] = {name: [] for name in trees}
    try:
        env = dict(os.environ, BABYSIT_ROOT=str(root), PYTHONPATH=str(REPO), BABYSIT_TOKEN=TOKEN)
        env.pop("BABYSIT_RUN_ID", None)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "babysit.demo", "--project", "bench-chart", "--pace",
             str(args.pace), "--epochs", "0", "--day", "300 steps"],
            env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait(lambda: any(client.runs(project="bench-chart")["status"] == "running"), 180,
              "the demo trainer")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            urls = {}
            for name, tree in trees.items():     # each server's first tab: its first session
                port = _free_port()
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "babysit", "--root", str(root), "ui", "--port",
                     str(port)], env={**env, "PYTHONPATH": str(tree)}, cwd=tree,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                _wait(lambda port=port: _serving(port), 180, f"the {name} dashboard")
                time.sleep(1.0)
                urls[name] = f"http://127.0.0.1:{port}/run?run={chart_run}&token={TOKEN}"
                times[name].append(first_drawn(browser, urls[name]))
            order = list(trees)
            for i in range(args.tabs):
                for name in order if i % 2 else order[::-1]:
                    times[name].append(first_drawn(browser, urls[name]))
            # the landing page (the link babysit ui prints): its runs table, beside
            for i in range(args.tabs):
                for name in order if i % 2 else order[::-1]:
                    landing = urls[name].split("/run?")[0] + f"/?token={TOKEN}"
                    tables[name].append(first_drawn(browser, landing, DRAWN_TABLE))
            browser.close()
    finally:
        stop_all(procs)
        client.close()
        if args.base:
            subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "base")], cwd=REPO,
                           capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()[0]
    print(f"first chart of a {args.chart_steps}-step run, fresh browser context, demo trainer "
          f"beside (pace {args.pace:g} s); load average {load:.2f} on {os.cpu_count()} cores")
    print(f"{'':26} {'first tab':>10}   {'next ' + str(args.tabs) + ' tabs: median [min .. max]'}")
    for name in trees:
        print(f"{name + ' ' + label[name]:26} {times[name][0]:8.2f} s   {spread(times[name][1:])}")
    if args.base:
        ratios = [h / b for b, h in zip(times["base"], times["head"], strict=True)]
        print(f"{'head / base, per tab':26} {ratios[0]:8.2f}     {statistics.median(ratios):6.2f}"
              f"    [{min(ratios):.2f} .. {max(ratios):.2f}]")
    print(f"the Runs page's table (the printed link), {args.tabs} fresh tabs each: "
          "median [min .. max]")
    for name in trees:
        print(f"{name + ' ' + label[name]:26} {'':10}   {spread(tables[name])}")
    head = times["head"]
    ok = head[0] < CHART_TARGET_S and statistics.median(head[1:]) < CHART_TARGET_S
    print(f"target: first tab and median < {CHART_TARGET_S:.0f} s   {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
