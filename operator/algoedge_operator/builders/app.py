"""Containers of the app's own processes (api, migrate, worker, beat, bridge); their pods come from
:func:`algoedge_operator.builders.common.pod_template` with :func:`app_volumes`."""

from __future__ import annotations

from typing import Any

from algoedge_operator.builders.common import container_security_context, tmp_volume
from algoedge_operator.builders.config import app_env, app_env_from
from algoedge_operator.model import Tenant
from algoedge_operator.profile import Resources


def app_container(
    tenant: Tenant,
    *,
    name: str,
    image: str,
    args: list[str],
    resources: Resources,
    internal_keys: tuple[str, ...],
    extra_env: list[dict[str, Any]] | None = None,
    probes: dict[str, Any] | None = None,
    ports: list[dict[str, Any]] | None = None,
    extra_mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    _, tmp_mount = tmp_volume()
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": tenant.spec.image_pull_policy,
        "args": args,
        "envFrom": app_env_from(tenant),
        "env": [*app_env(tenant, internal_keys=internal_keys), *(extra_env or [])],
        "resources": resources.as_manifest(),
        "securityContext": container_security_context(),
        "volumeMounts": [tmp_mount, *(extra_mounts or [])],
    }
    if ports:
        container["ports"] = ports
    container.update(probes or {})
    return container


def app_volumes(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """An app pod's volumes: the writable /tmp every app container mounts, then ``extra``."""
    tmp, _ = tmp_volume()
    return [tmp, *extra]
