"""Session-scoped real servers for the cluster tests (one of each per test session).

``pg_server`` (a PostgreSQL server; ``pg_url`` is a fresh database on it), ``s3`` (moto's S3
server with a bucket) and ``ray_head`` (a local Ray head with the Jobs API) start the first time a
test asks for them and stop at the end of the session; their start-up times are printed in the
terminal summary. ``store_url`` parametrises a test over SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import servers
from tests.store_backends import pg_server, store_url  # noqa: F401 - fixtures used here

__all__ = ["pg_server", "store_url"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in item.nodeid:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture
def pg_url(pg_server: servers.Postgres) -> str:  # noqa: F811 - the imported fixture
    """A fresh, empty PostgreSQL database for one test."""
    return pg_server.create_database()


@pytest.fixture(scope="session")
def s3() -> Iterator[servers.S3]:
    server = servers.S3.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_head() -> Iterator[servers.RayHead]:
    server = servers.RayHead.start()
    try:
        yield server
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's hook
    if servers.STARTED:
        terminalreporter.section("cluster servers")
        for server in servers.STARTED:
            terminalreporter.write_line(f"{server.name}: up in {server.startup_s:.1f}s")
