"""Containers and pod templates for the app's own processes (api, migrate, worker, beat, bridge)."""

from __future__ import annotations

from typing import Any

from algoedge_operator.builders.common import (
    APP_UID,
    CHECKSUM_ANNOTATION,
    container_security_context,
    labels,
    pod_spec_defaults,
    selector_labels,
    tmp_volume,
)
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


def app_pod_template(
    tenant: Tenant,
    component: str,
    *,
    config_checksum: str,
    containers: list[dict[str, Any]],
    version: str | None = None,
    init_containers: list[dict[str, Any]] | None = None,
    termination_grace_seconds: int = 30,
    extra_volumes: list[dict[str, Any]] | None = None,
    spread: bool = False,
) -> dict[str, Any]:
    tmp, _ = tmp_volume()
    spec: dict[str, Any] = {
        **pod_spec_defaults(APP_UID),
        "terminationGracePeriodSeconds": termination_grace_seconds,
        "containers": containers,
        "volumes": [tmp, *(extra_volumes or [])],
    }
    if init_containers:
        spec["initContainers"] = init_containers
    if spread:
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(tenant, component)},
            }
        ]
    return {
        "metadata": {
            "labels": labels(tenant, component, version=version),
            "annotations": {CHECKSUM_ANNOTATION: config_checksum},
        },
        "spec": spec,
    }
