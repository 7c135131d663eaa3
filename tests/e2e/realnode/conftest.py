"""Fixtures for the real-node walk: a Postgres the pods can reach, the operator installed by its
Helm chart and running in its own pod, the services a tenant reaches outside itself (a mail
catcher and the MetaAPI simulator, each in a pod) and one tenant on the real node.

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
from typing import Any

import pytest
from kubernetes import client

from devtools.controlplane import realnode
from devtools.controlplane.pytest_plugin import KubeCluster, delete_namespace
from devtools.services import PostgresServer
from tests.e2e.operator.support import (
    condition_is,
    create_db_secret,
    create_secret,
    raw,
    tenant_body,
    tenants_path,
    wait_until,
)

REPO = Path(__file__).resolve().parents[3]
OPERATOR_IMAGE = tuple(realnode.OPERATOR_IMAGE.rsplit(":", 1))  # (repository, tag) for helm
APP_IMAGE = realnode.APP_IMAGE
BRIDGE_IMAGE = realnode.BRIDGE_IMAGE
REDIS_IMAGE = realnode.REDIS_IMAGE
PGBOUNCER_IMAGE = realnode.PGBOUNCER_IMAGE
TENANT = "acme"
#: Debian's aiosmtpd printing every message it accepts (images/Dockerfile, target smtp-sink).
SMTP_SINK_IMAGE = "localhost/algoedge-smtp-sink:1"
SMTP_SINK_PORT = 1025
METAAPI_SIM_PORT = 8090
COMPONENT_LABEL = "app.kubernetes.io/component"
#: JWT-shaped, as the SDK and the operator require of a MetaAPI token; the simulator's.
METAAPI_SIM_TOKEN = "sim.realnode.token-0001"


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
class OutsideServices:
    """What a tenant reaches beyond its own pods, here each in a pod of ``namespace``."""

    namespace: str
    #: The pod whose log holds every e-mail the sink accepted.
    smtp_sink_pod: str
    #: ``spec.mail.smtpSecretRef``'s value.
    smtp_url: str
    #: ``spec.bridge.metaapi.url``.
    metaapi_url: str


def service_pod(
    name: str,
    image: str,
    *,
    port: int,
    probe: dict[str, Any],
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Pod serving ``port``, labelled with ``name`` as its component for its Service."""
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "ports": [{"containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {**probe, "periodSeconds": 2},
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }
    if command is not None:
        container["command"] = command
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {COMPONENT_LABEL: name}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 5},
    }


def service_for(name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {COMPONENT_LABEL: name}, "ports": [{"port": port, "protocol": "TCP"}]},
    }


@pytest.fixture(scope="session")
def outside_services(real_node: KubeCluster) -> Iterator[OutsideServices]:
    """A mail catcher (Debian's aiosmtpd) and the MetaAPI simulator (the bridge image's
    ``algoedge-metaapi-sim``), each a pod and a Service in a namespace of their own on the real
    node: outside the tenant, as an SMTP relay and MetaAPI are; created, not waited for (the
    tenant's worker and bridge retry until they answer)."""
    k8s = real_node
    namespace = real_node_namespace(k8s, "outside")
    sink = service_pod(
        "smtp-sink",
        SMTP_SINK_IMAGE,
        port=SMTP_SINK_PORT,
        probe={"tcpSocket": {"port": SMTP_SINK_PORT}},
    )
    sim = service_pod(
        "metaapi-sim",
        BRIDGE_IMAGE,
        port=METAAPI_SIM_PORT,
        probe={"httpGet": {"path": "/healthz", "port": METAAPI_SIM_PORT}},
        command=["algoedge-metaapi-sim"],
        env={
            "ALGOEDGE_SIM_TOKEN": METAAPI_SIM_TOKEN,
            "ALGOEDGE_SIM_HOST": "0.0.0.0",  # noqa: S104 - the pod's own address
            "ALGOEDGE_SIM_PORT": str(METAAPI_SIM_PORT),
        },
    )
    for pod, port in ((sink, SMTP_SINK_PORT), (sim, METAAPI_SIM_PORT)):
        name = pod["metadata"]["name"]
        raw(k8s, "POST", f"/api/v1/namespaces/{namespace}/pods", pod)
        raw(k8s, "POST", f"/api/v1/namespaces/{namespace}/services", service_for(name, port))
    domain = f"{namespace}.svc.{realnode.CLUSTER_DOMAIN}"
    yield OutsideServices(
        namespace=namespace,
        smtp_sink_pod="smtp-sink",
        smtp_url=f"smtp://smtp-sink.{domain}:{SMTP_SINK_PORT}",
        metaapi_url=f"http://metaapi-sim.{domain}:{METAAPI_SIM_PORT}",
    )
    delete_namespace(k8s, namespace)


@dataclass(frozen=True)
class RealTenant:
    namespace: str
    name: str
    database: str


def wait_tenant_ready(k8s: KubeCluster, tenant: RealTenant) -> None:
    """Wait (up to 300 s) for the session's tenant to be Ready, the first step of every walk."""
    wait_until(
        "the tenant to be Ready on the real node",
        condition_is(k8s, tenant.namespace, tenant.name, "Ready", "True"),
        timeout=300,
    )


@pytest.fixture(scope="session")
def tenant(
    real_node: KubeCluster,
    operator_release: str,
    pod_postgres: PostgresServer,
    outside_services: OutsideServices,
) -> Iterator[RealTenant]:
    """One tenant (two API pods) whose database is ``pod_postgres`` through the gateway address,
    whose workers mail through the sink and whose bridge connects accounts through the MetaAPI
    simulator of ``outside_services``; created, not waited for (the tests wait)."""
    k8s = real_node
    namespace = real_node_namespace(k8s, "realnode")
    database = pod_postgres.create_database(f"tenant_{secrets.token_hex(3)}")
    url = (
        f"postgresql://{pod_postgres.user}:{pod_postgres.password}"
        f"@{realnode.GATEWAY}:{pod_postgres.port}/{database}?sslmode=disable"
    )
    create_db_secret(k8s, namespace, f"{TENANT}-db", url, for_tenant=TENANT)
    create_secret(
        k8s, namespace, f"{TENANT}-smtp", for_tenant=TENANT, url=outside_services.smtp_url
    )
    create_secret(k8s, namespace, f"{TENANT}-metaapi", for_tenant=TENANT, token=METAAPI_SIM_TOKEN)
    body = tenant_body(
        TENANT,
        mail={"smtpSecretRef": {"name": f"{TENANT}-smtp", "key": "url"}},
        bridge={
            "metaapi": {
                "tokenSecretRef": {"name": f"{TENANT}-metaapi"},
                "url": outside_services.metaapi_url,
            }
        },
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


__all__ = ["OutsideServices", "RealTenant", "wait_tenant_ready", "wait_until"]
