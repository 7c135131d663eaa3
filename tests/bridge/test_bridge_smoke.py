"""One bridge, a few accounts: provisioned, connected, trades recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devtools.services import PgBouncer, PostgresServer, RedisServer
from tests.bridge.conftest import RunningSim
from tests.bridge.harness import Deployment, get_json, make_deployment


@pytest.fixture
async def deployment(
    postgres: PostgresServer,
    pgbouncer: PgBouncer,
    redis_server: RedisServer,
    simulator: RunningSim,
    tmp_path: Path,
) -> AsyncIterator[Deployment]:
    d = await make_deployment(postgres, pgbouncer, redis_server, simulator, tmp_path)
    yield d
    await d.stop_all()
    await d.db.close()


async def test_should_connect_every_account(deployment: Deployment) -> None:
    ids = await deployment.seed(5, users=2)
    bridge = deployment.start_bridge("t-bridge-0", lease_ttl=3)
    await deployment.wait_states(
        lambda s: all(s.get(i) == "connected" for i in ids), within=60, what="all connected"
    )
    status, body = get_json(bridge.url + "/readyz")
    assert status == 200, body
    assert await deployment.double_connections() == []
