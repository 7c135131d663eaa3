"""All three charts: `helm lint --strict` and the Kubernetes versions they accept."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.charts.support import CRDS_CHART, OPERATOR_CHART, TENANT_CHART, Helm

#: The tenant chart refuses to render without a database: it is linted with its ci/ values, as
#: `make charts` does.
TENANT_CI_VALUES = sorted((TENANT_CHART / "ci").glob("*-values.yaml"))
LINTED = [(OPERATOR_CHART, None), (CRDS_CHART, None)] + [
    (TENANT_CHART, values) for values in TENANT_CI_VALUES
]
CHARTS = pytest.mark.parametrize(
    ("chart", "values"),
    LINTED,
    ids=[chart.name + (f"-{values.stem}" if values else "") for chart, values in LINTED],
)


def values_args(values: Path | None) -> list[str]:
    return ["--values", str(values)] if values else []


def test_should_lint_the_tenant_chart_with_both_kinds_of_secrets() -> None:
    assert [v.name for v in TENANT_CI_VALUES] == [
        "chart-secrets-values.yaml",
        "existing-secrets-values.yaml",
    ]


@CHARTS
def test_should_pass_helm_lint_strict(helm: Helm, chart: Path, values: Path | None) -> None:
    result = helm.run("lint", "--strict", str(chart), *values_args(values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@CHARTS
def test_should_refuse_kubernetes_1_30(helm: Helm, chart: Path, values: Path | None) -> None:
    # 1.30 compiles new CRD rules against CEL 1.29, which has no isCIDR: the CRD would be refused.
    args = values_args(values)
    result = helm.run("template", "x", str(chart), "--kube-version", "1.30.14", *args)
    assert result.returncode != 0
    assert "chart requires kubeVersion: >=1.31.0-0" in result.stderr


@CHARTS
def test_should_accept_kubernetes_1_31_and_its_prereleases(
    helm: Helm, chart: Path, values: Path | None
) -> None:
    for version in ("1.31.0", "1.31.0-rc.1", "1.37.2"):
        args = values_args(values)
        result = helm.run("template", "x", str(chart), "--kube-version", version, *args)
        assert result.returncode == 0, result.stderr
