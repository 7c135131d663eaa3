"""A tenant's life on a real control plane: create, Ready, change, drift, pause, secrets, delete."""

from __future__ import annotations

import hashlib
import math
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.controlplane.pytest_plugin import KubeCluster
from tests.e2e.operator.conftest import CapacityServer, Operator
from tests.e2e.operator.support import (
    METAAPI_TOKEN,
    api_server_writes,
    checksum,
    condition,
    condition_is,
    create_db_secret,
    create_secret,
    create_tenant,
    create_tenant_secrets,
    events,
    exists,
    get,
    operator_counters,
    patch_tenant,
    path,
    pause,
    raw,
    read_tenant,
    ready_tenant,
    resume,
    secret_value,
    settled,
    wait_ready,
    wait_until,
)

CHILDREN = {
    ("v1", "configmaps"): ["acme-config", "acme-pgbouncer", "acme-redis"],
    ("v1", "secrets"): ["acme-internal", "acme-pgbouncer", "acme-redis"],
    ("v1", "services"): ["acme-api", "acme-pgbouncer", "acme-redis", "acme-bridge"],
    ("apps/v1", "deployments"): ["acme-api", "acme-worker", "acme-beat", "acme-pgbouncer"],
    ("apps/v1", "statefulsets"): ["acme-redis", "acme-bridge"],
    ("autoscaling/v2", "horizontalpodautoscalers"): ["acme-api"],
    ("policy/v1", "poddisruptionbudgets"): ["acme-api", "acme-bridge"],
    ("networking.k8s.io/v1", "networkpolicies"): [
        "acme-redis",
        "acme-pgbouncer",
        "acme-api",
        "acme-bridge",
    ],
}


def any_child_exists(k8s: KubeCluster, namespace: str) -> bool:
    for (api_version, plural), names in CHILDREN.items():
        listed = raw(k8s, "GET", path(namespace, api_version, plural))["items"]
        if {item["metadata"]["name"] for item in listed} & set(names):
            return True
    return False


def test_creates_every_child_labelled_owned_and_hardened_then_ready(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    ready_tenant(k8s, namespace)
    tenant = read_tenant(k8s, namespace, "acme")
    for (api_version, plural), names in CHILDREN.items():
        for name in names:
            child = get(k8s, namespace, api_version, plural, name)
            labels = child["metadata"]["labels"]
            assert labels["app.kubernetes.io/instance"] == "acme"
            assert labels["app.kubernetes.io/managed-by"] == "algoedge-operator"
            (owner,) = child["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["uid"], owner["controller"]) == (
                "AlgoEdgeTenant",
                tenant["metadata"]["uid"],
                True,
            )
    for api_version, plural in (("apps/v1", "deployments"), ("apps/v1", "statefulsets")):
        for name in CHILDREN[(api_version, plural)]:
            pod = get(k8s, namespace, api_version, plural, name)["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            for item in pod["containers"]:
                assert item["securityContext"]["readOnlyRootFilesystem"] is True
                assert item["resources"]["limits"]["memory"]
    status = tenant["status"]
    assert status["observedGeneration"] == tenant["metadata"]["generation"]
    assert status["components"]["api"]["readyReplicas"] >= 1
    assert "replicas" not in raw(
        k8s,
        "GET",
        path(namespace, "apps/v1", "deployments", "acme-api") + "?fieldManager=x",
    )["metadata"]["managedFields"][0]["fieldsV1"].get("f:spec", {})
    # Generated once, in the app's forms; the API gets them, the bridge only what it needs.
    assert len(secret_value(k8s, namespace, "acme-internal", "ALGOEDGE_JWT_SECRET")) >= 32
    config = get(k8s, namespace, "v1", "configmaps", "acme-config")["data"]
    assert config["ALGOEDGE_RATE_LIMIT_PER_USER"] == "100/900"
    assert "kopf" not in status
    assert not tenant["metadata"].get("finalizers")


def test_spec_change_rolls_the_checksum_and_keeps_generated_secrets(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    ready_tenant(k8s, namespace)
    before = checksum(k8s, namespace, "acme-api")
    token = secret_value(k8s, namespace, "acme-internal", "ALGOEDGE_INTERNAL_TOKEN")
    patch_tenant(k8s, namespace, "acme", {"spec": {"rateLimits": {"perUser": {"requests": 7}}}})
    wait_until(
        "the API pods to carry a new checksum",
        lambda: checksum(k8s, namespace, "acme-api") != before,
        timeout=60,
    )
    config = get(k8s, namespace, "v1", "configmaps", "acme-config")["data"]
    assert config["ALGOEDGE_RATE_LIMIT_PER_USER"] == "7/900"
    assert checksum(k8s, namespace, "acme-worker") == checksum(k8s, namespace, "acme-api")
    assert secret_value(k8s, namespace, "acme-internal", "ALGOEDGE_INTERNAL_TOKEN") == token


def test_adopts_an_existing_unlabelled_internal_secret_without_rotating_it(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    """Restored from a backup, or made by hand so the API keeps its tokens, and annotated for
    adoption: the informers never saw it (no managed-by label), and the operator must read it
    rather than generate anew."""
    values = {
        "ALGOEDGE_INTERNAL_TOKEN": "restored-internal-token-0123456789",
        "ALGOEDGE_JWT_SECRET": "restored-jwt-secret-0123456789abcdefghij",
        "ALGOEDGE_CREDENTIALS_KEY": "A" * 43 + "=",
    }
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "acme-internal", "annotations": {"algoedge.io/adopt": "acme"}},
    }
    raw(k8s, "POST", f"/api/v1/namespaces/{namespace}/secrets", {**body, "stringData": values})
    ready_tenant(k8s, namespace)
    for key, value in values.items():
        assert secret_value(k8s, namespace, "acme-internal", key) == value
    labels = get(k8s, namespace, "v1", "secrets", "acme-internal")["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "algoedge-operator"


def test_a_removed_credentials_key_is_never_regenerated(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    """The stored MT5 passwords are encrypted with it: the operator says so instead of writing a
    new key, and carries on once the key is put back."""
    ready_tenant(k8s, namespace)
    key = secret_value(k8s, namespace, "acme-internal", "ALGOEDGE_CREDENTIALS_KEY")
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16]
    wait_until(
        "the key's fingerprint in the status",
        lambda: (
            read_tenant(k8s, namespace, "acme")["status"].get("credentialsKeyFingerprint")
            == fingerprint
        ),
    )
    before = checksum(k8s, namespace, "acme-api")
    secret = f"/api/v1/namespaces/{namespace}/secrets/acme-internal"
    removal = [{"op": "remove", "path": "/data/ALGOEDGE_CREDENTIALS_KEY"}]
    raw(k8s, "PATCH", secret, removal, content_type="application/json-patch+json")
    degraded = wait_until(
        "Degraded with reason CredentialsKeyMissing",
        condition_is(k8s, namespace, "acme", "Degraded", "True", "CredentialsKeyMissing"),
    )
    assert f"fingerprint {fingerprint}" in degraded["message"]
    assert key not in degraded["message"]
    assert (
        "ALGOEDGE_CREDENTIALS_KEY"
        not in get(k8s, namespace, "v1", "secrets", "acme-internal")["data"]
    )
    assert checksum(k8s, namespace, "acme-api") == before, "no pod rolled"
    restore = {"stringData": {"ALGOEDGE_CREDENTIALS_KEY": key}}
    raw(k8s, "PATCH", secret, restore, content_type="application/merge-patch+json")
    wait_ready(k8s, namespace)
    assert secret_value(k8s, namespace, "acme-internal", "ALGOEDGE_CREDENTIALS_KEY") == key
    assert read_tenant(k8s, namespace, "acme")["status"]["credentialsKeyFingerprint"] == fingerprint


@pytest.fixture(params=["true", "false"], ids=["watched", "polled"])
def children_mode(request: pytest.FixtureRequest, operator_env: dict[str, str]) -> None:
    """Informers on the children (the default), or a GET per child per reconcile."""
    operator_env["ALGOEDGE_OPERATOR_WATCH_CHILDREN"] = request.param


def test_drift_is_repaired_deleted_child_and_edited_field(
    k8s: KubeCluster, namespace: str, children_mode: None, operator: Operator
) -> None:
    ready_tenant(k8s, namespace)
    raw(k8s, "DELETE", path(namespace, "v1", "services", "acme-pgbouncer"))
    raw(
        k8s,
        "PATCH",
        path(namespace, "apps/v1", "deployments", "acme-worker") + "?fieldManager=kubectl-edit",
        {"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 5}}}},
        content_type="application/strategic-merge-patch+json",
    )
    wait_until(
        "the deleted Service to come back",
        lambda: exists(lambda: get(k8s, namespace, "v1", "services", "acme-pgbouncer")),
        timeout=60,
    )
    wait_until(
        "the edited field to be reverted",
        lambda: (
            get(k8s, namespace, "apps/v1", "deployments", "acme-worker")["spec"]["template"][
                "spec"
            ]["terminationGracePeriodSeconds"]
            == 120
        ),
        timeout=60,
    )


def test_paused_tenant_gets_no_writes_then_catches_up(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    ready_tenant(k8s, namespace)
    pause(k8s, namespace)
    patch_tenant(k8s, namespace, "acme", {"spec": {"logLevel": "DEBUG"}})
    raw(k8s, "DELETE", path(namespace, "v1", "services", "acme-api"))
    time.sleep(6)  # three resync periods in which nothing may be written
    assert (
        get(k8s, namespace, "v1", "configmaps", "acme-config")["data"]["ALGOEDGE_LOG_LEVEL"]
        == "INFO"
    )
    assert not exists(lambda: get(k8s, namespace, "v1", "services", "acme-api"))
    resume(k8s, namespace)
    wait_until(
        "the paused change to be applied",
        lambda: (
            get(k8s, namespace, "v1", "configmaps", "acme-config")["data"]["ALGOEDGE_LOG_LEVEL"]
            == "DEBUG"
        ),
        timeout=60,
    )
    wait_until(
        "the Service to come back",
        lambda: exists(lambda: get(k8s, namespace, "v1", "services", "acme-api")),
        timeout=60,
    )


def test_missing_secret_blocks_everything_until_it_appears(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    create_tenant(k8s, namespace, "acme")
    found = wait_until(
        "Ready=False SecretMissing",
        condition_is(k8s, namespace, "acme", "Ready", "False", "SecretMissing"),
        timeout=60,
    )
    assert f"{namespace}/acme-db" in found["message"]
    assert not any_child_exists(k8s, namespace)
    create_db_secret(k8s, namespace, "acme-db")
    wait_until(
        "SecretMissing to name the MetaAPI token's Secret next",
        lambda: (
            f"{namespace}/acme-metaapi"
            in str((condition(read_tenant(k8s, namespace, "acme"), "Ready") or {}).get("message"))
        ),
        timeout=60,
    )
    assert not any_child_exists(k8s, namespace)
    create_secret(k8s, namespace, "acme-metaapi", token=METAAPI_TOKEN)
    wait_ready(k8s, namespace)  # recovered by itself


def test_bridge_runs_no_pods_until_a_metaapi_token_is_referenced(
    k8s: KubeCluster, namespace: str, operator: Operator, capacity_server: CapacityServer
) -> None:
    # An answering capacity endpoint, so that Degraded is free to name the missing token.
    capacity_server.answer(namespace, "acme", linked=150)
    create_tenant_secrets(k8s, namespace)
    create_tenant(k8s, namespace, "acme", metaapi=False)
    found = wait_until(
        "Degraded=True MetaApiTokenNotSet",
        condition_is(k8s, namespace, "acme", "Degraded", "True", "MetaApiTokenNotSet"),
        timeout=180,
    )
    assert "spec.bridge.metaapi.tokenSecretRef is not set" in found["message"]
    wait_ready(k8s, namespace)  # everything else runs
    assert bridge_replicas(k8s, namespace) == 0
    assert [e["type"] for e in events(k8s, namespace, "MetaApiTokenNotSet")] == ["Warning"]

    patch_tenant(
        k8s,
        namespace,
        "acme",
        {"spec": {"bridge": {"metaapi": {"tokenSecretRef": {"name": "acme-metaapi"}}}}},
    )
    wait_until(
        "2 bridge replicas for 150 accounts",
        lambda: bridge_replicas(k8s, namespace) == 2,
        timeout=60,
    )
    wait_until(
        "Degraded=False",
        condition_is(k8s, namespace, "acme", "Degraded", "False"),
        timeout=60,
    )
    pod = get(k8s, namespace, "apps/v1", "statefulsets", "acme-bridge")["spec"]["template"]["spec"]
    (bridge,) = pod["containers"]
    token = next(e for e in bridge["env"] if e["name"] == "ALGOEDGE_METAAPI_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "acme-metaapi", "key": "token"}


def bridge_replicas(k8s: KubeCluster, namespace: str) -> int:
    return int(get(k8s, namespace, "apps/v1", "statefulsets", "acme-bridge")["spec"]["replicas"])


def test_deleting_the_tenant_collects_every_child(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    ready_tenant(k8s, namespace)
    raw(k8s, "DELETE", f"/apis/algoedge.io/v1alpha1/namespaces/{namespace}/algoedgetenants/acme")

    wait_until(
        "garbage collection of every child",
        lambda: not any_child_exists(k8s, namespace),
        timeout=120,
    )


def test_disabling_beat_removes_it(k8s: KubeCluster, namespace: str, operator: Operator) -> None:
    ready_tenant(k8s, namespace)
    patch_tenant(k8s, namespace, "acme", {"spec": {"beat": {"enabled": False}}})
    wait_until(
        "the beat Deployment to go",
        lambda: not exists(lambda: get(k8s, namespace, "apps/v1", "deployments", "acme-beat")),
        timeout=60,
    )


def test_steady_state_makes_zero_writes(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    ready_tenant(k8s, namespace)
    start = settled(k8s)
    time.sleep(8)  # four resync periods, eight capacity reads
    assert api_server_writes(k8s) - start == 0


def test_steady_state_reads_children_from_memory(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    ready_tenant(k8s, namespace)
    settled(k8s)
    before = operator_counters(operator.metrics_url)
    time.sleep(8)  # four resync periods, eight capacity reads
    after = operator_counters(operator.metrics_url)

    def delta(name: str, **labels: str) -> float:
        def total(counters: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
            return sum(
                value
                for (sample, sample_labels), value in counters.items()
                if sample == name and set(labels.items()) <= sample_labels
            )

        return total(after) - total(before)

    reconciles = delta("algoedge_operator_reconciles_total")
    assert reconciles >= 3
    assert delta("algoedge_operator_cache_reads_total") >= 20 * reconciles
    # The only GETs left: the Secrets the tenant references (its database URL and its MetaAPI
    # token), once each per reconcile.
    assert delta("algoedge_operator_api_reads_total", verb="get") == delta(
        "algoedge_operator_api_reads_total", verb="get", kind="Secret"
    )
    assert delta("algoedge_operator_api_reads_total", verb="get") <= 2 * reconciles
    assert delta("algoedge_operator_api_reads_total", verb="list") == 0


def tenant_ready_series(operator: Operator, namespace: str) -> float | None:
    """The operator's algoedge_operator_tenant_ready for tenant acme (docs/monitoring.md); NaN
    while its metrics server does not answer yet (kopf's startup runs in the background)."""
    try:
        with urllib.request.urlopen(operator.metrics_url, timeout=10) as response:  # noqa: S310 - loopback
            text = response.read().decode()
    except urllib.error.URLError:
        return math.nan
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "algoedge_operator_tenant_ready" and sample.labels == {
                "tenant_namespace": namespace,
                "tenant": "acme",
            }:
                return float(sample.value)
    return None


def test_tenant_ready_series_follows_the_condition_and_goes_with_the_tenant(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    create_tenant(k8s, namespace, "acme")  # no Secrets yet: Ready=False
    wait_until(
        "tenant_ready 0", lambda: tenant_ready_series(operator, namespace) == 0.0, timeout=60
    )
    create_tenant_secrets(k8s, namespace)
    wait_ready(k8s, namespace)
    wait_until(
        "tenant_ready 1", lambda: tenant_ready_series(operator, namespace) == 1.0, timeout=60
    )
    raw(k8s, "DELETE", f"/apis/algoedge.io/v1alpha1/namespaces/{namespace}/algoedgetenants/acme")
    wait_until(
        "the deleted tenant's series to go",
        lambda: tenant_ready_series(operator, namespace) is None,
        timeout=60,
    )
