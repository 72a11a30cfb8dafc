"""Real servers for the cluster tests: PostgreSQL, an S3-compatible server (moto) and a Ray head.

Each server runs on a free port on 127.0.0.1, in a temporary directory of its own, and stops by
itself: ``stop()`` is safe to call twice, and every server process is started with a
parent-death signal, so a test session killed with SIGKILL still takes its servers down with it.

A server that cannot start because its software is missing is a skip on a developer's machine
and a failure in CI (``CI=true``), where ``.ci/run`` installs everything.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_PR_SET_PDEATHSIG = 1


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """Skip on a developer's machine, fail in CI: there, a missing server is a broken setup."""
    if in_ci():
        pytest.fail(f"{what} (CI=true: .ci/run must install it)", pytrace=False)
    pytest.skip(what)


def require(module: str, package: str) -> None:
    """Import ``module`` or skip (fail in CI): the cluster extra is optional."""
    try:
        __import__(module)
    except ImportError:
        missing(f"{module} is not installed (pip install 'babysit[cluster]' provides {package})")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it, so parallel sessions differ)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel to send ``sig`` when the starting process dies.

    It runs after Popen's user switch, which would otherwise clear the setting.
    """
    def preexec() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    return preexec


def wait_until(ready: Callable[[], bool], timeout: float, what: str,
               proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready\n{tail}")
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} was not ready after {timeout}s\n{tail}")
        time.sleep(0.05)


def _stop_process(proc: subprocess.Popen, sig: int, grace_s: float) -> None:
    """``sig``, wait, then SIGKILL: the same escalation as babysit.launcher.terminate."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


def _temp_dir(kind: str) -> Path:
    """A new temporary folder for a server, named after this process; folders that a killed
    session left behind (their process is gone) are removed first."""
    base = Path(tempfile.gettempdir())
    for old in base.glob(f"{kind}-*-*"):
        owner = old.name.split("-")[-2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(old, ignore_errors=True)
    # Short: Ray puts unix sockets under it, and a socket path has at most 107 bytes.
    return Path(tempfile.mkdtemp(prefix=f"{kind}-{os.getpid()}-", dir=base))


def _session_pids(sid: int) -> list[int]:
    """Processes in session ``sid`` (one this module created with start_new_session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) == sid:
                    pids.append(int(entry))
    return pids


#: every server started in this session, for the start-up figures in the terminal summary
STARTED: list[Server] = []


@dataclass
class Server:
    """What every server fixture records: how long it took to come up."""

    name: str
    startup_s: float = 0.0
    tmp: Path = field(default_factory=Path)


# ----------------------------------------------------------------------------- PostgreSQL
def pg_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (the newest version installed), or None."""
    found = sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    found = [p for p in found if (p / "initdb").exists() and (p / "postgres").exists()]
    return found[-1] if found else None


@dataclass
class Postgres(Server):
    """A throwaway PostgreSQL cluster owned by the ``postgres`` system user.

    PostgreSQL refuses to run as root, so ``initdb`` runs through ``runuser -u postgres`` and the
    server process is started as that user directly (``Popen(user=...)``) rather than under
    runuser, which does not pass SIGINT on: the fixture must be able to signal the server.

    >>> pg = Postgres.start()                  # doctest: +SKIP
    >>> url = pg.create_database("t1")         # postgresql+psycopg://babysit@127.0.0.1:PORT/t1
    >>> pg.stop()
    """

    port: int = 0
    user: str = "babysit"
    proc: subprocess.Popen | None = None
    _databases: int = 0

    @classmethod
    def start(cls, bin_dir: Path, *, durable: bool = False) -> Postgres:
        t0 = time.monotonic()
        tmp = _temp_dir("bspg")
        shutil.chown(tmp, "postgres", "postgres")
        server = cls(name="postgresql", tmp=tmp, port=free_port())
        data, log = tmp / "data", tmp / "server.log"
        subprocess.run(["runuser", "-u", "postgres", "--", str(bin_dir / "initdb"), "-D",
                        str(data), "-U", server.user, "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, timeout=120)
        # pg_stat_statements, where installed: tests count the queries a trainer sends
        stats = ["-c", "shared_preload_libraries=pg_stat_statements"] if any(
            Path("/usr/share/postgresql").glob("*/extension/pg_stat_statements.control")) else []
        with open(log, "wb") as out:
            server.proc = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-p", str(server.port), *stats,
                 "-k", str(tmp), "-c", "listen_addresses=127.0.0.1",
                 "-c", "max_connections=200",   # 16 writer processes + pools + readers
                 # a test server needs no durability across power cuts: no fsync makes
                 # CREATE DATABASE and shutdown fast on a busy disk (benchmarks pass durable)
                 *([] if durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                       "-c", "full_page_writes=off"])],
                user="postgres", group="postgres", extra_groups=[], cwd=tmp,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent(signal.SIGINT))
        wait_until(server._accepts, 60, "postgres", server.proc, log)
        server.startup_s = time.monotonic() - t0
        STARTED.append(server)
        return server

    def _dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname}"

    def _accepts(self) -> bool:
        import psycopg
        try:
            psycopg.connect(self._dsn("postgres"), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg
        self._databases += 1
        name = f"{prefix}{self._databases}_{os.getpid()}"
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, signal.SIGINT, 30)   # SIGINT: "fast" shutdown
        shutil.rmtree(self.tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- S3 (moto)
@dataclass
class S3(Server):
    """moto's standalone S3 server in its own process, with one bucket.

    ``env`` holds what an S3 client (s3fs, boto3) in a child process needs to reach it.
    """

    endpoint: str = ""
    bucket: str = "babysit-test"
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls) -> S3:
        t0 = time.monotonic()
        require("boto3", "moto[server]")
        moto_server = Path(sys.executable).with_name("moto_server")
        if not moto_server.exists():
            missing("moto's server is not installed (pip install 'moto[server]')")
        tmp = _temp_dir("bss3")
        port = free_port()
        server = cls(name="s3 (moto)", tmp=tmp, endpoint=f"http://127.0.0.1:{port}")
        log = tmp / "server.log"
        with open(log, "wb") as out:
            server.proc = subprocess.Popen(
                [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent())
        server.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                      "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": server.endpoint,
                      "AWS_ENDPOINT_URL_S3": server.endpoint}
        wait_until(server._accepts, 60, "moto_server", server.proc, log)
        server.client().create_bucket(Bucket=server.bucket)
        server.startup_s = time.monotonic() - t0
        STARTED.append(server)
        return server

    def client(self):  # noqa: ANN201 - a boto3 client; boto3 has no runtime types
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def _accepts(self) -> bool:
        import urllib.request
        try:
            urllib.request.urlopen(self.endpoint, timeout=2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, signal.SIGTERM, 10)
        shutil.rmtree(self.tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- Ray
@dataclass
class RayHead(Server):
    """A real local Ray head (``ray start --head --block``) with its dashboard (the Jobs API).

    Every port it opens is picked free, so two sessions on one machine do not collide; its
    processes live in a session of their own, and ``stop()`` ends that session's processes
    (never ``ray stop``, which ends every Ray process of the user on the machine).
    """

    address: str = ""         # the GCS address, for `ray start --address` / ray.init
    dashboard: str = ""       # http://127.0.0.1:PORT, the Jobs API
    proc: subprocess.Popen | None = None

    @classmethod
    def start(cls, num_cpus: int = 2, object_store_mb: int = 100) -> RayHead:
        t0 = time.monotonic()
        require("ray.job_submission", "ray[default]")
        ray = Path(sys.executable).with_name("ray")
        if not ray.exists():
            missing("ray is not installed (pip install 'ray[default]')")
        tmp = _temp_dir("bsray")
        port, dash = free_port(), free_port()
        server = cls(name="ray head", tmp=tmp, address=f"127.0.0.1:{port}",
                     dashboard=f"http://127.0.0.1:{dash}")
        argv = [str(ray), "start", "--head", "--block", "--disable-usage-stats",
                "--node-ip-address", "127.0.0.1", "--port", str(port),
                "--num-cpus", str(num_cpus), "--num-gpus", "0",
                "--object-store-memory", str(object_store_mb * 1024 * 1024),
                "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                "--dashboard-port", str(dash),
                "--dashboard-agent-listen-port", str(free_port()),
                "--dashboard-agent-grpc-port", str(free_port()),
                "--runtime-env-agent-port", str(free_port()),
                "--metrics-export-port", str(free_port()),
                "--ray-client-server-port", str(free_port()),
                "--node-manager-port", str(free_port()),
                "--object-manager-port", str(free_port()),
                "--temp-dir", str(tmp)]
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        env.pop("RAY_ADDRESS", None)
        log = tmp / "head.log"
        with open(log, "wb") as out:
            server.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, preexec_fn=_die_with_parent())
        wait_until(server._jobs_api_up, 180, "ray head", server.proc, log)
        server.startup_s = time.monotonic() - t0
        STARTED.append(server)
        return server

    def _jobs_api_up(self) -> bool:
        import json
        import urllib.request
        try:
            with urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=2) as r:
                json.loads(r.read())
            with urllib.request.urlopen(f"{self.dashboard}/api/jobs/", timeout=2) as r:
                return r.status == 200
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        if self.proc is not None:
            sid = self.proc.pid      # start_new_session: the session id is the leader's pid
            # `ray start --block` ends the processes it started when it gets SIGTERM.
            _stop_process(self.proc, signal.SIGTERM, 30)
            deadline = time.monotonic() + 15
            while (left := _session_pids(sid)) and time.monotonic() < deadline:
                time.sleep(0.2)
            for pid in _session_pids(sid):     # what outlived the head (a stuck worker)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            del left
        shutil.rmtree(self.tmp, ignore_errors=True)
