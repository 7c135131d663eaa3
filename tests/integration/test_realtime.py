"""socket.io across pods: two API processes, a client on each, events from an API pod and from Redis."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import socketio
from algoedge.config import ApiSettings, load_settings
from algoedge.realtime import publish_event
from redis.asyncio import Redis

from devtools.app import api_environment, migrated
from devtools.services import PgBouncer, RedisServer
from tests.integration.conftest import RELAXED_LIMITS, api_process, spawn_api


class Listener:
    """A socket.io client that records every event it receives."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.client.on("*", self._record)

    async def _record(self, event: str, data: Any) -> None:
        self.events.append((event, data))

    async def connect(self, base: str, token: str | None) -> None:
        await self.client.connect(
            base,
            auth={"token": token} if token else None,
            transports=["websocket"],
            wait_timeout=10,
        )

    async def wait_for(self, event: str, within: float = 10) -> Any:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            for name, data in self.events:
                if name == event:
                    return data
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {event!r} within {within}s; got {self.events}")


@pytest.fixture
async def environment(
    pgbouncer: PgBouncer, redis_server: RedisServer, database_name: str
) -> dict[str, str]:
    env = {**api_environment(pgbouncer.url_for(database_name), redis_server.url), **RELAXED_LIMITS}
    await migrated(load_settings(ApiSettings, env))
    return env


@pytest.fixture
def pods(environment: dict[str, str]) -> Iterator[tuple[str, str]]:
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
        user_id = int((await r.json())["id"])
    async with http.post(f"{base}/api/v1/auth/login", json=credentials) as r:
        return user_id, str((await r.json())["access_token"])


async def test_should_deliver_to_a_user_on_every_pod_and_to_no_one_else(
    pods: tuple[str, str], http: aiohttp.ClientSession, environment: dict[str, str]
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


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_should_refuse_a_socket_without_a_live_token(
    pods: tuple[str, str], token: str | None
) -> None:
    listener = Listener()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await listener.connect(pods[0], token)


async def test_should_refuse_a_socket_after_logout(
    pods: tuple[str, str], http: aiohttp.ClientSession
) -> None:
    _, token = await sign_up(http, pods[0])
    async with http.post(
        f"{pods[0]}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 204
    with pytest.raises(socketio.exceptions.ConnectionError):
        await Listener().connect(pods[1], token)


async def test_should_count_connected_sockets_in_metrics(
    pods: tuple[str, str], http: aiohttp.ClientSession
) -> None:
    _, token = await sign_up(http, pods[0])
    listener = Listener()
    await listener.connect(pods[0], token)
    try:
        async with http.get(f"{pods[0]}/metrics") as response:
            text = await response.text()
        assert "algoedge_socketio_connected 1.0" in text
    finally:
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
