"""charts/algoedge-operator/templates/rolebinding.yaml: each watched namespace's Role, bound to the
operator."""

from __future__ import annotations

from tests.unit.charts.support import OPERATOR_CHART, Helm, only


def test_should_bind_each_role_to_the_operators_service_account(helm: Helm) -> None:
    manifests = helm.render(
        OPERATOR_CHART, namespace="platform-ops", values={"watchNamespaces": ["team-a", "team-b"]}
    )
    account = only(manifests, "ServiceAccount")
    roles = {m["metadata"]["namespace"]: m for m in manifests if m["kind"] == "Role"}
    bindings = [m for m in manifests if m["kind"] == "RoleBinding"]
    assert [b["metadata"]["namespace"] for b in bindings] == ["team-a", "team-b"]
    for binding in bindings:
        role = roles[binding["metadata"]["namespace"]]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": account["metadata"]["name"],
                "namespace": "platform-ops",
            }
        ]
