"""The worker scaler on the real chain: Celery's Redis keys -> the API's /internal/v1/capacity -> the operator.

No fake capacity server here: a real `algoedge api` process reads a real Redis, and the
operator scales ``<t>-worker`` on what it answers. Tasks waiting in a queue and tasks a worker
reserved without acknowledging (kombu's ``unacked`` hash) both count; a scaler reading only the
list length would keep fewer workers.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from algoedge.config import ApiSettings, load_settings
from redis.asyncio import Redis

from devtools.app import api_environment, migrated
from devtools.controlplane.pytest_plugin import KubeCluster
from devtools.services import PgBouncer, PostgresServer, RedisServer
from tests.e2e.operator.conftest import Operator
from tests.e2e.operator.support import (
    condition_is,
    create_tenant,
    create_tenant_secrets,
    raw,
    wait_until,
)
from tests.integration.conftest import ApiBase, api_process


@pytest.fixture
async def api_env(
    postgres: PostgresServer, pgbouncer: PgBouncer, redis_server: RedisServer
) -> AsyncIterator[dict[str, str]]:
    database = postgres.create_database(f"t_{secrets.token_hex(6)}")
    env = api_environment(pgbouncer.url_for(database), redis_server.url)
    await migrated(load_settings(ApiSettings, env))
    redis = Redis.from_url(redis_server.url)
    await redis.flushall()
    yield env
    await redis.flushall()
    await redis.aclose()


@pytest.fixture
def api_base(api_env: dict[str, str]) -> Iterator[ApiBase]:
    with api_process(api_env) as base:
        yield base


@pytest.fixture
def operator_env(operator_env: dict[str, str], api_base: ApiBase) -> dict[str, str]:
    # The capacity endpoint is on the API's metrics listener, as in a cluster.
    return {
        **operator_env,
        "ALGOEDGE_OPERATOR_CAPACITY_URL": f"{api_base.metrics}/internal/v1/capacity",
    }


def worker_replicas(k8s: KubeCluster, namespace: str) -> int:
    found = raw(k8s, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/acme-worker")
    return int(found["spec"]["replicas"])


def reserved(tag: str, queue: str) -> str:
    """An entry of kombu's ``unacked`` hash: [message, exchange, routing key]."""
    return json.dumps([{"body": "", "headers": {"task": "algoedge.emails.send"}}, queue, queue])


async def test_workers_follow_waiting_and_reserved_tasks_through_the_real_capacity_endpoint(
    k8s: KubeCluster,
    namespace: str,
    api_env: dict[str, str],
    operator: Operator,
) -> None:
    # The tenant's internal Secret carries the API's token, as `make dev` does: the operator's
    # capacity reads are then authorised by the real API. Annotated for adoption: made before
    # the tenant, it is not the tenant's until then.
    internal = {
        key: api_env[key]
        for key in ("ALGOEDGE_INTERNAL_TOKEN", "ALGOEDGE_JWT_SECRET", "ALGOEDGE_CREDENTIALS_KEY")
    }
    raw(
        k8s,
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "acme-internal", "annotations": {"algoedge.io/adopt": "acme"}},
            "stringData": internal,
        },
    )
    create_tenant_secrets(k8s, namespace)
    create_tenant(
        k8s,
        namespace,
        "acme",
        workers={
            "minReplicas": 1,
            "maxReplicas": 5,
            "tasksPerReplica": 5,
            "scaleDownStabilizationSeconds": 6,
        },
    )
    wait_until(
        "the tenant to be Ready", condition_is(k8s, namespace, "acme", "Ready", "True"), timeout=180
    )
    assert worker_replicas(k8s, namespace) == 1

    redis = Redis.from_url(api_env["ALGOEDGE_REDIS_URL"])
    try:
        # 7 waiting in `reports`, 8 reserved from `emails`: 15 tasks at 5 per worker = 3 workers;
        # the list lengths alone (7) would say 2.
        await redis.rpush("reports", *[json.dumps({"n": n}) for n in range(7)])
        await redis.hset(
            "unacked", mapping={f"tag-{n}": reserved(f"tag-{n}", "emails") for n in range(8)}
        )
        wait_until(
            "3 workers for 15 tasks", lambda: worker_replicas(k8s, namespace) == 3, timeout=60
        )

        await redis.delete("reports", "unacked")
        drained = time.monotonic()
        wait_until(
            "the workers to scale back to 1",
            lambda: worker_replicas(k8s, namespace) == 1,
            timeout=60,
        )
        # Not before the stabilisation window: demand must stay low for 6 s first.
        assert time.monotonic() - drained >= 6 - 1.5
    finally:
        await redis.aclose()
