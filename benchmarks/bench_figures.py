"""How long the dashboard takes to build its figures, and how much it sends per refresh.

Synthetic study: 20 runs x 100k steps (a random-walk loss, a val_loss every 500 steps,
hp/lr and hp/momentum traces, ~40 events, a checkpoint per 1000-step day; every third run
was rolled back once, one run went nan). For each page it times the figure build (best of
5) and measures ``len(fig.to_json())``, beside a baseline built in the same run: the same
figure without downsampling (every raw point). Then the same study is written into a real
SQLite store and a dashboard refresh is timed end to end: runs query + metric query (through the
dashboard's CurveCache: the first view reads a run's whole history, later refreshes only the rows
logged since) + figure, cold (first view) and warm (a refresh after 2 s of training).

    python benchmarks/bench_figures.py            # the full 20 x 100k study
    python benchmarks/bench_figures.py --runs 4 --points 20000 --repeat 3

Targets: under 300 ms to build the figures of a refresh, under 2 MB of JSON per refresh.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from babysit.client import Client  # noqa: E402
from babysit.store import Store, Supersede  # noqa: E402
from babysit.ui.curves import CurveCache  # noqa: E402
from babysit.ui.downsample import downsample  # noqa: E402
from babysit.ui.figures import compare_figure, lineage_figure, run_figure  # noqa: E402

T0 = 1_700_000_000.0
STEP_SECONDS = 0.2
DAY_STEPS = 1000
BUILD_TARGET_MS = 300.0
JSON_TARGET_BYTES = 2_000_000


def synthetic_run(run_id: int, n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Metrics, events and checkpoints of one run in the store's shapes, plus its runs row."""
    steps = np.arange(n)
    lr = 10 ** rng.uniform(-3, -1)
    log_loss = np.log(2.5) - 2.0 * (1 - np.exp(-steps / (n / 4))) + np.cumsum(rng.normal(0, 0.004, n))
    loss = np.exp(log_loss) * (1 + 0.05 * rng.standard_normal(n))
    loss[rng.integers(0, n, 3)] *= 8.0  # a few spikes the downsampler must keep
    if run_id == 5:
        loss[int(n * 0.8):] = np.nan  # diverged and went nan
    branch = np.zeros(n, dtype=np.int64)
    superseded = np.zeros(n, dtype=bool)
    frames = []
    rolled_back = run_id % 3 == 0 and n >= 4 * DAY_STEPS
    if rolled_back:
        # The first attempt at days past 60% was abandoned: those rows stay, superseded.
        cut, back_to = int(n * 0.6), int(n * 0.6) // DAY_STEPS * DAY_STEPS - DAY_STEPS
        dead = steps[back_to + 1: cut]
        frames.append(_rows("loss", dead, loss[back_to + 1: cut] * 1.5, 0, True))
        branch[back_to + 1:] = 1
    frames.append(_rows("loss", steps, loss, branch, superseded))
    val_steps = steps[::500]
    frames.append(_rows("val_loss", val_steps, loss[::500] * 1.1, branch[::500], superseded[::500]))
    nudges = np.sort(rng.choice(np.arange(1, n), 10, replace=False))
    lrs = lr * np.cumprod(np.r_[1.0, rng.choice([0.5, 2.0], 10)])
    frames.append(_rows("hp/lr", np.r_[0, nudges], lrs, branch[np.r_[0, nudges]], False))
    frames.append(_rows("hp/momentum", np.array([0, n // 2]), np.array([0.9, 0.95]), branch[[0, n // 2]], False))
    metrics = pd.concat(frames, ignore_index=True)

    kinds = rng.choice(["pause", "resume", "nudge", "checkpoint_failed", "rejected"], 30)
    ev_steps = np.sort(rng.choice(np.arange(n), 30, replace=False))
    events = [{"step": 0, "kind": "start", "source": "cli", "detail": {}}]
    for i, (s, kind) in enumerate(zip(ev_steps, kinds, strict=True)):
        detail = {"lr": {"old": float(lrs[i % 10]), "new": float(lrs[i % 10 + 1])}} if kind == "nudge" else {}
        events.append({"step": int(s), "kind": str(kind), "source": "ui", "detail": detail})
    events += [{"step": int(s), "kind": "nudge", "source": "autopilot",
                "detail": {"lr": {"old": float(a), "new": float(b)}}} for s, a, b in zip(nudges, lrs[:-1], lrs[1:], strict=True)]
    if rolled_back:
        events.append({"step": cut, "kind": "rollback", "source": "ui",
                       "detail": {"to_day": back_to // DAY_STEPS, "to_step": back_to, "from_step": cut}})
    events = pd.DataFrame(events)
    events["id"] = np.arange(len(events))
    events["day"] = events["step"] // DAY_STEPS + 1
    events["time"] = T0 + events["step"] * STEP_SECONDS
    events["branch"] = branch[events["step"].to_numpy()]
    events["superseded"] = False

    days = np.arange(1, n // DAY_STEPS + 1)
    checkpoints = pd.DataFrame({
        "day": days, "step": days * DAY_STEPS, "time": T0 + days * DAY_STEPS * STEP_SECONDS,
        "path": [f"ckpt/{run_id}/{d}.pt" for d in days], "size": 1 << 20,
        "branch": branch[np.minimum(days * DAY_STEPS, n - 1)], "superseded": False,
        "metrics": [{"loss": 1.0}] * len(days),
    })
    run = {
        "id": run_id, "project": "bench", "name": f"run-{run_id}", "status": "running" if run_id != 5 else "diverged",
        "day": n // DAY_STEPS + 1, "step": n - 1, "hp": {"lr": float(lrs[-1]), "momentum": 0.95},
        "parent_id": run_id // 2 if run_id > 1 else None,
        "parent_day": 3 if run_id > 1 else None, "heartbeat_age": 1.5, "created": T0 + run_id,
    }
    return metrics, events, checkpoints, run


def _rows(name: str, steps: np.ndarray, values: np.ndarray, branch, superseded) -> pd.DataFrame:
    return pd.DataFrame({
        "step": steps, "day": steps // DAY_STEPS + 1, "name": name, "value": values,
        "time": T0 + steps * STEP_SECONDS, "branch": branch, "superseded": superseded,
    })


def best_ms(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000.0, out


def points(fig) -> int:
    return sum(len(t.x) for t in fig.data if t.x is not None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--max-points", type=int, default=1500)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    study = [synthetic_run(i + 1, args.points, rng) for i in range(args.runs)]
    runs = pd.DataFrame([s[3] for s in study])
    metrics, events, checkpoints, _ = study[2]  # a run with a rollback
    by_run = {s[3]["id"]: s[0] for s in study}
    mp = args.max_points

    print(f"{args.runs} runs x {args.points:,} steps; one run page has {len(metrics):,} metric rows, "
          f"{len(events)} events, {len(checkpoints)} days; best of {args.repeat}\n")

    y = np.cumsum(rng.standard_normal(1_000_000))
    ds_ms, _ = best_ms(lambda: downsample(np.arange(len(y)), y, mp), args.repeat)
    print(f"downsample 1,000,000 points -> {mp}: {ds_ms:.1f} ms\n")

    cases: list[tuple[str, Callable[[int | None], object]]] = [
        ("run page, x=step", lambda m: run_figure(metrics, events, checkpoints, max_points=m)),
        ("run page, x=time, smoothing .6",
         lambda m: run_figure(metrics, events, checkpoints, x="time", smoothing=0.6, max_points=m)),
        ("run page, x=day, log y",
         lambda m: run_figure(metrics, events, checkpoints, x="day", log_y=True, max_points=m)),
        (f"compare page, {args.runs} runs", lambda m: compare_figure(by_run, "loss", runs, max_points=m)),
        (f"compare page, {args.runs} runs, smoothing .6",
         lambda m: compare_figure(by_run, "loss", runs, smoothing=0.6, max_points=m)),
    ]
    header = (f"{'figure':38s} {'points':>8s} {'build ms':>9s} {'to_json ms':>10s} {'JSON KB':>9s}   |"
              f" {'raw points':>10s} {'build ms':>9s} {'to_json ms':>10s} {'JSON KB':>9s}")
    print(header)
    print("-" * len(header))
    worst_build, worst_json = 0.0, 0
    for label, build in cases:
        row = []
        for m in (mp, None):
            ms, fig = best_ms(lambda m=m, build=build: build(m), args.repeat if m else min(args.repeat, 2))
            json_ms, text = best_ms(fig.to_json, 1 if m is None else args.repeat)
            row.append((points(fig), ms, json_ms, len(text)))
        (p, ms, jms, size), (rp, rms, rjms, rsize) = row
        worst_build, worst_json = max(worst_build, ms), max(worst_json, size)
        print(f"{label:38s} {p:8,d} {ms:9.1f} {jms:10.1f} {size / 1000:9.1f}   |"
              f" {rp:10,d} {rms:9.1f} {rjms:10.1f} {rsize / 1000:9.1f}")
    ms, fig = best_ms(lambda: lineage_figure(runs), args.repeat)
    print(f"{'lineage, ' + str(args.runs) + ' runs':38s} {points(fig):8,d} {ms:9.1f} "
          f"{best_ms(fig.to_json, args.repeat)[0]:10.1f} {len(fig.to_json()) / 1000:9.1f}   | (no raw variant)")
    print()
    verdict = "ok" if worst_build < BUILD_TARGET_MS and worst_json < JSON_TARGET_BYTES else "OVER TARGET"
    print(f"worst downsampled build {worst_build:.0f} ms (target < {BUILD_TARGET_MS:.0f}), "
          f"worst JSON {worst_json / 1e6:.2f} MB (target < {JSON_TARGET_BYTES / 1e6:.0f} MB): {verdict}")
    print("'raw' = the same figure with max_points=None; builds of raw figures are best of 2.")

    with tempfile.TemporaryDirectory() as root:
        store_section(study, root, args.repeat, mp)


def write_store(study: list, root: str) -> tuple[Store, list[int]]:
    """The synthetic study as a real store: abandoned branches first, then superseded."""
    store = Store.open(root)
    ids = []
    for metrics, _events, _checkpoints, run in study:
        rid = store.create_run(project="bench", name=run["name"], status="running", config={},
                               hp=run["hp"], strict=False, day_spec=f"{DAY_STEPS} steps")
        dead = metrics[metrics["superseded"]]
        live = metrics[~metrics["superseded"]]
        for part in (dead, live):
            rows = list(zip(part["step"].tolist(), part["day"].tolist(), part["name"].tolist(),
                            part["value"].tolist(), part["time"].tolist(), part["branch"].tolist(),
                            strict=True))
            if part is live and len(dead):
                first = int(dead["step"].min())
                store.apply([Supersede(rid, first)])
                store.update_run(rid, branch=1)
            for i in range(0, len(rows), 50_000):
                store.insert_metrics(rid, rows[i:i + 50_000])
        ids.append(rid)
    return store, ids


def store_section(study: list, root: str, repeat: int, mp: int) -> None:
    t0 = time.perf_counter()
    store, ids = write_store(study, root)
    client = Client(root, store=store)
    print(f"\nwrote the study into a real SQLite store in {time.perf_counter() - t0:.1f} s "
          f"({sum(len(s[0]) for s in study):,} metric rows)")
    _m, events, checkpoints, _r = study[2]
    page_run = ids[2]
    step = [int(s[0]["step"].max()) for s in study]

    def tick() -> None:
        """2 s of training at 5 steps/s on every run: 10 new loss rows each."""
        for i, rid in enumerate(ids):
            rows = [(step[i] + k, step[i] // DAY_STEPS + 1, "loss", 1.0, T0, 1 if i % 3 == 2 else 0)
                    for k in range(1, 11)]
            step[i] += 10
            store.insert_metrics(rid, rows)

    def branches() -> dict[int, int]:
        table = client.runs()
        return dict(zip(table["id"].tolist(), table["branch"].tolist(), strict=True))

    def run_page(cache: CurveCache) -> object:
        b = branches()
        return run_figure(cache.metrics(store, page_run, b[page_run]), events, checkpoints,
                          max_points=mp)

    def compare_page(cache: CurveCache) -> object:
        b = branches()
        by_run = {rid: cache.metrics(store, rid, b[rid]) for rid in ids}
        return compare_figure(by_run, "loss", client.runs(), max_points=mp)

    print(f"{'refresh (runs query + metric query + figure)':46s} {'cold ms':>8s} {'warm ms':>8s} {'JSON KB':>8s}")
    worst = 0.0
    for label, page in (("run page (one run of the 20)", run_page),
                        (f"compare page ({len(ids)} runs)", compare_page)):
        cold = []
        for _ in range(max(1, min(repeat, 2))):
            ms, fig = best_ms(lambda page=page: page(CurveCache()), 1)
            cold.append(ms)
        cache = CurveCache()
        page(cache)
        warm = []
        for _ in range(repeat):
            tick()
            ms, fig = best_ms(lambda page=page, cache=cache: page(cache), 1)
            warm.append(ms)
        warm_ms = float(np.median(warm))
        worst = max(worst, warm_ms)
        print(f"{label:46s} {min(cold):8.0f} {warm_ms:8.0f} {len(fig.to_json()) / 1000:8.1f}")
    verdict = "ok" if worst < BUILD_TARGET_MS else "OVER TARGET"
    print(f"worst warm refresh {worst:.0f} ms (target < {BUILD_TARGET_MS:.0f}): {verdict}; "
          "cold = first view of a run in this server process (whole history read once)")


if __name__ == "__main__":
    main()
