"""Where day checkpoints live: this machine's disk (the default) or shared storage via fsspec.

``BABYSIT_CHECKPOINTS`` (beside ``BABYSIT_STORE_URL``) says where: unset, checkpoints stay under
the store root as always; a path (or ``file://`` URL) is a shared POSIX folder, e.g. NFS; any other
fsspec URL, e.g. ``s3://bucket/prefix``, is an object store. The store's checkpoint rows keep the
same relative paths (``runs/<id>/dayNNNN.bB.pt``) in every case, resolved under that location.

Local paths keep checkpoint.py's write-fsync-rename. An object store has no atomic rename, so there
each checkpoint is staged in a local temporary folder by the same ``checkpoint.save``, then
uploaded once, its manifest last: a checkpoint without its manifest is not a checkpoint. A read
checks the object's size against the manifest before downloading, stops at that size, and
``checkpoint.load`` verifies size and sha256 before ``torch.load(weights_only=True)`` sees a byte.
What a killed process leaves (an object without a manifest, an unfinished S3 multipart upload) is
removed by ``clean_run`` when the run next starts. No key is ever read or written outside the
location: relative paths are normalised and ``..`` is refused.

>>> storage = open_storage("s3://lab-bucket/babysit", root=Path("checkpoints"))  # doctest: +SKIP
>>> size, sha = storage.save("runs/3/day0001.b0.pt", payload)                   # doctest: +SKIP
>>> storage.load("runs/3/day0001.b0.pt", sha)["step"]                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from babysit import checkpoint as ckpt
from babysit.errors import CheckpointError, InvalidValue, StorageError

#: a manifest is a few hundred bytes; anything much larger is not one of ours
_MANIFEST_MAX = 64 * 1024
_CHUNK = 1 << 20


class CheckpointStorage(Protocol):
    """What the trainer and the Client need from wherever checkpoints live.

    ``relative`` is the store's checkpoint path (``runs/<id>/dayNNNN.bB.pt``).
    """

    location: str

    def save(self, relative: str, payload: dict[str, Any]) -> tuple[int, str]:
        """Write the checkpoint, then its manifest; returns (size, sha256)."""

    def verify(self, relative: str, sha256: str | None = None) -> dict[str, Any]:
        """Check size and sha256 against the manifest (and the store's hash); the manifest."""

    def load(self, relative: str, sha256: str | None = None) -> dict[str, Any]:
        """Verify, then ``torch.load(weights_only=True)``."""

    def complete(self, run_id: int) -> list[str]:
        """The run's checkpoints that have a manifest (relative paths), oldest day first."""

    def clean_run(self, run_id: int, keep: Iterable[str]) -> list[str]:
        """Remove what a killed process of the run left half-written and not in ``keep``."""


def relative_key(relative: str) -> str:
    """Normalise a store checkpoint path to a key below the location; refuse escapes.

    >>> relative_key("runs/3/day0001.b0.pt")
    'runs/3/day0001.b0.pt'
    >>> relative_key("runs/3/../../x")
    Traceback (most recent call last):
    babysit.errors.CheckpointError: checkpoint path may not contain '..', got 'runs/3/../../x'
    """
    if not isinstance(relative, str) or not relative:
        raise CheckpointError(f"checkpoint path must be a relative path, got {relative!r}")
    if relative.startswith("/") or "\\" in relative or "://" in relative or \
            any(ord(ch) < 32 for ch in relative):
        raise CheckpointError(f"checkpoint path must be relative to the store root, got {relative!r}")
    parts = relative.split("/")
    if ".." in parts:
        raise CheckpointError(f"checkpoint path may not contain '..', got {relative!r}")
    parts = [p for p in parts if p not in ("", ".")]
    if not parts:
        raise CheckpointError(f"checkpoint path must name a file, got {relative!r}")
    return "/".join(parts)


def open_storage(location: str | None = None, *, root: Path,
                 storage_options: dict[str, Any] | None = None,
                 part_size: int | None = None) -> CheckpointStorage:
    """The storage at ``location`` (default ``$BABYSIT_CHECKPOINTS``, else the store root).

    ``storage_options`` go to fsspec (credentials, endpoint); fsspec also reads them from the
    environment (``AWS_*``, ``FSSPEC_S3_ENDPOINT_URL``...). ``part_size`` (bytes) is the S3
    multipart part size for uploads (default s3fs's 50 MiB).
    """
    location = location if location is not None else os.environ.get("BABYSIT_CHECKPOINTS")
    if not location:
        return LocalStorage(Path(root))
    if location.startswith("file://"):
        return LocalStorage(Path(location[len("file://"):]))
    if "://" not in location:
        return LocalStorage(Path(location))
    return ObjectStorage(location, storage_options=storage_options, part_size=part_size)


class LocalStorage:
    """Checkpoints in a folder of this machine or a shared POSIX filesystem (checkpoint.py)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.location = str(self.root)

    def _path(self, relative: str) -> Path:
        return ckpt.safe_path(self.root, relative_key(relative))

    def save(self, relative: str, payload: dict[str, Any]) -> tuple[int, str]:
        # Not resolved first: checkpoint.save refuses a symlink anywhere between the root and
        # the file itself, and says so (a resolved path would only say "outside the root").
        return ckpt.save(self.root / relative_key(relative), payload, root=self.root)

    def verify(self, relative: str, sha256: str | None = None) -> dict[str, Any]:
        return ckpt.verify(self._path(relative), sha256)

    def load(self, relative: str, sha256: str | None = None) -> dict[str, Any]:
        return ckpt.load(self._path(relative), sha256)

    def complete(self, run_id: int) -> list[str]:
        folder = ckpt.run_dir(self.root, run_id)
        try:
            names = sorted(p.name for p in folder.iterdir() if p.suffix == ".pt")
        except FileNotFoundError:
            return []
        return [f"runs/{int(run_id)}/{n}" for n in names
                if ckpt._CHECKPOINT_FILE.match(n) and (folder / n).with_suffix(".json").exists()]

    def clean_run(self, run_id: int, keep: Iterable[str]) -> list[str]:
        removed = ckpt.clean_run_dir(ckpt.run_dir(self.root, run_id),
                                     [self._path(k) for k in keep])
        return [str(p.relative_to(self.root)) for p in removed]


class ObjectStorage:
    """Checkpoints in an object store (or any fsspec filesystem) under one prefix."""

    def __init__(self, location: str, *, storage_options: dict[str, Any] | None = None,
                 part_size: int | None = None):
        try:
            import fsspec
        except ImportError:
            raise InvalidValue(
                f"BABYSIT_CHECKPOINTS={location!r} needs fsspec (and s3fs for s3://): "
                "pip install 'babysit[cluster]'") from None
        if ".." in location.split("/"):
            raise InvalidValue(f"BABYSIT_CHECKPOINTS may not contain '..', got {location!r}")
        try:
            self._fs, base = fsspec.core.url_to_fs(location, **(storage_options or {}))
        except (ImportError, ValueError) as exc:
            raise InvalidValue(f"BABYSIT_CHECKPOINTS={location!r}: {exc}") from None
        self._base = base.rstrip("/")
        if not self._base:
            raise InvalidValue(f"BABYSIT_CHECKPOINTS needs a bucket or folder, got {location!r}")
        self.location = location.rstrip("/")
        protocol = self._fs.protocol
        self._s3 = "s3" in (protocol if isinstance(protocol, tuple | list) else (protocol,))
        self._part_size = part_size

    # ---------------------------------------------------------------- keys
    def _full(self, relative: str) -> str:
        """The filesystem path of a store checkpoint path, always below the location."""
        return f"{self._base}/{relative_key(relative)}"

    def _run_prefix(self, run_id: int) -> str:
        return f"{self._base}/runs/{int(run_id)}"

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - s3fs/botocore/aiohttp raise many kinds
            raise StorageError(f"{what} at {self.location} failed: "
                               f"{type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------- writing
    def save(self, relative: str, payload: dict[str, Any]) -> tuple[int, str]:
        target = self._full(relative)
        name = posixpath.basename(target)
        with tempfile.TemporaryDirectory(prefix="babysit-upload-") as staging:
            local = Path(staging) / name
            size, sha = ckpt.save(local, payload)      # the same file and manifest as on disk
            put: dict[str, Any] = {"chunksize": self._part_size} if self._s3 and \
                self._part_size else {}
            self._call("uploading " + name, self._fs.put_file, str(local), target, **put)
            # The manifest last: until it exists, the object above is not a checkpoint.
            self._call("uploading the manifest of " + name, self._fs.put_file,
                       str(local.with_suffix(".json")), _manifest_of(target))
        return size, sha

    # ------------------------------------------------------------- reading
    def _fetch(self, relative: str, staging: Path) -> Path:
        """Download the manifest and the checkpoint into ``staging`` (size-checked first)."""
        target = self._full(relative)
        name = posixpath.basename(target)
        try:
            info = self._call("reading the manifest of " + name, self._fs.info,
                              _manifest_of(target))
            if int(info.get("size") or 0) > _MANIFEST_MAX:
                raise CheckpointError(f"{name}: manifest is {info.get('size')} bytes, not a manifest")
            raw = self._call("reading the manifest of " + name, self._fs.cat_file,
                             _manifest_of(target))
        except FileNotFoundError:
            raise CheckpointError(f"{name} has no manifest: it was never completely written") from None
        try:
            manifest = json.loads(raw)
            expected = int(manifest["size"])
        except (ValueError, TypeError, KeyError):
            raise CheckpointError(f"{name}: manifest unreadable") from None
        try:
            actual = int(self._call("reading " + name, self._fs.info, target).get("size") or 0)
        except FileNotFoundError:
            raise CheckpointError(f"{name} is missing") from None
        if actual != expected:
            raise CheckpointError(f"{name} is {actual} bytes, its manifest says {expected}")
        local = staging / name
        local.with_suffix(".json").write_bytes(raw)
        written = 0
        try:
            with self._call("reading " + name, self._fs.open, target, "rb") as src, \
                    open(local, "wb") as out:
                while block := src.read(_CHUNK):
                    written += len(block)
                    if written > expected:   # never download more than the manifest promised
                        raise CheckpointError(f"{name} is longer than its manifest says")
                    out.write(block)
        except FileNotFoundError:
            raise CheckpointError(f"{name} is missing") from None
        except OSError as exc:
            raise StorageError(f"reading {name} at {self.location} failed: {exc}") from exc
        return local

    def verify(self, relative: str, sha256: str | None = None) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="babysit-download-") as staging:
            return ckpt.verify(self._fetch(relative, Path(staging)), sha256)

    def load(self, relative: str, sha256: str | None = None) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="babysit-download-") as staging:
            return ckpt.load(self._fetch(relative, Path(staging)), sha256)

    # ------------------------------------------------------------- listing and cleanup
    def _objects(self, run_id: int) -> list[str]:
        prefix = self._run_prefix(run_id)
        self._fs.invalidate_cache(prefix)    # other processes write here: never trust a cache
        try:
            return sorted(self._call("listing", self._fs.find, prefix))
        except FileNotFoundError:
            return []

    def complete(self, run_id: int) -> list[str]:
        objects = set(self._objects(run_id))
        strip = len(self._base) + 1
        return [o[strip:] for o in sorted(objects)
                if o.endswith(".pt") and ckpt._CHECKPOINT_FILE.match(posixpath.basename(o))
                and _manifest_of(o) in objects]

    def clean_run(self, run_id: int, keep: Iterable[str]) -> list[str]:
        """Abort the run's unfinished multipart uploads, then delete its day objects (and
        manifests) that are not in ``keep``. Call it only when no process of the run is alive."""
        kept = {self._full(k) for k in keep}
        kept |= {_manifest_of(k) for k in kept}
        removed = [f"{key} (unfinished upload)" for key in self._abort_uploads(run_id)]
        strip = len(self._base) + 1
        for obj in self._objects(run_id):
            if ckpt._CHECKPOINT_FILE.match(posixpath.basename(obj)) and obj not in kept:
                with contextlib.suppress(FileNotFoundError):
                    self._call("deleting", self._fs.rm_file, obj)
                    removed.append(obj[strip:])
        return removed

    def _abort_uploads(self, run_id: int) -> list[str]:
        if not self._s3:
            return []
        bucket, _, key_prefix = f"{self._run_prefix(run_id)}/".partition("/")
        aborted: list[str] = []
        marker: dict[str, str] = {}
        while True:
            page = self._call("listing unfinished uploads", self._fs.call_s3,
                              "list_multipart_uploads", Bucket=bucket, Prefix=key_prefix, **marker)
            for upload in page.get("Uploads", []):
                if not upload["Key"].startswith(key_prefix):   # the server filtered; be sure
                    continue
                self._call("aborting an unfinished upload", self._fs.call_s3,
                           "abort_multipart_upload", Bucket=bucket, Key=upload["Key"],
                           UploadId=upload["UploadId"])
                aborted.append(f"{bucket}/{upload['Key']}"[len(self._base) + 1:])
            if not page.get("IsTruncated"):
                return aborted
            marker = {"KeyMarker": page["NextKeyMarker"],
                      "UploadIdMarker": page["NextUploadIdMarker"]}


def _manifest_of(path: str) -> str:
    return path[: -len(".pt")] + ".json" if path.endswith(".pt") else path + ".json"
