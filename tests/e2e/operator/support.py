"""Helpers for operator e2e tests: polling with deadlines, tenants, children, API server write counts."""

from __future__ import annotations

import base64
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from devtools.controlplane.kubeapi import OPERATOR_RESOURCES, WRITE_VERBS, api_request
from devtools.controlplane.pytest_plugin import KubeCluster
from devtools.controlplane.pytest_plugin import (
    wait_until as wait_until,  # re-exported for the tests
)

GROUP, VERSION, PLURAL = "algoedge.io", "v1alpha1", "algoedgetenants"
IMAGE = "registry.example.com/algoedge:1.0.0"
BRIDGE_IMAGE = "registry.example.com/algoedge-bridge:1.0.0"
PAUSED = "algoedge.io/paused"
DATABASE_URL = "postgresql://acme:s3cret@db.example.com:5432/acme?sslmode=require"
#: JWT-shaped, as the bridge requires of a MetaAPI token.
METAAPI_TOKEN = "eyJhbGciOiJSUzUxMiJ9.eyJfaWQiOiJlMmUifQ.c2lnbmF0dXJl"


def path(namespace: str, api_version: str, plural: str, name: str = "") -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


def raw(
    k8s: KubeCluster,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    ok: tuple[int, ...] = (200, 201, 202),
) -> Any:
    """One request with the test's admin credentials; JSON in and out, no typed models."""
    return api_request(k8s.api_client, method, path, body, content_type=content_type, ok=ok)


def get(k8s: KubeCluster, namespace: str, api_version: str, plural: str, name: str) -> Any:
    return raw(k8s, "GET", path(namespace, api_version, plural, name))


def tenant_body(name: str, *, metaapi: bool = True, **spec: Any) -> dict[str, Any]:
    """A tenant referencing Secrets ``<name>-db`` and (unless ``metaapi`` is false, or
    ``spec['bridge']`` names its own) ``<name>-metaapi`` for the bridge's MetaAPI token."""
    bridge = dict(spec.pop("bridge", {}))
    if metaapi:
        bridge.setdefault("metaapi", {"tokenSecretRef": {"name": f"{name}-metaapi"}})
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AlgoEdgeTenant",
        "metadata": {"name": name},
        "spec": {
            "image": IMAGE,
            "bridgeImage": BRIDGE_IMAGE,
            "expectedUsers": 100,
            "database": {"secretRef": {"name": f"{name}-db"}},
            **({"bridge": bridge} if bridge else {}),
            **spec,
        },
    }


def create_secret(
    k8s: KubeCluster, namespace: str, name: str, *, for_tenant: str | None = "acme", **values: str
) -> None:
    """A Secret of ``values``, labelled ``algoedge.io/tenant=<for_tenant>`` as a Secret a tenant
    references must be (None: unlabelled)."""
    labels = {"algoedge.io/tenant": for_tenant} if for_tenant is not None else {}
    metadata = {"name": name, "labels": labels}
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "stringData": values}
    raw(k8s, "POST", f"/api/v1/namespaces/{namespace}/secrets", body)


def create_db_secret(
    k8s: KubeCluster,
    namespace: str,
    name: str,
    url: str = DATABASE_URL,
    *,
    for_tenant: str = "acme",
) -> None:
    create_secret(k8s, namespace, name, for_tenant=for_tenant, url=url)


def create_tenant_secrets(k8s: KubeCluster, namespace: str, name: str = "acme") -> None:
    """The Secrets :func:`tenant_body` references: the database URL and the MetaAPI token."""
    create_db_secret(k8s, namespace, f"{name}-db", for_tenant=name)
    create_secret(k8s, namespace, f"{name}-metaapi", for_tenant=name, token=METAAPI_TOKEN)


def tenants_path(namespace: str, name: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{path}/{name}" if name else path


def create_tenant(k8s: KubeCluster, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return dict(raw(k8s, "POST", tenants_path(namespace), tenant_body(name, **spec)))


def read_tenant(k8s: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(raw(k8s, "GET", tenants_path(namespace, name)))


def patch_tenant(k8s: KubeCluster, namespace: str, name: str, patch: dict[str, Any]) -> None:
    raw(
        k8s,
        "PATCH",
        tenants_path(namespace, name),
        patch,
        content_type="application/merge-patch+json",
    )


def ready_tenant(
    k8s: KubeCluster, namespace: str, name: str = "acme", **spec: Any
) -> dict[str, Any]:
    create_tenant_secrets(k8s, namespace, name)
    create_tenant(k8s, namespace, name, **spec)
    return wait_ready(k8s, namespace, name)


def wait_ready(k8s: KubeCluster, namespace: str, name: str = "acme") -> dict[str, Any]:
    """The tenant's Ready condition once it is True."""
    return wait_until(
        "the tenant to be Ready",
        condition_is(k8s, namespace, name, "Ready", "True"),
        timeout=180,
    )


def pause(k8s: KubeCluster, namespace: str, name: str = "acme") -> None:
    """Annotate the tenant paused and wait until the operator says so."""
    patch_tenant(k8s, namespace, name, {"metadata": {"annotations": {PAUSED: "true"}}})
    wait_until(
        "the status to say Paused",
        condition_is(k8s, namespace, name, "Progressing", "False", "Paused"),
        timeout=60,
    )


def resume(k8s: KubeCluster, namespace: str, name: str = "acme") -> None:
    patch_tenant(k8s, namespace, name, {"metadata": {"annotations": {PAUSED: None}}})


def checksum(k8s: KubeCluster, namespace: str, name: str) -> str:
    """The config checksum on the pod template of Deployment ``name``."""
    deployment = get(k8s, namespace, "apps/v1", "deployments", name)
    return str(
        deployment["spec"]["template"]["metadata"]["annotations"]["algoedge.io/config-checksum"]
    )


def events(k8s: KubeCluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    listed = raw(k8s, "GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [e for e in listed if e.get("reason") == reason]


def condition(tenant: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for item in (tenant.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None


def condition_is(
    k8s: KubeCluster, namespace: str, name: str, kind: str, status: str, reason: str | None = None
) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        found = condition(read_tenant(k8s, namespace, name), kind)
        if found and found["status"] == status and (reason is None or found["reason"] == reason):
            return found
        return None

    return probe


def exists(read: Callable[[], object]) -> bool:
    try:
        read()
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def secret_value(k8s: KubeCluster, namespace: str, name: str, key: str) -> str:
    secret = raw(k8s, "GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    return base64.b64decode(secret["data"][key]).decode()


def api_server_writes(k8s: KubeCluster) -> int:
    """Write requests the API server has served for the kinds the operator manages (main
    resource and the tenant's status; controller-owned subresources like deployments/status
    are not the operator's)."""
    text = str(raw(k8s, "GET", "/metrics"))
    total = 0
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.endswith("_total"):
                continue
            if (
                labels.get("verb") not in WRITE_VERBS
                or labels.get("resource") not in OPERATOR_RESOURCES
            ):
                continue
            subresource = labels.get("subresource", "")
            if subresource and not (
                labels["resource"] == "algoedgetenants" and subresource == "status"
            ):
                continue
            total += int(sample.value)
    return total


def settled(k8s: KubeCluster) -> int:
    """Wait until one resync period passes without a write (HPA and rollout effects end); the
    API server's write count then. The counters are cluster-wide: an earlier test's namespace
    still being emptied by the namespace controller would count its deletes, so wait for that to
    finish too."""

    def quiet_window() -> int | None:
        namespaces = k8s.core.list_namespace().items
        if any(ns.status and ns.status.phase == "Terminating" for ns in namespaces):
            return None
        before = api_server_writes(k8s)
        time.sleep(2.5)
        return before if api_server_writes(k8s) == before else None

    return wait_until("the tenant to settle", quiet_window, timeout=120)


def operator_counters(metrics_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The operator's Prometheus counters from its /metrics endpoint, by (sample, labels)."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): float(sample.value)
        for family in text_string_to_metric_families(text)
        if family.type == "counter"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
