"""Day checkpoints: written atomically with a manifest, verified before they are unpickled.

A checkpoint is ``dayNNNN.bB.pt`` (day N of branch B) next to its manifest ``dayNNNN.bB.json``
(size, sha256, step, torch version), which is written last: a checkpoint without a valid manifest
is not a checkpoint. Loading checks the path, the manifest, the size and the hash *before*
``torch.load(..., weights_only=True)`` sees a byte, and never retries without weights_only.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from babysit.errors import CheckpointError

# torch is imported inside the functions that need it: the Client verifies checkpoints
# (restart, rollback, fork) and the CLI and the dashboard start faster without torch.

FORMAT = 1
_CHECKPOINT_FILE = re.compile(r"^day\d{4,}\.b\d+\.(pt|json)$")


def run_dir(root: Path, run_id: int) -> Path:
    return root / "runs" / str(int(run_id))


def checkpoint_name(day: int, branch: int) -> str:
    return f"day{day:04d}.b{branch}.pt"


def safe_path(root: Path, relative: str) -> Path:
    """Resolve a checkpoint path from the store or the UI; refuse anything outside ``root``.

    Absolute paths, ``..`` and symlinks that lead out of the root are all refused.
    """
    if not isinstance(relative, str) or not relative or os.path.isabs(relative):
        raise CheckpointError(f"checkpoint path must be relative to the store root, got {relative!r}")
    if ".." in Path(relative).parts:
        raise CheckpointError(f"checkpoint path may not contain '..', got {relative!r}")
    root_real = Path(os.path.realpath(root))
    target = Path(os.path.realpath(root_real / relative))
    if root_real != target and root_real not in target.parents:
        raise CheckpointError(f"checkpoint path {relative!r} leads outside {root_real}")
    return target


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


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


def save(path: Path, payload: dict[str, Any]) -> tuple[int, str]:
    """Write ``payload`` to ``path`` atomically, then its manifest. Returns (size, sha256)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)

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
    size, sha = path.stat().st_size, _sha256(path)
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
    actual = _sha256(path)
    if actual != manifest.get("sha256") or (sha256 is not None and actual != sha256):
        raise CheckpointError(f"{path.name} fails its sha256 check: the file is corrupted")
    return manifest


def load(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """Verify, then load with ``weights_only=True`` only (no code runs from a checkpoint)."""
    import torch

    verify(path, sha256)
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
