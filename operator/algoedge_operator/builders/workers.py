"""Celery workers (replicas from the backlog scaler) and Celery beat (one replica, Recreate)."""

from __future__ import annotations

from typing import Any

from algoedge_operator.builders.app import app_container, app_volumes
from algoedge_operator.builders.common import (
    APP_UID,
    METRICS_PORT,
    Manifest,
    ScaleTargets,
    TenantSecrets,
    metadata,
    pod_template,
    selector_labels,
)
from algoedge_operator.builders.config import (
    CREDENTIALS_KEY,
    app_checksum,
    read_replica_env,
    smtp_url_env,
    worker_checksum,
)
from algoedge_operator.model import Tenant
from algoedge_operator.profile import Resources

WORKER_COMPONENT = "worker"
BEAT_COMPONENT = "beat"
BEAT_RESOURCES = Resources("50m", "128Mi", "250m", "256Mi")

#: The worker pod's terminationGracePeriodSeconds: room for running tasks on scale-in.
WORKER_GRACE_SECONDS = 120
#: Of that grace, what the worker keeps after its soft shutdown ends: handing unfinished tasks
#: back to the queue and closing connections must happen before the kubelet's SIGKILL.
WORKER_SHUTDOWN_MARGIN_SECONDS = 30
#: ``ALGOEDGE_WORKER_SOFT_SHUTDOWN_TIMEOUT``: seconds running tasks get to finish on SIGTERM.
WORKER_SOFT_SHUTDOWN_SECONDS = WORKER_GRACE_SECONDS - WORKER_SHUTDOWN_MARGIN_SECONDS


def heartbeat_probes() -> dict[str, Any]:
    """Worker and beat touch ``ALGOEDGE_HEARTBEAT_FILE`` (the app's default lies in the pod's
    /tmp emptyDir) while healthy: the worker every ~15 s, beat on every scheduler tick (at most
    30 s apart). ``algoedge probe`` only compares the file's age, so a Redis blip restarts
    nothing, unlike ``celery inspect ping``, which goes through the broker and starts Celery."""

    def probe(max_age_seconds: int) -> dict[str, Any]:
        # Exec without a shell: nothing to expand, and no shell needed in the image.
        command = ["algoedge", "probe", "--max-age", str(max_age_seconds)]
        # A Python process starting on a busy node can take seconds; the default (1 s) is tight.
        return {"exec": {"command": command}, "timeoutSeconds": 10}

    return {
        # Two minutes without a heartbeat (eight missed worker beats, four beat ticks) means
        # wedged, not merely busy.
        "livenessProbe": {
            **probe(120),
            "initialDelaySeconds": 30,
            "periodSeconds": 30,
            "failureThreshold": 3,
        },
        "readinessProbe": {**probe(60), "periodSeconds": 15},
    }


def jobs_container(
    tenant: Tenant,
    *,
    name: str,
    resources: Resources,
    internal_keys: tuple[str, ...],
    extra_env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Celery process (``algoedge worker`` / ``algoedge beat``): heartbeat probes and /metrics."""
    return app_container(
        tenant,
        name=name,
        image=tenant.spec.image,
        args=[name],
        resources=resources,
        internal_keys=internal_keys,
        extra_env=[
            {"name": "ALGOEDGE_METRICS_PORT", "value": str(METRICS_PORT)},
            *(extra_env or []),
        ],
        ports=[{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        probes=heartbeat_probes(),
    )


def worker_deployment(tenant: Tenant, secrets: TenantSecrets, targets: ScaleTargets) -> Manifest:
    workers = tenant.spec.workers
    container = jobs_container(
        tenant,
        name="worker",
        resources=workers.resources,
        internal_keys=(CREDENTIALS_KEY,),
        extra_env=[
            {"name": "ALGOEDGE_WORKER_CONCURRENCY", "value": str(workers.concurrency)},
            # Each process reserves one task at a time (with late acks), so queued tasks stay
            # in Redis where the capacity endpoint counts them: the backlog scaler's signal.
            {"name": "ALGOEDGE_WORKER_PREFETCH_MULTIPLIER", "value": "1"},
            {
                "name": "ALGOEDGE_WORKER_SOFT_SHUTDOWN_TIMEOUT",
                "value": str(WORKER_SOFT_SHUTDOWN_SECONDS),
            },
            # Only workers send mail; the API and beat never see the SMTP credentials.
            *smtp_url_env(tenant),
            # Report generation reads the period's trades from the read replicas.
            *read_replica_env(tenant),
        ],
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(tenant, WORKER_COMPONENT),
        "spec": {
            "replicas": targets.workers,
            "selector": {"matchLabels": selector_labels(tenant, WORKER_COMPONENT)},
            "template": pod_template(
                tenant,
                WORKER_COMPONENT,
                uid=APP_UID,
                config_checksum=worker_checksum(tenant, secrets),
                containers=[container],
                volumes=app_volumes(),
                # On scale-in, running tasks get the soft shutdown to finish; the rest go back
                # to the queue within the margin.
                termination_grace_seconds=WORKER_GRACE_SECONDS,
            ),
        },
    }


def beat_deployment(tenant: Tenant, secrets: TenantSecrets) -> Manifest:
    # Beat has the workers' heartbeat probes: it touches the file on every scheduler tick, so a
    # scheduler loop that stopped ticking is restarted rather than silently scheduling nothing.
    container = jobs_container(tenant, name="beat", resources=BEAT_RESOURCES, internal_keys=())
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(tenant, BEAT_COMPONENT),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector_labels(tenant, BEAT_COMPONENT)},
            # Two beats at once would schedule every periodic task twice.
            "strategy": {"type": "Recreate"},
            "template": pod_template(
                tenant,
                BEAT_COMPONENT,
                uid=APP_UID,
                config_checksum=app_checksum(tenant, secrets),
                containers=[container],
                volumes=app_volumes(),
            ),
        },
    }
