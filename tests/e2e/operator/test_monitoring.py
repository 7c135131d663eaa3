"""Monitoring and the tenant at a glance on the local control plane: monitor objects created only
where the monitoring.coreos.com CRDs exist (a condition otherwise), pruned when turned off; the
exporter sidecars; status.capacity following the API's replicas.

The Prometheus Operator's own CRDs are large; these tests install minimal structural CRDs with the
same group, version, kinds and plurals (``x-kubernetes-preserve-unknown-fields``), which is all
the operator relies on: discovery, and storing the objects it applies.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from devtools.controlplane.pytest_plugin import KubeCluster
from tests.e2e.operator.conftest import CapacityServer, Operator
from tests.e2e.operator.support import (
    condition_is,
    create_tenant,
    create_tenant_secrets,
    events,
    get,
    patch_tenant,
    raw,
    read_tenant,
    wait_until,
)

GROUP = "monitoring.coreos.com"
KINDS = {"PodMonitor": "podmonitors", "PrometheusRule": "prometheusrules"}
COMPONENTS = ("api", "worker", "beat", "bridge", "pgbouncer", "redis")
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def minimal_crd(kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def monitoring_crds(k8s: KubeCluster) -> Iterator[None]:
    """Installs nothing by itself: the test calls install(); whatever it installed goes after."""
    yield
    for plural in KINDS.values():
        raw(k8s, "DELETE", f"{CRDS}/{plural}.{GROUP}", ok=(200, 202, 404))


def install_monitoring_crds(k8s: KubeCluster) -> None:
    for kind, plural in KINDS.items():
        raw(
            k8s,
            "PATCH",
            f"{CRDS}/{plural}.{GROUP}?fieldManager=algoedge-e2e&force=true",
            minimal_crd(kind, plural),
            content_type="application/apply-patch+yaml",
        )

    def served() -> bool:
        # Discovery answers 404 (not JSON) until the group is served.
        try:
            found = raw(k8s, "GET", f"/apis/{GROUP}/v1")
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return set(KINDS.values()) <= {r["name"] for r in found["resources"]}

    wait_until("the monitoring CRDs to be served", served, timeout=60)


def monitors(k8s: KubeCluster, namespace: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for plural in KINDS.values():
        for item in raw(k8s, "GET", f"/apis/{GROUP}/v1/namespaces/{namespace}/{plural}")["items"]:
            found[item["metadata"]["name"]] = item
    return found


def containers(k8s: KubeCluster, namespace: str, plural: str, name: str) -> list[str]:
    workload = get(k8s, namespace, "apps/v1", plural, name)
    return [c["name"] for c in workload["spec"]["template"]["spec"]["containers"]]


def test_monitors_follow_the_crds_and_the_spec(
    k8s: KubeCluster, namespace: str, operator: Operator, monitoring_crds: None
) -> None:
    create_tenant_secrets(k8s, namespace)
    create_tenant(
        k8s, namespace, "acme", monitoring={"enabled": True, "labels": {"release": "kps"}}
    )
    missing = wait_until(
        "MonitoringReady=False, MonitoringCRDsMissing",
        condition_is(k8s, namespace, "acme", "MonitoringReady", "False", "MonitoringCRDsMissing"),
        timeout=120,
    )
    assert "PodMonitor, PrometheusRule" in missing["message"]
    wait_until("the tenant to be Ready", condition_is(k8s, namespace, "acme", "Ready", "True"))
    # The exporters run beside pgBouncer and Redis whether or not the CRDs exist.
    assert containers(k8s, namespace, "deployments", "acme-pgbouncer") == ["pgbouncer", "exporter"]
    assert containers(k8s, namespace, "statefulsets", "acme-redis") == ["redis", "exporter"]

    install_monitoring_crds(k8s)
    wait_until(
        "MonitoringReady=True",
        condition_is(k8s, namespace, "acme", "MonitoringReady", "True", "MonitorsCreated"),
        timeout=120,
    )
    found = monitors(k8s, namespace)
    assert set(found) == {f"acme-{c}" for c in COMPONENTS} | {"acme-alerts"}
    for name, item in found.items():
        assert item["metadata"]["labels"]["release"] == "kps", name
    api = found["acme-api"]["spec"]["podMetricsEndpoints"][0]
    assert (api["port"], api["path"]) == ("metrics", "/metrics")
    assert {r["targetLabel"] for r in api["relabelings"]} == {"namespace", "tenant", "component"}
    assert found["acme-alerts"]["kind"] == "PrometheusRule"

    patch_tenant(k8s, namespace, "acme", {"spec": {"monitoring": {"enabled": False}}})
    wait_until("the monitors to be pruned", lambda: monitors(k8s, namespace) == {}, timeout=120)
    wait_until(
        "the exporters to be gone",
        lambda: containers(k8s, namespace, "deployments", "acme-pgbouncer") == ["pgbouncer"],
        timeout=60,
    )
    # pgBouncer and Redis roll without their exporters, and come back Ready.
    wait_until("the tenant Ready again", condition_is(k8s, namespace, "acme", "Ready", "True"))


def test_a_label_key_that_is_not_a_kubernetes_label_is_refused(
    k8s: KubeCluster, namespace: str
) -> None:
    for labels, message in (
        ({"not a key": "x"}, "must be Kubernetes label keys"),
        ({"app.kubernetes.io/name": "x"}, "are the operator's own"),
    ):
        error = raw(
            k8s,
            "POST",
            f"/apis/algoedge.io/v1alpha1/namespaces/{namespace}/algoedgetenants",
            {
                "apiVersion": "algoedge.io/v1alpha1",
                "kind": "AlgoEdgeTenant",
                "metadata": {"name": "acme"},
                "spec": {
                    "image": "registry.example.com/algoedge:1",
                    "bridgeImage": "registry.example.com/algoedge-bridge:1",
                    "database": {"secretRef": {"name": "acme-db"}},
                    "monitoring": {"labels": labels},
                },
            },
            ok=(422,),
        )
        assert message in error["message"], error


def test_capacity_and_cost_follow_the_api_replicas_and_sockets(
    k8s: KubeCluster, namespace: str, operator: Operator, capacity_server: CapacityServer
) -> None:
    capacity_server.answer(namespace, "acme", linked=0, sockets=300)
    create_tenant_secrets(k8s, namespace)
    create_tenant(k8s, namespace, "acme", api={"minReplicas": 1, "maxReplicas": 4})

    def capacity() -> dict[str, Any]:
        return dict((read_tenant(k8s, namespace, "acme").get("status") or {}).get("capacity") or {})

    def cost() -> float:
        status = read_tenant(k8s, namespace, "acme").get("status") or {}
        return float((status.get("cost") or {}).get("monthlyTotal") or 0)

    wait_until(
        "300 sockets against one API pod",
        lambda: capacity().get("utilizationPercent") == 60 and capacity()["users"] == 500,
        timeout=180,
    )
    one_pod = cost()
    assert one_pod > 0
    assert not events(k8s, namespace, "CapacityLow")
    patch_tenant(k8s, namespace, "acme", {"spec": {"api": {"minReplicas": 3}}})
    wait_until("capacity for three API pods", lambda: capacity().get("users") == 1500, timeout=180)
    wait_until("the cost of three API pods", lambda: cost() > one_pod, timeout=60)
    capacity_server.answer(namespace, "acme", linked=0, sockets=1300)
    low = wait_until(
        "CapacityLow at 1300 of 1500",
        condition_is(k8s, namespace, "acme", "CapacityLow", "True", "AboveThreshold"),
        timeout=60,
    )
    assert "1300 sockets connected against 1500 users" in low["message"]
    wait_until("a CapacityLow Warning", lambda: events(k8s, namespace, "CapacityLow"), timeout=30)
    assert condition_is(k8s, namespace, "acme", "Ready", "True")()
