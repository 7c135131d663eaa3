"""charts/algoedge-operator/templates/service.yaml: /metrics and /healthz inside the cluster."""

from __future__ import annotations

from tests.unit.charts.support import OPERATOR_CHART, Helm, kinds, only


def test_should_expose_the_operators_http_port(helm: Helm) -> None:
    manifests = helm.render(OPERATOR_CHART, set_values={"service.port": "9000"})
    service = only(manifests, "Service")
    pod_labels = only(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_should_not_select_by_version(helm: Helm) -> None:
    # An upgrade changes the version label; the Service must keep finding the pod meanwhile.
    service = only(helm.render(OPERATOR_CHART, show_only="service.yaml"), "Service")
    assert "app.kubernetes.io/version" not in service["spec"]["selector"]


def test_should_be_left_out_when_disabled(helm: Helm) -> None:
    manifests = helm.render(OPERATOR_CHART, set_values={"service.enabled": "false"})
    assert "Service" not in kinds(manifests)
