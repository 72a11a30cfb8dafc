"""Run any store test against PostgreSQL as well as SQLite.

A pytest plugin: ``-p tests.store_backends --store-backend postgresql`` gives every test its own
empty database on one PostgreSQL server started for the session, through ``BABYSIT_STORE_URL``
(which ``Store.open``, the Client and every trainer subprocess read). Without the option nothing
changes. The ``store_url`` fixture is the parametrised form for contract tests: one id per backend.

    PYTHONPATH=$PWD python -m pytest -p tests.store_backends --store-backend postgresql \\
        tests/test_units.py
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers

BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store-backend", choices=BACKENDS, default="sqlite",
                     help="run store-using tests against this database (default sqlite)")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[servers.Postgres]:
    bin_dir = servers.pg_bin()
    if bin_dir is None:
        servers.missing(f"PostgreSQL server binaries not found ({servers.PG_BIN_GLOB}/initdb); "
                        "apt-get install postgresql")
    servers.require("psycopg", "psycopg")
    server = servers.Postgres.start(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _store_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.config.getoption("--store-backend") == "postgresql":
        server: servers.Postgres = request.getfixturevalue("pg_server")
        monkeypatch.setenv("BABYSIT_STORE_URL", server.create_database())


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store's URL: a SQLite file under tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'babysit.db'}"
    server: servers.Postgres = request.getfixturevalue("pg_server")
    return server.create_database()
