"""The API when a dependency misbehaves: cached reads without Postgres, and Redis dying mid-test."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import jwt
import pytest
from algoedge.cache import ENDED_SESSION, session_key
from algoedge.config import ApiSettings, MigrateSettings, load_settings
from algoedge.db import Database, invalidations
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from devtools.app import api_environment, migrated
from devtools.services import PgBouncer, PostgresServer, RedisServer, free_port
from tests.integration.conftest import RELAXED_LIMITS, ApiClient, running_api, spawn_api
from tests.integration.sockets import Listener
from tests.integration.test_api_resources import ACCOUNT


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


async def live_in_redis(admin: Redis, token: str) -> bool:
    """Whether Redis holds the token's session as live (not gone, not an ended session's mark)."""
    return await admin.get(session_key_of(token)) not in (None, ENDED_SESSION.encode())


async def until_refused(pod: ApiClient, token: str, within: float = 10) -> None:
    """Poll the pod until it answers 401 to the token; fail after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while (await pod.call("GET", "/api/v1/me", token=token))[0] != 401:
        assert asyncio.get_running_loop().time() < deadline, "revoked token still accepted"
        await asyncio.sleep(0.2)


async def until(condition: Callable[[], bool], within: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


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
        status, _, response = await api.call("GET", "/api/v1/accounts", token=token)
        # The control: this route does need Postgres (and says so, with a 503 to retry).
        assert status == 503
        assert int(response.headers["Retry-After"]) >= 1


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
        # Still ready: Redis is every pod's, and each use of it has a fallback; /readyz says so.
        status, body, _ = await api.call("GET", "/readyz")
        assert (status, body["status"], body["checks"]) == (
            200,
            "degraded",
            {"postgres": "ok", "redis": "ConnectionError"},
        )
        status, _, _ = await api.call("POST", "/api/v1/auth/logout", token=token)
        assert status == 204
        assert (await api.call("GET", "/api/v1/me", token=token))[0] == 401

        private_redis.start()
        # Back on Redis: the revoked session stays revoked, the rename is visible, caches refill.
        assert (await api.call("GET", "/api/v1/me", token=token))[0] == 401
        status, body, _ = await api.call("GET", "/api/v1/me", token=second)
        assert (status, body["name"]) == (200, "While down")
        status, body, _ = await api.call("GET", "/readyz")
        assert (status, body["status"]) == (200, "ready")


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
        assert not await live_in_redis(admin, token)
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
            assert not await live_in_redis(admin, token)
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
        await api.register("while-down@example.com")
        period = {"kind": "daily", "period_start": datetime.now(UTC).date().isoformat()}
        status, report, _ = await api.call("POST", "/api/v1/reports", token=token, json=period)
        assert status == 202, report
        assert report["status"] == "pending"

        database = await Database.connect(settings)
        try:
            async with database.cursor() as cur:
                await cur.execute(
                    "SELECT enqueued_at FROM email_deliveries d JOIN users u ON u.id = d.user_id "
                    "WHERE u.email = 'while-down@example.com'"
                )
                assert await cur.fetchall() == [(None,)]
                await cur.execute("SELECT enqueued_at FROM reports WHERE id = %s", (report["id"],))
                assert await cur.fetchall() == [(None,)]

            private_redis.start()  # empty: the messages sent before the kill are gone
            await api.register("after@example.com")
            async with database.cursor() as cur:
                await cur.execute(
                    "SELECT enqueued_at IS NOT NULL FROM email_deliveries d "
                    "JOIN users u ON u.id = d.user_id WHERE u.email = 'after@example.com'"
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
        # The wake-ups are sent after the answers, off the request path: counted as they fail.
        await until(lambda: redis_fallbacks("bridge_wake") == before + 3)


async def test_should_refuse_a_dead_session_without_asking_postgres_again(
    private_bouncer: PgBouncer, private_redis: RedisServer, database_name: str
) -> None:
    """After a logout, Redis restarts without its data, so it no longer knows the session ended.
    The first socket with the revoked token is checked in Postgres; from then on no pod asks
    Postgres about it: Redis holds the session's tombstone again, and the pod that asked
    remembers it too. Proven by taking Postgres, then Redis, away."""
    settings = settings_for(private_bouncer.url_for(database_name), private_redis.url)
    await migrated(settings)
    async with (
        running_api(settings) as logs_out,
        running_api(settings) as asks,
        running_api(settings) as other,
    ):
        _, token = await logs_out.signed_up()
        assert (await logs_out.call("POST", "/api/v1/auth/logout", token=token))[0] == 204
        private_redis.kill()
        private_redis.start()
        ended = "The session has ended; log in again."
        assert await Listener().refusal(asks.base_url, token) == ended  # Postgres answered
        private_bouncer.kill()
        assert await Listener().refusal(other.base_url, token) == ended  # Redis's tombstone
        assert (await other.call("GET", "/api/v1/me", token=token))[0] == 401
        private_redis.kill()
        assert await Listener().refusal(asks.base_url, token) == ended  # this pod's memory
        assert (await asks.call("GET", "/api/v1/me", token=token))[0] == 401


async def test_should_answer_and_stay_ready_on_every_pod_while_redis_hangs(
    pgbouncer: PgBouncer, private_redis: RedisServer, database_name: str
) -> None:
    """Redis accepts connections and never answers (stopped with SIGSTOP). Requests are answered
    from the fallbacks, the real-time events they cause are dropped rather than waited for, and
    no pod leaves the Service: readiness reports Redis without failing on it."""
    settings = settings_for(pgbouncer.url_for(database_name), private_redis.url)
    await migrated(settings)
    # Only a bound on how long the test may hang if a request does: not a latency assertion.
    hang = aiohttp.ClientTimeout(total=60)
    async with running_api(settings) as first, running_api(settings) as second:
        _, token = await first.signed_up()
        listener = Listener()
        await listener.connect(second.base_url, token)
        private_redis.freeze()
        try:
            status, body, _ = await first.call(
                "POST", "/api/v1/accounts", token=token, json=ACCOUNT, timeout=hang
            )
            assert status == 201, body
            status, body, _ = await second.call(
                "GET", "/api/v1/accounts", token=token, timeout=hang
            )
            assert (status, [a["login"] for a in body["items"]]) == (200, [ACCOUNT["login"]])
            for pod in (first, second):
                status, body, _ = await pod.call("GET", "/readyz", timeout=hang)
                assert (status, body["status"]) == (200, "degraded")
                assert body["checks"]["postgres"] == "ok"
                assert body["checks"]["redis"] != "ok"
                assert (await pod.call("GET", "/healthz", timeout=hang))[0] == 200
        finally:
            private_redis.thaw()
        try:
            # Redis answers again: events flow between the pods again.
            other = {**ACCOUNT, "login": "40005678"}
            status, body, _ = await first.call("POST", "/api/v1/accounts", token=token, json=other)
            assert status == 201, body
            linked = {"id": body["id"]}
            await until(lambda: ("account.linked", linked) in listener.events, within=20)
            status, body, _ = await second.call("GET", "/readyz")
            assert (status, body["status"]) == (200, "ready")
        finally:
            await listener.client.disconnect()
