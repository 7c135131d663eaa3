"""A bridge deployment in miniature for the tests: a migrated database behind pgBouncer, Redis, the
simulator, seeded users and linked accounts, and `algoedge bridge` processes."""

from __future__ import annotations

import asyncio
import inspect
import json
import secrets
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from algoedge.config import MigrateSettings, load_settings
from algoedge.credentials import CredentialsCipher
from algoedge.db import Database
from algoedge.metaapi_sim.app import create_app
from algoedge.metaapi_sim.rest import SIMULATOR
from algoedge.metaapi_sim.settings import SimSettings
from cryptography.fernet import Fernet

from devtools.app import migrated
from devtools.bridge import BridgeProcess, bridge_environment
from devtools.services import PgBouncer, PostgresServer, RedisServer
from tests.bridge.conftest import TOKEN, RunningSim


@dataclass
class Deployment:
    postgres: PostgresServer
    pgbouncer: PgBouncer
    redis: RedisServer
    sim: RunningSim
    database: str
    workdir: Path
    db: Database
    key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    bridges: dict[str, BridgeProcess] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.pgbouncer.url_for(self.database)

    def env(self, name: str, **overrides: Any) -> dict[str, str]:
        return bridge_environment(
            database_url=self.database_url,
            redis_url=self.redis.url,
            credentials_key=self.key,
            metaapi_url=self.sim.url,
            metaapi_token=TOKEN,
            pod_name=name,
            **overrides,
        )

    def start_bridge(self, name: str, **overrides: Any) -> BridgeProcess:
        bridge = BridgeProcess(name, self.env(name, **overrides), self.workdir).start()
        self.bridges[name] = bridge
        return bridge

    async def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        async with self.db.cursor() as cur:
            await cur.execute(query, args)
            return list(await cur.fetchall()) if cur.description else []

    async def seed(
        self, accounts: int, *, users: int = 10, server: str = "AlgoEdge-Demo"
    ) -> list[int]:
        """Users and their linked accounts (password ``investor-<n>``); returns the account ids."""
        cipher = CredentialsCipher(self.key)
        user_ids = []
        for _ in range(users):
            tag = secrets.token_hex(4)
            rows = await self.sql(
                "INSERT INTO users (email, name, password_hash) VALUES (%s, %s, 'x') RETURNING id",
                f"u{tag}@example.com",
                f"User {tag}",
            )
            user_ids.append(rows[0][0])
        ids = []
        base = 50_000_000 + secrets.randbelow(10_000_000)
        for n in range(accounts):
            rows = await self.sql(
                "INSERT INTO mt_accounts (user_id, login, server, platform, encrypted_password) "
                "VALUES (%s, %s, %s, 'mt5', %s) RETURNING id",
                user_ids[n % users],
                str(base + n),
                server,
                cipher.encrypt(f"investor-{n}"),
            )
            ids.append(rows[0][0])
        return ids

    async def states(self) -> dict[int, str]:
        return {a: s for a, s in await self.sql("SELECT id, state FROM mt_accounts")}

    async def wait_states(
        self, check: Callable[[dict[int, str]], bool], *, within: float, what: str
    ) -> dict[int, str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            states = await self.states()
            if check(states):
                return states
            if loop.time() > deadline:
                counts: dict[str, int] = {}
                for s in states.values():
                    counts[s] = counts.get(s, 0) + 1
                logs = "\n".join(f"--- {n}\n{b.log()[-3000:]}" for n, b in self.bridges.items())
                pytest.fail(
                    f"timed out after {within} s waiting for {what}; states {counts}\n{logs}"
                )
            await asyncio.sleep(0.25)

    async def double_connections(self) -> list[dict[str, Any]]:
        """Accounts the simulator ever saw subscribed twice on one instance index at once."""
        stats = (await self.sim.admin("GET", "/admin/stats")).json()
        return [a for a in stats["accounts"] if any(n > 1 for n in a["perInstanceIndex"].values())]

    async def assert_never_twice(self) -> None:
        """No account was ever subscribed twice on one instance index at once (with evidence)."""
        doubled = await self.double_connections()
        if doubled:
            log = self.sim.sim.subscriptions
            records = [
                r.to_json() for d in doubled for r in log.records if r.account_id == d["accountId"]
            ]
            logs = "\n".join(
                line
                for b in self.bridges.values()
                for line in b.log().splitlines()
                if "WARNING" in line or "ERROR" in line
            )
            pytest.fail(f"connected twice: {doubled}\n{records}\n{logs[-4000:]}")

    async def wait_for(
        self, check: Callable[[], bool | Awaitable[bool]], *, within: float, what: str
    ) -> None:
        """Until ``check()`` holds (it may be a coroutine function); fails naming ``what``, with
        the bridges' logs."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            held = check()
            if await held if inspect.isawaitable(held) else held:
                return
            if loop.time() > deadline:
                logs = "\n".join(f"--- {n}\n{b.log()[-3000:]}" for n, b in self.bridges.items())
                pytest.fail(f"timed out after {within} s waiting for {what}\n{logs}")
            await asyncio.sleep(0.25)

    async def stop_all(self) -> list[int | None]:
        """SIGTERM every bridge and wait, off the event loop the simulator runs on (it keeps
        answering, so their closes are confirmed and they stop quickly); their exit codes."""
        return list(
            await asyncio.gather(*(asyncio.to_thread(b.stop) for b in self.bridges.values()))
        )


def scrape(url: str) -> dict[str, float]:
    """A bridge's /metrics as {sample name with labels: value}."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as answer:  # noqa: S310 - loopback
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def ready(bridge: BridgeProcess) -> bool:
    """Whether the bridge's /readyz answers 200 (False while its probes are not up)."""
    try:
        return get_json(bridge.url + "/readyz")[0] == 200
    except OSError:
        return False


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def make_deployment(
    postgres: PostgresServer,
    pgbouncer: PgBouncer,
    redis: RedisServer,
    sim: RunningSim,
    workdir: Path,
) -> Deployment:
    database = postgres.create_database(f"b_{secrets.token_hex(6)}")
    settings = load_settings(
        MigrateSettings, {"ALGOEDGE_DATABASE_URL": pgbouncer.url_for(database)}
    )
    await migrated(settings)
    db = await Database.connect(settings.model_copy(update={"db_pool_min": 0}))
    return Deployment(postgres, pgbouncer, redis, sim, database, workdir, db)


async def metaapi_ids(deployment: Deployment) -> dict[int, str]:
    rows = await deployment.sql(
        "SELECT id, metaapi_account_id FROM mt_accounts WHERE metaapi_account_id IS NOT NULL"
    )
    return {a: m for a, m in rows}


def synchronized_now(deployment: Deployment, metaapi: dict[int, str]) -> set[int]:
    """Accounts with an open, synchronized subscription in the simulator right now."""
    log = deployment.sim.sim.subscriptions
    return {
        a
        for a, m in metaapi.items()
        if any(s.synchronizations >= 1 for s in log.open_for_account(m))
    }


def leases_held(bridges: list[BridgeProcess]) -> dict[str, int]:
    """Leases each bridge holds (-1 while its metrics port is not up yet)."""
    held = {}
    for b in bridges:
        try:
            held[b.name] = int(scrape(b.url).get("algoedge_bridge_leases_held", -1))
        except OSError:
            held[b.name] = -1
    return held


@dataclass
class RestAnswers:
    """Every MetaAPI REST answer the simulator gave, in order: (method, path, status)."""

    answers: list[tuple[str, str, int]] = field(default_factory=list)

    async def record(self, request: web.Request, response: web.StreamResponse) -> None:
        if not request.path.startswith(("/admin", "/ws")):
            self.answers.append((request.method, request.path, response.status))

    def count(self, method: str, path: str, *, status: int | None = None) -> int:
        """Answers to ``method`` on exactly ``path``, of one ``status`` or any."""
        return sum(
            1
            for m, p, s in self.answers
            if m == method and p == path and (status is None or s == status)
        )

    def touching(self, fragment: str) -> int:
        """Answers to any request whose path contains ``fragment`` (a MetaAPI account id)."""
        return sum(1 for _, p, _ in self.answers if fragment in p)

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for _, _, s in self.answers:
            counts[s] = counts.get(s, 0) + 1
        return counts


async def start_observed_sim(
    settings: SimSettings,
) -> tuple[web.AppRunner, RunningSim, RestAnswers]:
    """The simulator on a free loopback port, recording every REST answer it gives."""
    app = create_app(settings)
    answers = RestAnswers()
    app.on_response_prepare.append(answers.record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    return runner, RunningSim(f"http://127.0.0.1:{port}", app[SIMULATOR]), answers
