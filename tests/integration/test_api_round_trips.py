"""Redis round trips of the request hot path, counted on a real Redis with MONITOR."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from algoedge.api.state import SESSIONS, SOCKETS
from algoedge.auth import PrefetchedSession
from algoedge.cache import CachedUser, SessionCache
from algoedge.config import ApiSettings
from algoedge.rates import RateLimit
from redis.asyncio import Redis

from devtools.app import migrated
from devtools.services import PgBouncer, RedisServer
from tests.integration.conftest import ApiClient, running_api
from tests.integration.sockets import Listener
from tests.integration.test_api_resilience import private_redis, private_root, settings_for

__all__ = ["private_redis", "private_root"]  # fixtures shared with the resilience tests

#: Sent by the test, never by the API: ends the list of commands MONITOR saw.
_END = f"end-of-requests-{secrets.token_hex(4)}"


async def commands_during(redis_url: str, requests: Any) -> list[dict[str, Any]]:
    """Every command Redis ran while ``requests()`` ran (MONITOR), scripts' own commands
    included (``client_type`` "lua"), without the health checks' PINGs."""
    watcher = Redis.from_url(redis_url, decode_responses=True)
    marker = Redis.from_url(redis_url, decode_responses=True)
    seen: list[dict[str, Any]] = []
    try:
        await marker.ping()  # connected (AUTH, CLIENT SETINFO) before MONITOR starts
        async with watcher.monitor() as monitor:

            async def collect() -> None:
                while True:
                    command = await monitor.next_command()
                    if command["command"] == f"ECHO {_END}":
                        return
                    seen.append(command)

            collector = asyncio.create_task(collect())
            await requests()
            await marker.echo(_END)
            await asyncio.wait_for(collector, 30)
    finally:
        await watcher.aclose()
        await marker.aclose()
    return [c for c in seen if c["command"].split(" ", 1)[0] != "PING"]


def sent(commands: list[dict[str, Any]]) -> list[str]:
    """The names of the commands clients sent (each a round trip), scripts' own left out."""
    return [c["command"].split(" ", 1)[0] for c in commands if c["client_type"] != "lua"]


def session_reads(commands: list[dict[str, Any]]) -> int:
    return sum(
        1
        for c in commands
        if c["client_type"] == "lua"
        and c["command"].startswith("GET")
        and ":session:" in c["command"]
    )


async def warm(api: ApiClient, token: str) -> None:
    # The first requests load the script, open pooled connections and fill the user cache.
    for _ in range(3):
        assert (await api.call("GET", "/api/v1/me", token=token))[0] == 200


async def test_should_answer_an_authenticated_request_with_one_redis_round_trip(
    api: ApiClient, redis_server: RedisServer
) -> None:
    _, token = await api.signed_up()
    await warm(api, token)

    async def requests() -> None:
        for _ in range(5):
            status, body, _ = await api.call("GET", "/api/v1/me", token=token)
            assert (status, body["name"]) == (200, "Trader")

    commands = await commands_during(redis_server.url, requests)
    # One script per request: the user's and the address's budgets, then the session and user.
    assert sent(commands) == ["EVALSHA"] * 5
    assert session_reads(commands) == 5


async def test_should_read_no_session_for_a_request_its_limit_refuses(
    relaxed_settings: ApiSettings, redis_server: RedisServer
) -> None:
    settings = relaxed_settings.model_copy(update={"rate_limit_per_user": RateLimit(4, 60)})
    async with running_api(settings) as api:
        _, token = await api.signed_up()
        await warm(api, token)  # 3 of the 4 allowed

        async def requests() -> None:
            statuses = [(await api.call("GET", "/api/v1/me", token=token))[0] for _ in range(3)]
            assert statuses == [200, 429, 429]

        commands = await commands_during(redis_server.url, requests)
    assert sent(commands) == ["EVALSHA"] * 3
    # Only the allowed request looked its session up; a refused one costs no lookup.
    assert session_reads(commands) == 1


async def test_should_not_use_a_read_made_before_a_cache_deletion_was_queued(
    pgbouncer: PgBouncer, private_redis: RedisServer, database_name: str
) -> None:
    """A session read made in the limiter's round trip is dropped once this process queued a
    deletion after it (here: a rename whose cache write timed out): the identity middleware reads
    again, after the deletions, and sees the rename."""
    settings = settings_for(pgbouncer.url_for(database_name), private_redis.url)
    await migrated(settings)
    async with running_api(settings) as api:
        user_id, token = await api.signed_up()
        await warm(api, token)
        sessions = api.server.app[SESSIONS]
        claims = sessions.decode(token)
        prefetch = sessions.prefetch(claims)
        assert prefetch is not None
        admin = Redis.from_url(private_redis.url, decode_responses=True)
        try:
            session, cached_user = await admin.mget(*prefetch.keys)
            stale = PrefetchedSession(prefetch, session, cached_user)
            assert CachedUser.loads(str(cached_user)).name == "Trader"  # type: ignore[union-attr]
            # The rename's write-through times out: the cache key is queued for deletion.
            await admin.execute_command("CLIENT", "PAUSE", "2500", "WRITE")
            renamed = await sessions.update_profile(user_id, name="Renamed")
            await admin.execute_command("CLIENT", "UNPAUSE")
        finally:
            await admin.aclose()
        assert renamed.name == "Renamed"
        assert sessions.prefetch(claims) is None  # nothing is read ahead while a deletion waits
        # The background retry deletes the key within a second; the read made before stays
        # stale even though nothing is pending any more.
        deadline = asyncio.get_running_loop().time() + 10
        while sessions.prefetch(claims) is None:
            assert asyncio.get_running_loop().time() < deadline, "the deletion never happened"
            await asyncio.sleep(0.05)
        assert (await sessions.user_of(claims, prefetched=stale)).name == "Renamed"


async def test_should_check_the_sessions_of_sockets_with_one_read_per_chunk(
    api: ApiClient, redis_server: RedisServer
) -> None:
    """The periodic check reads many sockets' sessions per round trip, and still closes the
    socket of a session that ended elsewhere (a logout whose announcement this pod missed)."""
    tokens = [(await api.signed_up())[1] for _ in range(3)]
    listeners = [Listener() for _ in tokens]
    try:
        for listener, token in zip(listeners, tokens, strict=True):
            await listener.connect(api.base_url, token)
        # What the logging-out pod writes to Redis; its announcement never came.
        ended = api.server.app[SESSIONS].decode(tokens[0])
        admin = Redis.from_url(redis_server.url, decode_responses=True)
        await SessionCache(admin).end(ended.jti, ttl_seconds=60)
        await admin.aclose()

        sockets = api.server.app[SOCKETS]
        commands = await commands_during(redis_server.url, lambda: sockets.check_sessions(chunk=2))
        # Three sessions, two per read (other commands, e.g. the socket count, may interleave).
        assert [c for c in sent(commands) if c in ("MGET", "GET")] == ["MGET", "MGET"]
        await listeners[0].wait_closed()
        assert [listener.client.connected for listener in listeners] == [False, True, True]
    finally:
        for listener in listeners:
            await listener.client.disconnect()
