"""Fixtures for the bridge environment: a real simulator on a free loopback port, and real SDK clients of it."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from algoedge.bridge.sdk import point_sdk_at
from algoedge.metaapi_sim.app import create_app
from algoedge.metaapi_sim.rest import SIMULATOR, Simulator
from algoedge.metaapi_sim.settings import SimSettings, load_sim_settings

TOKEN = "simulated.metaapi-token.for-tests"
ADMIN_TOKEN = "admin-token-for-the-tests"
#: Fast lifecycle delays: the tests exercise the transitions, not their length.
FAST = {
    "ALGOEDGE_SIM_TOKEN": TOKEN,
    "ALGOEDGE_SIM_ADMIN_TOKEN": ADMIN_TOKEN,
    "ALGOEDGE_SIM_PORT": "0",
    "ALGOEDGE_SIM_DEPLOY_SECONDS": "0.2",
    "ALGOEDGE_SIM_CONNECT_SECONDS": "0.2",
    "ALGOEDGE_SIM_TICK_SECONDS": "0.2",
    "ALGOEDGE_SIM_STATUS_SECONDS": "5",
}


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, read whole."""

    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def fetch(
    method: str,
    url: str,
    *,
    body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One HTTP request with aiohttp (in both virtual environments, unlike httpx)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.request(
            method,
            url,
            json=body if data is None else None,
            data=data,
            headers=headers or {},
        ) as response,
    ):
        return Answer(response.status, await response.read())


@dataclass
class RunningSim:
    """A simulator serving on loopback, and a way to read its state and call its admin endpoint."""

    url: str
    sim: Simulator

    async def admin(self, method: str, path: str, body: Any = None) -> Answer:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return await fetch(method, self.url + path, body=body, headers=headers)

    async def rest(self, method: str, path: str, body: Any = None, token: str = TOKEN) -> Answer:
        return await fetch(method, self.url + path, body=body, headers={"auth-token": token})


async def start_sim(settings: SimSettings) -> tuple[web.AppRunner, RunningSim]:
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    return runner, RunningSim(f"http://127.0.0.1:{port}", app[SIMULATOR])


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSim]:
    runner, running = await start_sim(load_sim_settings(FAST))
    yield running
    await runner.cleanup()


@pytest.fixture
async def sdk_factory(
    simulator: RunningSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Any]]:
    """Builds real MetaApi clients pointed at the simulator; closes them after the test."""
    from metaapi_cloud_sdk import MetaApi

    # The SDK writes ./.metaapi (history cache, logs) into the working directory.
    monkeypatch.chdir(tmp_path)
    logging.getLogger("socketio").setLevel(logging.WARNING)
    made: list[Any] = []

    def make(**opts: Any) -> Any:
        api = MetaApi(TOKEN, {"application": "AlgoEdgeTests", "requestTimeout": 20, **opts})
        point_sdk_at(api, simulator.url)
        made.append(api)
        return api

    yield make
    for api in made:
        # close() schedules the socket shutdown as a task; give it a moment to run.
        api.close()
    await asyncio.sleep(0.2)


async def eventually(check: Callable[[], bool], *, within: float, what: str) -> None:
    """Wait until ``check()`` holds; fail naming ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)


NEW_ACCOUNT = {
    "name": "Test account",
    "login": "50123456",
    "password": "investor-password",
    "server": "AlgoEdge-Demo",
    "platform": "mt5",
    "magic": 0,
    "type": "cloud-g2",
    "reliability": "regular",
}


async def connected_account(api: Any, **fields: Any) -> tuple[Any, Any]:
    """Create, deploy and synchronize an account through the SDK; returns (account, connection)."""
    account = await api.metatrader_account_api.create_account({**NEW_ACCOUNT, **fields})
    await account.deploy()
    await account.wait_connected(timeout_in_seconds=10, interval_in_milliseconds=100)
    connection = account.get_streaming_connection()
    await connection.connect()
    await connection.wait_synchronized({"timeoutInSeconds": 30})
    return account, connection
