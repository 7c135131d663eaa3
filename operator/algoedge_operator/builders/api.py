"""The API: Deployment (replicas owned by the HPA) with a migration init container, Service, HPA and PDB."""

from __future__ import annotations

from typing import Any

from algoedge.hashing import hash_concurrency_for

from algoedge_operator.builders.app import app_container, app_volumes
from algoedge_operator.builders.common import (
    APP_UID,
    HTTP_PORT,
    METRICS_PORT,
    Manifest,
    TenantSecrets,
    child_name,
    disruption_budget,
    metadata,
    pod_template,
    selector_labels,
    service_manifest,
)
from algoedge_operator.builders.config import INTERNAL_KEYS, api_checksum, read_replica_env
from algoedge_operator.model import Tenant

COMPONENT = "api"
#: How long a terminating API pod keeps serving before it gets SIGTERM: endpoint removal reaches
#: kube-proxies, ingresses and load balancers asynchronously, and until it has, new requests
#: still arrive. The kubelet's own sleep action (Kubernetes >= 1.30): the image needs no `sleep`.
PRE_STOP_SLEEP_SECONDS = 5
#: What `algoedge api` takes after SIGTERM at most: in-flight requests drain for 20 s, the
#: outbox gets 2 s (docs/architecture.md, "Images and commands").
APP_SHUTDOWN_SECONDS = 22
#: The grace period counts from the start of preStop: the sleep, the app's shutdown, and a
#: margin before SIGKILL.
TERMINATION_GRACE_SECONDS = PRE_STOP_SLEEP_SECONDS + APP_SHUTDOWN_SECONDS + 13


def api_probes() -> dict[str, Any]:
    http = {"port": "http", "scheme": "HTTP"}
    return {
        # /healthz answers while the process runs; a slow start must not be killed.
        "startupProbe": {
            "httpGet": {**http, "path": "/healthz"},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 30,
        },
        "livenessProbe": {
            "httpGet": {**http, "path": "/healthz"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        # /readyz checks Postgres (through pgBouncer) and Redis: no traffic without them.
        "readinessProbe": {
            "httpGet": {**http, "path": "/readyz"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
    }


def api_env(tenant: Tenant) -> list[dict[str, Any]]:
    """The API container's own variables: its password-hashing bound, from its memory limit
    (the arithmetic is the app's, :func:`algoedge.hashing.hash_concurrency_for`)."""
    memory_mib = tenant.spec.api.resources.memory_limit_mib
    return [
        {
            "name": "ALGOEDGE_PASSWORD_HASH_CONCURRENCY",
            "value": str(hash_concurrency_for(memory_mib)),
        },
        # /metrics and /internal/v1/* listen here, not on the public port (docs/security.md).
        {"name": "ALGOEDGE_METRICS_PORT", "value": str(METRICS_PORT)},
    ]


def api_deployment(tenant: Tenant, secrets: TenantSecrets) -> Manifest:
    """No ``replicas``: the HPA owns that field and the operator never fights it."""
    spec = tenant.spec
    migrate = app_container(
        tenant,
        name="migrate",
        image=spec.image,
        args=["migrate"],
        resources=spec.api.resources,
        internal_keys=INTERNAL_KEYS,
    )
    api = app_container(
        tenant,
        name="api",
        image=spec.image,
        args=["api"],
        resources=spec.api.resources,
        internal_keys=INTERNAL_KEYS,
        extra_env=[*api_env(tenant), *read_replica_env(tenant)],
        ports=[
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        probes=api_probes(),
    )
    api["lifecycle"] = {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(tenant, COMPONENT),
        "spec": {
            "selector": {"matchLabels": selector_labels(tenant, COMPONENT)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
            },
            "template": pod_template(
                tenant,
                COMPONENT,
                uid=APP_UID,
                config_checksum=api_checksum(tenant, secrets),
                volumes=app_volumes(),
                # `algoedge migrate` runs before every new API pod serves; it is idempotent and
                # safe in parallel (advisory lock), so a scale-up costs one no-op run.
                init_containers=[migrate],
                containers=[api],
                termination_grace_seconds=TERMINATION_GRACE_SECONDS,
                spread=True,
            ),
        },
    }


def api_service(tenant: Tenant) -> Manifest:
    """``http`` for clients (an Ingress points here); ``metrics`` for the operator's capacity reads
    and Prometheus, reachable only from what
    :func:`algoedge_operator.builders.network.api_network_policy` admits."""
    return service_manifest(
        tenant, COMPONENT, port=HTTP_PORT, port_name="http", more_ports={"metrics": METRICS_PORT}
    )


def api_autoscaler(tenant: Tenant) -> Manifest:
    api = tenant.spec.api
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(tenant, COMPONENT),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": child_name(tenant, COMPONENT),
            },
            "minReplicas": api.replicas.minimum,
            "maxReplicas": api.replicas.maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": api.target_cpu_utilization,
                        },
                    },
                }
            ],
        },
    }


def api_disruption_budget(tenant: Tenant) -> Manifest:
    return disruption_budget(tenant, COMPONENT)
