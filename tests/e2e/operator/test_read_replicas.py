"""spec.database.readReplicas on a real control plane: a missing Secret stops the tenant with
SecretMissing (no crash, nothing written), then pgBouncer serves the replicas as ``acme_ro`` and
the API and worker pods get ALGOEDGE_DATABASE_READ_URL; the CEL rule refuses the primary's own
Secret as its replica."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from devtools.controlplane.pytest_plugin import KubeCluster
from tests.e2e.operator.conftest import Operator
from tests.e2e.operator.support import (
    DATABASE_URL,
    checksum,
    condition_is,
    create_db_secret,
    create_tenant,
    create_tenant_secrets,
    get,
    patch_tenant,
    raw,
    secret_value,
    wait_ready,
    wait_until,
)

REPLICAS_URL = DATABASE_URL.replace("db.example.com", "replicas.example.com")
READ_REPLICAS = {"secretRef": {"name": "acme-db-replicas"}, "maxLagSeconds": 10}


def pod_env(k8s: KubeCluster, namespace: str, component: str) -> list[dict[str, Any]]:
    """The env of a running pod of ``component`` (kwok's pods carry the template's spec)."""
    selector = f"app.kubernetes.io/instance=acme,app.kubernetes.io/component={component}"

    def running() -> list[dict[str, Any]] | None:
        pods = raw(k8s, "GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")
        live = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
        newest = max(live, key=lambda p: p["metadata"]["creationTimestamp"], default=None)
        if newest is None or newest["status"].get("phase") != "Running":
            return None
        (main,) = [c for c in newest["spec"]["containers"] if c["name"] == component]
        env: list[dict[str, Any]] = main.get("env", [])
        return env if any(e["name"] == "ALGOEDGE_DATABASE_READ_URL" for e in env) else None

    return wait_until(f"a running {component} pod reading the replicas", running, timeout=120)


def test_replica_secret_missing_then_read_url_reaches_the_api_and_worker_pods(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    create_tenant_secrets(k8s, namespace)
    create_tenant(k8s, namespace, "acme")
    wait_ready(k8s, namespace)
    before = checksum(k8s, namespace, "acme-api")

    patch_tenant(k8s, namespace, "acme", {"spec": {"database": {"readReplicas": READ_REPLICAS}}})
    found = wait_until(
        "Ready=False SecretMissing for the replicas' Secret",
        condition_is(k8s, namespace, "acme", "Ready", "False", "SecretMissing"),
        timeout=60,
    )
    assert (
        f"{namespace}/acme-db-replicas (spec.database.readReplicas.secretRef)" in (found["message"])
    )
    assert checksum(k8s, namespace, "acme-api") == before, "nothing written meanwhile"

    create_db_secret(k8s, namespace, "acme-db-replicas", url=REPLICAS_URL)
    wait_until(
        "the API pods to roll for the read URL",
        lambda: checksum(k8s, namespace, "acme-api") != before,
        timeout=60,
    )
    wait_ready(k8s, namespace)
    ini = get(k8s, namespace, "v1", "configmaps", "acme-pgbouncer")["data"]["pgbouncer.ini"]
    assert "acme_ro = host='replicas.example.com' port=5432 dbname='acme'" in ini
    assert secret_value(k8s, namespace, "acme-pgbouncer", "database-read-url") == (
        f"postgresql://acme:s3cret@acme-pgbouncer.{namespace}.svc:6432/acme_ro"
    )
    read_url = {
        "name": "ALGOEDGE_DATABASE_READ_URL",
        "valueFrom": {"secretKeyRef": {"name": "acme-pgbouncer", "key": "database-read-url"}},
    }
    for component in ("api", "worker"):
        env = pod_env(k8s, namespace, component)
        assert read_url in env
        assert {"name": "ALGOEDGE_DATABASE_READ_MAX_LAG", "value": "10"} in env
    beat = get(k8s, namespace, "apps/v1", "deployments", "acme-beat")["spec"]["template"]
    (beat_container,) = beat["spec"]["containers"]
    assert not [e for e in beat_container["env"] if e["name"].startswith("ALGOEDGE_DATABASE_READ")]


def test_the_primarys_own_secret_is_refused_as_its_replica(
    k8s: KubeCluster, namespace: str, crd: None
) -> None:
    with pytest.raises(client.ApiException) as raised:
        create_tenant(
            k8s,
            namespace,
            "bad",
            database={
                "secretRef": {"name": "bad-db"},
                "readReplicas": {"secretRef": {"name": "bad-db"}},
            },
        )
    assert raised.value.status == 422
    assert "database.readReplicas.secretRef must name another Secret or key" in str(
        raised.value.reason
    )
    # Another key of the same Secret is another URL: accepted.
    create_tenant(
        k8s,
        namespace,
        "fine",
        database={
            "secretRef": {"name": "bad-db"},
            "readReplicas": {"secretRef": {"name": "bad-db", "key": "replica-url"}},
        },
    )


def test_the_lag_bound_is_checked(k8s: KubeCluster, namespace: str, crd: None) -> None:
    with pytest.raises(client.ApiException) as raised:
        create_tenant(
            k8s,
            namespace,
            "bad",
            database={
                "secretRef": {"name": "bad-db"},
                "readReplicas": {"secretRef": {"name": "replicas"}, "maxLagSeconds": 0},
            },
        )
    assert raised.value.status == 422
    assert "spec.database.readReplicas.maxLagSeconds" in str(raised.value.reason)
