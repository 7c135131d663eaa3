"""Pure builders: a tenant and its inputs in, the manifests of every child out (no I/O, clock or randomness)."""

from __future__ import annotations

from dataclasses import dataclass

from algoedge_operator.builders.api import (
    api_autoscaler,
    api_deployment,
    api_disruption_budget,
    api_service,
)
from algoedge_operator.builders.bridge import bridge_service, bridge_stateful_set
from algoedge_operator.builders.common import (
    PGBOUNCER_PORT,
    REDIS_PORT,
    Images,
    Manifest,
    ScaleTargets,
    TenantSecrets,
    child_name,
)
from algoedge_operator.builders.config import config_map, internal_secret
from algoedge_operator.builders.network import ingress_only_from_tenant
from algoedge_operator.builders.pgbouncer import (
    pgbouncer_config_map,
    pgbouncer_deployment,
    pgbouncer_secret,
    pgbouncer_service,
)
from algoedge_operator.builders.redis import (
    redis_config_map,
    redis_secret,
    redis_service,
    redis_stateful_set,
)
from algoedge_operator.builders.workers import beat_deployment, worker_deployment
from algoedge_operator.model import DatabaseTarget, Tenant

__all__ = [
    "ChildKey",
    "DatabaseTarget",
    "Images",
    "Manifest",
    "ScaleTargets",
    "TenantSecrets",
    "desired_children",
    "key_of",
    "possible_children",
]


@dataclass(frozen=True, order=True)
class ChildKey:
    """Identifies one child object of a tenant."""

    api_version: str
    kind: str
    name: str


def key_of(manifest: Manifest) -> ChildKey:
    return ChildKey(manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"])


def desired_children(
    tenant: Tenant, *, secrets: TenantSecrets, targets: ScaleTargets, images: Images
) -> list[Manifest]:
    """Every child the tenant should have, in apply order (config before its consumers)."""
    children: list[Manifest] = [
        config_map(tenant),
        internal_secret(tenant, secrets),
        pgbouncer_config_map(tenant, secrets.database),
        pgbouncer_secret(tenant, secrets.database),
        pgbouncer_service(tenant),
        ingress_only_from_tenant(tenant, "pgbouncer", port=PGBOUNCER_PORT),
        pgbouncer_deployment(tenant, secrets.database, images),
    ]
    if tenant.spec.redis.mode == "managed":
        children += [
            redis_config_map(tenant),
            redis_secret(tenant, secrets),
            redis_service(tenant),
            ingress_only_from_tenant(tenant, "redis", port=REDIS_PORT),
            redis_stateful_set(tenant, secrets, images),
        ]
    children += [
        api_service(tenant),
        api_deployment(tenant, secrets),
        api_autoscaler(tenant),
        api_disruption_budget(tenant),
        worker_deployment(tenant, secrets, targets),
    ]
    if tenant.spec.beat_enabled:
        children.append(beat_deployment(tenant, secrets))
    children += [bridge_service(tenant), bridge_stateful_set(tenant, secrets, targets)]
    return children


def possible_children(tenant: Tenant) -> list[ChildKey]:
    """Children that exist only for some specs; the reconciler deletes them when not desired."""
    redis = child_name(tenant, "redis")
    return [
        ChildKey("apps/v1", "Deployment", child_name(tenant, "beat")),
        ChildKey("v1", "ConfigMap", redis),
        ChildKey("v1", "Secret", redis),
        ChildKey("v1", "Service", redis),
        ChildKey("networking.k8s.io/v1", "NetworkPolicy", redis),
        ChildKey("apps/v1", "StatefulSet", redis),
    ]
