"""The bridge end to end as a user sees it: accounts linked through the API are connected by a real
`algoedge bridge` to a real MetaAPI simulator, their trades reach the owner's socket and trade
list only, and unlinking closes, undeploys and deletes the MetaAPI account.

This is also the README's `make dev` walk (link, connected, trades on the socket and in
``GET /api/v1/trades``), with the processes `make dev` runs: the simulator and the bridge in
``.venv-bridge``, the API (here in-process) in ``.venv``, sharing Postgres through pgBouncer,
Redis and the credentials key.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from algoedge.config import ApiSettings

from devtools.app import command_env
from devtools.bridge import BridgeProcess, bridge_environment
from devtools.dev import BRIDGE_ALGOEDGE, METAAPI_SIM
from devtools.services import ServiceError, wait_healthy
from tests.integration.conftest import ApiClient
from tests.integration.sockets import Listener

SIM_TOKEN = "simulated.metaapi-token.bridge-events"
SIM_ADMIN_TOKEN = "admin-token-of-the-bridge-events-tests"
SIM_ENV = {
    "ALGOEDGE_SIM_TOKEN": SIM_TOKEN,
    "ALGOEDGE_SIM_ADMIN_TOKEN": SIM_ADMIN_TOKEN,
    "ALGOEDGE_SIM_HOST": "127.0.0.1",
    "ALGOEDGE_SIM_PORT": "0",
    # Fast lifecycle (as tests/bridge/conftest.py FAST): the tests exercise transitions, not delays.
    "ALGOEDGE_SIM_DEPLOY_SECONDS": "0.2",
    "ALGOEDGE_SIM_CONNECT_SECONDS": "0.2",
    "ALGOEDGE_SIM_TICK_SECONDS": "0.2",
    "ALGOEDGE_SIM_STATUS_SECONDS": "5",
    # Every subscribed account trades about once a second, with nobody sending orders.
    "ALGOEDGE_SIM_STRATEGY_SECONDS": "1",
}
#: How a subscription may end when the bridge lets an unlinked account go.
UNLINK_END_REASONS = {"unsubscribed", "undeployed", "deleted"}
TRADE_EVENTS = ("trade.opened", "trade.closed")


def require_bridge_venv() -> None:
    """The simulator and the bridge run in .venv-bridge, which `make test` always builds."""
    missing = [str(path) for path in (METAAPI_SIM, BRIDGE_ALGOEDGE) if not path.exists()]
    if missing:
        pytest.fail(
            f"the bridge environment is missing ({', '.join(missing)}): run `make bridge-venv`",
            pytrace=False,
        )


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float, what: str, logs: Callable[[], str]
) -> None:
    """Wait until ``check()`` holds; fail naming ``what`` (with the processes' logs) after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}\n{logs()}")
        await asyncio.sleep(0.1)


@dataclass
class Simulator:
    """An `algoedge-metaapi-sim` process: its address, its log, and its REST and admin APIs."""

    url: str
    log_file: Path

    async def _call(self, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(self.url + path, headers=headers) as response,
        ):
            return response.status, await response.json(content_type=None)

    async def rest(self, path: str) -> tuple[int, Any]:
        return await self._call(path, {"auth-token": SIM_TOKEN})

    async def admin(self, path: str) -> Any:
        status, body = await self._call(path, {"Authorization": f"Bearer {SIM_ADMIN_TOKEN}"})
        assert status == 200, body
        return body

    async def account_id_of(self, login: str) -> str:
        """The MetaAPI account the bridge made for an MT login."""
        status, body = await self.rest("/users/current/accounts")
        assert status == 200, body
        ids = [a["_id"] for a in body if a["login"] == login]
        assert len(ids) == 1, body
        return str(ids[0])

    async def subscriptions(self, metaapi_id: str) -> list[dict[str, Any]]:
        return list(await self.admin(f"/admin/subscriptions?accountId={metaapi_id}"))


async def announced_url(process: asyncio.subprocess.Process, log_file: Path) -> str:
    """The address the simulator prints once it listens (it picks a free port)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline and process.returncode is None:
        found = re.search(r"serving (http://\S+)", tail(log_file, 100_000))
        if found:
            return found.group(1)
        await asyncio.sleep(0.05)
    pytest.fail(f"algoedge-metaapi-sim did not announce its address\n{tail(log_file)}")


@pytest.fixture
async def simulator(tmp_path: Path) -> AsyncIterator[Simulator]:
    require_bridge_venv()
    log_file = tmp_path / "metaapi-sim.log"
    with log_file.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(METAAPI_SIM),
            env=command_env(SIM_ENV),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Simulator(await announced_url(process, log_file), log_file)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


@pytest.fixture
async def bridge(
    simulator: Simulator, relaxed_settings: ApiSettings, tmp_path: Path
) -> AsyncIterator[BridgeProcess]:
    """One `algoedge bridge` replica (lease TTL 3 s) on the API's database, Redis and key."""
    env = bridge_environment(
        database_url=relaxed_settings.database_url,
        redis_url=relaxed_settings.redis_url,
        credentials_key=relaxed_settings.credentials_key.get_secret_value(),
        metaapi_url=simulator.url,
        metaapi_token=SIM_TOKEN,
        pod_name="events-bridge-0",
        lease_ttl=3,
    )
    process = BridgeProcess(
        "events-bridge-0", env, tmp_path, executable=str(BRIDGE_ALGOEDGE)
    ).start()
    try:
        assert process.process is not None
        await asyncio.to_thread(
            wait_healthy, process.url + "/readyz", process.process, log=process.log_file
        )
    except ServiceError as exc:
        process.kill()
        pytest.fail(f"algoedge bridge did not become ready: {exc}\n{process.log()[-4000:]}")
    try:
        yield process
    finally:
        await asyncio.to_thread(process.stop, 60)


@dataclass
class Trader:
    """A user with one linked account and a socket.io client recording what reaches it."""

    user_id: int
    token: str
    login: str
    account_id: int
    socket: Listener = field(repr=False)

    def received(self, *names: str) -> list[dict[str, Any]]:
        return [dict(data) for event, data in self.socket.events if event in names]


async def join(api: ApiClient, login: str) -> Trader:
    """Sign up, connect a socket, then link an account (so the socket sees every state change)."""
    user_id, token = await api.signed_up()
    socket = Listener()
    await socket.connect(api.base_url, token)
    status, body, _ = await api.call(
        "POST",
        "/api/v1/accounts",
        token=token,
        json={"login": login, "server": "AlgoEdge-Demo", "password": "investor-pw"},
    )
    assert status == 201, body
    return Trader(user_id, token, login, int(body["id"]), socket)


@pytest.fixture
async def traders(api: ApiClient, bridge: BridgeProcess) -> AsyncIterator[list[Trader]]:
    base = 50_000_000 + secrets.randbelow(10_000_000)
    joined = [await join(api, str(base + n)) for n in range(2)]
    try:
        yield joined
    finally:
        for trader in joined:
            await trader.socket.client.disconnect()


async def connection_state(api: ApiClient, trader: Trader) -> str:
    status, body, _ = await api.call(
        "GET", f"/api/v1/accounts/{trader.account_id}", token=trader.token
    )
    assert status == 200, body
    return str(body["connection"]["state"])


async def listed_trades(api: ApiClient, trader: Trader) -> dict[int, dict[str, Any]]:
    """Every trade in the user's `GET /api/v1/trades`, all pages, by id."""
    found: dict[int, dict[str, Any]] = {}
    cursor = None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        status, body, _ = await api.call("GET", "/api/v1/trades", token=trader.token, params=params)
        assert status == 200, body
        found |= {int(t["id"]): t for t in body["items"]}
        cursor = body["next_cursor"]
        if cursor is None:
            return found


async def wait_connected(api: ApiClient, traders: list[Trader], logs: Callable[[], str]) -> None:
    """Both accounts connected: announced on the owner's socket and shown by the API."""
    for trader in traders:

        async def announced(trader: Trader = trader) -> bool:
            return any(
                s["id"] == trader.account_id and s["state"] == "connected"
                for s in trader.received("account.status")
            )

        await eventually(
            announced,
            within=45,
            what=f"account.status connected for account {trader.account_id}",
            logs=logs,
        )
        assert await connection_state(api, trader) == "connected"


def logs_of(bridge: BridgeProcess, simulator: Simulator) -> Callable[[], str]:
    return lambda: (
        f"--- bridge log\n{bridge.log()[-4000:]}\n--- simulator log\n{tail(simulator.log_file)}"
    )


async def test_should_deliver_each_users_trades_to_that_user_only(
    api: ApiClient, bridge: BridgeProcess, simulator: Simulator, traders: list[Trader]
) -> None:
    logs = logs_of(bridge, simulator)
    await wait_connected(api, traders, logs)

    for trader in traders:

        async def traded(trader: Trader = trader) -> bool:
            return all(trader.received(name) for name in TRADE_EVENTS)

        await eventually(
            traded,
            within=30,
            what=f"trade.opened and trade.closed on user {trader.user_id}'s socket",
            logs=logs,
        )

    first, second = traders
    for me, other in ((first, second), (second, first)):
        # Everything that reached my socket is about my account, never the other user's.
        trades = me.received(*TRADE_EVENTS)
        assert {(t["user_id"], t["account_id"]) for t in trades} == {(me.user_id, me.account_id)}
        for name in ("account.status", "account.update"):
            assert {e["id"] for e in me.received(name)} <= {me.account_id}, name
        closed = me.received("trade.closed")
        assert all(t["closed_at"] is not None and t["profit"] is not None for t in closed)
        # The same trades are in my trade list, and not in the other user's.
        mine, theirs = await listed_trades(api, me), await listed_trades(api, other)
        assert {t["id"] for t in trades} <= set(mine)
        assert {t["account_id"] for t in mine.values()} == {me.account_id}
        assert not {t["id"] for t in trades} & set(theirs)
        for event in closed:
            assert mine[event["id"]]["closed_at"] is not None
            assert mine[event["id"]]["close_price"] == event["close_price"]
    assert "Traceback" not in bridge.log()


async def test_should_remove_an_unlinked_account_from_metaapi_and_keep_the_others(
    api: ApiClient, bridge: BridgeProcess, simulator: Simulator, traders: list[Trader]
) -> None:
    logs = logs_of(bridge, simulator)
    await wait_connected(api, traders, logs)
    leaving, staying = traders
    gone = await simulator.account_id_of(leaving.login)
    kept = await simulator.account_id_of(staying.login)
    assert await simulator.subscriptions(gone), "the unlinked account was never subscribed"

    status, _, _ = await api.call(
        "DELETE", f"/api/v1/accounts/{leaving.account_id}", token=leaving.token
    )
    assert status == 204

    async def deleted() -> bool:
        return (await simulator.rest(f"/users/current/accounts/{gone}"))[0] == 404

    await eventually(deleted, within=30, what=f"MetaAPI account {gone} deleted", logs=logs)
    ends = [(s["ended"] is not None, s["endReason"]) for s in await simulator.subscriptions(gone)]
    assert all(ended and reason in UNLINK_END_REASONS for ended, reason in ends), ends
    # The trades went with the account.
    assert await listed_trades(api, leaving) == {}

    # The other user's account stays connected and keeps streaming trades to its owner only.
    assert await connection_state(api, staying) == "connected"
    status, account = await simulator.rest(f"/users/current/accounts/{kept}")
    assert (status, account["state"], account["connectionStatus"]) == (
        200,
        "DEPLOYED",
        "CONNECTED",
    )
    assert [s for s in await simulator.subscriptions(kept) if s["ended"] is None]
    seen_leaving = len(leaving.received(*TRADE_EVENTS))
    seen_staying = len(staying.received(*TRADE_EVENTS))

    async def still_trading() -> bool:
        return len(staying.received(*TRADE_EVENTS)) > seen_staying

    await eventually(still_trading, within=30, what="a trade on the remaining account", logs=logs)
    assert len(leaving.received(*TRADE_EVENTS)) == seen_leaving
    assert "Traceback" not in bridge.log()
