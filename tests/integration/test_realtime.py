"""socket.io across pods: two API processes, a client on each, events from an API pod and from Redis."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import aiohttp
import pytest
import socketio
from algoedge.auth import Tokens
from algoedge.config import ApiSettings, MigrateSettings, load_settings
from algoedge.db import Database, users
from algoedge.keys import EVENTS_CHANNEL, SOCKETIO_CHANNEL
from algoedge.outbox import Outbox
from algoedge.realtime import Sockets, publish_event, user_room
from redis.asyncio import Redis

from devtools.app import api_environment, migrated
from devtools.services import PgBouncer, RedisServer, free_port
from tests.integration.conftest import (
    RELAXED_LIMITS,
    ApiBase,
    api_process,
    spawn_api,
    user_id_of,
)
from tests.integration.sockets import (
    Listener,
    closed_by_server,
    engineio_connection,
    next_socketio_packet,
    send_connect,
)


@pytest.fixture
async def environment(
    pgbouncer: PgBouncer, redis_server: RedisServer, database_name: str
) -> dict[str, str]:
    env = {**api_environment(pgbouncer.url_for(database_name), redis_server.url), **RELAXED_LIMITS}
    await migrated(load_settings(ApiSettings, env))
    return env


@pytest.fixture
def pods(environment: dict[str, str]) -> Iterator[tuple[ApiBase, ApiBase]]:
    with api_process(environment) as first, api_process(environment) as second:
        yield first, second


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def sign_up(http: aiohttp.ClientSession, base: str) -> tuple[int, str]:
    email = f"{secrets.token_hex(4)}@example.com"
    credentials = {"email": email, "password": "correct horse battery"}
    async with http.post(f"{base}/api/v1/auth/register", json={**credentials, "name": "T"}) as r:
        assert r.status == 202
    async with http.post(f"{base}/api/v1/auth/login", json=credentials) as r:
        token = str((await r.json())["access_token"])
    return user_id_of(token), token


async def test_should_deliver_to_a_user_on_every_pod_and_to_no_one_else(
    pods: tuple[ApiBase, ApiBase], http: aiohttp.ClientSession, environment: dict[str, str]
) -> None:
    first, second = pods
    user_id, token = await sign_up(http, first)
    _, stranger_token = await sign_up(http, second)
    on_first, on_second, stranger = Listener(), Listener(), Listener()
    await on_first.connect(first, token)
    await on_second.connect(second, token)
    await stranger.connect(second, stranger_token)
    try:
        # From an API pod (AsyncRedisManager): linking on the first pod reaches the second too.
        body = {"login": "5001", "server": "Demo-Server", "password": "pw"}
        async with http.post(
            f"{first}/api/v1/accounts", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 201
            account_id = (await response.json())["id"]
        assert (await on_first.wait_for("account.linked"))["id"] == account_id
        assert (await on_second.wait_for("account.linked"))["id"] == account_id

        # From a process without socket.io 5 (worker, bridge): the Redis events channel.
        redis = Redis.from_url(environment["ALGOEDGE_REDIS_URL"], decode_responses=True)
        await publish_event(redis, user_id, "trade.opened", {"symbol": "EURUSD"})
        await redis.aclose()
        assert await on_first.wait_for("trade.opened") == {"symbol": "EURUSD"}
        assert await on_second.wait_for("trade.opened") == {"symbol": "EURUSD"}
        await asyncio.sleep(0.5)  # time for a duplicate to show up, if there were one
        assert [e for e, _ in on_first.events].count("trade.opened") == 1
        assert [e for e, _ in on_second.events].count("trade.opened") == 1
        assert stranger.events == []
    finally:
        for listener in (on_first, on_second, stranger):
            await listener.client.disconnect()


async def test_should_deliver_to_a_new_pods_first_socket_what_another_pod_emits_at_once(
    environment: dict[str, str], http: aiohttp.ClientSession
) -> None:
    # socket.io subscribes to its channel when its first connection arrives, unless the app
    # subscribes at start-up: the first socket then misses what another pod emits meanwhile.
    another_pod = socketio.AsyncRedisManager(
        environment["ALGOEDGE_REDIS_URL"], channel=SOCKETIO_CHANNEL, write_only=True
    )
    with api_process(environment) as pod:
        user_id, token = await sign_up(http, pod)
        # The window is a few milliseconds wide, too narrow for the emit below to land in it
        # reliably; what closes it is that the pod is subscribed before it serves any socket.
        redis = Redis.from_url(environment["ALGOEDGE_REDIS_URL"])
        subscribers = dict(await redis.pubsub_numsub(SOCKETIO_CHANNEL))
        await redis.aclose()
        assert subscribers[SOCKETIO_CHANNEL.encode()] == 1, "no socket.io subscription yet"
        listener = Listener()
        await listener.connect(pod, token)
        try:
            await another_pod.emit("trade.opened", {"n": 1}, room=user_room(user_id))
            assert await listener.wait_for("trade.opened", within=5) == {"n": 1}
        finally:
            await listener.client.disconnect()
            await another_pod.redis.aclose()


async def test_should_be_subscribed_to_both_channels_when_start_returns(
    redis_server: RedisServer,
) -> None:
    # Both of a pod's subscriptions, socket.io's and the event relay's, are confirmed before
    # the app serves (start returns), not left to a background task that may lose the race to
    # the first socket; stop ends both.
    redis = Redis.from_url(redis_server.url)

    async def subscribers() -> dict[bytes, int]:
        return dict(await redis.pubsub_numsub(SOCKETIO_CHANNEL, EVENTS_CHANNEL))

    sockets = Sockets(
        redis_url=redis_server.url,
        transports=["websocket"],
        allowed_origins=(),
        connect_timeout=5.0,
        outbox=Outbox(),
        sessions=lambda: pytest.fail("no session is looked up"),
        redis=lambda: redis,
    )
    try:
        before = await subscribers()
        await sockets.start()
        after = await subscribers()
        for channel in (SOCKETIO_CHANNEL, EVENTS_CHANNEL):
            assert after[channel.encode()] == before[channel.encode()] + 1, channel
    finally:
        await sockets.stop()
    await asyncio.sleep(0.2)  # Redis drops a closed subscriber's channels as it reads the close
    assert await subscribers() == before
    await redis.aclose()


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_should_refuse_a_socket_without_a_live_token(
    pods: tuple[str, str], token: str | None
) -> None:
    listener = Listener()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await listener.connect(pods[0], token)


async def test_should_refuse_a_socket_after_logout(
    pods: tuple[ApiBase, ApiBase], http: aiohttp.ClientSession
) -> None:
    _, token = await sign_up(http, pods[0])
    async with http.post(
        f"{pods[0]}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 204
    with pytest.raises(socketio.exceptions.ConnectionError):
        await Listener().connect(pods[1], token)


async def test_should_count_connected_sockets_in_metrics(
    pods: tuple[ApiBase, ApiBase], http: aiohttp.ClientSession
) -> None:
    _, token = await sign_up(http, pods[0])
    listener = Listener()
    await listener.connect(pods[0], token)
    try:
        async with http.get(f"{pods[0].metrics}/metrics") as response:
            text = await response.text()
        assert "algoedge_socketio_connected 1.0" in text
    finally:
        await listener.client.disconnect()


async def test_should_report_the_sockets_of_every_pod_in_the_capacity_answer(
    pods: tuple[ApiBase, ApiBase], http: aiohttp.ClientSession, environment: dict[str, str]
) -> None:
    first, second = pods
    headers = {"Authorization": f"Bearer {environment['ALGOEDGE_INTERNAL_TOKEN']}"}

    async def sockets() -> int:
        async with http.get(f"{first.metrics}/internal/v1/capacity", headers=headers) as response:
            assert response.status == 200
            return int((await response.json())["connected_sockets"])

    async def until(count: int) -> None:
        # Each pod writes its count as soon as it changes; the answer follows within moments.
        deadline = asyncio.get_running_loop().time() + 10
        while (seen := await sockets()) != count:
            assert asyncio.get_running_loop().time() < deadline, f"{seen} sockets, not {count}"
            await asyncio.sleep(0.1)

    await until(0)
    _, token = await sign_up(http, first)
    listeners = [Listener(), Listener(), Listener()]
    await listeners[0].connect(first, token)
    await listeners[1].connect(first, token)
    await listeners[2].connect(second, token)
    try:
        await until(3)
        await listeners[2].client.disconnect()
        await until(2)
    finally:
        for listener in listeners:
            await listener.client.disconnect()


async def test_should_send_sockets_away_and_exit_0_on_sigterm(
    environment: dict[str, str], http: aiohttp.ClientSession
) -> None:
    process, base = spawn_api(environment)
    try:
        _, token = await sign_up(http, base)
        listener = Listener()
        await listener.connect(base, token)
        assert listener.client.connected
        process.send_signal(signal.SIGTERM)
        # The socket is closed by the server (not by a timeout) and the process exits cleanly,
        # well inside the 20 s drain window.
        exit_code = await asyncio.to_thread(process.wait, 30)
        assert exit_code == 0
        deadline = asyncio.get_running_loop().time() + 10
        while listener.client.connected:
            assert asyncio.get_running_loop().time() < deadline, "socket still connected"
            await asyncio.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()


async def logout(http: aiohttp.ClientSession, base: str, token: str) -> None:
    async with http.post(
        f"{base}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 204


async def log_in_again(http: aiohttp.ClientSession, base: str, token: str) -> str:
    """Another session of the user behind ``token`` (sign_up's password)."""
    async with http.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}"}) as r:
        email = (await r.json())["email"]
    credentials = {"email": email, "password": "correct horse battery"}
    async with http.post(f"{base}/api/v1/auth/login", json=credentials) as r:
        return str((await r.json())["access_token"])


async def test_should_close_a_sessions_sockets_on_every_pod_at_logout(
    pods: tuple[ApiBase, ApiBase], http: aiohttp.ClientSession, environment: dict[str, str]
) -> None:
    first, second = pods
    user_id, token = await sign_up(http, first)
    other_session = await log_in_again(http, first, token)
    here, there, kept = Listener(), Listener(), Listener()
    await here.connect(first, token)
    await there.connect(second, token)
    await kept.connect(second, other_session)
    try:
        await logout(http, first, token)
        await here.wait_closed()
        await there.wait_closed()
        # The user's other session keeps its socket, and only it gets the user's events now.
        redis = Redis.from_url(environment["ALGOEDGE_REDIS_URL"], decode_responses=True)
        await publish_event(redis, user_id, "trade.opened", {"symbol": "EURUSD"})
        await redis.aclose()
        assert await kept.wait_for("trade.opened") == {"symbol": "EURUSD"}
        assert here.events == there.events == []
    finally:
        for listener in (here, there, kept):
            await listener.client.disconnect()


async def test_should_close_a_socket_when_its_session_expires(
    pods: tuple[ApiBase, ApiBase], http: aiohttp.ClientSession, environment: dict[str, str]
) -> None:
    """A session as a login records it, with a lifetime of a few seconds (the setting's minimum
    is five minutes, so the token is issued here with the pod's key)."""
    user_id, _ = await sign_up(http, pods[0])
    tokens = Tokens(environment["ALGOEDGE_JWT_SECRET"], ttl_seconds=6)
    short = tokens.issue(user_id, now=datetime.now(UTC))
    database = await Database.connect(
        load_settings(
            MigrateSettings, {"ALGOEDGE_DATABASE_URL": environment["ALGOEDGE_DATABASE_URL"]}
        )
    )
    try:
        await users.record_session(
            database, jti=short.jti, user_id=user_id, expires_at=short.expires_at
        )
    finally:
        await database.close()
    listener = Listener()
    await listener.connect(pods[1], short.token)
    try:
        await listener.wait_closed(within=30)
    finally:
        await listener.client.disconnect()


async def test_should_close_the_sockets_of_a_logout_whose_announcement_was_lost(
    environment: dict[str, str], http: aiohttp.ClientSession
) -> None:
    """The pod that logs out cannot reach Redis: it records the revocation in Postgres but can
    announce it to no one. The other pod's periodic check closes the session's socket."""
    unreachable = {**environment, "ALGOEDGE_REDIS_URL": f"redis://:x@127.0.0.1:{free_port()}/0"}
    checking = {**environment, "ALGOEDGE_SOCKETIO_SESSION_CHECK_INTERVAL": "1"}
    with api_process(unreachable) as cut_off, api_process(checking) as serving:
        _, token = await sign_up(http, serving)
        listener = Listener()
        await listener.connect(serving, token)
        try:
            await logout(http, cut_off, token)
            await listener.wait_closed(within=30)
        finally:
            await listener.client.disconnect()


async def test_should_close_connections_that_never_send_connect(
    environment: dict[str, str], http: aiohttp.ClientSession
) -> None:
    env = {**environment, "ALGOEDGE_SOCKETIO_CONNECT_TIMEOUT": "1"}
    with api_process(env) as base:
        async with contextlib.AsyncExitStack() as stack:
            idle = [
                await stack.enter_async_context(engineio_connection(http, base)) for _ in range(5)
            ]
            # Each answers the server's pings: only the CONNECT deadline can close it. Without
            # one, the server would keep them for as long as they answer.
            closed = await asyncio.gather(*(closed_by_server(ws, within=30) for ws in idle))
        assert closed == [True] * 5
        async with http.get(f"{base.metrics}/metrics") as response:
            metrics = await response.text()
        assert 'algoedge_socketio_disconnects_total{reason="connect_timeout"} 5.0' in metrics


async def test_should_take_one_connect_per_connection(
    pods: tuple[ApiBase, ApiBase], http: aiohttp.ClientSession
) -> None:
    """A refused CONNECT does not leave the connection open to try token after token."""
    _, token = await sign_up(http, pods[0])
    async with engineio_connection(http, pods[0]) as ws:
        await send_connect(ws, "not-a-token")
        assert (await next_socketio_packet(ws)).startswith("4")  # CONNECT_ERROR
        await send_connect(ws, token)
        answer = await next_socketio_packet(ws)
        assert answer.startswith("4"), answer
        assert "one CONNECT per connection" in answer
    # The same token on a connection of its own is let in: it was the second attempt refused.
    async with engineio_connection(http, pods[0]) as ws:
        await send_connect(ws, token)
        assert (await next_socketio_packet(ws)).startswith("0{")  # CONNECT


async def test_should_limit_new_socket_connections_per_client_address(
    environment: dict[str, str],
    http: aiohttp.ClientSession,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A Redis of its own: the shared one's bucket for 127.0.0.1 is every other test's too.
    redis = RedisServer(root=tmp_path_factory.mktemp("socket-limit")).start()
    env = {**environment, "ALGOEDGE_REDIS_URL": redis.url, "ALGOEDGE_RATE_LIMIT_SOCKET": "3/60"}
    try:
        with api_process(env) as base:
            for _ in range(3):
                async with engineio_connection(http, base):
                    pass
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"{base}/socket.io/?EIO=4&transport=websocket")
            assert refused.value.status == 429
            assert refused.value.headers is not None
            assert int(refused.value.headers["Retry-After"]) >= 1
            async with http.get(f"{base}/socket.io/?EIO=4&transport=websocket") as response:
                assert response.status == 429
                assert response.content_type == "application/problem+json"
            # A request within an existing engine.io session (it names its sid) is not a new
            # connection: engine.io answers it (here: no such session), not the limiter.
            async with http.get(
                f"{base}/socket.io/?EIO=4&transport=polling&sid=no-such-session"
            ) as response:
                assert response.status == 400
    finally:
        redis.stop()
