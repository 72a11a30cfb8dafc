"""Commands on PostgreSQL arrive by LISTEN/NOTIFY: a real trainer subprocess on a real server
applies a nudge at the next step boundary although its fallback poll is set to 10 minutes, and
while idle it sends the server almost no command queries (counted by pg_stat_statements)."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import pytest

import babysit
from babysit.store.feed import ListeningFeed, command_channel
from tests import servers

TINY = str(Path(__file__).resolve().parents[1] / "trainers" / "tiny.py")
PACE = 0.4          # seconds a step: "within one step" is then well above the wake-up time


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)
    return value


def _command_queries(conn) -> int:
    """Statements of this database that read the commands table (the trainer's poll)."""
    return int(conn.execute(
        "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s "
        "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
        "AND s.query ILIKE '%FROM commands%'").fetchone()[0])


@pytest.mark.slow
def test_a_nudge_wakes_the_trainer_and_an_idle_trainer_barely_polls(pg_server, pg_url, tmp_path,
                                                                    monkeypatch):
    import psycopg

    monkeypatch.setenv("BABYSIT_COMMAND_FALLBACK_S", "600")   # only a NOTIFY can deliver
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    admin = psycopg.connect(dsn, autocommit=True)
    try:
        admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    except psycopg.Error as exc:
        servers.missing(f"pg_stat_statements is not available: {exc}")
    c = babysit.Client(tmp_path / "store", store_url=pg_url)
    try:
        run_id = c.launch([sys.executable, TINY, "--pace", str(PACE), "--day", "1000 steps"],
                          project="notify", cwd=str(tmp_path))
        _wait(lambda: c.run(run_id).status == "running" and c.run(run_id).step >= 3, 180,
              "the trainer to step")

        # idle: a 50 ms poll would be ~20 queries a second; listening, it asks only when told
        admin.execute("SELECT pg_stat_statements_reset()")
        t0 = time.monotonic()
        time.sleep(6.0)     # the measurement window itself, not a wait for something
        idle_rate = _command_queries(admin) / (time.monotonic() - t0)
        print(f"command queries of an idle trainer: {idle_rate:.2f}/s")
        assert idle_rate < 1.0

        for lr in (0.04, 0.03, 0.02):
            result = c.nudge(run_id, lr=lr, timeout=60)
            command = c.store.get_command(result.id)
            events = c.events(run_id)
            [event] = events[(events.kind == "nudge") & (events.step == result.step)
                             & (events.source == "python")].itertuples()
            loss = c.metrics(run_id, ["loss"])
            between = loss[(loss.time > command.created) & (loss.time <= event.time)]
            print(f"nudge lr={lr}: applied {event.time - command.created:.3f}s after posting, "
                  f"{len(between)} step(s) ended in between")
            # applied at the boundary of the step running when it was posted (or the next one
            # when that boundary came within the wake-up time), never after the 600 s fallback
            assert len(between) <= 2, between
            assert c.run(run_id).hp["lr"] == lr
        c.stop(run_id, timeout=60)
        assert c.run(run_id).status == "stopped"
    finally:
        # a failed assertion must not leave the trainer running after the server is gone
        for record in c.store.list_runs():
            if record.live:
                with contextlib.suppress(Exception):
                    c.terminate(record.id)
        admin.close()
        c.close()


def test_the_feed_listens_and_reads_only_when_told(pg_url, tmp_path, monkeypatch):
    """In one process: the feed does not query until a command is announced, then hands it
    over once."""
    monkeypatch.setenv("BABYSIT_COMMAND_FALLBACK_S", "600")
    store = babysit.store.Store.open(tmp_path, url=pg_url)
    run_id = store.create_run(project="p", name="n", config={}, hp={}, day_spec="5 steps")
    feed = store.command_feed(run_id)
    try:
        assert isinstance(feed, ListeningFeed) and feed.fallback_s == 600
        assert command_channel(run_id) == f"babysit_commands_{run_id}"
        assert feed.poll() == []            # the first poll reads what is pending: nothing
        _wait(feed.listening.is_set, 30, "the LISTEN connection")
        feed.poll()                         # the (re)connection's catch-up read
        queries = feed.queries
        for _ in range(20):
            assert feed.poll() == []
        assert feed.queries == queries      # nothing announced: no query at all
        command_id = store.post_command(run_id, "pause", {}, "python")
        got = _wait(feed.poll, 10, "the announced command")
        assert [x.id for x in got] == [command_id]
        assert feed.queries == queries + 1
        assert feed.poll() == []            # handed over once
    finally:
        feed.close()
        store.close()
