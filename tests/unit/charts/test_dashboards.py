"""charts/algoedge-operator/templates/dashboards.yaml: the tenant dashboards for Grafana's sidecar."""

from __future__ import annotations

import json

from devtools.monitoring import dashboards
from tests.unit.charts.support import OPERATOR_CHART, Helm, kinds


def test_should_be_off_by_default(helm: Helm) -> None:
    assert "ConfigMap" not in kinds(helm.render(OPERATOR_CHART))


def test_should_ship_every_dashboard_labelled_for_the_sidecar(helm: Helm) -> None:
    manifests = helm.render(OPERATOR_CHART, values={"dashboards": {"enabled": True}})
    maps = [m for m in manifests if m["kind"] == "ConfigMap"]
    shipped = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["namespace"] == "algoedge-system"
        assert "annotations" not in config_map["metadata"]
        ((name, text),) = config_map["data"].items()
        shipped[name] = json.loads(text)
    expected = {name: json.loads(text) for name, text in dashboards.files().items()}
    assert shipped == expected
    assert len({m["metadata"]["name"] for m in maps}) == len(expected) == 5


def test_should_take_the_sidecars_label_and_folder_annotation(helm: Helm) -> None:
    manifests = helm.render(
        OPERATOR_CHART,
        values={
            "dashboards": {
                "enabled": True,
                "labels": {"grafana_dashboard": None, "team": "trading"},
                "annotations": {"grafana_folder": "AlgoEdge"},
            }
        },
    )
    for config_map in (m for m in manifests if m["kind"] == "ConfigMap"):
        assert config_map["metadata"]["labels"]["team"] == "trading"
        assert "grafana_dashboard" not in config_map["metadata"]["labels"]
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "AlgoEdge"}


def test_should_refuse_a_label_that_is_not_a_string(helm: Helm) -> None:
    error = helm.render_error(
        OPERATOR_CHART, values={"dashboards": {"labels": {"grafana_dashboard": 1}}}
    )
    assert "at '/dashboards/labels/grafana_dashboard'" in error
