"""The tenant's status as a pure function of what a reconcile saw; transition times survive unchanged conditions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Status field naming the tenant's credentials key (builders.config.credentials_key_fingerprint).
KEY_FINGERPRINT = "credentialsKeyFingerprint"

#: What each field of the status means, by its path under ``status`` (``[]``: each item of a
#: list, ``*``: each value of a map). devtools/crd.py writes these into the CRD, so
#: ``kubectl explain algoedgetenant.status`` shows them; a test fails on a field without one.
STATUS_DESCRIPTIONS: dict[str, str] = {
    "": (
        "What the operator last saw and did; written by the operator only, never read back as "
        "desired state (except lastScaleTime and credentialsKeyFingerprint, kept across passes)."
    ),
    "observedGeneration": "metadata.generation of the spec the last reconcile acted on.",
    "profile": "Capacity profile chosen by spec.expectedUsers: small, medium or large.",
    "conditions": (
        "Ready (every component ready, no problem), Progressing (a rollout is under way, or "
        "Paused), Degraded (the first problem: SecretMissing, SecretNotLabelled, SecretInvalid, "
        "CredentialsKeyMissing, ImageNotAllowed, NameConflict, ApplyFailed, "
        "CapacityUnavailable, MetaApiTokenNotSet; else AsExpected)."
    ),
    "conditions[].type": "Ready, Progressing, Degraded, MonitoringReady or CapacityLow.",
    "conditions[].status": "True, False or Unknown.",
    "conditions[].reason": "One CamelCase word saying why (docs/operator.md lists them).",
    "conditions[].message": "What is wrong and how to fix it, naming the field or object.",
    "conditions[].observedGeneration": "metadata.generation this condition was computed for.",
    "conditions[].lastTransitionTime": "When status last changed (kept while it does not).",
    "components": (
        "Per workload (api, worker, beat, redis, pgbouncer, bridge): the replicas wanted and "
        "ready, as its Deployment or StatefulSet reports them."
    ),
    "components.*": "One workload's replica counts.",
    "components.*.replicas": "Pods wanted (the spec's replicas; the HPA's choice for api).",
    "components.*.readyReplicas": "Pods ready.",
    "linkedAccounts": (
        "MetaTrader accounts linked across all users at the last capacity read "
        "(GET /internal/v1/capacity); drives the bridge scaler."
    ),
    "connectedAccounts": "Linked accounts whose MetaAPI connection was up at the last capacity read.",
    "queueBacklog": (
        "Tasks waiting or reserved in the workers' queues at the last capacity read; drives the "
        "worker scaler."
    ),
    "bridgeReplicas": "Bridge pods the scaler chose last (0 while no MetaAPI token is referenced).",
    "workerReplicas": "Worker pods the scaler chose last.",
    "lastScaleTime": "When a scaler last changed the bridge's or the workers' replicas.",
    KEY_FINGERPRINT: (
        "First 16 hex digits of the SHA-256 of ALGOEDGE_CREDENTIALS_KEY (the key MT5 passwords "
        "are encrypted with). While set, the operator never generates a new key; remove it only "
        "after re-encrypting with a new key (docs/security.md)."
    ),
    "capacity": "Users the ready API pods can serve (ALGOEDGE_OPERATOR_API_USERS_PER_POD each) against the sockets connected now.",
    "capacity.usersPerApiPod": "Users one API pod serves within the latency target (operator setting).",
    "capacity.readyApiPods": "Ready pods of the api Deployment.",
    "capacity.users": "usersPerApiPod times readyApiPods.",
    "capacity.connectedSockets": "socket.io connections to the API now (its capacity endpoint); absent while it does not report them.",
    "capacity.utilizationPercent": "connectedSockets as a percentage of users, rounded up; CapacityLow above 80.",
    "cost": 'Monthly estimate from the requested CPU, memory and storage of every workload times the operator\'s price sheet, plus MetaAPI per linked account (docs/operator.md, "Capacity and cost").',
    "cost.currency": "The price sheet's currency.",
    "cost.monthlyTotal": "Every row's monthly amount summed (two decimals).",
    "cost.workloads": "One row per workload, its containers' requests times its replicas, priced.",
    "cost.workloads[].component": "The workload: api, worker, beat, redis, pgbouncer or bridge.",
    "cost.workloads[].replicas": "Pods the row prices.",
    "cost.workloads[].cpuCores": "CPU requested by all its pods, in cores.",
    "cost.workloads[].memoryGiB": "Memory requested by all its pods, in GiB.",
    "cost.workloads[].storageGiB": "Volume storage it claims, in GiB.",
    "cost.workloads[].monthly": "Its monthly amount in status.cost.currency (two decimals).",
    "cost.metaapi": "MetaAPI, priced per linked account.",
    "cost.metaapi.linkedAccounts": "Linked MetaTrader accounts the MetaAPI row prices.",
    "cost.metaapi.monthly": "MetaAPI's monthly amount in status.cost.currency (two decimals).",
}

#: Descriptions of the CRD's printer columns (``kubectl get aet``), by column name.
PRINTER_COLUMN_DESCRIPTIONS: dict[str, str] = {
    "Ready": "The Ready condition: True when every component is ready and nothing is wrong.",
    "API": "Ready API pods.",
    "Workers": "Ready Celery worker pods.",
    "Bridge": "Bridge replicas chosen by the scaler.",
    "Accounts": "Linked MetaTrader accounts at the last capacity read.",
    "Age": "Time since the tenant was created.",
    "Capacity": "Users the ready API pods can serve (status.capacity.users).",
    "Use%": "Connected sockets as a percentage of that capacity.",
    "Cost/mo": "Monthly estimate in status.cost.currency (requests x price sheet + MetaAPI per linked account).",
}


@dataclass(frozen=True)
class ComponentState:
    replicas: int
    ready_replicas: int
    #: The controller has seen the latest spec and every pod runs it.
    up_to_date: bool

    @property
    def ready(self) -> bool:
        """Every wanted pod is ready; a workload scaled to zero on purpose (no demand for
        workers, no MetaAPI token for the bridge) is as ready as it is meant to be."""
        return self.up_to_date and self.ready_replicas >= self.replicas


@dataclass(frozen=True)
class Problem:
    """Why the tenant is not as its spec asks: a Secret it references is missing or invalid
    (nothing was written), or some children could not be written (``ApplyFailed``; every other
    child was). As a *notice*, what the spec itself leaves off (no MetaAPI token): only
    ``Degraded`` says it."""

    reason: str
    message: str


@dataclass(frozen=True)
class ScalingState:
    """What the scalers last saw and chose (kept in memory by the tenant's loop)."""

    linked_accounts: int | None = None
    connected_accounts: int | None = None
    queue_backlog: int | None = None
    #: socket.io connections to the API at the last capacity read (None: not reported).
    connected_sockets: int | None = None
    bridge_replicas: int | None = None
    worker_replicas: int | None = None
    last_scale_time: str | None = None
    #: Set while the capacity endpoint cannot be read (replicas are kept meanwhile).
    capacity_error: str | None = None


@dataclass(frozen=True)
class Condition:
    """A condition beyond Ready, Progressing and Degraded."""

    type: str
    status: bool
    reason: str
    message: str


#: The condition saying whether the tenant's monitor objects exist.
MONITORING_READY = "MonitoringReady"
MONITORING_CRDS_MISSING = "MonitoringCRDsMissing"


def monitoring_condition(
    *,
    enabled: bool,
    missing_kinds: Sequence[str],
    discovery_error: str | None,
    refused_exporters: Sequence[str],
    failures: Sequence[str],
    created: Sequence[str],
    pending: Sequence[str] = (),
) -> Condition:
    """``MonitoringReady``: whether the monitor objects ``spec.monitoring`` asks for exist
    (``created``; ``pending`` are wanted and served but not there). Their absence (no Prometheus
    Operator CRDs) is reported here only: the tenant is not degraded."""
    if not enabled:
        return Condition(
            MONITORING_READY, False, "MonitoringDisabled", "spec.monitoring.enabled is false"
        )
    if discovery_error is not None:
        return Condition(
            MONITORING_READY,
            False,
            "MonitoringDiscoveryFailed",
            f"could not ask the API server whether it serves monitoring.coreos.com/v1 "
            f"({discovery_error}); no monitor object was written or pruned",
        )
    if missing_kinds:
        return Condition(
            MONITORING_READY,
            False,
            MONITORING_CRDS_MISSING,
            f"the API server does not serve monitoring.coreos.com/v1 {', '.join(missing_kinds)}: "
            "install the Prometheus Operator's CRDs (kube-prometheus-stack, or prometheus-"
            "operator's bundle.yaml) to get this tenant's PodMonitors and PrometheusRule; "
            "everything else runs without them",
        )
    if failures:
        return Condition(MONITORING_READY, False, "ApplyFailed", "; ".join(failures))
    if pending:
        return Condition(
            MONITORING_READY,
            False,
            "MonitorsNotCreated",
            f"not written yet (paused, or the pass stopped before): {', '.join(pending)}",
        )
    if refused_exporters:
        return Condition(
            MONITORING_READY,
            False,
            "ExporterImageNotAllowed",
            f"{', '.join(refused_exporters)}: outside ALGOEDGE_OPERATOR_IMAGE_ALLOWLIST, so that "
            "exporter sidecar does not run (the monitors exist)",
        )
    return Condition(MONITORING_READY, True, "MonitorsCreated", ", ".join(created))


def workload_state(live: Mapping[str, Any] | None) -> ComponentState | None:
    """Replicas of a Deployment or StatefulSet as its controller reports them."""
    if live is None:
        return None
    spec = live.get("spec") or {}
    status = live.get("status") or {}
    metadata = live.get("metadata") or {}
    wanted = int(spec.get("replicas", 1))
    observed = int(status.get("observedGeneration") or 0) >= int(metadata.get("generation") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    current = int(status.get("replicas") or 0)
    return ComponentState(
        replicas=wanted,
        ready_replicas=int(status.get("readyReplicas") or 0),
        up_to_date=observed and updated >= wanted and current == wanted,
    )


def _condition(
    kind: str, value: bool, reason: str, message: str, generation: int
) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if value else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def conditions_for(
    *,
    generation: int,
    components: Mapping[str, ComponentState],
    problem: Problem | None,
    paused: bool,
    capacity_error: str | None,
    notice: Problem | None = None,
) -> list[dict[str, Any]]:
    waiting = [
        f"{name} {state.ready_replicas}/{state.replicas}"
        for name, state in sorted(components.items())
        if not state.ready
    ]
    all_ready = bool(components) and not waiting
    if problem is not None:
        ready = _condition("Ready", False, problem.reason, problem.message, generation)
        progressing = _condition("Progressing", False, problem.reason, problem.message, generation)
    else:
        if all_ready:
            ready = _condition(
                "Ready", True, "AllComponentsReady", "every component is ready", generation
            )
        else:
            message = "waiting for " + ", ".join(waiting) if waiting else "no components yet"
            ready = _condition("Ready", False, "ComponentsNotReady", message, generation)
        if paused:
            progressing = _condition(
                "Progressing",
                False,
                "Paused",
                "annotation algoedge.io/paused is true: the operator changes nothing",
                generation,
            )
        elif all_ready:
            progressing = _condition(
                "Progressing", False, "Stable", "every component runs the latest spec", generation
            )
        else:
            progressing = _condition(
                "Progressing", True, "RollingOut", ready["message"], generation
            )
    if problem is not None:
        degraded = _condition("Degraded", True, problem.reason, problem.message, generation)
    elif capacity_error is not None:
        degraded = _condition(
            "Degraded",
            True,
            "CapacityUnavailable",
            f"capacity endpoint unreadable ({capacity_error}); keeping the current replicas",
            generation,
        )
    elif notice is not None:
        degraded = _condition("Degraded", True, notice.reason, notice.message, generation)
    else:
        degraded = _condition("Degraded", False, "AsExpected", "nothing is failing", generation)
    return [ready, progressing, degraded]


def _with_transition_times(
    conditions: Sequence[dict[str, Any]], previous: Sequence[Mapping[str, Any]], now: str
) -> list[dict[str, Any]]:
    before = {c.get("type"): c for c in previous}
    result = []
    for condition in conditions:
        old = before.get(condition["type"])
        unchanged = old is not None and old.get("status") == condition["status"]
        since = old.get("lastTransitionTime") if unchanged and old is not None else None
        result.append({**condition, "lastTransitionTime": since or now})
    return result


def build_status(
    *,
    generation: int,
    profile: str,
    components: Mapping[str, ComponentState],
    problem: Problem | None,
    paused: bool,
    scaling: ScalingState,
    previous: Mapping[str, Any],
    now: str,
    notice: Problem | None = None,
    credentials_key_fingerprint: str | None = None,
    more_conditions: Sequence[Condition] = (),
    more_fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole status; equal to ``previous`` when nothing a reader cares about changed.
    ``Degraded`` names the first of: ``problem``, an unreadable capacity endpoint, ``notice``.
    ``more_conditions`` follow the three (MonitoringReady, CapacityLow); ``more_fields`` are
    status fields of their own (capacity, cost)."""
    conditions = conditions_for(
        generation=generation,
        components=components,
        problem=problem,
        paused=paused,
        capacity_error=scaling.capacity_error,
        notice=notice,
    ) + [_condition(c.type, c.status, c.reason, c.message, generation) for c in more_conditions]
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "profile": profile,
        "conditions": _with_transition_times(conditions, previous.get("conditions") or [], now),
        "components": {
            name: {"replicas": state.replicas, "readyReplicas": state.ready_replicas}
            for name, state in sorted(components.items())
        },
    }
    optional = {
        "linkedAccounts": scaling.linked_accounts,
        "connectedAccounts": scaling.connected_accounts,
        "queueBacklog": scaling.queue_backlog,
        "bridgeReplicas": scaling.bridge_replicas,
        "workerReplicas": scaling.worker_replicas,
        "lastScaleTime": scaling.last_scale_time or previous.get("lastScaleTime"),
        # Kept while a pass could not read the key (a Problem stopped it): it is what refuses
        # to generate a new key over stored passwords.
        KEY_FINGERPRINT: credentials_key_fingerprint or previous.get(KEY_FINGERPRINT),
    }
    status.update({key: value for key, value in optional.items() if value is not None})
    status.update(more_fields or {})
    return status


def status_patch(previous: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any] | None:
    """A merge patch turning ``previous`` into ``wanted`` (None if they are equal).

    Keys that disappear are set to None so the merge patch removes them (e.g. a component
    that is no longer deployed).
    """
    if dict(previous) == dict(wanted):
        return None
    patch: dict[str, Any] = dict(wanted)
    for key in previous:
        if key not in wanted:
            patch[key] = None
    old_components = previous.get("components") or {}
    if isinstance(old_components, Mapping):
        patch["components"] = {
            **{name: None for name in old_components if name not in wanted.get("components", {})},
            **wanted.get("components", {}),
        }
    return patch
