"""charts/algoedge-tenant/templates/secret-*.yaml: the Secrets the chart creates, labelled for the
tenant as the operator requires of every Secret a tenant references."""

from __future__ import annotations

import base64
from typing import Any

from tests.unit.charts.support import REQUIRED_LABELS, TENANT_CHART, TENANT_VALUES, Helm, kinds

TOKEN = "eyJhbGciOiJSUzUxMiJ9.eyJfaWQiOiJ1bml0In0.c2lnbmF0dXJl"


def secrets(helm: Helm, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    manifests = helm.render(TENANT_CHART, values=values, release="acme")
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Secret"}


def test_should_create_both_secrets_labelled_for_the_tenant(helm: Helm) -> None:
    found = secrets(helm, {**TENANT_VALUES, "metaapi": {"token": TOKEN}})
    assert set(found) == {"acme-db", "acme-metaapi"}
    for secret in found.values():
        labels = secret["metadata"]["labels"]
        assert labels["algoedge.io/tenant"] == "acme"
        for label in REQUIRED_LABELS:
            assert labels[label], label
    db = found["acme-db"]["data"]
    assert base64.b64decode(db["url"]).decode() == TENANT_VALUES["database"]["url"]
    token = found["acme-metaapi"]["data"]
    assert base64.b64decode(token["token"]).decode() == TOKEN


def test_should_create_no_secret_for_secrets_the_user_manages(helm: Helm) -> None:
    values = {
        "database": {"existingSecret": {"name": "pg"}},
        "metaapi": {"existingSecret": {"name": "mt"}},
    }
    assert "Secret" not in kinds(helm.render(TENANT_CHART, values=values, show_only=None))
    assert secrets(helm, values) == {}


def test_should_refuse_a_database_url_of_another_scheme(helm: Helm) -> None:
    error = helm.render_error(TENANT_CHART, values={"database": {"url": "mysql://db/x"}})
    assert "at '/database/url'" in error


def test_should_refuse_a_token_that_is_not_a_jwt(helm: Helm) -> None:
    values = {**TENANT_VALUES, "metaapi": {"token": "not-a-jwt"}}
    assert "at '/metaapi/token'" in helm.render_error(TENANT_CHART, values=values)
