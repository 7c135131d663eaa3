"""The MetaAPI bridge: StatefulSet (replicas from the linked-accounts scaler) and headless Service."""

from __future__ import annotations

from algoedge_operator.builders.app import app_container, app_volumes
from algoedge_operator.builders.common import (
    APP_UID,
    Manifest,
    ScaleTargets,
    TenantSecrets,
    child_name,
    image_version,
    metadata,
    pod_template,
    selector_labels,
    service_manifest,
)
from algoedge_operator.builders.config import CREDENTIALS_KEY, app_checksum
from algoedge_operator.model import Tenant

COMPONENT = "bridge"
#: The SDK writes its history cache to ./.metaapi; the working directory is an emptyDir.
WORKDIR = "/var/lib/algoedge-bridge"
#: Pod ordinal port for the headless Service (peer discovery; the bridge serves nothing yet).
PEER_PORT = 8090


def bridge_service(tenant: Tenant) -> Manifest:
    return service_manifest(tenant, COMPONENT, port=PEER_PORT, port_name="peer", headless=True)


def bridge_stateful_set(tenant: Tenant, secrets: TenantSecrets, targets: ScaleTargets) -> Manifest:
    spec = tenant.spec
    version = image_version(spec.bridge_image)
    # No probes yet: the bridge has no endpoint (README: `algoedge bridge` is planned); a
    # readiness gate on "process exists" would only hide that. See docs/operator.md.
    container = app_container(
        tenant,
        name="bridge",
        image=spec.bridge_image,
        args=["bridge"],
        resources=spec.bridge.resources,
        internal_keys=(CREDENTIALS_KEY,),
        extra_env=[
            {
                "name": "ALGOEDGE_BRIDGE_ACCOUNTS_PER_REPLICA",
                "value": str(spec.bridge.accounts_per_replica),
            },
            # StatefulSet pods are <t>-bridge-<ordinal>: the bridge shards accounts by it.
            {
                "name": "ALGOEDGE_BRIDGE_POD_NAME",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
            },
        ],
        ports=[{"name": "peer", "containerPort": PEER_PORT, "protocol": "TCP"}],
        extra_mounts=[{"name": "workdir", "mountPath": WORKDIR}],
    )
    container["workingDir"] = WORKDIR
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(tenant, COMPONENT, version=version),
        "spec": {
            "serviceName": child_name(tenant, COMPONENT),
            "replicas": targets.bridge,
            # Bridge pods are independent shards: start and stop them all at once.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(tenant, COMPONENT)},
            "template": pod_template(
                tenant,
                COMPONENT,
                uid=APP_UID,
                version=version,
                config_checksum=app_checksum(tenant, secrets),
                containers=[container],
                volumes=app_volumes({"name": "workdir", "emptyDir": {"sizeLimit": "1Gi"}}),
                termination_grace_seconds=60,
            ),
        },
    }
