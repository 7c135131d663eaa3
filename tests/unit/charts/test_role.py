"""charts/algoedge-operator/templates/role.yaml: the operator's rules in each watched namespace."""

from __future__ import annotations

from tests.unit.charts.support import OPERATOR_CHART, Helm, Manifest, kinds
from tests.unit.charts.test_clusterrole import grants, plain_rules

WATCHED = ["team-a", "team-b"]


def roles(helm: Helm) -> list[Manifest]:
    manifests = helm.render(OPERATOR_CHART, values={"watchNamespaces": WATCHED})
    return [m for m in manifests if m["kind"] == "Role"]


def test_should_create_one_role_in_each_watched_namespace(helm: Helm) -> None:
    assert [role["metadata"]["namespace"] for role in roles(helm)] == WATCHED


def test_should_grant_the_cluster_roles_namespaced_rules_and_nothing_cluster_scoped(
    helm: Helm,
) -> None:
    """The rules of k8s/operator/rbac.yaml but the CRD read, which a Role cannot grant and
    the operator does not need with watched namespaces (kopf's scanning is off)."""
    namespaced = [rule for rule in plain_rules() if rule["apiGroups"] != ["apiextensions.k8s.io"]]
    for role in roles(helm):
        assert role["rules"] == namespaced
        assert not {resource for _, resource, _, _ in grants(role["rules"])} & {
            "customresourcedefinitions", "namespaces", "pods", "nodes", "*",
        }  # fmt: skip


def test_should_create_no_role_when_watching_every_namespace(helm: Helm) -> None:
    assert not {"Role", "RoleBinding"} & set(kinds(helm.render(OPERATOR_CHART)))


def test_should_create_no_role_when_told_not_to_create_rbac(helm: Helm) -> None:
    manifests = helm.render(
        OPERATOR_CHART, values={"watchNamespaces": WATCHED, "rbac": {"create": False}}
    )
    assert not {"Role", "RoleBinding"} & set(kinds(manifests))
