"""The API server rejects invalid tenants with a message a person understands (one test per CEL rule)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from devtools.controlplane.pytest_plugin import KubeCluster
from tests.contract_cases import TRUSTED_PROXY_CASES
from tests.e2e.operator.support import create_tenant, patch_tenant


def rejected(k8s: KubeCluster, namespace: str, **spec: Any) -> str:
    with pytest.raises(client.ApiException) as raised:
        create_tenant(k8s, namespace, "bad", **spec)
    assert raised.value.status == 422
    return str(raised.value.reason)


def test_api_min_above_max_is_rejected(k8s: KubeCluster, namespace: str, crd: None) -> None:
    message = rejected(k8s, namespace, api={"minReplicas": 5, "maxReplicas": 2})
    assert "api.minReplicas must not exceed api.maxReplicas" in message


def test_workers_min_above_max_is_rejected(k8s: KubeCluster, namespace: str, crd: None) -> None:
    message = rejected(k8s, namespace, workers={"minReplicas": 9, "maxReplicas": 3})
    assert "workers.minReplicas must not exceed workers.maxReplicas" in message


def test_bridge_min_above_max_is_rejected(k8s: KubeCluster, namespace: str, crd: None) -> None:
    message = rejected(k8s, namespace, bridge={"minReplicas": 60})
    assert "bridge.minReplicas must not exceed bridge.maxReplicas" in message


def test_external_redis_without_secret_is_rejected(
    k8s: KubeCluster, namespace: str, crd: None
) -> None:
    message = rejected(k8s, namespace, redis={"mode": "external"})
    assert "redis.mode external requires redis.external.secretRef" in message


def test_external_settings_on_managed_redis_are_rejected(
    k8s: KubeCluster, namespace: str, crd: None
) -> None:
    message = rejected(
        k8s, namespace, redis={"mode": "managed", "external": {"secretRef": {"name": "r"}}}
    )
    assert "redis.external is only used when redis.mode is external" in message


def test_pool_larger_than_client_limit_is_rejected(
    k8s: KubeCluster, namespace: str, crd: None
) -> None:
    message = rejected(
        k8s,
        namespace,
        database={
            "secretRef": {"name": "bad-db"},
            "pool": {"defaultPoolSize": 50, "maxClientConnections": 10},
        },
    )
    assert "defaultPoolSize must not exceed database.pool.maxClientConnections" in message


def test_trusted_proxies_must_be_cidrs(k8s: KubeCluster, namespace: str, crd: None) -> None:
    message = rejected(k8s, namespace, trustedProxies=["10.0.0.0/8", "not-a-network"])
    assert "every trustedProxies entry must be a network address in CIDR form" in message


def test_trusted_proxies_are_admitted_as_the_app_parses_them(
    k8s: KubeCluster, namespace: str, crd: None
) -> None:
    """The CEL rule judges the contract's cases as the app does (tests/unit/test_contract.py):
    an entry with host bits set (``10.0.0.1/8``) is refused here, not by crash-looping API pods."""
    for number, (entry, admitted) in enumerate(TRUSTED_PROXY_CASES):
        if admitted:
            create_tenant(k8s, namespace, f"proxies-{number}", trustedProxies=[entry])
        else:
            message = rejected(k8s, namespace, trustedProxies=[entry])
            assert "every trustedProxies entry must be a network address in CIDR form" in message


def test_allowed_origins_must_be_origins(k8s: KubeCluster, namespace: str, crd: None) -> None:
    message = rejected(k8s, namespace, allowedOrigins=["https://app.example.com", "https://x.io/"])
    assert "every allowedOrigins entry must be an origin" in message


def test_redis_storage_cannot_change(k8s: KubeCluster, namespace: str, crd: None) -> None:
    create_tenant(k8s, namespace, "fixed", redis={"storage": "2Gi"})
    with pytest.raises(client.ApiException) as raised:
        patch_tenant(k8s, namespace, "fixed", {"spec": {"redis": {"storage": "5Gi"}}})
    assert raised.value.status == 422
    assert "redis.storage cannot change after creation" in str(raised.value.reason)


def test_schema_bounds_and_enums_are_enforced(k8s: KubeCluster, namespace: str, crd: None) -> None:
    message = rejected(k8s, namespace, expectedUsers=0, redis={"mode": "sentinel"})
    assert "spec.expectedUsers" in message
    assert "spec.redis.mode" in message


def test_bridge_settings_are_checked(k8s: KubeCluster, namespace: str, crd: None) -> None:
    message = rejected(
        k8s,
        namespace,
        bridge={"maxConcurrentSyncs": 0, "metaapi": {"region": "London", "domain": "localhost"}},
    )
    assert "spec.bridge.maxConcurrentSyncs" in message
    assert "spec.bridge.metaapi.region" in message
    assert "spec.bridge.metaapi.domain" in message
