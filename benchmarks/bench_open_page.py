"""What an open Run page costs the machine that trains: CPU of the dashboard's server and of the
browser while one tab shows a run, this checkout beside an earlier commit, in the same run.

Everything real: one store in a temp folder with a finished run of 1,000 steps and the demo
trainer training beside it (``python -m babysit.demo``), one dashboard per tree as ``babysit ui``
starts it (the base commit checked out in a detached ``git worktree``, removed at the end), and
headless Chromium. Each measurement opens one tab, lets it draw (``--settle`` s), then reads the
CPU time of the server's process tree and of Chromium's over ``--seconds`` s: as a share of one
core. The live run's page and the finished run's page, ``--rounds`` times each, interleaved
(base, head, head, base, ...) so that the machine's drift falls on both alike.

    python benchmarks/bench_open_page.py --base 703e618
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

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_ui_actions import (  # noqa: E402
    BROWSER_ARGS,
    TOKEN,
    _free_port,
    _serving,
    _wait,
    describe,
    finished_run,
    stop_all,
)

from babysit import Client  # noqa: E402


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) of these processes and all their children."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="an earlier commit to measure beside this checkout")
    parser.add_argument("--rounds", type=int, default=3, help="tabs per page and tree")
    parser.add_argument("--settle", type=float, default=8.0, help="s to let a tab draw")
    parser.add_argument("--seconds", type=float, default=20.0, help="s measured per tab")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("bench_open_page: needs Debian's chromium on PATH", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench-open-"))
    root = tmp / "store"
    client = Client(root)
    done_run = finished_run(client, 1000)
    trees = {"head": REPO}
    if args.base:
        subprocess.run(["git", "worktree", "add", "--detach", str(tmp / "base"), args.base],
                       cwd=REPO, check=True, capture_output=True)
        trees = {"base": tmp / "base", "head": REPO}
    label = {name: describe(tree) for name, tree in trees.items()}
    pages = ("live", "finished")
    server_pct = {(n, p): [] for n in trees for p in pages}
    browser_pct = {(n, p): [] for n in trees for p in pages}
    procs: list[subprocess.Popen] = []
    try:
        env = dict(os.environ, BABYSIT_ROOT=str(root), PYTHONPATH=str(REPO), BABYSIT_TOKEN=TOKEN)
        env.pop("BABYSIT_RUN_ID", None)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "babysit.demo", "--project", "bench-open", "--pace", "0.02",
             "--epochs", "0", "--day", "300 steps"],
            env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        live = _wait(lambda: next((int(r.id) for r in client.runs(project="bench-open")
                                   .itertuples() if r.status == "running"), None), 180,
                     "the demo trainer")
        servers, urls = {}, {}
        for name, tree in trees.items():
            port = _free_port()
            servers[name] = subprocess.Popen(
                [sys.executable, "-m", "babysit", "--root", str(root), "ui", "--port",
                 str(port)], env={**env, "PYTHONPATH": str(tree)}, cwd=tree,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(servers[name])
            _wait(lambda port=port: _serving(port), 180, f"the {name} dashboard")
            urls[name] = {p: f"http://127.0.0.1:{port}/run?run={r}&token={TOKEN}"
                          for p, r in (("live", live), ("finished", done_run))}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            me = psutil.Process()
            browser_pids = [c.pid for c in me.children(recursive=True) if "chrom" in c.name()]
            order = list(trees)
            for i in range(args.rounds):
                for page_kind in pages:
                    for name in order if i % 2 else order[::-1]:
                        page = browser.new_page(viewport={"width": 1400, "height": 1600})
                        page.goto(urls[name][page_kind])
                        page.get_by_text("Note, tags, config and launch command").wait_for(
                            state="visible", timeout=120_000)
                        time.sleep(args.settle)
                        s0, b0 = tree_cpu([servers[name].pid]), tree_cpu(browser_pids)
                        t0 = time.monotonic()
                        time.sleep(args.seconds)
                        wall = time.monotonic() - t0
                        s1, b1 = tree_cpu([servers[name].pid]), tree_cpu(browser_pids)
                        server_pct[name, page_kind].append(100 * (s1 - s0) / wall)
                        browser_pct[name, page_kind].append(100 * (b1 - b0) / wall)
                        page.close()
            browser.close()
    finally:
        stop_all(procs)
        client.close()
        if args.base:
            subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "base")],
                           cwd=REPO, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"one open Run page, {args.seconds:g} s after {args.settle:g} s to draw, "
          f"{args.rounds} tabs each; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores")
    print(f"{'':22} {'page':9} {'server, % of a core':>20} {'Chromium':>10} {'together':>9}")
    for name in trees:
        for page_kind in pages:
            s = statistics.median(server_pct[name, page_kind])
            b = statistics.median(browser_pct[name, page_kind])
            print(f"{name + ' ' + label[name]:22} {page_kind:9} {s:20.1f} {b:10.1f} {s + b:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
