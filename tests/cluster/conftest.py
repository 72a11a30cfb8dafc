"""Session-scoped real servers for the cluster tests (one of each per test session).

``pg`` (a PostgreSQL server), ``s3`` (moto's S3 server with a bucket) and ``ray_head`` (a local
Ray head with the Jobs API) start the first time a test asks for them and stop at the end of the
session; their start-up times are printed in the terminal summary.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import servers

_STARTED: list[servers.Server] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in item.nodeid:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def pg() -> Iterator[servers.Postgres]:
    bin_dir = servers.pg_bin()
    if bin_dir is None:
        servers.missing(f"PostgreSQL server binaries not found ({servers.PG_BIN_GLOB}/initdb); "
                        "apt-get install postgresql")
    servers.require("psycopg", "psycopg")
    server = servers.Postgres.start(bin_dir)
    _STARTED.append(server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg: servers.Postgres) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return pg.create_database()


@pytest.fixture(scope="session")
def s3() -> Iterator[servers.S3]:
    server = servers.S3.start()
    _STARTED.append(server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_head() -> Iterator[servers.RayHead]:
    server = servers.RayHead.start()
    _STARTED.append(server)
    try:
        yield server
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's hook
    if _STARTED:
        terminalreporter.section("cluster servers")
        for server in _STARTED:
            terminalreporter.write_line(f"{server.name}: up in {server.startup_s:.1f}s")
