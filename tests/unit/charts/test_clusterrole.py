"""charts/algoedge-operator/templates/clusterrole.yaml: the operator's least-privilege rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tests.unit.charts.support import (
    OPERATOR_CHART,
    RBAC_FILE,
    Helm,
    kinds,
    load_documents,
    only,
)

Grant = tuple[str, str, str, str]


def grants(rules: Iterable[dict[str, Any]]) -> set[Grant]:
    """Every (apiGroup, resource, resourceName, verb) a list of rules allows."""
    return {
        (group, resource, name, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for name in rule.get("resourceNames", ["*"])
        for verb in rule["verbs"]
    }


def plain_rules() -> list[dict[str, Any]]:
    role = only(load_documents(RBAC_FILE), "ClusterRole")
    return list(role["rules"])


def test_should_grant_exactly_what_k8s_operator_rbac_yaml_grants(helm: Helm) -> None:
    rendered = only(helm.render(OPERATOR_CHART, show_only="clusterrole.yaml"), "ClusterRole")
    assert grants(rendered["rules"]) == grants(plain_rules())
    # Same rules in the same order, so the two files read alike.
    assert rendered["rules"] == plain_rules()


def test_should_grant_nothing_on_pods_nodes_or_exec(helm: Helm) -> None:
    rendered = only(helm.render(OPERATOR_CHART, show_only="clusterrole.yaml"), "ClusterRole")
    resources = {resource for _, resource, _, _ in grants(rendered["rules"])}
    assert not resources & {"pods", "pods/exec", "nodes", "*"}
    assert {verb for *_, verb in grants(rendered["rules"])} <= {
        "get", "list", "watch", "create", "patch", "update", "delete",
    }  # fmt: skip


def test_should_create_no_rbac_when_told_not_to(helm: Helm) -> None:
    manifests = helm.render(OPERATOR_CHART, set_values={"rbac.create": "false"})
    assert not {"ClusterRole", "ClusterRoleBinding"} & set(kinds(manifests))


def test_should_create_no_cluster_role_when_watching_namespaces(helm: Helm) -> None:
    manifests = helm.render(OPERATOR_CHART, values={"watchNamespaces": ["team-a"]})
    assert not {"ClusterRole", "ClusterRoleBinding"} & set(kinds(manifests))
