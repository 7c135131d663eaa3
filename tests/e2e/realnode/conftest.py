"""Fixtures for the real-node walk: a Postgres the pods can reach, the operator installed by its
Helm chart and running in its own pod, and one tenant on the real node.

These need ``--real-node`` (the ``real_node`` fixture skips otherwise); `make test` runs this
directory in its own pytest invocation with it. Every namespace made here carries
:func:`~devtools.controlplane.realnode.namespace_annotations`, so all its pods land on the real
node and none on kwok's.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from devtools.controlplane import realnode
from devtools.controlplane.pytest_plugin import KubeCluster, delete_namespace
from devtools.services import PostgresServer
from tests.e2e.operator.support import create_db_secret, raw, tenant_body, tenants_path, wait_until

REPO = Path(__file__).resolve().parents[3]
OPERATOR_IMAGE = tuple(realnode.OPERATOR_IMAGE.rsplit(":", 1))  # (repository, tag) for helm
APP_IMAGE = realnode.APP_IMAGE
BRIDGE_IMAGE = realnode.BRIDGE_IMAGE
REDIS_IMAGE = realnode.REDIS_IMAGE
PGBOUNCER_IMAGE = realnode.PGBOUNCER_IMAGE
TENANT = "acme"


def real_node_namespace(k8s: KubeCluster, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    meta = client.V1ObjectMeta(name=name, annotations=realnode.namespace_annotations())
    k8s.core.create_namespace(client.V1Namespace(metadata=meta))
    return name


@pytest.fixture(scope="session")
def pod_postgres(real_node: KubeCluster, services_root: Path) -> Iterator[PostgresServer]:
    """PostgreSQL on loopback and on the real node's bridge gateway, which pods reach."""
    server = PostgresServer(
        services_root / "pod-postgres",
        listen_also=(realnode.GATEWAY,),
        clients_also=(realnode.POD_CIDR,),
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def operator_release(real_node: KubeCluster) -> Iterator[str]:
    """The CRD chart and the operator chart installed by helm; the operator's namespace once its
    pod is Ready (the image pulled from nowhere: imported into the node's containerd)."""
    k8s = real_node
    namespace = real_node_namespace(k8s, "algoedge-system")
    k8s.helm_run("install", "algoedge-crds", str(REPO / "charts" / "algoedge-crds"), "--wait")
    repository, tag = OPERATOR_IMAGE
    k8s.helm_run(
        "install",
        "algoedge-operator",
        str(REPO / "charts" / "algoedge-operator"),
        f"--namespace={namespace}",
        f"--set=image.repository={repository}",
        f"--set=image.tag={tag}",
        "--set=image.pullPolicy=Never",
        f"--set=settings.redisImage={REDIS_IMAGE}",
        f"--set=settings.pgbouncerImage={PGBOUNCER_IMAGE}",
        "--set=settings.resyncInterval=15",
        "--wait",
        "--timeout=180s",
    )
    yield namespace
    k8s.helm_run("uninstall", "algoedge-operator", f"--namespace={namespace}", check=False)
    delete_namespace(k8s, namespace)


@dataclass(frozen=True)
class RealTenant:
    namespace: str
    name: str
    database: str


@pytest.fixture(scope="session")
def tenant(
    real_node: KubeCluster, operator_release: str, pod_postgres: PostgresServer
) -> Iterator[RealTenant]:
    """One tenant (no bridge, two API pods) whose database is ``pod_postgres`` through the
    gateway address; created, not waited for (the tests wait)."""
    k8s = real_node
    namespace = real_node_namespace(k8s, "realnode")
    database = pod_postgres.create_database(f"tenant_{secrets.token_hex(3)}")
    url = (
        f"postgresql://{pod_postgres.user}:{pod_postgres.password}"
        f"@{realnode.GATEWAY}:{pod_postgres.port}/{database}?sslmode=disable"
    )
    create_db_secret(k8s, namespace, f"{TENANT}-db", url, for_tenant=TENANT)
    body = tenant_body(
        TENANT,
        metaapi=False,
        image=APP_IMAGE,
        bridgeImage=BRIDGE_IMAGE,
        imagePullPolicy="Never",
        expectedUsers=10,
        # Two API pods (the small profile's minimum is one), so that one can go.
        api={"minReplicas": 2, "maxReplicas": 3},
    )
    raw(k8s, "POST", tenants_path(namespace), body)
    yield RealTenant(namespace, TENANT, database)
    delete_namespace(k8s, namespace)


__all__ = ["RealTenant", "wait_until"]
