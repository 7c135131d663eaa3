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

from devtools.controlplane.pytest_plugin import KubeCluster
from tests.e2e.operator.conftest import Operator
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
    for plural in KINDS.values():
        wait_until(
            f"{plural} to be served",
            lambda plural=plural: any(  # type: ignore[misc]
                r["name"] == plural for r in raw(k8s, "GET", f"/apis/{GROUP}/v1")["resources"]
            ),
            timeout=60,
        )


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
    assert read_tenant(k8s, namespace, "acme")["status"]["conditions"][0]["status"] == "True"


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


def test_capacity_follows_the_api_replicas(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    create_tenant_secrets(k8s, namespace)
    create_tenant(k8s, namespace, "acme", api={"minReplicas": 1, "maxReplicas": 4})

    def users() -> int | None:
        capacity = (read_tenant(k8s, namespace, "acme").get("status") or {}).get("capacity") or {}
        return capacity.get("users")

    wait_until("capacity for one API pod", lambda: users() == 500, timeout=180)
    status = read_tenant(k8s, namespace, "acme")["status"]
    assert float(status["cost"]["monthlyTotal"]) > 0
    patch_tenant(k8s, namespace, "acme", {"spec": {"api": {"minReplicas": 3}}})
    wait_until("capacity for three API pods", lambda: users() == 1500, timeout=180)
    assert not events(k8s, namespace, "CapacityLow")  # no sockets reported: no warning
