"""The scalers against a real capacity endpoint (a small aiohttp server whose answers the test sets)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devtools.controlplane.pytest_plugin import KubeCluster
from tests.e2e.operator.conftest import CapacityServer, Operator, free_port
from tests.e2e.operator.support import (
    condition_is,
    create_tenant,
    create_tenant_secrets,
    events,
    raw,
    read_tenant,
    secret_value,
    wait_until,
)


def replicas(k8s: KubeCluster, namespace: str, kind: str, name: str) -> int:
    found = raw(k8s, "GET", f"/apis/apps/v1/namespaces/{namespace}/{kind}/{name}")
    return int(found["spec"]["replicas"])


def start_tenant(k8s: KubeCluster, namespace: str, capacity: CapacityServer, **spec: Any) -> None:
    capacity.answer(namespace, "acme", linked=0)
    create_tenant_secrets(k8s, namespace)
    create_tenant(k8s, namespace, "acme", **spec)
    wait_until(
        "the tenant to become Ready",
        condition_is(k8s, namespace, "acme", "Ready", "True"),
        timeout=180,
    )
    # The real API checks the token; so does the fake once the tenant has one.
    capacity.tokens[(namespace, "acme")] = secret_value(
        k8s, namespace, "acme-internal", "ALGOEDGE_INTERNAL_TOKEN"
    )


def test_bridge_scales_up_at_once_and_down_after_stabilisation(
    k8s: KubeCluster, namespace: str, operator: Operator, capacity_server: CapacityServer
) -> None:
    start_tenant(k8s, namespace, capacity_server, bridge={"scaleDownStabilizationSeconds": 6})
    capacity_server.answer(namespace, "acme", linked=250)
    wait_until(
        "3 bridge replicas for 250 accounts",
        lambda: replicas(k8s, namespace, "statefulsets", "acme-bridge") == 3,
        timeout=60,
    )
    status = wait_until(
        "the status to show the demand",
        lambda: (
            (s := read_tenant(k8s, namespace, "acme").get("status", {})).get("linkedAccounts")
            == 250
            and s
        ),
        timeout=30,
    )
    assert status["bridgeReplicas"] == 3
    assert status["lastScaleTime"]
    assert events(k8s, namespace, "BridgeScaledUp")

    capacity_server.answer(namespace, "acme", linked=50)
    dropped = time.monotonic()
    wait_until(
        "the bridge to scale down to 1",
        lambda: replicas(k8s, namespace, "statefulsets", "acme-bridge") == 1,
        timeout=60,
    )
    # Never before the window: the policy may only act once demand stayed low for 6 s.
    assert time.monotonic() - dropped >= 6 - 1.5  # one scale interval of sampling slack
    assert events(k8s, namespace, "BridgeScaledDown")


def test_workers_follow_the_queue_backlog(
    k8s: KubeCluster, namespace: str, operator: Operator, capacity_server: CapacityServer
) -> None:
    start_tenant(
        k8s,
        namespace,
        capacity_server,
        workers={"minReplicas": 1, "maxReplicas": 6, "tasksPerReplica": 50},
    )
    capacity_server.answer(namespace, "acme", backlog={"default": 120, "reports": 30})
    wait_until(
        "3 workers for 150 queued tasks",
        lambda: replicas(k8s, namespace, "deployments", "acme-worker") == 3,
        timeout=60,
    )
    capacity_server.answer(namespace, "acme", backlog={"default": 10_000})
    wait_until(
        "workers capped at maxReplicas",
        lambda: replicas(k8s, namespace, "deployments", "acme-worker") == 6,
        timeout=60,
    )
    assert events(k8s, namespace, "WorkersScaledUp")


@pytest.fixture
def unreachable_capacity(operator_env: dict[str, str]) -> None:
    # Nothing listens on this port.
    operator_env["ALGOEDGE_OPERATOR_CAPACITY_URL"] = (
        f"http://127.0.0.1:{free_port()}/{{namespace}}/{{name}}/internal/v1/capacity"
    )


def test_unreachable_capacity_keeps_replicas_and_says_so(
    k8s: KubeCluster,
    namespace: str,
    unreachable_capacity: None,
    operator: Operator,
    capacity_server: CapacityServer,
) -> None:
    create_tenant_secrets(k8s, namespace)
    create_tenant(k8s, namespace, "acme", bridge={"minReplicas": 2})
    found = wait_until(
        "Degraded=True CapacityUnavailable",
        condition_is(k8s, namespace, "acme", "Degraded", "True", "CapacityUnavailable"),
        timeout=180,
    )
    assert "keeping the current replicas" in found["message"]
    assert replicas(k8s, namespace, "statefulsets", "acme-bridge") == 2
    wait_until(
        "Ready despite the scaler's trouble",
        condition_is(k8s, namespace, "acme", "Ready", "True"),
        timeout=120,
    )
