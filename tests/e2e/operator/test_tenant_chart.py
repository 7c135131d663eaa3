"""charts/algoedge-tenant on the local control plane with the operator running: install → Ready,
upgrade of expectedUsers → resized, uninstall → children collected, the user's Secret kept.

The `helm test` pod itself never runs here (kwok plays the kubelet: it would stay Running), so
the test applies the hook's ServiceAccount, Role and RoleBinding as rendered and runs the pod's
exact kubectl arguments as that ServiceAccount (docs/deploy.md, "Tenants").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from devtools.controlplane.pytest_plugin import KubeCluster
from tests.e2e.operator.conftest import CapacityServer, Operator
from tests.e2e.operator.support import (
    BRIDGE_IMAGE,
    IMAGE,
    METAAPI_TOKEN,
    create_db_secret,
    get,
    raw,
    read_tenant,
    wait_ready,
    wait_until,
)

CHART = Path(__file__).resolve().parents[3] / "charts" / "algoedge-tenant"
RELEASE = "acme"


def values_args(*, expected_users: int) -> list[str]:
    repository, tag = IMAGE.rsplit(":", 1)
    bridge_repository, bridge_tag = BRIDGE_IMAGE.rsplit(":", 1)
    return [
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", f"bridgeImage.repository={bridge_repository}",
        "--set", f"bridgeImage.tag={bridge_tag}",
        "--set", "database.existingSecret.name=acme-db",
        "--set-string", f"metaapi.token={METAAPI_TOKEN}",
        "--set", f"expectedUsers={expected_users}",
    ]  # fmt: skip


def exists(k8s: KubeCluster, path: str) -> bool:
    return bool(raw(k8s, "GET", path, ok=(200, 404)).get("kind") != "Status")


def hpa_min_replicas(k8s: KubeCluster, namespace: str) -> int | None:
    hpa = raw(
        k8s,
        "GET",
        f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/acme-api",
        ok=(200, 404),
    )
    return None if hpa.get("kind") == "Status" else int(hpa["spec"]["minReplicas"])


def run_the_test_hook(k8s: KubeCluster, namespace: str) -> None:
    """The hook's RBAC applied as rendered, its pod's command run as its ServiceAccount."""
    rendered = k8s.helm_run(
        "template", RELEASE, str(CHART), "--namespace", namespace,
        "--show-only", "templates/tests/test-ready.yaml", *values_args(expected_users=100),
    ).stdout  # fmt: skip
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    pod = next(o for o in objects if o["kind"] == "Pod")
    rbac = [o for o in objects if o["kind"] != "Pod"]
    k8s.kubectl_run("apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["/bin/kubectl"]
    account = f"system:serviceaccount:{namespace}:{pod['spec']['serviceAccountName']}"
    waited = k8s.kubectl_run(*container["args"], f"--as={account}", check=False)
    assert waited.returncode == 0, waited.stderr
    assert "condition met" in waited.stdout
    # Its Role names this tenant alone.
    other = k8s.kubectl_run(
        "get", "algoedgetenants", "--namespace", namespace, f"--as={account}", check=False
    )
    assert other.returncode != 0
    assert "forbidden" in other.stderr.lower()


def test_should_install_upgrade_and_uninstall_a_tenant_with_helm(
    k8s: KubeCluster, namespace: str, operator: Operator, capacity_server: CapacityServer
) -> None:
    capacity_server.answer(namespace, RELEASE, linked=0)
    # The user's own database Secret, labelled for the tenant as docs/deploy.md says.
    create_db_secret(k8s, namespace, "acme-db", for_tenant=RELEASE)
    k8s.helm_run(
        "install", RELEASE, str(CHART), "--namespace", namespace,
        *values_args(expected_users=100),
    )  # fmt: skip
    wait_ready(k8s, namespace, RELEASE)
    tenant = read_tenant(k8s, namespace, RELEASE)
    assert tenant["status"]["profile"] == "small"
    token = get(k8s, namespace, "v1", "secrets", "acme-metaapi")
    assert token["metadata"]["labels"]["algoedge.io/tenant"] == RELEASE
    assert hpa_min_replicas(k8s, namespace) == 1
    run_the_test_hook(k8s, namespace)

    k8s.helm_run(
        "upgrade", RELEASE, str(CHART), "--namespace", namespace, "--reuse-values",
        "--set", "expectedUsers=300",
    )  # fmt: skip

    def resized() -> dict[str, Any] | None:
        status = read_tenant(k8s, namespace, RELEASE).get("status") or {}
        large = status.get("profile") == "large" and hpa_min_replicas(k8s, namespace) == 3
        return status if large else None

    wait_until("the operator to resize the tenant to the large profile", resized, timeout=120)

    k8s.helm_run("uninstall", RELEASE, "--namespace", namespace, "--wait")
    base = f"/api/v1/namespaces/{namespace}"
    tenant_path = f"/apis/algoedge.io/v1alpha1/namespaces/{namespace}/algoedgetenants/{RELEASE}"
    wait_until("the tenant to be deleted", lambda: not exists(k8s, tenant_path), timeout=60)
    children = (
        f"/apis/apps/v1/namespaces/{namespace}/deployments/acme-api",
        f"/apis/apps/v1/namespaces/{namespace}/statefulsets/acme-bridge",
        f"{base}/secrets/acme-internal",
        f"{base}/configmaps/acme-config",
    )
    wait_until(
        "the garbage collector to delete the tenant's children",
        lambda: not any(exists(k8s, child) for child in children),
        timeout=120,
    )
    assert not exists(k8s, f"{base}/secrets/acme-metaapi")  # the chart's own Secret
    assert exists(k8s, f"{base}/secrets/acme-db")  # the user's Secret stays
