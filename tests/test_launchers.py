"""Choosing a launcher (Client(launcher=...), --launcher, BABYSIT_LAUNCHER) and asking the one
that started a run; no Ray needed here (tests/cluster runs real Ray jobs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import babysit
from babysit.cli import build_parser, main
from babysit.errors import InvalidValue
from babysit.launcher import LOCAL, LocalLauncher
from babysit.launchers import launcher_env, launcher_for, make_launcher
from babysit.ray_launcher import RayLauncher

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_settings(monkeypatch):
    for name in ("BABYSIT_LAUNCHER", "BABYSIT_RAY_ADDRESS", "BABYSIT_RAY_NUM_CPUS",
                 "BABYSIT_RAY_NUM_GPUS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_local_is_the_default_and_settings_choose_ray(no_settings, tmp_path):
    assert isinstance(make_launcher(), LocalLauncher)
    assert isinstance(babysit.Client(tmp_path).launcher, LocalLauncher)
    no_settings.setenv("BABYSIT_LAUNCHER", "ray")
    with pytest.raises(InvalidValue, match="BABYSIT_RAY_ADDRESS"):
        make_launcher()
    no_settings.setenv("BABYSIT_RAY_ADDRESS", "head:8265")
    no_settings.setenv("BABYSIT_RAY_NUM_GPUS", "1")
    ray = babysit.Client(tmp_path).launcher
    assert isinstance(ray, RayLauncher) and ray.address == "http://head:8265"
    assert ray.resources["num_gpus"] == 1 and ray.resources["num_cpus"] == 1
    # what the study's orchestrator process gets: its trials go to the same cluster
    assert launcher_env(ray) == {"BABYSIT_LAUNCHER": "ray", "BABYSIT_RAY_ADDRESS":
                                 "http://head:8265", "BABYSIT_RAY_NUM_CPUS": "1.0",
                                 "BABYSIT_RAY_NUM_GPUS": "1.0"}
    assert launcher_env(LocalLauncher()) == {"BABYSIT_LAUNCHER": "local"}
    explicit = babysit.Client(tmp_path, launcher="local").launcher
    assert isinstance(explicit, LocalLauncher)
    for bad in ("slurm", "RAY "):
        with pytest.raises(InvalidValue, match="'local' or 'ray'"):
            make_launcher(bad if bad != "RAY " else "k8s")
    no_settings.setenv("BABYSIT_LAUNCHER", "yarn")
    with pytest.raises(InvalidValue, match="BABYSIT_LAUNCHER"):
        babysit.Client(tmp_path)
    no_settings.setenv("BABYSIT_LAUNCHER", "ray")
    no_settings.setenv("BABYSIT_RAY_NUM_CPUS", "many")
    with pytest.raises(InvalidValue, match="BABYSIT_RAY_NUM_CPUS"):
        make_launcher()


def test_a_run_is_asked_about_through_the_launcher_that_started_it(no_settings, tmp_path):
    c = babysit.Client(tmp_path)
    run_id = c.launch([sys.executable, "-c", "print('hi')"], project="p", cwd=str(tmp_path),
                      detach=False)
    record = c.run(run_id)
    assert record.launcher is None
    assert isinstance(launcher_for(record, c.launcher), LocalLauncher)     # before v5: local
    c.store.update_run(run_id, launcher={"kind": "ray", "run_id": run_id,
                                         "address": "http://head:8265", "job": "j"})
    ray = launcher_for(c.run(run_id), c.launcher)
    assert isinstance(ray, RayLauncher) and ray.address == "http://head:8265"
    assert launcher_for(c.run(run_id), c.launcher) is ray      # one per cluster, reused
    same = RayLauncher("http://head:8265")
    assert launcher_for(c.run(run_id), same) is same           # the caller's own, if it fits
    c.close()


def test_a_local_launch_records_its_launcher_and_its_console(no_settings, tmp_path):
    c = babysit.Client(tmp_path / "store")
    run_id = c.launch([sys.executable, "-c", "print('hello\\rHELLO', flush=True)"],
                      project="p", cwd=str(tmp_path))
    assert c.run(run_id).launcher == LOCAL
    deadline = time.monotonic() + 60
    while "HELLO" not in (c.console(run_id) or "") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert c.console(run_id) == "HELLO"       # what a terminal shows last
    with pytest.raises(InvalidValue):
        c.console(run_id, lines=0)
    c.close()


def test_cli_launcher_options(no_settings, tmp_path, capsys):
    parser = build_parser()
    for verb in (["run"], ["fork", "1"], ["restart", "1"], ["retest", "1"],
                 ["study", "launch", "s"], ["study", "create", "s", "--objective", "x",
                                            "--space", "{}"]):
        args = parser.parse_args([*verb, "--launcher", "ray", "--ray-address", "h:1",
                                  "--num-cpus", "0.5", "--num-gpus", "1"])
        assert (args.launcher, args.ray_address, args.num_cpus, args.num_gpus) == \
            ("ray", "h:1", 0.5, 1.0)
    root = str(tmp_path / "store")
    babysit.Client(root).close()
    # Ray options with the local launcher: refused before anything is done
    assert main(["--root", root, "restart", "1", "--launcher", "local", "--num-gpus", "1"]) != 0
    assert "for --launcher ray" in capsys.readouterr().err


def test_the_single_machine_path_imports_no_cluster_package(tmp_path):
    code = ("import sys, babysit, babysit.cli; c = babysit.Client(sys.argv[1]); "
            "c.launch([sys.executable, '-c', 'pass'], project='p', cwd=sys.argv[1]); "
            "c.check_runs(); c.runs(); "
            "print(sorted(m for m in ('ray', 'psycopg', 's3fs', 'fsspec') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BABYSIT_")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stderr
