"""Drift server-side apply cannot undo, on a real API server: a re-keyed Service port is taken back
by an update, immutable fields by recreating the child (the Redis data kept), and the tenant goes
on converging (a later spec change still rolls the pods; steady state writes nothing)."""

from __future__ import annotations

import time
from typing import Any

from devtools.controlplane.pytest_plugin import KubeCluster
from tests.e2e.operator.conftest import Operator
from tests.e2e.operator.support import (
    api_server_writes,
    checksum,
    events,
    get,
    operator_counters,
    patch_tenant,
    path,
    pause,
    raw,
    ready_tenant,
    resume,
    settled,
    wait_ready,
    wait_until,
)


def ports(k8s: KubeCluster, namespace: str, name: str) -> list[tuple[str, int]]:
    service = get(k8s, namespace, "v1", "services", name)
    return [(port["name"], port["port"]) for port in service["spec"]["ports"]]


def counter(operator: Operator, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in operator_counters(operator.metrics_url).items()
        if sample == name and set(labels.items()) <= sample_labels
    )


def recreated_by_hand(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as a person would create it again from `kubectl get -o yaml`."""
    metadata = {
        key: value
        for key, value in obj["metadata"].items()
        if key in ("name", "labels", "annotations", "ownerReferences")
    }
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": metadata,
        "spec": obj["spec"],
    }


def test_service_port_edit_is_reverted_at_once_and_later_changes_still_roll(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    ready_tenant(k8s, namespace)
    failures_before = counter(operator, "algoedge_operator_child_failures_total")
    # What `kubectl edit svc acme-api` (8080 -> 8081) sends: the whole object back, by PUT.
    service = get(k8s, namespace, "v1", "services", "acme-api")
    service["spec"]["ports"][0]["port"] = 8081
    raw(
        k8s,
        "PUT",
        path(namespace, "v1", "services", "acme-api") + "?fieldManager=kubectl-edit",
        service,
    )
    wait_until(
        "the Service port to be taken back",
        lambda: ports(k8s, namespace, "acme-api") == [("http", 8080), ("metrics", 9090)],
        timeout=30,
    )
    # Repaired in the pass that met it: never reported as a failure, announced as a repair.
    assert counter(operator, "algoedge_operator_child_failures_total") == failures_before
    assert (
        counter(operator, "algoedge_operator_drift_repairs_total", kind="Service", action="patch")
        >= 1
    )
    assert not events(k8s, namespace, "ApplyFailed")
    assert any("Service acme-api" in e["message"] for e in events(k8s, namespace, "DriftRepaired"))
    live = get(k8s, namespace, "v1", "services", "acme-api")
    assert live["spec"]["clusterIP"] == service["spec"]["clusterIP"], "the allocated IP is kept"

    before = checksum(k8s, namespace, "acme-api")
    patch_tenant(k8s, namespace, "acme", {"spec": {"rateLimits": {"perUser": {"requests": 7}}}})
    wait_until(
        "the API pods to roll for the new rate limits",
        lambda: checksum(k8s, namespace, "acme-api") != before,
        timeout=60,
    )
    wait_ready(k8s, namespace)
    start = settled(k8s)
    time.sleep(8)  # four resync periods
    assert api_server_writes(k8s) - start == 0, "a repaired drift leaves nothing to write"


def test_changed_deployment_selector_is_repaired_by_recreating_it(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    ready_tenant(k8s, namespace)
    pause(k8s, namespace)
    beat = get(k8s, namespace, "apps/v1", "deployments", "acme-beat")
    raw(k8s, "DELETE", path(namespace, "apps/v1", "deployments", "acme-beat"))
    stranger = recreated_by_hand(beat)
    # A selector is immutable: no update of the Deployment can give the operator's back.
    stranger["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "scheduler"
    stranger["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] = "scheduler"
    raw(k8s, "POST", path(namespace, "apps/v1", "deployments"), stranger)
    resume(k8s, namespace)

    def selector() -> str:
        found = get(k8s, namespace, "apps/v1", "deployments", "acme-beat")
        return str(found["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"])

    wait_until("the selector to be the operator's again", lambda: selector() == "beat", timeout=60)
    repairs = [e["message"] for e in events(k8s, namespace, "DriftRepaired")]
    assert any(m.startswith("Deployment acme-beat:") and "created anew" in m for m in repairs)
    wait_ready(k8s, namespace)


def test_changed_redis_volume_template_is_repaired_without_losing_the_volume(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    ready_tenant(k8s, namespace)
    claim_path = path(namespace, "v1", "persistentvolumeclaims", "data-acme-redis-0")
    claim = raw(k8s, "GET", claim_path)
    pause(k8s, namespace)
    redis = get(k8s, namespace, "apps/v1", "statefulsets", "acme-redis")
    raw(
        k8s,
        "DELETE",
        path(namespace, "apps/v1", "statefulsets", "acme-redis"),
        {"propagationPolicy": "Orphan"},
    )

    def gone() -> bool:
        names = raw(k8s, "GET", path(namespace, "apps/v1", "statefulsets"))["items"]
        return all(item["metadata"]["name"] != "acme-redis" for item in names)

    wait_until("the hand-deleted StatefulSet to go", gone, timeout=60)
    stranger = recreated_by_hand(redis)
    stranger["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "2Gi"
    raw(k8s, "POST", path(namespace, "apps/v1", "statefulsets"), stranger)
    resume(k8s, namespace)

    def storage() -> str | None:
        found = raw(k8s, "GET", path(namespace, "apps/v1", "statefulsets"))["items"]
        for item in found:
            if item["metadata"]["name"] == "acme-redis" and not item["metadata"].get(
                "deletionTimestamp"
            ):
                template = item["spec"]["volumeClaimTemplates"][0]["spec"]
                return str(template["resources"]["requests"]["storage"])
        return None

    wait_until("the operator's volume template again", lambda: storage() == "1Gi", timeout=90)
    wait_ready(k8s, namespace)
    kept = raw(k8s, "GET", claim_path)
    assert kept["metadata"]["uid"] == claim["metadata"]["uid"], "the Redis data's claim was kept"
    assert not kept["metadata"].get("deletionTimestamp")
