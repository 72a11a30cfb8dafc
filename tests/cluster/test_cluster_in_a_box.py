"""A cluster in a box: a real Ray head (2 CPUs), a real PostgreSQL store and a real S3 server
(moto), all started by the fixtures. A PBT study of 4 runs is launched through Ray, its
autopilot exploits checkpoints between runs (the checkpoints are objects on S3), a run is forked
through the dashboard's code path, nudged, stopped, restarted and killed: everything is seen in
the store, and liveness comes from Ray, not from pids."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import babysit
from babysit.ray_launcher import DEFAULT_FORWARD, RayLauncher
from babysit.storage import open_storage
from babysit.study.orchestrator import Orchestrator
from babysit.ui import actions, console

REPO = Path(__file__).resolve().parents[2]
DAYS = 6


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.2)
    return value


def _drive(orch: Orchestrator, timeout: float) -> None:
    """Tick the orchestrator (in this process, with the test's Ray client) until it is done."""
    deadline = time.monotonic() + timeout
    while orch.tick():
        assert time.monotonic() < deadline, f"the study was not done after {timeout}s"
        time.sleep(0.2)


def _weight_sum(client: babysit.Client, run_id: int, day: int) -> float:
    """The demo's ``wsum`` computed from a day's checkpoint, read back from S3."""
    record = client.store.checkpoint(run_id, day)
    payload = open_storage(root=client.store.root).load(record.path, record.sha256)
    return float(sum(t.double().sum() for t in payload["state"]["model"].values()))


@pytest.mark.slow
def test_a_pbt_study_a_fork_and_a_stop_on_ray_postgres_and_s3(ray_head, pg_url, s3, tmp_path,
                                                              monkeypatch):
    prefix = f"box-{os.getpid()}"
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BABYSIT_CHECKPOINTS", f"s3://{s3.bucket}/{prefix}")
    monkeypatch.setenv("PYTHONPATH", str(REPO))     # the jobs import this checkout's babysit
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # 4 trials and a fork at once on a 2-CPU head: each job asks for a quarter of a CPU
    launcher = RayLauncher(ray_head.dashboard, num_cpus=0.25, stop_grace_s=60,
                           forward=(*DEFAULT_FORWARD, "PYTHONPATH", "OMP_NUM_THREADS"))
    root = tmp_path / "store"
    c = babysit.Client(root, store_url=pg_url, launcher=launcher)
    # the dashboard's own client (as ui/state.py opens it), its trials' launcher settings
    ui = babysit.Client(root, store_url=pg_url, source="ui", create=False, launcher=launcher)
    try:
        c.create_study(
            "box", objective="val_loss", strategy={"kind": "pbt", "seed": 3},
            space={"lr": {"scale": "log", "low": 1e-3, "high": 0.5},
                   "momentum": {"scale": "one_minus_log", "low": 0.5, "high": 0.99}},
            budget={"parallel": 4, "days": DAYS}, autopilot="auto",
            # paced so that the 4 jobs, which Ray starts seconds apart, train side by side for
            # a few days: a PBT round needs them at a common day before the last one
            command=[sys.executable, "-m", "babysit.demo", "--pace", "0.05", "--day",
                     "60 steps", "--fingerprint"])
        t0 = time.monotonic()
        _drive(Orchestrator(c, "box", log=lambda line: None), 420)
        print(f"the study on Ray: {time.monotonic() - t0:.1f}s")
        for r in c.store.list_runs():
            first = c.metrics(r.id, ["loss"]).time.min()
            print(f"run {r.id}: first step {first - r.created:.1f}s after its row, "
                  f"ended {r.ended - r.created:.1f}s after")

        # ---- the study, as the store saw it
        assert c.study("box").status == "done"
        runs = c.study_runs("box")
        assert runs.status.tolist() == ["finished"] * 4, runs[["id", "status", "error"]]
        assert runs.day.tolist() == [DAYS] * 4
        jobs = [c.run(int(r)).launcher for r in runs.id]
        assert all(j["kind"] == "ray" and j["address"] == ray_head.dashboard for j in jobs)
        assert len({j["job"] for j in jobs}) == 4
        # a trainer writes "finished" just before its process exits: the job ends after
        _wait(lambda: all(launcher.status(j) == "SUCCEEDED" for j in jobs), 60,
              "every job to end")
        exploits = [e for rid in runs.id for e in c.events(rid).query("kind == 'exploit'")
                    .itertuples()]
        assert exploits, "the autopilot made no exploit"
        for e in exploits:
            assert e.source == "autopilot"
            run_id = int(c.store.get_decision(e.detail["decision"]).run_id)
            wsum = c.metrics(run_id, ["wsum"])
            # the exploiting run's next step started from the donor's day, read from S3
            assert wsum[wsum.step == e.step].value.tolist() == \
                [_weight_sum(c, e.detail["from_run"], e.detail["from_day"])]
        keys = [o["Key"] for o in s3.client().list_objects_v2(
            Bucket=s3.bucket, Prefix=f"{prefix}/runs/").get("Contents", [])]
        for r in runs.id:
            for checkpoint in c.store.checkpoint_records(int(r)):
                assert f"{prefix}/{checkpoint.path}" in keys
        assert not list(root.rglob("*.pt"))       # no checkpoint on this machine's disk

        # ---- a fork from the Run page's button, on Ray; nudged; stopped from the page
        t0 = time.monotonic()
        best = int(runs.sort_values("id").id.iloc[0])
        message, child = actions.fork(ui, best, 2, "lr=0.01")
        assert f"forked run {child}" in message
        record = c.run(child)
        assert record.parent_id == best and record.launcher["kind"] == "ray"
        _wait(lambda: c.run(child).step > record.step + 5, 180,
              f"the fork to train on Ray (output: {ui.console(child)})")
        assert launcher.alive(c.run(child))
        result = c.nudge(child, scale={"lr": 0.5}, timeout=60)   # through NOTIFY
        assert result.detail["lr"]["new"] == pytest.approx(0.005)
        # the Run page's console tail: the job's output, through Ray (no local process.log)
        text = console.of_run(ui, child, lines=1000)
        assert text == launcher.console(c.run(child), root, 1000)
        assert not (root / "runs" / str(child) / "process.log").exists()
        assert "stopped" in actions.stop(ui, child, timeout=120)
        assert c.run(child).status == "stopped"
        _wait(lambda: launcher.status(c.run(child)) == "SUCCEEDED", 60, "the job to end")
        assert [e.source for e in c.events(child).query("kind == 'stop'").itertuples()] == ["ui"]

        # ---- restarted through Ray; its process dies: Ray says so, the monitor marks it
        restarted = c.restart(child)
        assert restarted.job != record.launcher["job"]
        _wait(lambda: c.run(child).status == "running" and c.run(child).pid, 180,
              "the restarted fork to run")
        os.kill(c.run(child).pid, signal.SIGKILL)   # the trainer dies (an OOM kill, a bad node)
        _wait(lambda: launcher.status(c.run(child)) == "FAILED", 60, "Ray to see the job fail")
        assert c.check_runs(child) == [child]
        after = c.run(child)
        assert after.status == "crashed" and restarted.job in after.error
        crashed = c.events(child).query("kind == 'crashed'")
        assert crashed.source.tolist()[-1] == "monitor"
        print(f"fork, nudge, stop, restart, crash on Ray: {time.monotonic() - t0:.1f}s")
    finally:
        for r in c.store.list_runs():
            if r.launcher and r.launcher.get("kind") == "ray":
                launcher.stop(r.launcher, grace_s=30)
        c.close()
        ui.close()


def test_a_run_launched_through_ray_is_watched_and_shown_through_ray(ray_head, pg_url, tmp_path,
                                                                     monkeypatch):
    """Client(launcher="ray"): the job is recorded with the run; its console output is Ray's
    log; when the job ends without the run finishing, the monitor marks it crashed and says
    which job (the process never called init(), so no pid was ever written)."""
    monkeypatch.setenv("BABYSIT_RAY_NUM_CPUS", "0.25")
    monkeypatch.setenv("BABYSIT_LAUNCHER", "ray")
    monkeypatch.setenv("BABYSIT_RAY_ADDRESS", ray_head.dashboard)
    c = babysit.Client(tmp_path / "store", store_url=pg_url)      # the settings choose Ray
    assert c.launcher.kind == "ray" and c.launcher.resources["num_cpus"] == 0.25
    try:
        run_id = c.launch([sys.executable, "-c", "import time; print('hello from ray', "
                           "flush=True); time.sleep(2)"], project="box", cwd=str(tmp_path))
        job = c.run(run_id).launcher
        assert job["kind"] == "ray" and job["job"].startswith(f"babysit-run-{run_id}-")
        assert c.run(run_id).pid is None
        _wait(lambda: "hello from ray" in (c.console(run_id) or ""), 120, "the job's output")
        _wait(lambda: c.launcher.status(job) == "SUCCEEDED", 120, "the job to end")
        assert c.check_runs(run_id) == [run_id]
        record = c.run(run_id)
        assert record.status == "crashed"
        assert record.error == f"Ray job {job['job']} is SUCCEEDED and the run never finished"
        assert "hello from ray" in c.console(run_id)

        # a process that does not stop by itself is ended through Ray (stop_job), not a signal
        sleeper = c.launch([sys.executable, "-c", "import time; print('up', flush=True); "
                            "time.sleep(600)"], project="box", cwd=str(tmp_path))
        _wait(lambda: "up" in (c.console(sleeper) or ""), 120, "the sleeper's output")
        assert c.check_runs(sleeper) == []          # its job runs: alive, though it has no pid
        c.store.update_run(sleeper, status="running")
        c.terminate(sleeper)
        assert c.launcher.status(c.run(sleeper)) == "STOPPED"
        assert c.run(sleeper).status == "stopped"
    finally:
        c.close()


@pytest.mark.slow
def test_study_launch_on_ray_from_the_command_line(ray_head, pg_url, tmp_path, monkeypatch):
    """`babysit study launch NAME --launcher ray --ray-address ...`: the orchestrator runs in the
    background here and starts its trials as Ray jobs (the launcher travels in its
    environment)."""
    for name in ("BABYSIT_LAUNCHER", "BABYSIT_RAY_ADDRESS", "BABYSIT_RAY_NUM_CPUS",
                 "BABYSIT_STORE_URL", "BABYSIT_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "store"
    c = babysit.Client(root, store_url=pg_url)           # a local Client defines the study
    # the trial imports this checkout's babysit (a real cluster has it installed)
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from babysit.demo import main; "
            "main(sys.argv[1:])")
    try:
        c.create_study("cli", objective="val_loss", space={"lr": {"scale": "log", "low": 1e-3,
                                                                  "high": 0.1}},
                       budget={"runs": 2, "parallel": 2, "days": 1}, cwd=str(tmp_path),
                       command=[sys.executable, "-c", code, "--pace", "0", "--day", "20 steps"])
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        out = subprocess.run(
            [sys.executable, "-m", "babysit", "--root", str(root), "--store-url", pg_url,
             "study", "launch", "cli", "--launcher", "ray", "--ray-address", ray_head.dashboard,
             "--num-cpus", "0.25"], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        _wait(lambda: c.study("cli").status == "done", 300, "the study to end")
        runs = c.study_runs("cli")
        assert runs.status.tolist() == ["finished", "finished"], runs[["id", "status", "error"]]
        for run_id in runs.id:
            job = c.run(int(run_id)).launcher
            assert job["kind"] == "ray" and job["address"] == ray_head.dashboard
            assert RayLauncher(ray_head.dashboard).status(job) in ("RUNNING", "SUCCEEDED")
    finally:
        for study in c.store.list_studies():       # an orchestrator left by a failure
            if study.pid and c.orchestrator_alive(study):
                os.kill(study.pid, signal.SIGKILL)
        c.close()
