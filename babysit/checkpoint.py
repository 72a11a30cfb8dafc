"""Day checkpoints: written atomically with a manifest, verified before they are unpickled.

A checkpoint is ``dayNNNN.bB.pt`` (day N of branch B) next to its manifest ``dayNNNN.bB.json``
(size, sha256, step, torch version), which is written last: a checkpoint without a valid manifest
is not a checkpoint. Loading checks the path, the manifest, the size, the hash and the zip's
declared sizes *before* ``torch.load(..., weights_only=True)`` sees a byte, and never retries
without weights_only.

Files stay inside the store: a run folder or a checkpoint that is a symlink is never written
through (someone who can plant a link there must not make a trainer overwrite another file),
and a checkpoint whose zip declares far more bytes than the file holds (a compression bomb) is
refused before anything is inflated.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import re
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from babysit.errors import CheckpointError

# torch is imported inside the functions that need it: the Client verifies checkpoints
# (restart, rollback, fork) and the CLI and the dashboard start faster without torch.

FORMAT = 1
_CHECKPOINT_FILE = re.compile(r"^day\d{4,}\.b\d+\.(pt|json)$")
#: a checkpoint's zip may declare at most this many times its own size, plus a little: torch.save
#: stores its entries uncompressed (declared ≈ file size), a compression bomb declares gigabytes
MAX_INFLATION = 2
_INFLATION_SLACK = 1 << 20


def run_dir(root: Path, run_id: int) -> Path:
    return root / "runs" / str(int(run_id))


def checkpoint_name(day: int, branch: int) -> str:
    return f"day{day:04d}.b{branch}.pt"


def safe_path(root: Path, relative: str) -> Path:
    """Resolve a checkpoint path from the store or the UI; refuse anything outside ``root``.

    Absolute paths, ``..``, symlinks that lead out of the root, and symlinks below the root at
    all (a link from one run's folder into another's would have a trainer write through it)
    are refused; the root itself may be a link.
    """
    if not isinstance(relative, str) or not relative or os.path.isabs(relative):
        raise CheckpointError(f"checkpoint path must be relative to the store root, got {relative!r}")
    if ".." in Path(relative).parts:
        raise CheckpointError(f"checkpoint path may not contain '..', got {relative!r}")
    root_real = Path(os.path.realpath(root))
    below = root_real
    for part in Path(relative).parts:
        below = below / part
        if _is_symlink(below):
            raise CheckpointError(f"{below} is a symlink: babysit never reads or writes a "
                                  "checkpoint through a link below the store root")
    target = Path(os.path.realpath(root_real / relative))
    if root_real != target and root_real not in target.parents:
        raise CheckpointError(f"checkpoint path {relative!r} leads outside {root_real}")
    return target


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (hex), read a MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_symlink(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def refuse_symlinks(path: Path, root: Path | None = None) -> None:
    """CheckpointError when a folder between ``root`` (default: the run folder and ``runs/``)
    and ``path``, or ``path`` itself, is a symlink. The root itself may be one (checkpoints on
    another disk): only what babysit creates under it must be real. For every file babysit
    writes into a run's folder, not only checkpoints.

    >>> refuse_symlinks(Path("/nonexistent/runs/1/day0001.b0.pt"))     # nothing there: fine
    """
    path = Path(os.path.abspath(path))
    folders = [path.parent, *path.parent.parents]
    top = Path(os.path.abspath(root)) if root is not None else None
    if top in folders:
        below = folders[: folders.index(top)]
    else:                       # a store's layout: root/runs/<id>/dayNNNN.bB.pt
        below = folders[:2] if len(folders) > 1 and folders[1].name == "runs" else folders[:1]
    for folder in [path, *below]:
        if _is_symlink(folder):
            raise CheckpointError(f"{folder} is a symlink: babysit never writes a checkpoint "
                                  "through a link (remove it, or point the store root there)")


def _open_folder(folder: Path) -> int:
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CheckpointError(f"{folder} is a symlink or not a folder: babysit never writes "
                                  "a checkpoint through a link") from None
        raise


def _write_atomic(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, fsync, rename, fsync the folder.

    Every name is resolved against the folder opened once without following links, and the
    temporary file is created exclusively and without following links: a link planted or
    swapped in meanwhile makes this fail instead of writing through it.
    """
    folder = _open_folder(path.parent)
    try:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISLNK(os.lstat(path.name, dir_fd=folder).st_mode):
                raise CheckpointError(f"{path} is a symlink: babysit never writes a checkpoint "
                                      "through a link")
        tmp = f".{path.name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=folder)         # left by a killed process with our pid
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=folder)
            raise
        os.fsync(folder)
    finally:
        os.close(folder)


class _Recording:
    """A file wrapper that remembers the first OSError a write raised."""

    def __init__(self, f: Any):
        self.f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.f.flush()


def save(path: Path, payload: dict[str, Any], *, root: Path | None = None) -> tuple[int, str]:
    """Write ``payload`` to ``path`` atomically, then its manifest. Returns (size, sha256).

    Refuses (CheckpointError) when ``path``, its manifest or a folder between the store
    ``root`` and it is a symlink (without ``root``: the run folder and ``runs/``).
    """
    import torch

    refuse_symlinks(path, root)            # before mkdir: no folder made through a link either
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_symlinks(path, root)
    refuse_symlinks(path.with_suffix(".json"), root)

    def write(f: Any) -> None:
        # torch.save turns a failed write (disk full, EFBIG) into an opaque RuntimeError
        # ("unexpected pos ..."): keep the OSError underneath and raise that instead.
        out = _Recording(f)
        try:
            torch.save(payload, cast(IO[bytes], out))   # it only calls write and flush
        except RuntimeError:
            if out.error is not None:
                raise out.error from None
            raise
    _write_atomic(path, write)
    size, sha = path.stat().st_size, file_sha256(path)
    manifest = {"format": FORMAT, "file": path.name, "size": size, "sha256": sha,
                "step": payload.get("step"), "day": payload.get("day"),
                "branch": payload.get("branch"), "torch": torch.__version__}
    _write_atomic(path.with_suffix(".json"),
                  lambda f: f.write(json.dumps(manifest, sort_keys=True).encode()))
    return size, sha


def verify(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """Check a checkpoint against its manifest (and the store's hash); return the manifest."""
    manifest_path = path.with_suffix(".json")
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path.name} has no manifest: it was never completely written") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: manifest unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: manifest has an unknown format")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(f"{path.name} is missing") from None
    if size != manifest.get("size"):
        raise CheckpointError(f"{path.name} is {size} bytes, its manifest says {manifest.get('size')}")
    actual = file_sha256(path)
    if actual != manifest.get("sha256") or (sha256 is not None and actual != sha256):
        raise CheckpointError(f"{path.name} fails its sha256 check: the file is corrupted")
    return manifest


def check_inflation(path: Path) -> None:
    """Refuse a checkpoint whose zip declares far more than the file holds (a compression bomb).

    Reads only the zip's central directory: nothing is inflated. torch.save writes a zip whose
    entries are stored, not compressed, so what they declare is about the file's size.
    """
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name} is not a torch.save zip archive ({exc})") from None
    declared = sum(max(int(e.file_size), 0) for e in entries)
    if declared > MAX_INFLATION * size + _INFLATION_SLACK:
        biggest = max(entries, key=lambda e: e.file_size)
        raise CheckpointError(
            f"{path.name} declares {declared:,} bytes of tensors in a {size:,}-byte file "
            f"({biggest.filename}: {biggest.file_size:,} bytes compressed to "
            f"{biggest.compress_size:,}): refused as a compression bomb, nothing inflated")


def load(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """Verify, then load with ``weights_only=True`` only (no code runs from a checkpoint)."""
    import torch

    verify(path, sha256)
    check_inflation(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling refusal included: never retried without weights_only
        raise CheckpointError(f"{path.name} could not be loaded safely: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path.name} is not a babysit checkpoint")
    return payload


def clean_run_dir(folder: Path, keep: Iterable[Path]) -> list[Path]:
    """Remove what a killed process left half-done in a run's folder; returns what went.

    That is temporary files (``.dayNNNN.bB.pt.<pid>.tmp``) and day files (``.pt``/``.json``)
    that are not in ``keep`` (the checkpoints the store lists): a checkpoint without its store
    row was never acknowledged, so nothing can roll back to it. Anything else (process.log,
    unwritten-*.tsv) is left alone. Call it only when no process of the run is alive.
    """
    kept = {os.path.normpath(p) for p in keep}
    kept |= {os.path.normpath(Path(p).with_suffix(".json")) for p in kept}
    removed = []
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return []
    for entry in entries:
        name = entry.name
        stale = (name.startswith(".") and name.endswith(".tmp")) or \
            (_CHECKPOINT_FILE.match(name) is not None and os.path.normpath(entry) not in kept)
        if stale and entry.is_file() and not entry.is_symlink():
            try:
                entry.unlink()
            except FileNotFoundError:
                continue
            removed.append(entry)
    return removed


# ------------------------------------------------------------------------------------ RNG state
def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA when in use) generator states, in weights_only-safe types."""
    import torch

    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> list[str]:
    """Restore what ``capture_rng`` saved; returns the names of states that could not be."""
    import torch

    missing = []
    python: Any = state.get("python")
    if python is not None:
        random.setstate((python[0], tuple(python[1]), python[2]))
    else:
        missing.append("python")
    numpy: Any = state.get("numpy")
    if numpy is not None:
        np.random.set_state((numpy[0], np.array(numpy[1], dtype=np.uint32), numpy[2], numpy[3],
                             numpy[4]))
    else:
        missing.append("numpy")
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"])
    else:
        missing.append("torch")
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        if state.get("cuda") is not None and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            missing.append("cuda")
    return missing
