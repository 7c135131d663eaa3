"""charts/*/values.yaml and values.schema.json: every key documented, unknown or bad values refused."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.charts.support import (
    CRDS_CHART,
    OPERATOR_CHART,
    REPO,
    TENANT_CHART,
    TENANT_VALUES,
    Helm,
)

DEPLOY_DOC = REPO / "docs" / "deploy.md"
#: Kubernetes objects the operator chart passes through as they are (the API server checks
#: them); every other object in a schema must close itself with additionalProperties.
PASS_THROUGH = {
    "podSecurityContext",
    "securityContext",
    "affinity",
    "tolerations[]",
    "extraEnv[].valueFrom",
}


def schema_of(chart: Path) -> dict[str, Any]:
    return dict(json.loads((chart / "values.schema.json").read_text()))


def object_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if node.get("type") == "object":
        yield path, node
    for key, child in node.get("properties", {}).items():
        yield from object_nodes(child, f"{path}.{key}".lstrip("."))
    if isinstance(node.get("items"), dict):
        yield from object_nodes(node["items"], f"{path}[]")


def leaf_keys(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}.{key}".lstrip(".")
        if (
            isinstance(value, dict)
            and value
            and key not in ("resources",)
            and path not in PASS_THROUGH
        ):
            yield from leaf_keys(value, path)
        else:
            yield path


ALL_CHARTS = pytest.mark.parametrize(
    "chart", [OPERATOR_CHART, CRDS_CHART, TENANT_CHART], ids=lambda c: c.name
)


@ALL_CHARTS
def test_should_close_every_object_of_the_schema(chart: Path) -> None:
    for path, node in object_nodes(schema_of(chart)):
        if path in PASS_THROUGH:
            continue
        assert "additionalProperties" in node, f"{chart.name}: {path or '(root)'} is open"
        if "properties" in node:
            assert node["additionalProperties"] is False, path


@ALL_CHARTS
def test_should_refuse_an_unknown_key_by_name(helm: Helm, chart: Path) -> None:
    values = {**TENANT_VALUES, "replicaCount": 2} if chart == TENANT_CHART else None
    set_values = None if values else {"replicaCount": "2"}
    error = helm.render_error(chart, values=values, set_values=set_values)
    assert chart.name in error
    assert "additional properties 'replicaCount' not allowed" in error


def test_should_refuse_an_unknown_nested_key_by_name_and_place(helm: Helm) -> None:
    error = helm.render_error(OPERATOR_CHART, set_values={"settings.scaleIntervall": "10"})
    assert "at '/settings': additional properties 'scaleIntervall' not allowed" in error


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("image.pullPolicy", "Sometimes", "value must be one of 'Always', 'IfNotPresent', 'Never'"),
        ("logFormat", "xml", "value must be one of 'plain', 'full', 'json'"),
        ("verbosity", "loud", "value must be one of 'quiet', 'normal', 'verbose', 'debug'"),
    ],
)
def test_should_refuse_a_value_outside_its_enum(
    helm: Helm, key: str, value: str, message: str
) -> None:
    assert message in helm.render_error(OPERATOR_CHART, set_values={key: value})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # The operator's own bounds (algoedge_operator.settings): refused before it starts.
        ("settings.scaleInterval", "0"),
        ("settings.scaleInterval", "3601"),
        ("settings.resyncInterval", "86401"),
        ("settings.capacityTimeout", "-1"),
        ("settings.capacityTimeout", "61"),
        ("settings.concurrency", "0"),
        ("settings.concurrency", "65"),
        ("settings.httpPort", "0"),
        ("settings.httpPort", "65536"),
        ("service.port", "70000"),
    ],
)
def test_should_refuse_a_setting_out_of_bounds(helm: Helm, key: str, value: str) -> None:
    error = helm.render_error(OPERATOR_CHART, set_values={key: value})
    assert f"at '/{key.replace('.', '/')}'" in error


@pytest.mark.parametrize(
    ("values", "place"),
    [
        ({"settings": {"scaleInterval": "soon"}}, "/settings/scaleInterval"),
        ({"settings": {"concurrency": 2.5}}, "/settings/concurrency"),
        ({"settings": {"capacityUrl": "ftp://{name}"}}, "/settings/capacityUrl"),
        ({"image": {"digest": "md5:abc"}}, "/image/digest"),
        ({"serviceMonitor": {"interval": "often"}}, "/serviceMonitor/interval"),
        ({"extraEnv": [{"value": "no name"}]}, "/extraEnv/0"),
        ({"podLabels": {"team": 7}}, "/podLabels/team"),
        ({"resources": {"requests": {"cpu": "1"}, "limts": {}}}, "/resources"),
        ({"watchNamespaces": ["Team-A"]}, "/watchNamespaces/0"),
        ({"watchNamespaces": ["team_a"]}, "/watchNamespaces/0"),
        ({"watchNamespaces": ["ok", "team-*"]}, "/watchNamespaces/1"),
        ({"watchNamespaces": ["a" * 64]}, "/watchNamespaces/0"),
        ({"watchNamespaces": ["team-a", "team-a"]}, "/watchNamespaces"),
        ({"watchNamespaces": "team-a"}, "/watchNamespaces"),
    ],
)
def test_should_refuse_a_value_of_the_wrong_form(
    helm: Helm, values: dict[str, Any], place: str
) -> None:
    assert f"at '{place}'" in helm.render_error(OPERATOR_CHART, values=values)


def test_should_refuse_a_non_boolean_keep(helm: Helm) -> None:
    assert "at '/keep'" in helm.render_error(CRDS_CHART, values={"keep": "yes"})


@ALL_CHARTS
def test_should_document_every_value_with_a_helm_docs_comment(chart: Path) -> None:
    lines = (chart / "values.yaml").read_text().splitlines()
    values = yaml.safe_load("\n".join(lines))
    undocumented = []
    for path in leaf_keys(values):
        key = path.rsplit(".", 1)[-1]
        indent = "  " * path.count(".")
        at = next(
            i for i, line in enumerate(lines) if re.match(rf"{indent}{re.escape(key)}:", line)
        )
        # The comment block right above the key must start with "# --".
        block = []
        for line in reversed(lines[:at]):
            if not line.strip().startswith("#"):
                break
            block.append(line.strip())
        if not block or not block[-1].startswith("# --"):
            undocumented.append(path)
    assert not undocumented, (
        f"{chart.name}/values.yaml keys without a `# --` comment: {undocumented}"
    )


@ALL_CHARTS
def test_should_list_every_value_in_docs_deploy_md(chart: Path) -> None:
    doc = DEPLOY_DOC.read_text()
    values = yaml.safe_load((chart / "values.yaml").read_text())
    missing = [path for path in leaf_keys(values) if f"| `{path}` |" not in doc]
    assert not missing, f"docs/deploy.md lacks rows for {chart.name} values: {missing}"
