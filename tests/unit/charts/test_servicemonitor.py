"""charts/algoedge-operator/templates/servicemonitor.yaml: optional Prometheus Operator scrape."""

from __future__ import annotations

from tests.unit.charts.support import OPERATOR_CHART, Helm, kinds, only


def test_should_be_off_by_default(helm: Helm) -> None:
    # Its CRD (monitoring.coreos.com) is not in every cluster.
    assert "ServiceMonitor" not in kinds(helm.render(OPERATOR_CHART))


def test_should_scrape_metrics_through_the_service(helm: Helm) -> None:
    manifests = helm.render(
        OPERATOR_CHART,
        values={
            "serviceMonitor": {
                "enabled": True,
                "interval": "15s",
                "additionalLabels": {"release": "kps"},
            }
        },
    )
    monitor = only(manifests, "ServiceMonitor")
    service = only(manifests, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["algoedge-system"]}
    assert monitor["spec"]["endpoints"] == [
        {
            "port": "http",
            "path": "/metrics",
            "interval": "15s",
            "scrapeTimeout": "10s",
        }
    ]


def test_should_refuse_to_scrape_without_the_service(helm: Helm) -> None:
    error = helm.render_error(
        OPERATOR_CHART,
        set_values={"serviceMonitor.enabled": "true", "service.enabled": "false"},
    )
    assert "serviceMonitor.enabled needs service.enabled" in error
