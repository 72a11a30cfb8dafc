"""What trainers' command polling costs a PostgreSQL server: N runs polled 20 times a second.

Each run's trainer asks the store "is a command pending for me?" every 50 ms (today's
``CommandProbe``, which on PostgreSQL runs ``Store.pending_commands``). This starts a throwaway
PostgreSQL server (as the tests do: Debian's binaries, run as the ``postgres`` user, fsync on),
creates N runs, and polls them from P processes (N/P threads each, one Store per process, as N
trainers would from N processes, with fewer connections), for D seconds. It reports the
server's CPU (all postgres processes, user + system, from /proc) per wall second, the polls
actually made, and the client-side probe latency.

    PYTHONPATH=$PWD python benchmarks/bench_cluster_poll.py --runs 100 --seconds 10

Baseline in the same run: the same server idle for D seconds (its background CPU).
Target (issue 11): polling 100 runs costs the server "nothing" (here: under 5% of one core);
otherwise LISTEN/NOTIFY must replace it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_CORE_SHARE = 0.05


def _server_cpu(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _poller(url: str, root: str, run_ids: list[int], seconds: float, interval: float,
            out: mp.Queue) -> None:
    from babysit.store import Store

    store = Store.open(root, url=url)
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def poll(run_id: int) -> None:
        probe = store.command_probe(run_id)
        mine = []
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            probe(0)
            mine.append(time.perf_counter() - t0)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        with lock:
            latencies.extend(mine)
    threads = [threading.Thread(target=poll, args=(r,)) for r in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    out.put(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()

    from babysit.store import Store
    from tests import servers

    bin_dir = servers.pg_bin()
    if bin_dir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    pg = servers.Postgres.start(bin_dir, durable=True)
    try:
        url = pg.create_database("bench")
        root = str(pg.tmp / "root")
        store = Store.open(root, url=url)
        runs = [store.create_run(project="bench", name=f"r{i}", config={}, hp={}, strict=False,
                                 day_spec="100 steps") for i in range(args.runs)]
        store.close()
        assert pg.proc is not None
        time.sleep(1.0)
        idle0 = _server_cpu(pg.proc.pid)
        time.sleep(args.seconds)
        idle = (_server_cpu(pg.proc.pid) - idle0) / args.seconds

        ctx = mp.get_context("spawn")
        out: mp.Queue = ctx.Queue()
        shares = [runs[i::args.processes] for i in range(args.processes)]
        procs = [ctx.Process(target=_poller, args=(url, root, share, args.seconds + 2.0,
                                                   args.interval, out)) for share in shares]
        for p in procs:
            p.start()
        time.sleep(2.0)                       # imports and connections first
        cpu0, t0 = _server_cpu(pg.proc.pid), time.monotonic()
        time.sleep(args.seconds)
        busy = (_server_cpu(pg.proc.pid) - cpu0) / (time.monotonic() - t0)
        latencies = [x for _ in procs for x in out.get(timeout=120)]
        for p in procs:
            p.join(60)
    finally:
        pg.stop()
    polls = len(latencies) / (args.seconds + 2.0)
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
    print(f"PostgreSQL command polling, {args.runs} runs every {args.interval * 1000:.0f} ms "
          f"from {args.processes} processes, {args.seconds:.0f} s")
    print(f"    server CPU, idle (baseline)        {idle * 100:6.1f} % of a core")
    print(f"    server CPU, polling                {busy * 100:6.1f} % of a core")
    print(f"    polls made                         {polls:6.0f} /s "
          f"(asked {args.runs / args.interval:.0f} /s)")
    print(f"    probe latency p50 / p99            {statistics.median(latencies) * 1000:6.2f} / "
          f"{p99:.2f} ms")
    share = busy - idle
    verdict = "PASS" if share <= TARGET_CORE_SHARE else "MISS"
    print(f"    polling's cost {share * 100:.1f} % of a core   target <= "
          f"{TARGET_CORE_SHARE * 100:.0f} %   {verdict}")


if __name__ == "__main__":
    main()
