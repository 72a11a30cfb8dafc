"""Runs on a Ray cluster: each run process (a fork, a restart, a retest probe, a study trial)
becomes a Ray job, submitted through the Ray Jobs API.

The job runs the user's own command (the run's launch record) with the run's resources and a
small, explicit environment: the launch record's variables, ``BABYSIT_RUN_ID``/``BABYSIT_ROOT``/
``BABYSIT_STORE_URL``, and the variables named by ``forward`` (by default the checkpoint location
and object-store credentials). Nothing else of this machine's environment travels to the cluster.
Liveness, stop and console output go through Ray (job status, ``stop_job``, ``get_job_logs``),
never through local pids: the process may run on another machine.

Ray runs an entrypoint through a shell on the cluster, so the command is quoted here with
``shlex`` word by word; nothing on our side starts a shell. The working directory is the run's
``cwd``, which must exist on the cluster's machines (a shared filesystem), as must the Python
executable recorded for the run (override it with ``executable=``).

>>> launcher = RayLauncher("http://head:8265", num_cpus=1, num_gpus=1)       # doctest: +SKIP
>>> job = launcher.start(7, record.launch, store.root, store.url)            # doctest: +SKIP
>>> launcher.alive(job), launcher.logs(job)[-200:]                           # doctest: +SKIP
>>> launcher.stop(job)                                                       # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import math
import os
import shlex
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from babysit.errors import InvalidValue, LaunchError
from babysit.launcher import command_line

#: variables of the submitting machine that a run on the cluster needs: where checkpoints live
#: and how to reach that storage. Everything else stays here.
DEFAULT_FORWARD = ("BABYSIT_CHECKPOINTS", "AWS_*", "FSSPEC_*", "GOOGLE_APPLICATION_CREDENTIALS",
                   "AZURE_STORAGE_*")
_ALIVE = ("PENDING", "RUNNING")
_ENDED = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class RayJob:
    """A run process on Ray: what the store keeps to find it again (``runs.launcher`` JSON).

    >>> RayJob(run_id=7, address="http://head:8265", job="babysit-run-7-1a2b3c4d").to_json()
    {'kind': 'ray', 'run_id': 7, 'address': 'http://head:8265', 'job': 'babysit-run-7-1a2b3c4d'}
    """

    run_id: int
    address: str
    job: str               # the Ray submission id
    kind: str = "ray"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {"kind": data.pop("kind"), **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RayJob:
        if not isinstance(data, dict) or data.get("kind") != "ray":
            raise InvalidValue(f"not a Ray job record: {data!r}")
        return cls(run_id=int(data["run_id"]), address=str(data["address"]), job=str(data["job"]))


def _as_job(job: Any) -> RayJob:
    """A job, given as itself, as the JSON the store keeps (``runs.launcher``), or as the
    run record that keeps it."""
    if isinstance(job, RayJob):
        return job
    if hasattr(job, "launcher") and not isinstance(job, dict):
        handle = job.launcher
        if not isinstance(handle, dict):
            raise LaunchError(f"run {getattr(job, 'id', '?')} was not started on Ray")
        return RayJob.from_json(handle)
    return RayJob.from_json(job)


def ray_address(address: str | None = None) -> str:
    """The Jobs API address: ``address``, else ``$BABYSIT_RAY_ADDRESS``, as an http URL."""
    address = (address or os.environ.get("BABYSIT_RAY_ADDRESS") or "").strip()
    if not address:
        raise InvalidValue("the Ray launcher needs the cluster's dashboard address "
                           "(--ray-address or $BABYSIT_RAY_ADDRESS), e.g. http://head:8265")
    if address.startswith("ray://"):
        raise InvalidValue(f"give the Ray dashboard's http address (Jobs API, port 8265 by "
                           f"default), not the Ray client address {address!r}")
    if "://" not in address:
        address = f"http://{address}"
    return address.rstrip("/")


def _resource(name: str, value: Any, *, whole: bool = False) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or value < 0:
        raise InvalidValue(f"{name} must be a number >= 0, got {value!r}")
    if whole:
        if value != int(value) or value == 0:
            raise InvalidValue(f"{name} must be a whole number of bytes > 0, got {value!r}")
        return int(value)
    return value


class RayLauncher:
    """Start run processes as Ray jobs on the cluster whose dashboard is at ``address``.

    ``num_cpus``/``num_gpus``/``memory`` (bytes) are each run's defaults; a launch record's
    ``resources`` dict overrides them per run. ``forward`` names (or globs) the variables of this
    machine's environment that go with every job.
    """

    kind = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: float = 1, num_gpus: float = 0,
                 memory: int | None = None, executable: str | None = None,
                 forward: tuple[str, ...] = DEFAULT_FORWARD, stop_grace_s: float = 30.0):
        self.address = ray_address(address)
        self.resources = {"num_cpus": _resource("num_cpus", num_cpus),
                          "num_gpus": _resource("num_gpus", num_gpus),
                          "memory": _resource("memory", memory, whole=True)}
        self.executable = executable
        self.forward = tuple(forward)
        self.stop_grace_s = stop_grace_s
        self._clients: dict[str, Any] = {}

    def _client(self, address: str | None = None) -> Any:
        address = address or self.address
        if address not in self._clients:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError:
                raise LaunchError("the Ray launcher needs ray: pip install 'babysit[cluster]'") \
                    from None
            try:
                self._clients[address] = JobSubmissionClient(address)
            except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError...
                raise LaunchError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
        return self._clients[address]

    # ------------------------------------------------------------------ start
    def entrypoint(self, run_id: int, launch: dict[str, Any]) -> str:
        """The job's command line: ``cd CWD && exec ARGV``, every word quoted."""
        argv = command_line(launch, run_id)
        if self.executable:
            argv[0] = self.executable
        cwd = launch.get("cwd")
        command = f"exec {shlex.join(argv)}"
        return f"cd {shlex.quote(str(cwd))} && {command}" if cwd else command

    def env(self, run_id: int, launch: dict[str, Any], root: Path, store_url: str | None
            ) -> dict[str, str]:
        """The job's environment: launch record, babysit's variables, forwarded variables."""
        env = {str(k): str(v) for k, v in (launch.get("env") or {}).items()}
        for key, value in os.environ.items():
            if any(fnmatch.fnmatchcase(key, pattern) for pattern in self.forward):
                env[key] = value
        env["BABYSIT_RUN_ID"] = str(int(run_id))
        env["BABYSIT_ROOT"] = str(root)
        if store_url:
            env["BABYSIT_STORE_URL"] = store_url
        else:
            env.pop("BABYSIT_STORE_URL", None)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def start(self, run_id: int, launch: dict[str, Any], root: Path, store_url: str | None
              ) -> RayJob:
        """Submit the run's command as a Ray job; returns the job (store it with the run)."""
        resources = dict(self.resources)
        for key, value in (launch.get("resources") or {}).items():
            if key not in resources:
                raise InvalidValue(f"run {run_id}: unknown resource {key!r} "
                                   f"(known: {', '.join(resources)})")
            resources[key] = _resource(key, value, whole=key == "memory")
        job_id = f"babysit-run-{int(run_id)}-{uuid.uuid4().hex[:8]}"
        entrypoint = self.entrypoint(run_id, launch)
        kwargs: dict[str, Any] = {}
        if resources["num_cpus"] is not None:
            kwargs["entrypoint_num_cpus"] = resources["num_cpus"]
        if resources["num_gpus"]:
            kwargs["entrypoint_num_gpus"] = resources["num_gpus"]
        if resources["memory"]:
            kwargs["entrypoint_memory"] = resources["memory"]
        try:
            self._client().submit_job(
                entrypoint=entrypoint, submission_id=job_id,
                # BABYSIT_LAUNCH_ID: the launch token init() will check against the run row
                runtime_env={"env_vars": {**self.env(run_id, launch, root, store_url),
                                          "BABYSIT_LAUNCH_ID": job_id}},
                metadata={"babysit_run_id": str(int(run_id))}, **kwargs)
        except LaunchError:
            raise
        except Exception as exc:  # noqa: BLE001 - an HTTP error from the Jobs API
            raise LaunchError(f"could not start run {run_id} on the Ray cluster at "
                              f"{self.address}: {exc}") from exc
        return RayJob(run_id=int(run_id), address=self.address, job=job_id)

    # ------------------------------------------------------------------ watch and stop
    def status(self, job: RayJob | dict[str, Any]) -> str:
        """PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED, or UNKNOWN (the cluster forgot it)."""
        job = _as_job(job)
        try:
            return str(self._client(job.address).get_job_status(job.job).value)
        except LaunchError:
            raise
        except Exception as exc:  # noqa: BLE001
            if "does not exist" in str(exc) or "404" in str(exc):
                return "UNKNOWN"
            raise LaunchError(f"cannot ask the Ray cluster at {job.address} about "
                              f"{job.job}: {exc}") from exc

    def alive(self, job: RayJob | dict[str, Any]) -> bool:
        """True while the job waits for resources or runs."""
        return self.status(job) in _ALIVE

    def stop(self, job: RayJob | dict[str, Any], grace_s: float | None = None) -> str:
        """Ask Ray to stop the job (SIGTERM, then SIGKILL after Ray's own grace) and wait for
        it to end, at most ``grace_s``; returns the final status. Safe to call twice.

        A job still PENDING (waiting for resources) stays PENDING: Ray queues the stop and
        ends the job the moment it is placed (or fails it after its start timeout). That is
        returned after a short wait; the run must not accept such a late start (see
        docs/cluster.md, launch tokens).
        """
        job = _as_job(job)
        status = self.status(job)
        if status not in _ALIVE:
            return status
        try:
            self._client(job.address).stop_job(job.job)
        except Exception as exc:  # noqa: BLE001
            raise LaunchError(f"could not stop {job.job} on {job.address}: {exc}") from exc
        grace = self.stop_grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + (min(grace, 2.0) if status == "PENDING" else grace)
        while (status := self.status(job)) in _ALIVE and time.monotonic() < deadline:
            time.sleep(0.2)
        return status

    def logs(self, job: RayJob | dict[str, Any], *, tail_chars: int = 100_000) -> str:
        """The job's console output (stdout and stderr), its last ``tail_chars`` characters."""
        job = _as_job(job)
        try:
            text = str(self._client(job.address).get_job_logs(job.job))
        except LaunchError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise LaunchError(f"cannot read the output of {job.job}: {exc}") from exc
        return text[-tail_chars:] if tail_chars else text


    def console(self, record: Any, root: Path, lines: int = 200) -> str | None:
        """The tail of the run's console output, as Ray keeps it (the job's logs)."""
        from babysit.launcher import tail_lines

        return tail_lines(self.logs(record, tail_chars=64_000), lines)

