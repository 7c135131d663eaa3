"""The fixture servers are the real thing: Postgres behind pgBouncer in transaction mode, and Redis."""

from __future__ import annotations

import psycopg2
import pytest
from algoedge.cache import connect_redis
from algoedge.config import ServiceSettings, load_settings
from algoedge.db import Database

from devtools.services import PgBouncer, PostgresServer, RedisServer


def pgbouncer_show(bouncer: PgBouncer, what: str) -> list[dict[str, object]]:
    """Rows of pgBouncer's admin console (the application role is a stats user)."""
    conn = psycopg2.connect(bouncer.url_for("pgbouncer"))
    conn.autocommit = True  # the admin console has no transactions
    try:
        with conn.cursor() as cur:
            cur.execute(f"SHOW {what}")
            names = [col.name for col in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


async def test_should_pool_the_app_database_in_transaction_mode(
    pgbouncer: PgBouncer, db: Database, database_name: str
) -> None:
    await db.ping()
    pools = {row["database"]: row for row in pgbouncer_show(pgbouncer, "POOLS")}
    assert pools[database_name]["pool_mode"] == "transaction"
    clients = pgbouncer_show(pgbouncer, "CLIENTS")
    assert any(row["database"] == database_name for row in clients)


async def test_should_share_server_connections_between_clients(
    pgbouncer: PgBouncer, db: Database, database_name: str
) -> None:
    """Transaction pooling: more open clients than server connections, and all still answer."""
    conns = [psycopg2.connect(pgbouncer.url_for(database_name)) for _ in range(30)]
    try:
        for conn in conns:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        pools = {row["database"]: row for row in pgbouncer_show(pgbouncer, "POOLS")}
        pool = pools[database_name]
        assert int(pool["cl_active"]) + int(pool["cl_waiting"]) >= 30  # type: ignore[call-overload]
        servers = int(pool["sv_active"]) + int(pool["sv_idle"]) + int(pool["sv_used"])  # type: ignore[call-overload]
        assert servers < 30
    finally:
        for conn in conns:
            conn.close()


def test_should_refuse_a_wrong_password(pgbouncer: PgBouncer, postgres: PostgresServer) -> None:
    url = pgbouncer.url.replace(postgres.password, "wrong-password")
    with pytest.raises(psycopg2.OperationalError, match="authentication failed"):
        psycopg2.connect(url)


async def test_should_round_trip_through_redis(redis_server: RedisServer) -> None:
    settings = load_settings(
        ServiceSettings,
        {"ALGOEDGE_DATABASE_URL": "postgresql://u@h/d", "ALGOEDGE_REDIS_URL": redis_server.url},
    )
    redis = connect_redis(settings)
    try:
        await redis.set("algoedge:test:key", "value", ex=10)
        assert await redis.get("algoedge:test:key") == "value"
    finally:
        await redis.aclose()


async def test_should_refuse_redis_without_the_password(redis_server: RedisServer) -> None:
    from redis.exceptions import AuthenticationError, ResponseError

    settings = load_settings(
        ServiceSettings,
        {
            "ALGOEDGE_DATABASE_URL": "postgresql://u@h/d",
            "ALGOEDGE_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
        },
    )
    redis = connect_redis(settings)
    try:
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
            await redis.get("anything")
    finally:
        await redis.aclose()
