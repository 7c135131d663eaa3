"""The Helm charts on a real control plane: install CRDs then the operator, upgrade, uninstall.

kwok plays the kubelet, so the operator pod becomes ready without its image being pulled: these
tests prove what Kubernetes does with the charts (admission, Pod Security, rollout, garbage),
not that the operator image runs.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devtools.controlplane.pytest_plugin import KubeCluster, wait_until

REPO = Path(__file__).resolve().parents[2]
CRDS_CHART = REPO / "charts" / "algoedge-crds"
OPERATOR_CHART = REPO / "charts" / "algoedge-operator"
CRD = "customresourcedefinition/algoedgetenants.algoedge.io"


def release_name(kind: str) -> str:
    # Cluster-scoped objects (the ClusterRole, the CRD's owner) are named after the release.
    return f"e2e-{kind}-{secrets.token_hex(3)}"


def get(k8s: KubeCluster, resource: str, namespace: str | None = None) -> dict[str, Any] | None:
    """The object as JSON, or None when it does not exist."""
    args = ["get", resource, "--output", "json"]
    if namespace is not None:
        args += ["--namespace", namespace]
    result = k8s.kubectl_run(*args, check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def install_crds(k8s: KubeCluster, release: str) -> None:
    # --take-ownership: other e2e tests of the session may have applied the CRD without Helm.
    k8s.helm_run("install", release, str(CRDS_CHART), "--take-ownership", "--wait")


def crd_established(k8s: KubeCluster) -> bool:
    crd = get(k8s, CRD)
    conditions = (crd or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def releases(k8s: KubeCluster, namespace: str) -> list[str]:
    listed = k8s.helm_run("list", "--namespace", namespace, "--output", "json").stdout
    return [entry["name"] for entry in json.loads(listed)]


def test_should_install_the_crd_chart_and_keep_the_crd_on_uninstall(k8s: KubeCluster) -> None:
    release = release_name("crds")
    install_crds(k8s, release)
    wait_until("the AlgoEdgeTenant CRD to be established", lambda: crd_established(k8s))
    metadata = (get(k8s, CRD) or {})["metadata"]
    assert metadata["labels"]["app.kubernetes.io/instance"] == release
    assert metadata["annotations"]["meta.helm.sh/release-name"] == release

    k8s.helm_run("uninstall", release, "--wait")
    assert release not in releases(k8s, "default")
    # helm.sh/resource-policy: keep — tenants (and their workloads) survive an uninstall.
    assert crd_established(k8s)


def settled_deployment(k8s: KubeCluster, namespace: str, name: str) -> Callable[[], Any]:
    def probe() -> dict[str, Any] | None:
        deployment = get(k8s, f"deployment/{name}", namespace)
        if deployment is None:
            return None
        status = deployment.get("status", {})
        settled = (
            status.get("observedGeneration") == deployment["metadata"]["generation"]
            and status.get("replicas") == 1
            and status.get("updatedReplicas") == 1
            and status.get("readyReplicas") == 1
        )
        return deployment if settled else None

    return probe


def operator_env(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


def test_should_install_upgrade_and_uninstall_the_operator_chart(
    k8s: KubeCluster, namespace: str
) -> None:
    # The pod must pass the restricted Pod Security Standard, as in k8s/operator/deployment.yaml.
    k8s.kubectl_run(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    crds = release_name("crds")
    install_crds(k8s, crds)
    wait_until("the AlgoEdgeTenant CRD to be established", lambda: crd_established(k8s))

    release = release_name("operator")
    name = f"{release}-algoedge-operator"
    k8s.helm_run("install", release, str(OPERATOR_CHART), "--namespace", namespace)
    first = wait_until("the operator to be ready", settled_deployment(k8s, namespace, name))
    assert operator_env(first)["ALGOEDGE_OPERATOR_SCALE_INTERVAL"] == "30"
    service = get(k8s, f"service/{name}", namespace) or {}
    assert service["spec"]["ports"][0]["port"] == 8080
    binding = get(k8s, f"clusterrolebinding/{name}") or {}
    assert binding["subjects"][0]["namespace"] == namespace

    k8s.helm_run(
        "upgrade", release, str(OPERATOR_CHART), "--namespace", namespace,
        "--reuse-values", "--set", "settings.scaleInterval=15",
    )  # fmt: skip
    second = wait_until("the upgrade to roll out", settled_deployment(k8s, namespace, name))
    assert second["metadata"]["generation"] > first["metadata"]["generation"]
    assert operator_env(second)["ALGOEDGE_OPERATOR_SCALE_INTERVAL"] == "15"
    # A new pod template means a new ReplicaSet; Recreate scaled the old one to zero.
    replica_sets = k8s.kubectl_run(
        "get", "replicasets", "--namespace", namespace, "--output", "json",
        "--selector", f"app.kubernetes.io/instance={release}",
    )  # fmt: skip
    replicas = sorted(rs["spec"]["replicas"] for rs in json.loads(replica_sets.stdout)["items"])
    assert replicas == [0, 1]

    k8s.helm_run("uninstall", release, "--namespace", namespace, "--wait")
    wait_until(
        "the operator Deployment to be deleted",
        lambda: get(k8s, f"deployment/{name}", namespace) is None,
        timeout=60,
    )
    for resource, where in (
        (f"service/{name}", namespace),
        (f"serviceaccount/{name}", namespace),
        (f"clusterrole/{name}", None),
        (f"clusterrolebinding/{name}", None),
    ):
        assert get(k8s, resource, where) is None, resource
    assert releases(k8s, namespace) == []
    k8s.helm_run("uninstall", crds, "--wait")
