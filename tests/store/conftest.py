"""Fixtures for the store tests: a private PostgreSQL cluster (never mocked) and SQLite files.

The cluster is started once per session (`tests/pg_cluster.py`); each test gets its own database. If PostgreSQL is
not installed the `pg_cluster` fixture errors with the command that installs it: the tests do not skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pg_cluster import PostgresCluster
from spikeformer.store import Database

BACKENDS = ["sqlite", "postgresql"]
_TEMPLATE = "spikeformer_migrated"


def _unique_name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server for the whole session."""
    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PostgresCluster) -> str:
    """Name of a database migrated to head, to copy test databases from."""
    database = Database(pg_cluster.create_database(_TEMPLATE))
    database.upgrade()
    database.dispose()
    return _TEMPLATE


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """URL of a new, empty (unmigrated) PostgreSQL database."""
    return pg_cluster.create_database(_unique_name())


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """URL of a SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'store' / 'spikeformer.db'}"


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest) -> str:
    """An unmigrated database URL on each backend."""
    return request.getfixturevalue(f"{'pg' if request.param == 'postgresql' else 'sqlite'}_url")


def _migrated(request: pytest.FixtureRequest, backend: str) -> Database:
    if backend == "sqlite":
        database = Database(request.getfixturevalue("sqlite_url"))
        database.upgrade()
        return database
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    template: str = request.getfixturevalue("pg_template")
    return Database(cluster.create_database(_unique_name(), template=template))


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A migrated database on each backend."""
    database = _migrated(request, request.param)
    yield database
    database.dispose()


@pytest.fixture
def pg_db(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A migrated PostgreSQL database."""
    database = _migrated(request, "postgresql")
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A migrated SQLite database."""
    database = _migrated(request, "sqlite")
    yield database
    database.dispose()
