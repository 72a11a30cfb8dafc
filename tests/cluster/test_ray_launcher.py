"""Run processes as Ray jobs on a real local Ray head (started by the fixture): the command
arrives word for word, with its environment and resources; liveness, stop and output go
through Ray; a real babysit trainer launched this way trains against a PostgreSQL store."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import babysit
from babysit.errors import InvalidValue, LaunchError
from babysit.ray_launcher import RayJob, RayLauncher, ray_address
from tests import servers

REPO = Path(__file__).resolve().parents[2]
TRAINERS = REPO / "tests" / "trainers"


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.2)
    return value


def _launch(code: str, cwd: Path, *args: str) -> dict:
    return {"executable": sys.executable, "argv": ["-c", code, *args], "cwd": str(cwd),
            "env": {"PYTHONPATH": str(REPO)}}


def test_a_job_gets_its_words_environment_and_folder_not_a_shell(ray_head, tmp_path, monkeypatch):
    monkeypatch.setenv("BABYSIT_CHECKPOINTS", "s3://bucket/prefix")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "forwarded")
    monkeypatch.setenv("SECRET_OF_THIS_MACHINE", "stays here")
    marker = tmp_path / "pwned"
    hostile = f"a b; touch {marker}; $(touch {marker}) `touch {marker}` 'q\"\n"
    code = ("import os, sys, json; print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(), "
            "'env': {k: os.environ.get(k) for k in ('BABYSIT_RUN_ID', 'BABYSIT_ROOT', "
            "'BABYSIT_STORE_URL', 'BABYSIT_CHECKPOINTS', 'AWS_ACCESS_KEY_ID', 'BABYSIT_LAUNCH_ID', "
            "'SECRET_OF_THIS_MACHINE')}}))")
    launcher = RayLauncher(ray_head.dashboard, num_cpus=1)
    job = launcher.start(41, _launch(code, tmp_path, hostile, "--flag=x y"), tmp_path / "root",
                         "postgresql+psycopg://u@db/x")
    assert job.job.startswith("babysit-run-41-") and job.address == ray_head.dashboard
    assert RayJob.from_json(job.to_json()) == job
    _wait(lambda: launcher.status(job) in ("SUCCEEDED", "FAILED"), 120, "the job to end")
    assert launcher.status(job) == "SUCCEEDED", launcher.logs(job)
    import json
    line = next(ln for ln in launcher.logs(job).splitlines() if ln.startswith("{"))
    seen = json.loads(line)
    assert seen["argv"] == [hostile, "--flag=x y"]
    assert seen["cwd"] == str(tmp_path)
    assert seen["env"] == {"BABYSIT_RUN_ID": "41", "BABYSIT_ROOT": str(tmp_path / "root"),
                           "BABYSIT_STORE_URL": "postgresql+psycopg://u@db/x",
                           "BABYSIT_CHECKPOINTS": "s3://bucket/prefix",
                           "AWS_ACCESS_KEY_ID": "forwarded", "BABYSIT_LAUNCH_ID": job.job,
                           "SECRET_OF_THIS_MACHINE": None}
    assert not marker.exists()
    assert not launcher.alive(job)


def test_liveness_and_stop_go_through_ray(ray_head, tmp_path):
    launcher = RayLauncher(ray_head.dashboard, num_cpus=0.5, stop_grace_s=60)
    job = launcher.start(42, _launch("import time; print('up', flush=True); time.sleep(600)",
                                     tmp_path), tmp_path, None)
    _wait(lambda: "up" in launcher.logs(job), 120, "the job's output")
    assert launcher.alive(job) and launcher.status(job) == "RUNNING"
    assert launcher.alive(job.to_json())       # as the store keeps it
    assert launcher.stop(job) == "STOPPED"
    assert not launcher.alive(job)
    assert launcher.stop(job) == "STOPPED"       # twice is fine
    # a job the cluster never had is not alive (a restarted cluster forgets its jobs)
    assert launcher.status(RayJob(42, ray_head.dashboard, "babysit-run-42-unknown")) == "UNKNOWN"


def test_resources_are_checked_and_requested(ray_head, tmp_path):
    launcher = RayLauncher(ray_head.dashboard)
    for bad in ({"num_gpus": -1}, {"num_cpus": float("nan")}, {"memory": 0.5},
                {"gpus": 1}, {"num_cpus": True}):
        with pytest.raises(InvalidValue):
            launcher.start(43, {**_launch("pass", tmp_path), "resources": bad}, tmp_path, None)
    # more CPUs than the 2-CPU head has: Ray keeps the job waiting, alive but not running
    job = launcher.start(43, {**_launch("print('ran')", tmp_path), "resources": {"num_cpus": 64}},
                         tmp_path, None)
    time.sleep(3)
    assert launcher.status(job) == "PENDING" and launcher.alive(job)
    t0 = time.monotonic()
    assert launcher.stop(job) == "PENDING"      # Ray ends it when (if) it is ever placed
    assert time.monotonic() - t0 < 15
    job = launcher.start(44, {**_launch("print('ran')", tmp_path),
                              "resources": {"num_cpus": 1, "memory": 50 * 2**20}}, tmp_path, None)
    _wait(lambda: launcher.status(job) == "SUCCEEDED", 120, "a job with memory to end")
    assert "ran" in launcher.logs(job)


def test_addresses_are_checked(monkeypatch):
    monkeypatch.delenv("BABYSIT_RAY_ADDRESS", raising=False)
    with pytest.raises(InvalidValue, match="BABYSIT_RAY_ADDRESS"):
        ray_address()
    with pytest.raises(InvalidValue, match="dashboard"):
        ray_address("ray://head:10001")
    monkeypatch.setenv("BABYSIT_RAY_ADDRESS", "head:8265")
    assert ray_address() == "http://head:8265"
    with pytest.raises(LaunchError, match="cannot reach"):
        RayLauncher(f"http://127.0.0.1:{servers.free_port()}").start(
            1, {"executable": sys.executable, "argv": ["-c", "pass"]}, Path("."), None)


def test_a_trainer_on_ray_trains_against_postgres_and_obeys_the_store(ray_head, pg_url,
                                                                      tmp_path):
    """The cluster path end to end on one machine: the run's process is a Ray job, its store is
    PostgreSQL; a nudge and a stop posted through the Client reach it; the job ends by itself."""
    root = tmp_path / "store"
    client = babysit.Client(root, store_url=pg_url)
    run_id = client.launch([sys.executable, str(TRAINERS / "tiny.py"), "--pace", "0.02",
                            "--day", "20 steps"], project="ray", cwd=str(tmp_path), detach=False)
    launch = {**client.run(run_id).launch, "env": {"PYTHONPATH": str(REPO)}}
    launcher = RayLauncher(ray_head.dashboard, num_cpus=1)
    job = launcher.start(run_id, launch, root, pg_url)
    try:
        _wait(lambda: client.store.get_run(run_id).step > 5, 180,
              f"the trainer on Ray to step (output: {launcher.logs(job)[-2000:]})")
        assert launcher.alive(job)
        result = client.nudge(run_id, lr=0.01, timeout=60)
        assert result.status == "applied"
        assert client.store.get_run(run_id).hp["lr"] == 0.01
        client.stop(run_id, wait=False)
        _wait(lambda: not launcher.alive(job), 120, "the job to end after a stop command")
        assert launcher.status(job) == "SUCCEEDED", launcher.logs(job)[-3000:]
        record = client.store.get_run(run_id)
        assert record.status == "stopped"
        kinds = client.store.events(run_id)["kind"].tolist()
        assert "nudge" in kinds and "stop" in kinds
        assert len(client.store.metrics(run_id, ["loss"])) >= 5
    finally:
        launcher.stop(job, grace_s=30)
        client.close()
    assert os.path.isdir(root)
