"""charts/algoedge-operator/templates/clusterrolebinding.yaml: the rules, bound to the operator."""

from __future__ import annotations

from tests.unit.charts.support import NAMESPACE, OPERATOR_CHART, Helm, only


def test_should_bind_the_cluster_role_to_the_operators_service_account(helm: Helm) -> None:
    manifests = helm.render(OPERATOR_CHART, namespace="platform-ops")
    binding = only(manifests, "ClusterRoleBinding")
    role = only(manifests, "ClusterRole")
    account = only(manifests, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "platform-ops"}
    ]
    assert NAMESPACE != "platform-ops"  # the release namespace, not a fixed one
