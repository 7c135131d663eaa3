"""charts/algoedge-tenant/templates/algoedgetenant.yaml: one AlgoEdgeTenant the operator accepts."""

from __future__ import annotations

from typing import Any

import pytest
from algoedge_operator.model import parse_spec

from tests.unit.charts.support import (
    REQUIRED_LABELS,
    TENANT_CHART,
    TENANT_VALUES,
    Helm,
    Manifest,
    only,
)


def tenant(helm: Helm, values: dict[str, Any], **kwargs: Any) -> Manifest:
    return only(helm.render(TENANT_CHART, values=values, **kwargs), "AlgoEdgeTenant")


def test_should_name_the_tenant_after_the_release(helm: Helm) -> None:
    rendered = tenant(helm, TENANT_VALUES, release="acme", namespace="trading")
    assert rendered["metadata"]["name"] == "acme"
    assert rendered["metadata"]["namespace"] == "trading"
    assert rendered["apiVersion"] == "algoedge.io/v1alpha1"
    for label in REQUIRED_LABELS:
        assert rendered["metadata"]["labels"][label], label


def test_should_name_the_tenant_by_tenant_name_when_given(helm: Helm) -> None:
    rendered = tenant(helm, {**TENANT_VALUES, "tenantName": "pilot"}, release="r1")
    assert rendered["metadata"]["name"] == "pilot"
    assert rendered["spec"]["database"]["secretRef"] == {"name": "pilot-db", "key": "url"}


def test_should_set_the_images_from_repository_and_tag_or_digest(helm: Helm) -> None:
    digest = "sha256:" + "a" * 64
    values = {
        **TENANT_VALUES,
        "image": {"repository": "reg.example.com/algoedge", "tag": "1.2.3"},
        "bridgeImage": {"repository": "reg.example.com/algoedge-bridge", "digest": digest},
    }
    spec = tenant(helm, values)["spec"]
    assert spec["image"] == "reg.example.com/algoedge:1.2.3"
    assert spec["bridgeImage"] == f"reg.example.com/algoedge-bridge@{digest}"
    default = tenant(helm, TENANT_VALUES)["spec"]
    assert default["image"] == "registry.example.com/algoedge:0.1.0"  # appVersion


def test_should_reference_the_database_secret_the_chart_creates(helm: Helm) -> None:
    spec = tenant(helm, TENANT_VALUES, release="acme")["spec"]
    assert spec["database"] == {"secretRef": {"name": "acme-db", "key": "url"}}


def test_should_reference_an_existing_database_secret_and_its_key(helm: Helm) -> None:
    values = {"database": {"existingSecret": {"name": "shared-pg", "key": "uri"}}}
    spec = tenant(helm, values)["spec"]
    assert spec["database"]["secretRef"] == {"name": "shared-pg", "key": "uri"}


@pytest.mark.parametrize(
    ("database", "message"),
    [
        ({}, "database: set database.url"),
        (
            {"url": "postgresql://a:b@h:5432/d", "existingSecret": {"name": "x"}},
            "give either database.url",
        ),
    ],
)
def test_should_refuse_anything_but_one_database(
    helm: Helm, database: dict[str, Any], message: str
) -> None:
    assert message in helm.render_error(TENANT_CHART, values={"database": database})


def test_should_leave_the_bridge_without_a_token_when_none_is_given(helm: Helm) -> None:
    spec = tenant(helm, TENANT_VALUES)["spec"]
    assert "bridge" not in spec


def test_should_reference_the_token_secret_beside_the_users_metaapi_fields(helm: Helm) -> None:
    values = {
        **TENANT_VALUES,
        "metaapi": {"existingSecret": {"name": "mt"}},
        "spec": {"bridge": {"maxReplicas": 4, "metaapi": {"region": "london"}}},
    }
    bridge = tenant(helm, values)["spec"]["bridge"]
    assert bridge == {
        "maxReplicas": 4,
        "metaapi": {"region": "london", "tokenSecretRef": {"name": "mt", "key": "token"}},
    }


def test_should_refuse_a_token_given_twice(helm: Helm) -> None:
    values = {**TENANT_VALUES, "metaapi": {"token": "a.b.c", "existingSecret": {"name": "mt"}}}
    assert "give either metaapi.token" in helm.render_error(TENANT_CHART, values=values)


def test_should_pass_every_other_spec_field_through(helm: Helm) -> None:
    values = {
        **TENANT_VALUES,
        "expectedUsers": 300,
        "spec": {
            "database": {"pool": {"mode": "session"}},
            "workers": {"queues": ["default"], "maxReplicas": 6},
            "trustedProxies": ["10.0.0.0/8"],
        },
    }
    spec = tenant(helm, values, release="acme")["spec"]
    assert spec["expectedUsers"] == 300
    assert spec["database"] == {
        "pool": {"mode": "session"},
        "secretRef": {"name": "acme-db", "key": "url"},
    }
    assert spec["workers"] == {"queues": ["default"], "maxReplicas": 6}
    assert spec["trustedProxies"] == ["10.0.0.0/8"]


def test_should_render_a_spec_the_operator_reads_as_the_values_say(helm: Helm) -> None:
    values = {
        **TENANT_VALUES,
        "expectedUsers": 300,
        "metaapi": {"token": "a.b.c"},
        "spec": {"redis": {"maxMemory": "2Gi"}, "api": {"minReplicas": 4}},
    }
    parsed = parse_spec(tenant(helm, values, release="acme")["spec"])
    assert parsed.profile.name == "large"
    assert parsed.redis.max_memory_mib == 2048
    assert parsed.api.replicas.minimum == 4
    assert parsed.bridge.metaapi.token_secret is not None
    assert parsed.bridge.metaapi.token_secret.name == "acme-metaapi"


def test_should_refuse_a_tenant_name_its_childrens_names_would_outgrow(helm: Helm) -> None:
    error = helm.render_error(TENANT_CHART, values={**TENANT_VALUES, "tenantName": "a" * 41})
    assert "at '/tenantName'" in error
    tenant(helm, {**TENANT_VALUES, "tenantName": "a" * 40})
