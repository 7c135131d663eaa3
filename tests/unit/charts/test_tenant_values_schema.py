"""charts/algoedge-tenant/values.schema.json: the CRD's spec rules, held equal to the CRD."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from devtools.crd import CHART_OWNED, render_json, tenant_values_schema
from tests.unit.charts.support import CRD_FILE, TENANT_CHART, TENANT_VALUES, Helm

SCHEMA_FILE = TENANT_CHART / "values.schema.json"


def test_should_hold_the_crds_spec_schema_as_make_crd_writes_it() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    current = json.loads(SCHEMA_FILE.read_text())
    assert SCHEMA_FILE.read_text() == render_json(tenant_values_schema(crd, current)), (
        "charts/algoedge-tenant/values.schema.json is out of date with the CRD: run `make crd`"
    )


def test_should_keep_every_bound_pattern_and_enum_of_the_crd() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = crd["spec"]["versions"]
    crd_spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    values_spec = json.loads(SCHEMA_FILE.read_text())["properties"]["spec"]
    owned = {".".join(p) for p in CHART_OWNED}

    def walk(crd_node: dict[str, Any], values_node: dict[str, Any], path: str) -> None:
        for key in ("type", "minimum", "maximum", "pattern", "enum", "minLength", "maxLength"):
            assert crd_node.get(key) == values_node.get(key), f"{path}: {key}"
        for name, child in crd_node.get("properties", {}).items():
            where = f"{path}.{name}".lstrip(".")
            if where in owned:
                assert name not in values_node.get("properties", {}), where
                continue
            walk(child, values_node["properties"][name], where)

    walk(crd_spec, values_spec, "")


@pytest.mark.parametrize(
    ("spec", "place"),
    [
        ({"api": {"minReplicas": 0}}, "/spec/api/minReplicas"),
        ({"workers": {"queues": ["Bad Queue"]}}, "/spec/workers/queues/0"),
        ({"reports": {"dailyAt": "24:00"}}, "/spec/reports/dailyAt"),
        ({"redis": {"mode": "clustered"}}, "/spec/redis/mode"),
        ({"bridge": {"accountsPerReplica": 101}}, "/spec/bridge/accountsPerReplica"),
    ],
)
def test_should_refuse_what_the_crd_refuses_by_place(
    helm: Helm, spec: dict[str, Any], place: str
) -> None:
    error = helm.render_error(TENANT_CHART, values={**TENANT_VALUES, "spec": spec})
    assert f"at '{place}'" in error


@pytest.mark.parametrize(
    ("spec", "place", "key"),
    [
        ({"image": "x"}, "/spec", "image"),
        ({"database": {"secretRef": {"name": "x"}}}, "/spec/database", "secretRef"),
        (
            {"bridge": {"metaapi": {"tokenSecretRef": {"name": "x"}}}},
            "/spec/bridge/metaapi",
            "tokenSecretRef",
        ),
        ({"workers": {"maxReplicsa": 3}}, "/spec/workers", "maxReplicsa"),
    ],
)
def test_should_refuse_chart_owned_and_unknown_spec_fields(
    helm: Helm, spec: dict[str, Any], place: str, key: str
) -> None:
    error = helm.render_error(TENANT_CHART, values={**TENANT_VALUES, "spec": spec})
    assert f"at '{place}': additional properties '{key}' not allowed" in error


def test_should_refuse_expected_users_out_of_the_crds_bounds(helm: Helm) -> None:
    error = helm.render_error(TENANT_CHART, values={**TENANT_VALUES, "expectedUsers": 0})
    assert "at '/expectedUsers'" in error
