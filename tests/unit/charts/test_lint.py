"""Both charts: `helm lint --strict` and the Kubernetes versions they accept."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.charts.support import CRDS_CHART, OPERATOR_CHART, Helm

CHARTS = pytest.mark.parametrize("chart", [OPERATOR_CHART, CRDS_CHART], ids=lambda c: c.name)


@CHARTS
def test_should_pass_helm_lint_strict(helm: Helm, chart: Path) -> None:
    result = helm.run("lint", "--strict", str(chart))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@CHARTS
def test_should_refuse_kubernetes_1_30(helm: Helm, chart: Path) -> None:
    # 1.30 compiles new CRD rules against CEL 1.29, which has no isCIDR: the CRD would be refused.
    result = helm.run("template", "x", str(chart), "--kube-version", "1.30.14")
    assert result.returncode != 0
    assert "chart requires kubeVersion: >=1.31.0-0" in result.stderr


@CHARTS
def test_should_accept_kubernetes_1_31_and_its_prereleases(helm: Helm, chart: Path) -> None:
    for version in ("1.31.0", "1.31.0-rc.1", "1.37.2"):
        result = helm.run("template", "x", str(chart), "--kube-version", version)
        assert result.returncode == 0, result.stderr
