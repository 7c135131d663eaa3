"""The API when a dependency misbehaves: cached reads without Postgres, and Redis dying mid-test."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import jwt
import pytest
from algoedge.cache import session_key
from algoedge.config import ApiSettings, MigrateSettings, load_settings
from algoedge.db import Database, invalidations
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from devtools.app import api_environment, migrated
from devtools.services import PgBouncer, PostgresServer, RedisServer, free_port
from tests.integration.conftest import RELAXED_LIMITS, ApiClient, running_api, spawn_api


@pytest.fixture
def private_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="algoedge-private-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def private_redis(private_root: Path) -> Iterator[RedisServer]:
    server = RedisServer(root=private_root / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def private_bouncer(private_root: Path, postgres: PostgresServer) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(root=private_root / "pgbouncer", upstream=postgres).start()
    yield bouncer
    bouncer.stop()


def settings_for(database_url: str, redis_url: str) -> ApiSettings:
    return load_settings(
        ApiSettings, {**api_environment(database_url, redis_url), **RELAXED_LIMITS}
    )


def session_key_of(token: str) -> str:
    return session_key(jwt.decode(token, options={"verify_signature": False})["jti"])


async def until_refused(pod: ApiClient, token: str, within: float = 10) -> None:
    """Poll the pod until it answers 401 to the token; fail after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while (await pod.call("GET", "/api/v1/me", token=token))[0] != 401:
        assert asyncio.get_running_loop().time() < deadline, "revoked token still accepted"
        await asyncio.sleep(0.2)


def redis_fallbacks(operation: str) -> float:
    value = REGISTRY.get_sample_value("algoedge_redis_errors_total", {"operation": operation})
    return value or 0.0


async def test_should_serve_a_cached_user_without_touching_postgres(
    private_bouncer: PgBouncer, redis_server: RedisServer, database_name: str
) -> None:
    settings = settings_for(private_bouncer.url_for(database_name), redis_server.url)
    await migrated(settings)
    async with running_api(settings) as api:
        _, token = await api.signed_up()
        assert (await api.call("GET", "/api/v1/me", token=token))[0] == 200
        # With pgBouncer gone, anything that needs Postgres fails; the cached read must not.
        private_bouncer.kill()
        for _ in range(5):
            status, body, _ = await api.call("GET", "/api/v1/me", token=token)
            assert status == 200
            assert body["name"] == "Trader"
        status, _, _ = await api.call("GET", "/api/v1/accounts", token=token)
        assert status == 500  # the control: this route does need Postgres


async def test_should_keep_answering_when_redis_dies_and_recover(
    pgbouncer: PgBouncer, private_redis: RedisServer, database_name: str
) -> None:
    settings = settings_for(pgbouncer.url_for(database_name), private_redis.url)
    await migrated(settings)
    async with running_api(settings) as api:
        _, token = await api.signed_up()
        before = redis_fallbacks("authenticate")
        private_redis.kill()
        # Reads fall back to Postgres; logins, renames and logouts keep working.
        status, body, _ = await api.call("GET", "/api/v1/me", token=token)
        assert (status, body["name"]) == (200, "Trader")
        assert redis_fallbacks("authenticate") > before
        _, second = await api.signed_up()
        assert (await api.call("PATCH", "/api/v1/me", token=second, json={"name": "While down"}))[
            0
        ] == 200
        assert (await api.call("GET", "/api/v1/bots"))[0] == 200
        assert (await api.call("GET", "/readyz"))[0] == 503
        status, _, _ = await api.call("POST", "/api/v1/auth/logout", token=token)
        assert status == 204
        assert (await api.call("GET", "/api/v1/me", token=token))[0] == 401

        private_redis.start()
        # Back on Redis: the revoked session stays revoked, the rename is visible, caches refill.
        assert (await api.call("GET", "/api/v1/me", token=token))[0] == 401
        status, body, _ = await api.call("GET", "/api/v1/me", token=second)
        assert (status, body["name"]) == (200, "While down")
        assert (await api.call("GET", "/readyz"))[0] == 200


async def test_should_not_revive_a_session_revoked_while_redis_was_unreachable(
    pgbouncer: PgBouncer, private_redis: RedisServer, database_name: str
) -> None:
    """Redis keeps its data but this pod cannot reach it during logout (a partition)."""
    settings = settings_for(pgbouncer.url_for(database_name), private_redis.url)
    await migrated(settings)
    async with running_api(settings) as api, running_api(settings) as other_pod:
        _, token = await api.signed_up()
        assert (await other_pod.call("GET", "/api/v1/me", token=token))[0] == 200
        # Simulate the partition by pausing Redis long enough for the logout's Redis delete to
        # time out, then resume it with the old session key still stored.
        admin = Redis.from_url(private_redis.url)
        await admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        status, _, _ = await api.call("POST", "/api/v1/auth/logout", token=token)
        assert status == 204
        await admin.execute_command("CLIENT", "UNPAUSE")
        # The logging-out pod retries the delete in the background; the other pod, which never
        # saw the logout, must stop accepting the token without any traffic on the first pod.
        await until_refused(other_pod, token)
        assert await admin.exists(session_key_of(token)) == 0
        await admin.aclose()


async def test_should_revoke_on_every_pod_when_the_pod_that_logged_out_dies_cut_off_from_redis(
    pgbouncer: PgBouncer, private_redis: RedisServer, database_name: str
) -> None:
    """Pod A reaches Postgres but not Redis, records the logout, and is killed before it could
    ever delete the session's Redis key; pod B must still stop accepting the token."""
    env = {**api_environment(pgbouncer.url_for(database_name), private_redis.url), **RELAXED_LIMITS}
    settings = load_settings(ApiSettings, env)
    await migrated(settings)
    unreachable_redis = f"redis://:x@127.0.0.1:{free_port()}/0"
    pod_a, base_a = spawn_api({**env, "ALGOEDGE_REDIS_URL": unreachable_redis})
    try:
        async with running_api(settings) as pod_b:
            _, token = await pod_b.signed_up()
            admin = Redis.from_url(private_redis.url)
            assert await admin.exists(session_key_of(token)) == 1
            async with aiohttp.ClientSession() as http:
                response = await http.post(
                    f"{base_a}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}
                )
                assert response.status == 204
            pod_a.send_signal(signal.SIGKILL)
            pod_a.wait()
            await until_refused(pod_b, token)
            assert await admin.exists(session_key_of(token)) == 0
            await admin.aclose()
    finally:
        pod_a.kill()
        pod_a.wait()
    database = await Database.connect(settings)
    try:
        assert await invalidations.pending(database) == []
    finally:
        await database.close()


async def test_should_keep_a_key_recorded_again_after_it_was_read(
    migrate_settings: MigrateSettings,
) -> None:
    await migrated(migrate_settings)
    database = await Database.connect(migrate_settings)
    try:
        await invalidations.record(database, ["k:1", "k:2", "k:1"])
        first = await invalidations.pending(database)
        assert sorted(entry.key for entry in first) == ["k:1", "k:2"]
        # k:1 fails again (another logout, another outage) after a drainer read it.
        await invalidations.record(database, ["k:1"])
        await invalidations.done(database, first)
        assert [entry.key for entry in await invalidations.pending(database)] == ["k:1"]
        await invalidations.done(database, await invalidations.pending(database))
        assert await invalidations.pending(database) == []
    finally:
        await database.close()


async def test_should_record_jobs_redis_cannot_take_and_queue_again_once_it_is_back(
    pgbouncer: PgBouncer, private_redis: RedisServer, database_name: str
) -> None:
    """Registering and requesting a report answer as usual while Redis is down; the work stays
    recorded (not marked enqueued) for the sweeper, and sending resumes when Redis returns."""
    settings = settings_for(pgbouncer.url_for(database_name), private_redis.url)
    await migrated(settings)
    async with running_api(settings) as api:
        _, token = await api.signed_up()
        private_redis.kill()
        down = await api.register("while-down@example.com")
        period = {"kind": "daily", "period_start": datetime.now(UTC).date().isoformat()}
        status, report, _ = await api.call("POST", "/api/v1/reports", token=token, json=period)
        assert status == 202, report
        assert report["status"] == "pending"

        database = await Database.connect(settings)
        try:
            async with database.cursor() as cur:
                await cur.execute(
                    "SELECT enqueued_at FROM email_deliveries WHERE user_id = %s", (down["id"],)
                )
                assert await cur.fetchall() == [(None,)]
                await cur.execute("SELECT enqueued_at FROM reports WHERE id = %s", (report["id"],))
                assert await cur.fetchall() == [(None,)]

            private_redis.start()  # empty: the messages sent before the kill are gone
            after = await api.register("after@example.com")
            async with database.cursor() as cur:
                await cur.execute(
                    "SELECT enqueued_at IS NOT NULL FROM email_deliveries WHERE user_id = %s",
                    (after["id"],),
                )
                assert await cur.fetchall() == [(True,)]
        finally:
            await database.close()
        admin = Redis.from_url(private_redis.url)
        assert await admin.llen("emails") == 1
        await admin.aclose()


async def test_should_link_edit_and_unlink_while_redis_is_down(
    pgbouncer: PgBouncer, private_redis: RedisServer, database_name: str
) -> None:
    """The bridge's wake-up is best effort (it polls Postgres as well): without Redis the account
    changes still succeed, and each lost wake-up is counted."""
    settings = settings_for(pgbouncer.url_for(database_name), private_redis.url)
    await migrated(settings)
    async with running_api(settings) as api:
        _, token = await api.signed_up()
        before = redis_fallbacks("bridge_wake")
        private_redis.kill()
        account = {"login": "40001234", "server": "Broker-Demo", "password": "pw"}
        status, body, _ = await api.call("POST", "/api/v1/accounts", token=token, json=account)
        assert status == 201, body
        path = f"/api/v1/accounts/{body['id']}"
        status, body, _ = await api.call("PATCH", path, token=token, json={"password": "new"})
        assert (status, body["connection"]["state"]) == (200, "pending")
        assert (await api.call("DELETE", path, token=token))[0] == 204
        assert redis_fallbacks("bridge_wake") == before + 3
