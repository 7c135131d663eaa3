"""Per-test databases behind the session's pgBouncer, and settings that point at them."""

from __future__ import annotations

import secrets
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from algoedge.api.app import create_app
from algoedge.config import ApiSettings, MigrateSettings, load_settings
from algoedge.db import Database
from redis.asyncio import Redis

from devtools.app import ALGOEDGE, api_environment, command_env, migrated
from devtools.services import (
    PgBouncer,
    PostgresServer,
    RedisServer,
    ServiceError,
    free_port,
    wait_healthy,
)


@pytest.fixture
def database_name(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database, so no test sees another's tables.

    Dropped afterwards (FORCE ends the server connections pgBouncer still holds to it): the
    suite shares one Postgres, and idle pools of finished tests would otherwise hold its
    connection slots for pgBouncer's idle timeout (10 minutes) and run it out of them.
    """
    name = postgres.create_database(f"t_{secrets.token_hex(6)}")
    yield name
    postgres.psql(f"DROP DATABASE {name} WITH (FORCE)")


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


@pytest.fixture
async def db(migrate_settings: MigrateSettings) -> AsyncIterator[Database]:
    database = await Database.connect(migrate_settings)
    yield database
    await database.close()


# Generous limits for tests that are not about rate limiting: every test shares 127.0.0.1.
RELAXED_LIMITS = {
    "ALGOEDGE_RATE_LIMIT_PER_USER": "100000/60",
    "ALGOEDGE_RATE_LIMIT_PER_IP": "100000/60",
    "ALGOEDGE_RATE_LIMIT_AUTH": "100000/60",
    "ALGOEDGE_RATE_LIMIT_SOCKET": "100000/60",
}


@dataclass
class ApiClient:
    """An HTTP client of one running API app (one "pod"), speaking real HTTP over loopback."""

    session: aiohttp.ClientSession
    server: TestServer
    #: The base URL of the same app's metrics listener (/metrics, /internal/v1/*).
    metrics_url: str

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("/")).rstrip("/")

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        metrics: bool = False,
        **kwargs: Any,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        """One request to the public listener, or with ``metrics`` to the metrics listener."""
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        base = self.metrics_url if metrics else self.base_url
        async with self.session.request(method, base + path, headers=headers, **kwargs) as r:
            body = await r.json(content_type=None) if await r.read() else None
            return r.status, body, r

    async def register(
        self, email: str, password: str = "correct horse battery", name: str = "Trader"
    ) -> dict[str, Any]:
        status, body, _ = await self.call(
            "POST",
            "/api/v1/auth/register",
            json={"email": email, "password": password, "name": name},
        )
        assert status == 202, body
        return dict(body)

    async def login(self, email: str, password: str = "correct horse battery") -> str:
        status, body, _ = await self.call(
            "POST", "/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert status == 200, body
        return str(body["access_token"])

    async def signed_up(self, email: str | None = None) -> tuple[int, str]:
        """A new user and a token for them: (user id, token)."""
        email = email or f"{secrets.token_hex(4)}@example.com"
        await self.register(email)
        token = await self.login(email)
        return user_id_of(token), token


def user_id_of(token: str) -> int:
    """The user an access token names (its ``sub``), read without a request."""
    return int(jwt.decode(token, options={"verify_signature": False})["sub"])


@asynccontextmanager
async def running_api(settings: ApiSettings) -> AsyncIterator[ApiClient]:
    """The app on two loopback listeners, as `algoedge api` runs it: the public one (the test
    server's) and the metrics one, on a free port (the settings' 9090 may be taken)."""
    settings = settings.model_copy(update={"metrics_port": free_port()})
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        assert server.runner is not None
        metrics_site = web.TCPSite(server.runner, "127.0.0.1", settings.metrics_port)
        await metrics_site.start()
        async with aiohttp.ClientSession() as session:
            yield ApiClient(
                session=session,
                server=server,
                metrics_url=f"http://127.0.0.1:{settings.metrics_port}",
            )
    finally:
        await server.close()


@pytest.fixture
async def relaxed_settings(
    pgbouncer: PgBouncer, redis_server: RedisServer, database_name: str
) -> ApiSettings:
    """Settings of a migrated, empty database and an empty Redis, with relaxed rate limits."""
    redis = Redis.from_url(redis_server.url)
    await redis.flushall()
    await redis.aclose()
    env = {**api_environment(pgbouncer.url_for(database_name), redis_server.url), **RELAXED_LIMITS}
    settings = load_settings(ApiSettings, env)
    await migrated(settings)
    return settings


@pytest.fixture
async def api(relaxed_settings: ApiSettings) -> AsyncIterator[ApiClient]:
    async with running_api(relaxed_settings) as client:
        yield client


class ApiBase(str):
    """The public base URL of an `algoedge api` process; ``metrics`` is its metrics listener's
    (/metrics, /internal/v1/*)."""

    metrics: str

    def __new__(cls, public: str, *, metrics: str) -> ApiBase:
        base = super().__new__(cls, public)
        base.metrics = metrics
        return base


def spawn_api(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], ApiBase]:
    """Start `algoedge api` as a separate process (a pod) and wait until it answers /healthz."""
    port = free_port()
    metrics_port = free_port()
    full = {
        **env,
        "ALGOEDGE_HTTP_PORT": str(port),
        "ALGOEDGE_METRICS_PORT": str(metrics_port),
        "ALGOEDGE_HTTP_HOST": "127.0.0.1",
    }
    # The pod's JSON logs go to a file, not into pytest's output; its path is in any failure.
    log_path = Path(tempfile.gettempdir()) / f"algoedge-api-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [ALGOEDGE, "api"], env=command_env(full), stdout=log, stderr=subprocess.STDOUT
        )
    base = ApiBase(f"http://127.0.0.1:{port}", metrics=f"http://127.0.0.1:{metrics_port}")
    try:
        wait_healthy(f"{base}/healthz", process, log=log_path)
        wait_healthy(f"{base.metrics}/healthz", process, log=log_path)
    except ServiceError as exc:
        process.kill()
        pytest.fail(f"algoedge api did not come up: {exc}")
    return process, base


@contextmanager
def api_process(env: dict[str, str]) -> Iterator[ApiBase]:
    """A running `algoedge api` process for the block; yields its base URL, stops it with SIGTERM."""
    process, base = spawn_api(env)
    try:
        yield base
    finally:
        stop_api(process)


def stop_api(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as the kubelet stops a pod; SIGKILL if it has not exited within 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
