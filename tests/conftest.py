"""Session fixtures that start real PostgreSQL, pgBouncer and Redis on free loopback ports.

Folders come from tempfile.mkdtemp rather than pytest's tmp_path: pytest's base folder is
private to root, and PostgreSQL and pgBouncer run as the ``postgres`` user when tests run as root.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.services import PgBouncer, PostgresServer, RedisServer, StreamingReplica


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by folder, so `-m "not e2e"` and friends select what a person expects."""
    for item in items:
        folder = item.path.parent.name
        if folder in ("integration", "e2e"):
            item.add_marker(folder)


@pytest.fixture(scope="session")
def services_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="algoedge-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(services_root: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(root=services_root / "postgres").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pgbouncer(services_root: Path, postgres: PostgresServer) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(root=services_root / "pgbouncer", upstream=postgres).start()
    yield bouncer
    bouncer.stop()


@pytest.fixture(scope="session")
def redis_server(services_root: Path) -> Iterator[RedisServer]:
    server = RedisServer(root=services_root / "redis").start()
    yield server
    server.stop()


# A primary with a streaming replica, both behind one pgBouncer (read alias <db>_ro), for the
# read-routing tests. Their own primary, not `postgres`: those tests stop the replica and pause
# its replay, and count statements on both servers with pg_stat_statements.


@pytest.fixture(scope="session")
def replicated_postgres(services_root: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(
        root=services_root / "replicated-primary", preload=("pg_stat_statements",)
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def replica(services_root: Path, replicated_postgres: PostgresServer) -> Iterator[StreamingReplica]:
    server = StreamingReplica(root=services_root / "replica", primary=replicated_postgres).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def replica_pgbouncer(
    services_root: Path, replicated_postgres: PostgresServer, replica: StreamingReplica
) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(
        root=services_root / "replica-pgbouncer", upstream=replicated_postgres, replica=replica
    ).start()
    yield bouncer
    bouncer.stop()
