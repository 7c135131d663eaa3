"""The MetaAPI bridge: StatefulSet (replicas from the linked-accounts scaler), headless Service and
PodDisruptionBudget (its NetworkPolicy is in :mod:`algoedge_operator.builders.network`)."""

from __future__ import annotations

from typing import Any

from algoedge_operator.builders.app import app_container, app_volumes
from algoedge_operator.builders.common import (
    APP_UID,
    METRICS_PORT,
    Manifest,
    ScaleTargets,
    TenantSecrets,
    child_name,
    disruption_budget,
    image_version,
    metadata,
    pod_template,
    selector_labels,
    service_manifest,
)
from algoedge_operator.builders.config import CREDENTIALS_KEY, bridge_checksum, metaapi_token_env
from algoedge_operator.model import Tenant

COMPONENT = "bridge"
#: The SDK writes its history cache to ./.metaapi; the working directory is an emptyDir.
WORKDIR = "/var/lib/algoedge-bridge"
#: On SIGTERM the bridge deregisters, closes its MetaAPI connections and releases its account
#: leases, within about 45 s; the rest is margin before the kubelet's SIGKILL. Leases a killed
#: bridge could not release keep its accounts unconnected until they expire.
BRIDGE_GRACE_SECONDS = 60


def bridge_probes() -> dict[str, Any]:
    http = {"port": "metrics", "scheme": "HTTP"}
    return {
        # /livez answers once the event loop runs; importing the SDK can take a while.
        "startupProbe": {
            "httpGet": {**http, "path": "/livez"},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 30,
        },
        # A restart drops every MetaAPI connection of the pod's accounts and makes them
        # synchronize again: only a loop stuck for a minute is worth that.
        "livenessProbe": {
            "httpGet": {**http, "path": "/livez"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        # /readyz: registered as a member in Redis and renewing its leases. Nothing routes to the
        # bridge; readiness paces rolling updates (one pod at a time) and feeds the status.
        "readinessProbe": {
            "httpGet": {**http, "path": "/readyz"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
    }


def bridge_service(tenant: Tenant) -> Manifest:
    """Headless: one DNS name per pod, and the metrics port for scraping each of them."""
    return service_manifest(
        tenant, COMPONENT, port=METRICS_PORT, port_name="metrics", headless=True
    )


def bridge_stateful_set(tenant: Tenant, secrets: TenantSecrets, targets: ScaleTargets) -> Manifest:
    spec = tenant.spec
    bridge = spec.bridge
    version = image_version(spec.bridge_image)
    metaapi = bridge.metaapi
    region = (
        []
        if metaapi.region is None
        else [{"name": "ALGOEDGE_METAAPI_REGION", "value": metaapi.region}]
    )
    # A MetaAPI-compatible server (the simulator on a test cluster) instead of the domain's hosts.
    url = [] if metaapi.url is None else [{"name": "ALGOEDGE_METAAPI_URL", "value": metaapi.url}]
    container = app_container(
        tenant,
        name="bridge",
        image=spec.bridge_image,
        args=["bridge"],
        resources=bridge.resources,
        internal_keys=(CREDENTIALS_KEY,),
        extra_env=[
            {"name": "ALGOEDGE_METRICS_PORT", "value": str(METRICS_PORT)},
            # StatefulSet pods are <t>-bridge-<ordinal>: the bridge's member name in Redis.
            {
                "name": "ALGOEDGE_BRIDGE_POD_NAME",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
            },
            {
                "name": "ALGOEDGE_BRIDGE_MAX_CONCURRENT_SYNCS",
                "value": str(bridge.max_concurrent_syncs),
            },
            {"name": "ALGOEDGE_METAAPI_DOMAIN", "value": metaapi.domain},
            *region,
            *url,
            # Only the bridge talks to MetaAPI; no other pod sees the token.
            *metaapi_token_env(tenant),
        ],
        ports=[{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        probes=bridge_probes(),
        extra_mounts=[{"name": "workdir", "mountPath": WORKDIR}],
    )
    container["workingDir"] = WORKDIR
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(tenant, COMPONENT, version=version),
        "spec": {
            "serviceName": child_name(tenant, COMPONENT),
            # 0 while no MetaAPI token is referenced: the scaler's range is 0..0 then.
            "replicas": targets.bridge,
            # Bridge pods are independent shards: start and stop them all at once.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(tenant, COMPONENT)},
            "template": pod_template(
                tenant,
                COMPONENT,
                uid=APP_UID,
                version=version,
                config_checksum=bridge_checksum(tenant, secrets),
                containers=[container],
                volumes=app_volumes({"name": "workdir", "emptyDir": {"sizeLimit": "1Gi"}}),
                termination_grace_seconds=BRIDGE_GRACE_SECONDS,
            ),
        },
    }


def bridge_disruption_budget(tenant: Tenant) -> Manifest:
    """A drain moves one bridge pod's accounts at a time; the others stay connected."""
    return disruption_budget(tenant, COMPONENT)
