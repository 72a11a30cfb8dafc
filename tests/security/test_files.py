"""Files stay inside the store: no checkpoint written through a symlink, no compression bomb
inflated. Real files under tmp_path, real torch.save archives."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from babysit import checkpoint as ckpt
from babysit.errors import CheckpointError


def payload() -> dict:
    return {"format": ckpt.FORMAT, "step": 3, "day": 1, "branch": 0,
            "state": {"w": torch.arange(100.0)}}


@pytest.fixture
def layout(tmp_path) -> tuple[Path, Path]:
    """(store root, a folder outside it that an attacker wants written)."""
    root, outside = tmp_path / "store", tmp_path / "victim"
    (root / "runs").mkdir(parents=True)
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    return root, outside


def untouched(outside: Path) -> bool:
    return sorted(p.name for p in outside.iterdir()) == ["precious.txt"] and \
        (outside / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("with_root", [True, False])
def test_a_symlinked_run_folder_is_never_written_through(layout, with_root):
    root, outside = layout
    (root / "runs" / "1").symlink_to(outside, target_is_directory=True)
    path = ckpt.run_dir(root, 1) / ckpt.checkpoint_name(1, 0)
    with pytest.raises(CheckpointError, match="symlink"):
        ckpt.save(path, payload(), root=root if with_root else None)
    assert untouched(outside)


def test_a_symlinked_runs_folder_is_never_written_through(layout):
    root, outside = layout
    (root / "runs").rmdir()
    (root / "runs").symlink_to(outside, target_is_directory=True)
    path = ckpt.run_dir(root, 1) / ckpt.checkpoint_name(1, 0)
    for kwargs in ({"root": root}, {}):
        with pytest.raises(CheckpointError, match="symlink"):
            ckpt.save(path, payload(), **kwargs)
    assert untouched(outside)             # not even the run folder was made over there


@pytest.mark.parametrize("suffix", [".pt", ".json"])
def test_a_symlinked_checkpoint_or_manifest_is_refused(layout, suffix):
    root, outside = layout
    path = ckpt.run_dir(root, 1) / ckpt.checkpoint_name(1, 0)
    path.parent.mkdir()
    path.with_suffix(suffix).symlink_to(outside / "precious.txt")
    with pytest.raises(CheckpointError, match="symlink"):
        ckpt.save(path, payload(), root=root)
    assert untouched(outside)


def test_a_planted_temporary_file_link_is_replaced_not_followed(layout):
    root, outside = layout
    path = ckpt.run_dir(root, 1) / ckpt.checkpoint_name(1, 0)
    path.parent.mkdir()
    # the name the writer will use for its temporary file, pointing at the victim
    (path.parent / f".{path.name}.{os.getpid()}.tmp").symlink_to(outside / "precious.txt")
    ckpt.save(path, payload(), root=root)
    assert untouched(outside)
    assert torch.equal(ckpt.load(path)["state"]["w"], torch.arange(100.0))


def test_a_store_root_that_is_a_symlink_is_fine(tmp_path):
    """Checkpoints on another disk: only what babysit makes under the root must be real."""
    real = tmp_path / "disk"
    real.mkdir()
    root = tmp_path / "store"
    root.symlink_to(real, target_is_directory=True)
    path = ckpt.run_dir(root, 1) / ckpt.checkpoint_name(1, 0)
    ckpt.save(path, payload(), root=root)
    assert (real / "runs" / "1" / path.name).is_file()


def _bomb(path: Path, mib: int) -> None:
    """A torch.save archive whose tensor entries are deflated: mib MiB of zeros in a few hundred
    kB, with a manifest that matches it (whoever can put the file can write that too)."""
    buf = io.BytesIO()
    torch.save({"format": ckpt.FORMAT, "step": 1, "day": 1, "branch": 0,
                "state": {"w": torch.zeros(mib * 2**18)}}, buf)
    source = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w") as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info.filename),
                         compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    data = path.read_bytes()
    path.with_suffix(".json").write_text(json.dumps({
        "format": ckpt.FORMAT, "file": path.name, "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(), "step": 1, "day": 1, "branch": 0}))


def test_a_compression_bomb_is_refused_before_it_is_inflated(tmp_path):
    path = tmp_path / "day0001.b0.pt"
    _bomb(path, 64)
    assert path.stat().st_size < 1 << 20
    # it is a working bomb: torch alone inflates it to 64 MiB
    assert torch.load(path, weights_only=True)["state"]["w"].numel() == 64 * 2**18
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="compression bomb"):
        ckpt.load(path)
    assert time.monotonic() - start < 5.0     # read the central directory, inflated nothing


def test_ordinary_checkpoints_pass_the_inflation_check(tmp_path):
    path = tmp_path / "day0001.b0.pt"
    big = {"format": ckpt.FORMAT, "state": {"w": torch.randn(1 << 20), "b": torch.zeros(10)}}
    ckpt.save(path, big)
    ckpt.check_inflation(path)
    assert torch.equal(ckpt.load(path)["state"]["w"], big["state"]["w"])


def test_a_checkpoint_that_is_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "day0001.b0.pt"
    ckpt.save(path, payload())
    path.write_bytes(b"\x80\x02not a zip at all")
    data = path.read_bytes()
    manifest = json.loads(path.with_suffix(".json").read_text())
    manifest.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="not a torch.save zip"):
        ckpt.load(path)


def test_a_trainer_whose_run_folder_became_a_link_writes_nothing_through_it(tmp_path):
    """The whole path: a real run, its folder swapped for a link after init. Each day's save
    fails with the reason in the run's events; the target stays untouched; training goes on."""
    import shutil

    import babysit

    root, outside = tmp_path / "store", tmp_path / "victim"
    outside.mkdir()
    run = babysit.init(project="p", root=root, day="5 steps", config={"lr": 0.1})
    folder = ckpt.run_dir(root, run.id)
    shutil.rmtree(folder)
    folder.symlink_to(outside, target_is_directory=True)
    model = torch.nn.Linear(2, 1)
    run.attach(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    for _ in run.loop(steps=12):
        run.log(loss=1.0)
    run.finish()
    assert list(outside.iterdir()) == []
    client = babysit.Client(root)
    failed = client.events(run.id).query("kind == 'checkpoint_failed'")
    # refused where the path is resolved (it leads outside the store) or where it is written
    assert len(failed) >= 2 and all("symlink" in d["error"] or "leads outside" in d["error"]
                                    for d in failed["detail"]), failed["detail"].tolist()
    assert client.run(run.id).step >= 11
    client.close()


def test_a_link_from_one_run_folder_into_another_is_refused(layout):
    """Inside the root, but a link all the same: run 2's trainer must not write into run 1."""
    root, _ = layout
    (root / "runs" / "1").mkdir()
    (root / "runs" / "2").symlink_to(root / "runs" / "1", target_is_directory=True)
    with pytest.raises(CheckpointError, match="symlink"):
        ckpt.safe_path(root, "runs/2/day0001.b0.pt")
    assert ckpt.safe_path(root, "runs/1/day0001.b0.pt") == \
        (root / "runs" / "1" / "day0001.b0.pt").resolve()
    assert list((root / "runs" / "1").iterdir()) == []


def test_a_process_log_is_never_written_through_a_linked_run_folder(tmp_path):
    """The launcher's process.log, like a checkpoint: a run folder swapped for a link is
    refused before the process starts, and nothing lands in the link's target."""
    from babysit.errors import LaunchError
    from babysit.launcher import start_detached

    root, outside = tmp_path / "store", tmp_path / "victim"
    (root / "runs").mkdir(parents=True)
    outside.mkdir()
    (root / "runs" / "7").symlink_to(outside, target_is_directory=True)
    with pytest.raises(LaunchError, match="symlink"):
        start_detached([sys.executable, "-c", "print('hi')"], cwd=str(tmp_path), env={},
                       log_path=root / "runs" / "7" / "process.log", what="run 7")
    assert list(outside.iterdir()) == []


def test_unwritten_rows_never_go_through_a_linked_run_folder(tmp_path):
    """Rows the store could not take are saved beside the store, not through the link."""
    from babysit.store import Store
    from babysit.trainer.outbox import Outbox
    from tests.trainer.test_outbox import Position

    root, outside = tmp_path / "store", tmp_path / "victim"
    outside.mkdir()
    store = Store.open(root)
    run_id = store.create_run(project="p", name="n", config={}, hp={}, day_spec="10 steps")
    (root / "runs").mkdir(exist_ok=True)
    folder = root / "runs" / str(run_id)
    folder.symlink_to(outside, target_is_directory=True)
    outbox = Outbox(store, run_id, Position(), folder, system_s=None)
    path = outbox._write_unwritten([(0, 1, "loss", 1.0, 0.0, 0), (1, 1, "loss", 0.5, 0.0, 0)])
    assert list(outside.iterdir()) == []
    assert path.parent == root and path.read_text().count("\n") == 3    # header + 2 rows
    assert outbox.unwritten == 2
    store.close()
