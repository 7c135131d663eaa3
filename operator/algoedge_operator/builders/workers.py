"""Celery workers (replicas from the backlog scaler) and Celery beat (one replica, Recreate)."""

from __future__ import annotations

from typing import Any

from algoedge_operator.builders.app import app_container, app_pod_template
from algoedge_operator.builders.common import (
    Manifest,
    ScaleTargets,
    TenantSecrets,
    metadata,
    selector_labels,
)
from algoedge_operator.builders.config import CREDENTIALS_KEY, app_checksum
from algoedge_operator.model import Tenant
from algoedge_operator.profile import Resources

WORKER_COMPONENT = "worker"
BEAT_COMPONENT = "beat"
BEAT_RESOURCES = Resources("50m", "128Mi", "250m", "256Mi")


def worker_probes() -> dict[str, Any]:
    # Workers serve no HTTP. `celery inspect ping` asks this very node over the broker, so it
    # fails when the worker is wedged or has lost Redis; it starts a Python process, so it runs
    # rarely and gets a generous timeout. sh expands $HOSTNAME (Celery's default node name).
    ping = {
        "exec": {
            "command": [
                "sh",
                "-c",
                'exec celery --app algoedge.jobs inspect ping --timeout 10 --destination "celery@$HOSTNAME"',
            ]
        },
        "timeoutSeconds": 20,
    }
    return {
        "livenessProbe": {
            **ping,
            "initialDelaySeconds": 30,
            "periodSeconds": 60,
            "failureThreshold": 3,
        },
        "readinessProbe": {**ping, "periodSeconds": 30, "failureThreshold": 2},
    }


def worker_deployment(tenant: Tenant, secrets: TenantSecrets, targets: ScaleTargets) -> Manifest:
    workers = tenant.spec.workers
    container = app_container(
        tenant,
        name="worker",
        image=tenant.spec.image,
        args=["worker"],
        resources=workers.resources,
        internal_keys=(CREDENTIALS_KEY,),
        extra_env=[
            {"name": "ALGOEDGE_WORKER_CONCURRENCY", "value": str(workers.concurrency)},
            # Each process reserves one task at a time (with late acks), so queued tasks stay
            # in Redis where the capacity endpoint counts them: the backlog scaler's signal.
            {"name": "ALGOEDGE_WORKER_PREFETCH_MULTIPLIER", "value": "1"},
        ],
        probes=worker_probes(),
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(tenant, WORKER_COMPONENT),
        "spec": {
            "replicas": targets.workers,
            "selector": {"matchLabels": selector_labels(tenant, WORKER_COMPONENT)},
            "template": app_pod_template(
                tenant,
                WORKER_COMPONENT,
                config_checksum=app_checksum(tenant, secrets),
                containers=[container],
                # Let running tasks finish on scale-in (Celery's warm shutdown on SIGTERM).
                termination_grace_seconds=120,
            ),
        },
    }


def beat_deployment(tenant: Tenant, secrets: TenantSecrets) -> Manifest:
    # Beat has no HTTP and no remote-control channel: no probe would check more than "the
    # process exists", which restartPolicy already covers (see docs/operator.md).
    container = app_container(
        tenant,
        name="beat",
        image=tenant.spec.image,
        args=["beat"],
        resources=BEAT_RESOURCES,
        internal_keys=(),
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(tenant, BEAT_COMPONENT),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector_labels(tenant, BEAT_COMPONENT)},
            # Two beats at once would schedule every periodic task twice.
            "strategy": {"type": "Recreate"},
            "template": app_pod_template(
                tenant,
                BEAT_COMPONENT,
                config_checksum=app_checksum(tenant, secrets),
                containers=[container],
            ),
        },
    }
