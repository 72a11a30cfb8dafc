"""What trainers' command polling costs a PostgreSQL server: N runs polled 20 times a second.

Each run's trainer asks the store "is a command pending for me?" every 50 ms (today's
``CommandProbe``, which on PostgreSQL runs ``Store.pending_commands``). This starts a throwaway
PostgreSQL server (as the tests do: Debian's binaries, run as the ``postgres`` user, fsync on),
creates N runs, and polls them from P processes (N/P threads each, one Store per process, as N
trainers would from N processes, with fewer connections), for D seconds. It reports the
server's CPU (all postgres processes, user + system, from /proc) per wall second, the polls
actually made, and the client-side probe latency.

    PYTHONPATH=$PWD python benchmarks/bench_cluster_poll.py --runs 100 --seconds 10
    PYTHONPATH=$PWD python benchmarks/bench_cluster_poll.py --mode notify

``--mode notify`` measures the alternative instead: each run's listener holds one connection
with ``LISTEN babysit_commands_<run>``, waits on it (falling back to one poll every 2 s), and a
poster commits a command plus ``pg_notify`` 10 times a second; it reports the server's CPU and
the delay from the poster's commit to the listener reading the command row.

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


def _listener(url: str, run_ids: list[int], seconds: float, out: mp.Queue) -> None:
    """One connection per run, LISTENing; on a notification read the pending commands."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    delays: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def listen(run_id: int) -> None:
        mine = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"LISTEN babysit_commands_{int(run_id)}")
            seen = 0
            while (left := stop_at - time.monotonic()) > 0:
                for _ in conn.notifies(timeout=min(2.0, left), stop_after=1):
                    break
                # woken (or the 2 s fallback): read what is pending, as the trainer would
                rows = conn.execute("SELECT id, created FROM commands WHERE run_id = %s AND "
                                    "status = 'pending' AND id > %s ORDER BY id",
                                    (run_id, seen), prepare=True).fetchall()
                now = time.time()
                for command_id, created in rows:
                    seen = max(seen, command_id)
                    mine.append(now - created)
        with lock:
            delays.extend(mine)
    threads = [threading.Thread(target=listen, args=(r,)) for r in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(delays)


def _post_with_notify(store, run_id: int) -> None:  # noqa: ANN001 - a Store
    import sqlalchemy as sa

    from babysit.store import schema as S

    def post(conn: sa.Connection) -> None:
        # created is set at commit time's doorstep: the delay measured is commit -> read
        conn.execute(sa.insert(S.commands).values(run_id=run_id, kind="pause", args={},
                                                  source="cli", status="pending",
                                                  created=time.time()))
        conn.execute(sa.text("SELECT pg_notify(:channel, '')"),
                     {"channel": f"babysit_commands_{int(run_id)}"})
    store.write(post)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--mode", choices=["poll", "notify"], default="poll")
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
        if args.mode == "poll":
            procs = [ctx.Process(target=_poller, args=(url, root, share, args.seconds + 2.0,
                                                       args.interval, out)) for share in shares]
        else:
            procs = [ctx.Process(target=_listener, args=(url, share, args.seconds + 4.0, out))
                     for share in shares]
        for p in procs:
            p.start()
        time.sleep(3.0)                       # imports and connections first
        poster = Store.open(root, url=url) if args.mode == "notify" else None
        cpu0, t0 = _server_cpu(pg.proc.pid), time.monotonic()
        posted = 0
        while time.monotonic() - t0 < args.seconds:
            if poster is not None:
                _post_with_notify(poster, runs[posted % len(runs)])
                posted += 1
                time.sleep(0.1)
            else:
                time.sleep(0.2)
        busy = (_server_cpu(pg.proc.pid) - cpu0) / (time.monotonic() - t0)
        latencies = [x for _ in procs for x in out.get(timeout=120)]
        for p in procs:
            p.join(60)
        if poster is not None:
            poster.close()
    finally:
        pg.stop()
    if args.mode == "notify":
        latencies.sort()
        print(f"PostgreSQL LISTEN/NOTIFY, {args.runs} listening runs, {posted} commands "
              f"posted in {args.seconds:.0f} s")
        print(f"    server CPU, idle (baseline)        {idle * 100:6.1f} % of a core")
        print(f"    server CPU, listening + posting    {busy * 100:6.1f} % of a core")
        print(f"    commands read                      {len(latencies):6d} of {posted}")
        if latencies:
            p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
            print(f"    post -> read p50 / p99             "
                  f"{statistics.median(latencies) * 1000:6.2f} / {p99:.2f} ms")
        share = busy - idle
        verdict = "PASS" if share <= TARGET_CORE_SHARE else "MISS"
        print(f"    cost {share * 100:.1f} % of a core   target <= "
              f"{TARGET_CORE_SHARE * 100:.0f} %   {verdict}")
        return
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
