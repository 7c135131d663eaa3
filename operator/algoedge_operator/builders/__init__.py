"""Pure builders: a tenant and its inputs in, the manifests of every child out (no I/O, clock or randomness).

:data:`CHILDREN` is the one declaration of the children a tenant can have. The desired children,
the ones to prune, the workloads the status reports, the replicas the scalers own and the kinds
the informers watch are all derived from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from algoedge_operator.builders.api import (
    api_autoscaler,
    api_deployment,
    api_disruption_budget,
    api_service,
)
from algoedge_operator.builders.bridge import (
    bridge_disruption_budget,
    bridge_service,
    bridge_stateful_set,
)
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
from algoedge_operator.builders.monitors import (
    MONITORED_COMPONENTS,
    MONITORING_API_VERSION,
    RULES_COMPONENT,
    pod_monitor,
    prometheus_rule,
)
from algoedge_operator.builders.network import (
    api_network_policy,
    bridge_network_policy,
    ingress_only_from_tenant,
)
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
from algoedge_operator.profile import USERS_PER_API_POD

__all__ = [
    "CHILDREN",
    "BuildInputs",
    "Child",
    "ChildKey",
    "DatabaseTarget",
    "Images",
    "Manifest",
    "ScaleTargets",
    "TenantSecrets",
    "desired_children",
    "key_of",
    "prunable_children",
    "wanted_children",
    "watched_kinds",
]


@dataclass(frozen=True, order=True)
class ChildKey:
    """Identifies one child object of a tenant."""

    api_version: str
    kind: str
    name: str


def key_of(manifest: Manifest) -> ChildKey:
    return ChildKey(manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"])


@dataclass(frozen=True)
class BuildInputs:
    """Everything besides the tenant that a builder may read."""

    secrets: TenantSecrets
    targets: ScaleTargets
    images: Images
    #: ALGOEDGE_OPERATOR_API_USERS_PER_POD: what the sockets-near-capacity alert compares with.
    users_per_api_pod: int = USERS_PER_API_POD


def _always(_: Tenant) -> bool:
    return True


def _managed_redis(tenant: Tenant) -> bool:
    return tenant.spec.redis.mode == "managed"


def _beat_enabled(tenant: Tenant) -> bool:
    return tenant.spec.beat_enabled


def _monitored(tenant: Tenant) -> bool:
    return tenant.spec.monitoring.enabled


def _pod_monitor_wanted(component: str) -> Callable[[Tenant], bool]:
    """A component's PodMonitor exists while the tenant is monitored and has the component."""
    has_component: Callable[[Tenant], bool] = {"beat": _beat_enabled, "redis": _managed_redis}.get(
        component, _always
    )
    return lambda tenant: _monitored(tenant) and has_component(tenant)


def _pod_monitor_builder(component: str) -> Callable[[Tenant, BuildInputs], Manifest]:
    return lambda tenant, _: pod_monitor(tenant, component)


@dataclass(frozen=True)
class Child:
    """One child a tenant can have: ``<tenant>-<component>`` of ``kind``."""

    api_version: str
    kind: str
    component: str
    build: Callable[[Tenant, BuildInputs], Manifest]
    #: Whether this tenant has it; children a tenant stops wanting are deleted.
    wanted: Callable[[Tenant], bool] = _always
    #: A Deployment or StatefulSet whose readiness the status reports under ``component``.
    workload: bool = False
    #: The :class:`ScaleTargets` field that sets its replicas (None: fixed, or the HPA's).
    scaled_by: Literal["workers", "bridge"] | None = None
    #: A StatefulSet whose volume claims hold data. When only a new object can undo drift (an
    #: immutable field changed) it is not simply deleted: its claims are released first, and the
    #: old object is deleted leaving pods and claims for the new one to adopt.
    keeps_volumes: bool = False
    #: Its kind comes from a CRD a cluster may lack (the Prometheus Operator's): the reconciler
    #: writes or prunes it only while API discovery says the kind is served.
    optional_api: bool = False

    def key(self, tenant: Tenant) -> ChildKey:
        return ChildKey(self.api_version, self.kind, child_name(tenant, self.component))


#: Every child, in apply order (configuration before the workloads that read it).
CHILDREN: tuple[Child, ...] = (
    Child("v1", "ConfigMap", "config", lambda t, _: config_map(t)),
    Child("v1", "Secret", "internal", lambda t, i: internal_secret(t, i.secrets)),
    Child(
        "v1",
        "ConfigMap",
        "pgbouncer",
        lambda t, i: pgbouncer_config_map(t, i.secrets.database, replica=i.secrets.read_replica),
    ),
    Child(
        "v1",
        "Secret",
        "pgbouncer",
        lambda t, i: pgbouncer_secret(
            t,
            i.secrets.database,
            replica=i.secrets.read_replica,
            stats_password=i.secrets.pgbouncer_stats_password,
        ),
    ),
    Child("v1", "Service", "pgbouncer", lambda t, _: pgbouncer_service(t)),
    Child(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "pgbouncer",
        lambda t, _: ingress_only_from_tenant(t, "pgbouncer", port=PGBOUNCER_PORT),
    ),
    Child(
        "apps/v1",
        "Deployment",
        "pgbouncer",
        lambda t, i: pgbouncer_deployment(
            t,
            i.secrets.database,
            i.images,
            replica=i.secrets.read_replica,
            stats_password=i.secrets.pgbouncer_stats_password,
        ),
        workload=True,
    ),
    Child("v1", "ConfigMap", "redis", lambda t, _: redis_config_map(t), wanted=_managed_redis),
    Child("v1", "Secret", "redis", lambda t, i: redis_secret(t, i.secrets), wanted=_managed_redis),
    Child("v1", "Service", "redis", lambda t, _: redis_service(t), wanted=_managed_redis),
    Child(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "redis",
        lambda t, _: ingress_only_from_tenant(t, "redis", port=REDIS_PORT),
        wanted=_managed_redis,
    ),
    Child(
        "apps/v1",
        "StatefulSet",
        "redis",
        lambda t, i: redis_stateful_set(t, i.secrets, i.images),
        wanted=_managed_redis,
        workload=True,
        # Its volume claim holds the tenant's sessions, queues and rate limits.
        keeps_volumes=True,
    ),
    Child("v1", "Service", "api", lambda t, _: api_service(t)),
    Child("networking.k8s.io/v1", "NetworkPolicy", "api", lambda t, _: api_network_policy(t)),
    Child("apps/v1", "Deployment", "api", lambda t, i: api_deployment(t, i.secrets), workload=True),
    Child("autoscaling/v2", "HorizontalPodAutoscaler", "api", lambda t, _: api_autoscaler(t)),
    Child("policy/v1", "PodDisruptionBudget", "api", lambda t, _: api_disruption_budget(t)),
    Child(
        "apps/v1",
        "Deployment",
        "worker",
        lambda t, i: worker_deployment(t, i.secrets, i.targets),
        workload=True,
        scaled_by="workers",
    ),
    Child(
        "apps/v1",
        "Deployment",
        "beat",
        lambda t, i: beat_deployment(t, i.secrets),
        wanted=_beat_enabled,
        workload=True,
    ),
    Child("v1", "Service", "bridge", lambda t, _: bridge_service(t)),
    Child(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "bridge",
        lambda t, i: bridge_network_policy(t, i.secrets),
    ),
    Child(
        "apps/v1",
        "StatefulSet",
        "bridge",
        lambda t, i: bridge_stateful_set(t, i.secrets, i.targets),
        workload=True,
        scaled_by="bridge",
    ),
    Child("policy/v1", "PodDisruptionBudget", "bridge", lambda t, _: bridge_disruption_budget(t)),
    # Monitoring (spec.monitoring.enabled), where the Prometheus Operator's CRDs are installed.
    *(
        Child(
            MONITORING_API_VERSION,
            "PodMonitor",
            component,
            _pod_monitor_builder(component),
            wanted=_pod_monitor_wanted(component),
            optional_api=True,
        )
        for component in MONITORED_COMPONENTS
    ),
    Child(
        MONITORING_API_VERSION,
        "PrometheusRule",
        RULES_COMPONENT,
        lambda t, inputs: prometheus_rule(t, users_per_api_pod=inputs.users_per_api_pod),
        wanted=_monitored,
        optional_api=True,
    ),
)


def wanted_children(tenant: Tenant) -> list[Child]:
    """The children this tenant should have, in apply order."""
    return [child for child in CHILDREN if child.wanted(tenant)]


def prunable_children(tenant: Tenant) -> list[Child]:
    """Children this tenant does not want (now): the reconciler deletes them if they exist."""
    return [child for child in CHILDREN if not child.wanted(tenant)]


def desired_children(
    tenant: Tenant, *, secrets: TenantSecrets, targets: ScaleTargets, images: Images
) -> list[Manifest]:
    """Every child the tenant should have, in apply order."""
    inputs = BuildInputs(secrets=secrets, targets=targets, images=images)
    return [child.build(tenant, inputs) for child in wanted_children(tenant)]


def watched_kinds() -> tuple[tuple[str, str], ...]:
    """(apiVersion, kind) of every child, once each: what the informers list and watch."""
    return tuple(dict.fromkeys((child.api_version, child.kind) for child in CHILDREN))
