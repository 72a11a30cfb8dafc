"""Nudge latency on PostgreSQL (LISTEN/NOTIFY) beside SQLite (the baseline), and what an idle
trainer's command poll costs the PostgreSQL server.

For each store a real trainer subprocess (``python -m babysit.demo`` at ``--pace``) is started
through ``Client.launch``; N lr nudges are timed from ``Client.nudge(...)`` to its return (it
waits until the trainer applied it). On PostgreSQL the trainer's command queries per second
while idle are counted by the server (pg_stat_statements), once with LISTEN/NOTIFY (the
default: a fallback poll every 2 s) and once with the plain 50 ms poll
(``BABYSIT_COMMAND_FALLBACK_S=0.05``, what every run did before). The PostgreSQL server is
started here (tests/servers.py: initdb as the ``postgres`` user, fsync on).

    PYTHONPATH=$PWD python benchmarks/bench_cluster_nudge.py --nudges 20 --pace 0.01
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from babysit import Client  # noqa: E402


def _wait(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def _queries(conn) -> int:  # noqa: ANN001 - a psycopg connection
    return int(conn.execute(
        "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s "
        "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
        "AND s.query ILIKE '%FROM commands%'").fetchone()[0])


def measure(root: Path, url: str | None, args: argparse.Namespace, fallback: str | None
            ) -> dict[str, float]:
    """Start a trainer on the store, count its idle command queries, time N nudges."""
    root.mkdir(parents=True, exist_ok=True)
    env_before = os.environ.get("BABYSIT_COMMAND_FALLBACK_S")
    if fallback is not None:
        os.environ["BABYSIT_COMMAND_FALLBACK_S"] = fallback     # inherited by the trainer
    client = Client(root, store_url=url)
    admin = None
    try:
        run_id = client.launch([sys.executable, "-m", "babysit.demo", "--pace", str(args.pace),
                                "--epochs", "1000", "--day", "300 steps"],
                               project="bench-nudge", cwd=str(root))
        _wait(lambda: client.run(run_id).status == "running" and client.run(run_id).step > 50,
              120, "the trainer to run")
        out: dict[str, float] = {}
        if url is not None:
            import psycopg
            admin = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                                    autocommit=True)
            admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            admin.execute("SELECT pg_stat_statements_reset()")
            t0 = time.monotonic()
            time.sleep(args.idle_seconds)        # the measurement window
            out["idle queries/s"] = _queries(admin) / (time.monotonic() - t0)
        latencies = []
        for i in range(args.nudges):
            t0 = time.perf_counter()
            client.nudge(run_id, lr=(0.03, 0.02)[i % 2], timeout=60)
            latencies.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.05)
        loss = client.metrics(run_id, ["loss"]).sort_values("step")
        gaps = loss["time"].diff().dropna()
        out["step ms"] = float(gaps.median() * 1000)
        out["median ms"] = statistics.median(latencies)
        out["p90 ms"] = sorted(latencies)[int(0.9 * (len(latencies) - 1))]
        client.stop(run_id, timeout=30)
        return out
    finally:
        if admin is not None:
            admin.close()
        client.close()
        if env_before is None:
            os.environ.pop("BABYSIT_COMMAND_FALLBACK_S", None)
        else:
            os.environ["BABYSIT_COMMAND_FALLBACK_S"] = env_before


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nudges", type=int, default=20)
    parser.add_argument("--pace", type=float, default=0.01, help="the demo's sleep per step (s)")
    parser.add_argument("--idle-seconds", type=float, default=5.0,
                        help="how long the idle trainer's queries are counted")
    args = parser.parse_args(argv)

    from tests import servers

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["PYTHONPATH"] = str(REPO)
    bin_dir = servers.pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL's server binaries are not installed")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-nudge-") as tmp:
        results["sqlite (baseline)"] = measure(Path(tmp) / "sqlite", None, args, None)
        pg = servers.Postgres.start(bin_dir, durable=True)
        try:
            results["postgresql, NOTIFY"] = measure(Path(tmp) / "pg1", pg.create_database("n"),
                                                    args, None)
            results["postgresql, 50 ms poll"] = measure(
                Path(tmp) / "pg2", pg.create_database("p"), args, "0.05")
        finally:
            pg.stop()
    load = os.getloadavg()[0]
    print(f"demo trainer, pace {args.pace:g} s, {args.nudges} lr nudges each (waits until "
          f"applied); load average {load:.1f}")
    print(f"    {'store':<24} {'step ms':>8} {'median ms':>10} {'p90 ms':>8} "
          f"{'idle cmd queries/s':>19}")
    for name, r in results.items():
        idle = f"{r['idle queries/s']:.2f}" if "idle queries/s" in r else "-"
        print(f"    {name:<24} {r['step ms']:>8.1f} {r['median ms']:>10.1f} {r['p90 ms']:>8.1f} "
              f"{idle:>19}")


if __name__ == "__main__":
    main()
