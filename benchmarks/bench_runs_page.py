"""How long the Runs page takes to render with 500 runs in the store, beside 10 runs.

Each run is created in a real SQLite store with 200 logged steps (loss, val_loss) and 2 day
checkpoints' metrics. The page is rendered headless with Streamlit's AppTest (the page's
script, its queries and its table; no browser), best of ``--repeat`` after one warm-up, and the
SQL statements of one render are counted: the page asks the store for all runs at once, so the
count must not grow with the number of runs.

    python benchmarks/bench_runs_page.py                # 500 vs 10 runs
    python benchmarks/bench_runs_page.py --runs 200 --repeat 3

Target: under 1 s at 500 runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

import babysit  # noqa: E402

PAGE = "from babysit.ui.views import runs as page\npage.render()\n"


def fill(root: Path, n: int) -> None:
    store = babysit.Client(root).store
    now = time.time()
    for i in range(n):
        run_id = store.create_run(project="bench", name=f"run-{i}", config={"lr": 0.1},
                                  hp={"lr": 0.1, "momentum": 0.9}, day_spec="100 steps", strict=False,
                                  created=now)
        rows = [(s, s // 100, "loss", 1.0 / (1 + s), now, 0) for s in range(200)]
        rows += [(s, s // 100, "val_loss", 1.5 / (1 + s), now, 0) for s in range(0, 200, 50)]
        store.insert_metrics(run_id, rows)
        store.update_run(run_id, status="finished", step=200, day=2)


def render_time(root: Path, repeat: int) -> tuple[float, int]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from babysit.ui import state

    os.environ["BABYSIT_ROOT"] = str(root)
    st.cache_data.clear()
    st.cache_resource.clear()
    AppTest.from_string(PAGE, default_timeout=120).run()        # warm-up: imports, client
    statements = []

    def count(*_args) -> None:
        statements.append(1)
    engine = state.client().store._read_engine
    sa.event.listen(engine, "before_cursor_execute", count)
    best = float("inf")
    for _ in range(repeat):
        st.cache_data.clear()                                    # every query for real
        statements.clear()
        at = AppTest.from_string(PAGE, default_timeout=120)
        t0 = time.perf_counter()
        at.run()
        best = min(best, time.perf_counter() - t0)
        assert not at.exception, at.exception
    sa.event.remove(engine, "before_cursor_execute", count)
    return best, len(statements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--baseline", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for n in (args.baseline, args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "store"
            fill(root, n)
            results[n] = render_time(root, args.repeat)
    print(f"{'runs':>6} {'render (best)':>14} {'SQL statements':>15}")
    for n, (seconds, count) in results.items():
        print(f"{n:>6} {seconds * 1000:>11.0f} ms {count:>15}")


if __name__ == "__main__":
    main()
