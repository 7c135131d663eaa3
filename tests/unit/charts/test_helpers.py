"""charts/*/templates/_helpers.tpl: names cut at 63 characters and the standard labels everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.charts.support import (
    CRDS_CHART,
    OPERATOR_CHART,
    REQUIRED_LABELS,
    Helm,
    Manifest,
    only,
)

#: Every optional object switched on, so "every object" means every object the chart can make.
EVERYTHING = {"serviceMonitor": {"enabled": True}}


def names(manifests: list[Manifest]) -> set[str]:
    return {m["metadata"]["name"] for m in manifests}


def test_should_name_objects_release_then_chart(helm: Helm) -> None:
    manifests = helm.render(OPERATOR_CHART, release="prod")
    assert names(manifests) == {"prod-algoedge-operator"}


def test_should_not_repeat_the_chart_name_contained_in_the_release_name(helm: Helm) -> None:
    manifests = helm.render(OPERATOR_CHART, release="algoedge-operator")
    assert names(manifests) == {"algoedge-operator"}


def test_should_honour_name_overrides(helm: Helm) -> None:
    renamed = helm.render(OPERATOR_CHART, release="prod", set_values={"nameOverride": "aeo"})
    assert names(renamed) == {"prod-aeo"}
    assert only(renamed, "Deployment")["metadata"]["labels"]["app.kubernetes.io/name"] == "aeo"
    full = helm.render(OPERATOR_CHART, set_values={"fullnameOverride": "operator"})
    assert names(full) == {"operator"}


def test_should_cut_names_at_63_characters_without_a_trailing_dash(helm: Helm) -> None:
    # 53 characters is the longest release name helm accepts; with "-algoedge-operator" the
    # name would be 71, and cut at 63 it would end in "-" (53 + "-algoedge" + "-").
    release = "r" * 53
    manifests = helm.render(OPERATOR_CHART, release=release, values=EVERYTHING)
    assert names(manifests) == {release + "-algoedge"}
    for manifest in manifests:
        for key, value in manifest["metadata"]["labels"].items():
            assert len(value) <= 63, (key, value)
            assert not value.endswith("-"), (key, value)


def test_should_cut_a_long_full_name_override_at_63_characters(helm: Helm) -> None:
    manifests = helm.render(OPERATOR_CHART, set_values={"fullnameOverride": "x" * 80})
    assert names(manifests) == {"x" * 63}


@pytest.mark.parametrize(
    ("chart", "values"),
    [(OPERATOR_CHART, EVERYTHING), (CRDS_CHART, None)],
    ids=["algoedge-operator", "algoedge-crds"],
)
def test_should_label_every_object(helm: Helm, chart: Path, values: dict[str, Any] | None) -> None:
    manifests = helm.render(chart, values=values)
    assert manifests
    for manifest in manifests:
        labels = manifest["metadata"]["labels"]
        missing = [label for label in REQUIRED_LABELS if not labels.get(label)]
        assert not missing, f"{manifest['kind']} {manifest['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == "algoedge"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"


def test_should_label_with_the_running_version(helm: Helm) -> None:
    manifests = helm.render(OPERATOR_CHART, set_values={"image.tag": "0.2.0-rc.1"})
    for manifest in manifests:
        assert manifest["metadata"]["labels"]["app.kubernetes.io/version"] == "0.2.0-rc.1"
