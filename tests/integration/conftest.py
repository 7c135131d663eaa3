"""Per-test databases behind the session's pgBouncer, and settings that point at them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from cryptography.fernet import Fernet
from algoedge.config import ApiSettings, MigrateSettings, load_settings
from algoedge.db import Database

from tests.services import PgBouncer, PostgresServer, RedisServer


@pytest.fixture
def database_name(postgres: PostgresServer) -> str:
    """A fresh, empty database, so no test sees another's tables."""
    return postgres.create_database(f"t_{secrets.token_hex(6)}")


@pytest.fixture
def migrate_settings(pgbouncer: PgBouncer, database_name: str) -> MigrateSettings:
    return load_settings(
        MigrateSettings, {"ALGOEDGE_DATABASE_URL": pgbouncer.url_for(database_name)}
    )


@pytest.fixture
def api_settings(
    pgbouncer: PgBouncer, redis_server: RedisServer, database_name: str
) -> ApiSettings:
    return load_settings(
        ApiSettings, api_environment(pgbouncer.url_for(database_name), redis_server.url)
    )


def api_environment(database_url: str, redis_url: str) -> dict[str, str]:
    """The variables the operator gives an API pod, with throwaway secrets."""
    return {
        "ALGOEDGE_DATABASE_URL": database_url,
        "ALGOEDGE_REDIS_URL": redis_url,
        "ALGOEDGE_JWT_SECRET": secrets.token_urlsafe(32),
        "ALGOEDGE_INTERNAL_TOKEN": secrets.token_urlsafe(16),
        "ALGOEDGE_CREDENTIALS_KEY": Fernet.generate_key().decode(),
    }


@pytest.fixture
async def db(migrate_settings: MigrateSettings) -> AsyncIterator[Database]:
    database = await Database.connect(migrate_settings)
    yield database
    await database.close()
