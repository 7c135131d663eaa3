"""charts/algoedge-operator/templates/serviceaccount.yaml: the identity the operator runs as."""

from __future__ import annotations

from tests.unit.charts.support import NAMESPACE, OPERATOR_CHART, Helm, kinds, only


def test_should_create_the_service_account_the_deployment_uses(helm: Helm) -> None:
    manifests = helm.render(OPERATOR_CHART)
    account = only(manifests, "ServiceAccount")
    deployment = only(manifests, "Deployment")
    assert account["metadata"]["namespace"] == NAMESPACE
    assert (
        deployment["spec"]["template"]["spec"]["serviceAccountName"]
        == (account["metadata"]["name"])
    )


def test_should_carry_annotations(helm: Helm) -> None:
    annotations = {"iam.example.com/role": "algoedge-operator"}
    account = only(
        helm.render(OPERATOR_CHART, values={"serviceAccount": {"annotations": annotations}}),
        "ServiceAccount",
    )
    assert account["metadata"]["annotations"] == annotations


def test_should_use_an_existing_account_when_told_not_to_create_one(helm: Helm) -> None:
    manifests = helm.render(
        OPERATOR_CHART, set_values={"serviceAccount.create": "false", "serviceAccount.name": "ops"}
    )
    assert "ServiceAccount" not in kinds(manifests)
    deployment = only(manifests, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    binding = only(manifests, "ClusterRoleBinding")
    assert binding["subjects"][0]["name"] == "ops"


def test_should_refuse_no_account_at_all(helm: Helm) -> None:
    error = helm.render_error(OPERATOR_CHART, set_values={"serviceAccount.create": "false"})
    assert "serviceAccount.name is required when serviceAccount.create is false" in error
