"""Checkpoints on shared storage: a real S3 server (moto's, started by the fixture), and the
local folder behind the same interface. Nothing here mocks the storage or torch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import torch

from babysit import storage as st
from babysit.errors import CheckpointError, InvalidValue
from tests import servers

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20


def _payload(step: int, numel: int = 1000) -> dict:
    return {"format": 1, "step": step, "day": step // 10, "branch": 0,
            "state": {"model": {"w": torch.arange(numel, dtype=torch.float32) + step}}}


@pytest.fixture
def s3_env(s3: servers.S3, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The S3 server's credentials and endpoint in this process's environment, as a trainer
    launched with them would see them (s3fs reads AWS_ENDPOINT_URL)."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return s3.env


@pytest.fixture
def location(s3: servers.S3, s3_env: dict[str, str]) -> str:
    """A fresh prefix in the bucket for each test."""
    return f"s3://{s3.bucket}/t-{uuid.uuid4().hex[:8]}/ckpts"


def _keys(s3: servers.S3, prefix: str = "") -> set[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def _uploads(s3: servers.S3, prefix: str) -> list[dict]:
    return s3.client().list_multipart_uploads(Bucket=s3.bucket, Prefix=prefix).get("Uploads", [])


def test_a_checkpoint_round_trips_through_s3_manifest_last(location: str, s3: servers.S3):
    storage = st.open_storage(location, root=Path("unused"))
    assert isinstance(storage, st.ObjectStorage)
    size, sha = storage.save("runs/1/day0001.b0.pt", _payload(10))
    prefix = location.removeprefix(f"s3://{s3.bucket}/")
    assert _keys(s3, prefix) == {f"{prefix}/runs/1/day0001.b0.pt", f"{prefix}/runs/1/day0001.b0.json"}
    manifest = storage.verify("runs/1/day0001.b0.pt", sha)
    assert (manifest["size"], manifest["sha256"], manifest["step"]) == (size, sha, 10)
    loaded = storage.load("runs/1/day0001.b0.pt", sha)
    assert torch.equal(loaded["state"]["model"]["w"], _payload(10)["state"]["model"]["w"])
    assert storage.complete(1) == ["runs/1/day0001.b0.pt"]
    assert storage.complete(2) == []
    with pytest.raises(CheckpointError, match="sha256"):
        storage.load("runs/1/day0001.b0.pt", "0" * 64)      # the store's hash disagrees


def test_a_configured_location_comes_from_the_environment(tmp_path, monkeypatch, location):
    monkeypatch.delenv("BABYSIT_CHECKPOINTS", raising=False)
    local = st.open_storage(root=tmp_path)
    assert isinstance(local, st.LocalStorage) and local.root == tmp_path
    monkeypatch.setenv("BABYSIT_CHECKPOINTS", location)
    assert st.open_storage(root=tmp_path).location == location
    monkeypatch.setenv("BABYSIT_CHECKPOINTS", str(tmp_path / "shared"))
    assert st.open_storage(root=tmp_path).location == str(tmp_path / "shared")
    with pytest.raises(InvalidValue, match=r"'\.\.'"):
        st.open_storage("s3://bucket/a/../b", root=tmp_path)


def test_corrupt_truncated_and_unfinished_checkpoints_are_refused(location: str, s3: servers.S3):
    storage = st.open_storage(location, root=Path("unused"))
    _, sha = storage.save("runs/1/day0001.b0.pt", _payload(10))
    key = location.removeprefix(f"s3://{s3.bucket}/") + "/runs/1/day0001.b0.pt"
    body = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0xFF
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=bytes(flipped))
    with pytest.raises(CheckpointError, match="sha256"):
        storage.load("runs/1/day0001.b0.pt", sha)
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=body[:-100])
    with pytest.raises(CheckpointError, match="its manifest says"):
        storage.verify("runs/1/day0001.b0.pt")
    s3.client().put_object(Bucket=s3.bucket, Key=key.replace("day0001", "day0002"), Body=body)
    with pytest.raises(CheckpointError, match="never completely written"):
        storage.load("runs/1/day0002.b0.pt")
    assert storage.complete(1) == ["runs/1/day0001.b0.pt"]   # day 2 has no manifest


@pytest.mark.parametrize("bad", ["../x.pt", "runs/1/../../../x.pt", "/etc/passwd",
                                 "runs\\1\\x.pt", "s3://other/x.pt", "", "runs/\n/x.pt"])
def test_paths_never_leave_the_prefix(location: str, bad: str):
    storage = st.open_storage(location, root=Path("unused"))
    for call in (lambda: storage.save(bad, _payload(1)), lambda: storage.load(bad),
                 lambda: storage.verify(bad), lambda: storage.clean_run(1, [bad])):
        with pytest.raises(CheckpointError):
            call()


def test_cleanup_removes_leftovers_and_nothing_outside_the_run(location: str, s3: servers.S3):
    storage = st.open_storage(location, root=Path("unused"))
    storage.save("runs/1/day0001.b0.pt", _payload(10))
    storage.save("runs/1/day0002.b0.pt", _payload(20))      # complete, but not in the store
    storage.save("runs/2/day0001.b0.pt", _payload(10))      # another run
    prefix = location.removeprefix(f"s3://{s3.bucket}/")
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/runs/1/day0003.b0.pt", Body=b"half")
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/runs/1/process.log", Body=b"log")
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/runs/10/day0001.b0.pt", Body=b"x")
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}x/runs/1/day0004.b0.pt", Body=b"x")
    upload = client.create_multipart_upload(Bucket=s3.bucket, Key=f"{prefix}/runs/1/day0005.b0.pt")
    other = client.create_multipart_upload(Bucket=s3.bucket, Key=f"{prefix}/runs/2/day0009.b0.pt")

    removed = storage.clean_run(1, ["runs/1/day0001.b0.pt"])
    assert sorted(removed) == ["runs/1/day0002.b0.json", "runs/1/day0002.b0.pt",
                               "runs/1/day0003.b0.pt", "runs/1/day0005.b0.pt (unfinished upload)"]
    assert _keys(s3, f"{prefix}/runs/1/") == {f"{prefix}/runs/1/day0001.b0.pt",
                                              f"{prefix}/runs/1/day0001.b0.json",
                                              f"{prefix}/runs/1/process.log"}
    assert f"{prefix}/runs/10/day0001.b0.pt" in _keys(s3, prefix)
    assert f"{prefix}x/runs/1/day0004.b0.pt" in _keys(s3, f"{prefix}x")
    assert [u["UploadId"] for u in _uploads(s3, prefix)] == [other["UploadId"]]
    assert upload["UploadId"] not in {u["UploadId"] for u in _uploads(s3, prefix)}
    assert storage.complete(1) == ["runs/1/day0001.b0.pt"]
    storage.load("runs/1/day0001.b0.pt")


_UPLOADER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from babysit import storage as st
    day, numel = int(sys.argv[1]), int(sys.argv[2])
    s = st.open_storage(root=Path("unused"), part_size=5 * 2**20,
                        storage_options={"max_concurrency": 1})   # one part at a time
    s.save(f"runs/7/day{day:04d}.b0.pt", {"format": 1, "step": day * 10, "day": day, "branch": 0,
           "state": {"w": torch.full((numel,), float(day))}})
    print("saved", day, flush=True)
""")


def test_a_kill_during_an_upload_leaves_the_listed_day_complete(location, s3, s3_env, tmp_path):
    """SIGKILL a process while its multipart upload of day N is under way: days before stay
    complete and loadable, day N is not listed, and cleanup removes the partial upload."""
    env = dict(os.environ, **s3_env, BABYSIT_CHECKPOINTS=location,
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    prefix = location.removeprefix(f"s3://{s3.bucket}/") + "/runs/7/"
    numel = 12 * MiB // 4          # 12 MiB of float32: three 5 MiB parts
    done = subprocess.run([sys.executable, "-c", _UPLOADER, "1", str(numel)], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    storage = st.open_storage(location, root=Path("unused"))
    assert storage.complete(7) == ["runs/7/day0001.b0.pt"]

    killed_mid_upload = False
    for day in range(2, 7):        # the kill races the upload: try again if the upload won
        log_path = tmp_path / f"uploader-{day}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-c", _UPLOADER, str(day), str(numel)],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        killed = False
        while proc.poll() is None and time.monotonic() < deadline:
            uploads = _uploads(s3, prefix)
            if uploads and any(s3.client().list_parts(
                    Bucket=s3.bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts")
                    for u in uploads):
                proc.send_signal(signal.SIGKILL)   # at least one part is up, not completed
                killed = True
                break
            time.sleep(0.01)
        proc.wait(30)
        # on a loaded machine the upload can complete between the look and the kill: then
        # this day tested nothing (its file has no listing yet), and the next day tries again
        if killed and _uploads(s3, prefix):
            killed_mid_upload = True
            break
        assert proc.returncode in ((-signal.SIGKILL, 0) if killed else (0,)), \
            log_path.read_text()
    assert killed_mid_upload, "every upload finished before the kill could land"

    listed = storage.complete(7)
    assert f"runs/7/day{day:04d}.b0.pt" not in listed
    assert listed[0] == "runs/7/day0001.b0.pt"
    for rel in listed:                             # every listed day is whole
        assert storage.load(rel)["state"]["w"].numel() == numel
    assert _uploads(s3, prefix), "the killed process left no partial upload to clean up"

    removed = storage.clean_run(7, listed)
    assert f"runs/7/day{day:04d}.b0.pt (unfinished upload)" in removed
    assert _uploads(s3, prefix) == []
    assert f"{prefix}day{day:04d}.b0.pt" not in _keys(s3, prefix)
    assert storage.complete(7) == listed


def test_local_storage_keeps_todays_files(tmp_path):
    storage = st.open_storage(None, root=tmp_path)
    size, sha = storage.save("runs/1/day0001.b0.pt", _payload(10))
    assert (tmp_path / "runs/1/day0001.b0.pt").stat().st_size == size
    assert (tmp_path / "runs/1/day0001.b0.json").exists()
    assert storage.load("runs/1/day0001.b0.pt", sha)["step"] == 10
    (tmp_path / "runs/1/.day0002.b0.pt.123.tmp").write_bytes(b"half")
    storage.save("runs/1/day0002.b0.pt", _payload(20))
    assert storage.complete(1) == ["runs/1/day0001.b0.pt", "runs/1/day0002.b0.pt"]
    removed = storage.clean_run(1, ["runs/1/day0001.b0.pt"])
    assert sorted(removed) == ["runs/1/.day0002.b0.pt.123.tmp", "runs/1/day0002.b0.json",
                               "runs/1/day0002.b0.pt"]
    with pytest.raises(CheckpointError):
        storage.load("../outside.pt")


def test_a_trainer_keeps_its_days_in_s3(s3, s3_env, location, trainers, monkeypatch):
    """A real trainer with BABYSIT_CHECKPOINTS=s3://...: its days are objects (manifest
    included) and nothing lands on local disk; a rollback reads a day back from S3; after a
    SIGKILL, the restarted process removes the leftovers (an object without manifest, an
    unfinished upload) before it writes anything."""
    monkeypatch.setenv("BABYSIT_CHECKPOINTS", location)
    prefix = location.removeprefix(f"s3://{s3.bucket}/")
    proc, run_id = trainers.start("--pace", "0.02", "--day", "20 steps")
    client = trainers.client
    wait = lambda what, fn, timeout=120: _wait_for(fn, timeout, what)   # noqa: E731
    wait("two days listed", lambda: len(client.store.checkpoint_records(run_id)) >= 2)
    records = client.store.checkpoint_records(run_id)
    keys = _keys(s3, prefix)
    for record in records:
        assert f"{prefix}/{record.path}" in keys
        assert f"{prefix}/{record.path[:-3]}.json" in keys
    assert not list((trainers.root / "runs" / str(run_id)).glob("day*"))   # nothing local

    result = client.rollback(run_id, day=1, timeout=120)
    assert result.status == "applied"

    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    s3_client = s3.client()
    leftover = f"{prefix}/runs/{run_id}/day0099.b0.pt"
    s3_client.put_object(Bucket=s3.bucket, Key=leftover, Body=b"half a checkpoint")
    upload = s3_client.create_multipart_upload(Bucket=s3.bucket,
                                               Key=f"{prefix}/runs/{run_id}/day0098.b0.pt")
    wait("the monitor step to mark the run crashed",         # reading never writes
         lambda: client.check_runs(run_id) or client.run(run_id).status == "crashed", 60)
    client.restart(run_id)
    wait("the leftover to go", lambda: leftover not in _keys(s3, prefix))
    assert upload["UploadId"] not in {u["UploadId"] for u in _uploads(s3, prefix)}
    step = client.store.get_run(run_id).step
    wait("the restarted run to step on", lambda: client.store.get_run(run_id).step > step + 5)
    client.stop(run_id, timeout=60)


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)
    return value
