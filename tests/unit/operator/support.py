"""Tenants and inputs for builder tests: a realistic spec, deterministic secrets."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from algoedge_operator.builders import DatabaseTarget, Images, Manifest, ScaleTargets, TenantSecrets
from algoedge_operator.model import Tenant, parse_spec

BASE_SPEC: dict[str, Any] = {
    "image": "registry.example.com/algoedge:1.0.0",
    "bridgeImage": "registry.example.com/algoedge-bridge:1.0.0",
    "expectedUsers": 500,
    "database": {"secretRef": {"name": "acme-db"}},
    "bridge": {"metaapi": {"tokenSecretRef": {"name": "acme-metaapi"}}},
}
#: A MetaAPI token of the form the bridge accepts (three dot-separated parts, like a JWT), as
#: Secret ``acme-metaapi`` key ``token`` holds it.
METAAPI_TOKEN = "eyJhbGciOiJSUzUxMiJ9.eyJfaWQiOiJhY21lIn0.c2lnbmF0dXJl"
IMAGES = Images(redis="redis:7.4.2-alpine", pgbouncer="pgbouncer:1.24.1")
TARGETS = ScaleTargets(workers=3, bridge=2)
DATABASE = DatabaseTarget(
    host="db.example.com", port=5432, dbname="acme", user="acme", password="p@ss", sslmode="require"
)


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def without_metaapi_token() -> dict[str, Any]:
    """BASE_SPEC without ``spec.bridge.metaapi.tokenSecretRef`` (:func:`merged` only adds)."""
    spec = copy.deepcopy(BASE_SPEC)
    del spec["bridge"]["metaapi"]["tokenSecretRef"]
    return spec


def tenant(paused: bool = False, *, base: Mapping[str, Any] = BASE_SPEC, **spec: Any) -> Tenant:
    return Tenant(
        name="acme",
        namespace="trading",
        uid="0000-uid",
        generation=3,
        paused=paused,
        spec=parse_spec(merged(base, spec)),
    )


def tenant_secrets(**changes: Any) -> TenantSecrets:
    values: dict[str, Any] = {
        "internal": {
            "ALGOEDGE_INTERNAL_TOKEN": "internal-token-0123456789",
            "ALGOEDGE_JWT_SECRET": "j" * 48,
            "ALGOEDGE_CREDENTIALS_KEY": "k" * 44,
        },
        "redis_password": "redis-password",
        "database": DATABASE,
    }
    values.update(changes)
    return TenantSecrets(**values)


def container(manifest: Manifest, name: str) -> dict[str, Any]:
    containers = manifest["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def env_names(container_spec: Mapping[str, Any]) -> set[str]:
    return {entry["name"] for entry in container_spec.get("env", [])}
