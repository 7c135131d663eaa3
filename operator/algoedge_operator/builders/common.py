"""Pieces every child manifest shares: names, labels, owner references, security and checksums.

Builders are pure: everything they need (generated secrets, the database URL's parts, replica
targets, images) arrives as an argument; nothing here reads the clock, the network or a
random source.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from algoedge_operator.model import API_VERSION, KIND, DatabaseTarget, Tenant

Manifest = dict[str, Any]

MANAGER = "algoedge-operator"
#: Every child carries ``MANAGED_BY_LABEL: MANAGER``; the informers select on it.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
#: Names the tenant a child belongs to.
INSTANCE_LABEL = "app.kubernetes.io/instance"
#: Pod template annotation: a hash of every config and secret value the pods read.
CHECKSUM_ANNOTATION = "algoedge.io/config-checksum"

APP_UID = 10001
REDIS_UID = 999
PGBOUNCER_UID = 70

HTTP_PORT = 8080
#: Prometheus /metrics of every app process (``ALGOEDGE_METRICS_PORT``, port name ``metrics``; the
#: bridge also answers its probes there, the API its /internal/v1/* capacity endpoint).
METRICS_PORT = 9090
REDIS_PORT = 6379
PGBOUNCER_PORT = 6432
#: Every component's Prometheus endpoint is a container port of this name (the PodMonitors scrape
#: it); the exporters' ports are their projects' defaults.
METRICS_PORT_NAME = "metrics"
PGBOUNCER_EXPORTER_PORT = 9127
REDIS_EXPORTER_PORT = 9121


@dataclass(frozen=True)
class Images:
    """Third-party images the operator runs beside the tenant's own (operator settings)."""

    redis: str
    pgbouncer: str
    #: The exporter sidecars of a monitored tenant; None: not run (outside the image allowlist).
    pgbouncer_exporter: str | None = None
    redis_exporter: str | None = None


@dataclass(frozen=True)
class TenantSecrets:
    """Generated and referenced secret material one reconcile works with."""

    #: ``ALGOEDGE_INTERNAL_TOKEN``, ``ALGOEDGE_JWT_SECRET``, ``ALGOEDGE_CREDENTIALS_KEY``.
    internal: Mapping[str, str]
    #: Managed Redis password (None in external mode).
    redis_password: str | None
    database: DatabaseTarget
    #: The read replicas' target (``spec.database.readReplicas``), None without.
    read_replica: DatabaseTarget | None = None
    #: :func:`secret_digest` of the external Redis Secret's value, so a rotated URL rolls the pods
    #: (external mode).
    external_redis_digest: str = ""
    #: :func:`secret_digest` of the SMTP Secret's value (``spec.mail.smtpSecretRef``), so a
    #: rotated URL rolls the workers, the only pods that read it; "" when none is referenced.
    smtp_url_digest: str = ""
    #: :func:`secret_digest` of the MetaAPI token (``spec.bridge.metaapi.tokenSecretRef``), so a
    #: rotated token rolls the bridge, the only pods that read it; "" when none is referenced.
    metaapi_token_digest: str = ""
    #: The port of the external Redis URL (external mode): the bridge's NetworkPolicy lets its
    #: pods reach it.
    external_redis_port: int | None = None
    #: Password of pgBouncer's stats user (the exporter's login to its admin console), generated
    #: once and kept in Secret ``<t>-pgbouncer``; None unless ``spec.monitoring.enabled``.
    pgbouncer_stats_password: str | None = None


@dataclass(frozen=True)
class ScaleTargets:
    """Replica counts the scalers chose for the operator-scaled components."""

    workers: int
    bridge: int


def child_name(tenant: Tenant, component: str) -> str:
    return f"{tenant.name}-{component}"


def selector_labels(tenant: Tenant, component: str) -> dict[str, str]:
    """The immutable subset used in selectors (a Deployment's selector cannot change)."""
    return {
        "app.kubernetes.io/name": "algoedge",
        INSTANCE_LABEL: tenant.name,
        "app.kubernetes.io/component": component,
    }


def tenant_pod_labels(tenant: Tenant) -> dict[str, str]:
    """Matches every pod of the tenant (NetworkPolicy peers)."""
    return {"app.kubernetes.io/name": "algoedge", INSTANCE_LABEL: tenant.name}


def image_version(image: str) -> str:
    """The tag of an image reference, or "unknown"; label-safe (63 chars, no digest)."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return tag[:63].strip("-_.") or "unknown"


def labels(tenant: Tenant, component: str, *, version: str | None = None) -> dict[str, str]:
    result = {
        **selector_labels(tenant, component),
        MANAGED_BY_LABEL: MANAGER,
        "app.kubernetes.io/part-of": "algoedge",
    }
    result["app.kubernetes.io/version"] = version or image_version(tenant.spec.image)
    return result


def owner_reference(tenant: Tenant) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": tenant.name,
        "uid": tenant.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    tenant: Tenant, component: str, *, name: str | None = None, version: str | None = None
) -> dict[str, Any]:
    return {
        "name": name or child_name(tenant, component),
        "namespace": tenant.namespace,
        "labels": labels(tenant, component, version=version),
        "ownerReferences": [owner_reference(tenant)],
    }


def pod_security_context(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_spec_defaults(uid: int) -> dict[str, Any]:
    """Settings every tenant pod shares."""
    return {
        # No tenant process talks to the Kubernetes API.
        "automountServiceAccountToken": False,
        # Service links would inject e.g. ACME_REDIS_PORT=tcp://… into every container.
        "enableServiceLinks": False,
        "securityContext": pod_security_context(uid),
    }


def pod_template(
    tenant: Tenant,
    component: str,
    *,
    uid: int,
    config_checksum: str,
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    version: str | None = None,
    init_containers: list[dict[str, Any]] | None = None,
    termination_grace_seconds: int = 30,
    spread: bool = False,
) -> dict[str, Any]:
    """The pod template of every tenant workload: labels, the config checksum that rolls the pods
    on any config or secret change, the shared pod settings running as ``uid``, and optionally a
    spread over nodes."""
    spec: dict[str, Any] = {
        **pod_spec_defaults(uid),
        "terminationGracePeriodSeconds": termination_grace_seconds,
        "containers": containers,
        "volumes": volumes,
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


def exporter_container(
    tenant: Tenant, *, image: str, port: int, env: list[dict[str, Any]], args: list[str]
) -> dict[str, Any]:
    """A Prometheus exporter sidecar serving ``/metrics`` on container port ``metrics``. No
    probes: a pod is ready only when all its containers are, and an exporter that cannot read its
    server must not take pgBouncer or Redis out of service (it reports ``*_up 0`` instead)."""
    return {
        "name": "exporter",
        "image": image,
        "imagePullPolicy": tenant.spec.image_pull_policy,
        "args": args,
        "env": env,
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
        "securityContext": container_security_context(),
    }


def tmp_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """A writable /tmp for read-only root filesystems: (volume, mount)."""
    return (
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a pod-private emptyDir
    )


def own_file_volumes(name: str, *, key_volume: str, key: str) -> list[dict[str, Any]]:
    """Volumes of a third-party workload (Redis, pgBouncer) that reads its config from files:
    ConfigMap ``name`` as ``config``, the one ``key`` of Secret ``name`` as ``key_volume``, and
    the writable /tmp."""
    tmp, _ = tmp_volume()
    return [
        {"name": "config", "configMap": {"name": name}},
        {"name": key_volume, "secret": {"secretName": name, "items": [{"key": key, "path": key}]}},
        tmp,
    ]


def checksum(parts: Iterable[Mapping[str, Any]]) -> str:
    """A stable hash over config data; any change rolls the pods that carry it."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def secret_digest(value: str) -> str:
    """A hash of a referenced secret value: enough to notice any change, useless to read it back."""
    return hashlib.sha256(value.encode()).hexdigest()


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def disruption_budget(tenant: Tenant, component: str) -> Manifest:
    """A PodDisruptionBudget letting voluntary disruptions (drains) take one pod of
    ``component`` at a time; maxUnavailable (not minAvailable), so a single replica never blocks
    a node drain."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(tenant, component),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(tenant, component)},
            # A pod that is not ready serves nobody: evicting it costs nothing.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def secret_manifest(
    tenant: Tenant, component: str, values: Mapping[str, str], *, name: str | None = None
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(tenant, component, name=name),
        "type": "Opaque",
        "data": {key: b64(value) for key, value in sorted(values.items())},
    }


def service_manifest(
    tenant: Tenant,
    component: str,
    *,
    port: int,
    port_name: str,
    headless: bool = False,
    more_ports: Mapping[str, int] | None = None,
) -> Manifest:
    """``more_ports``: further named ports (name: number), each targeting the container port of
    that name."""
    ports = {port_name: port, **(more_ports or {})}
    spec: dict[str, Any] = {
        "selector": selector_labels(tenant, component),
        "ports": [
            {"name": name, "port": number, "targetPort": name, "protocol": "TCP"}
            for name, number in ports.items()
        ],
    }
    if headless:
        spec["clusterIP"] = "None"
        # Every pod gets its DNS name and is scraped from its start, ready or not (a bridge pod
        # is not ready until it is registered in Redis: its metrics say why).
        spec["publishNotReadyAddresses"] = True
    else:
        spec["type"] = "ClusterIP"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(tenant, component),
        "spec": spec,
    }
