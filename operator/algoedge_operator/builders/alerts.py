"""The alerting rules of one tenant: the ``spec.groups`` of its PrometheusRule (pure).

Every series scraped from a tenant carries ``namespace``, ``tenant`` (the AlgoEdgeTenant's name)
and ``component`` (api, worker, beat, bridge, pgbouncer, redis): the operator's PodMonitors add
them by relabeling, so every expression here selects on them. Three sources do not carry the
contract's labels and are selected otherwise:

* cAdvisor and kube-state-metrics (pod memory): ``namespace`` and the pod name, which starts with
  ``<tenant>-`` (the children's names, ``builders.common.child_name``);
* the operator's own ``/metrics`` (one operator for every tenant): ``tenant_namespace`` and
  ``tenant`` labels set by the operator itself (its scrape's ``namespace`` is the operator's).

Each alert's meaning and what to do are in docs/monitoring.md under the alert's name (the
``runbook`` annotation points there). Thresholds are keyword parameters with the documented
defaults; the tests render the rules with the defaults and check them with promtool.
"""

from __future__ import annotations

import re
from typing import Any

from algoedge_operator.profile import USERS_PER_API_POD

#: Where each alert's runbook section lives (anchor = the alert name in lower case): the path in
#: the repository by default; ``runbook_base`` takes the URL of a published copy.
RUNBOOK_BASE = "docs/monitoring.md"

# A Kubernetes object name (DNS label) or namespace: nothing that could break out of a PromQL
# string literal or a regular expression.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _check_name(what: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} must be a DNS label (lower case letters, digits, '-'), got {value!r}"
        )
    return value


def _alert(
    name: str,
    expr: str,
    *,
    for_: str,
    severity: str,
    summary: str,
    description: str,
    tenant: str,
    namespace: str,
    runbook_base: str,
) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_ != "0s":
        rule["for"] = for_
    rule["labels"] = {"severity": severity, "tenant": tenant, "namespace": namespace}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{runbook_base}#{name.lower()}",
    }
    return rule


def rule_groups(
    *,
    tenant: str,
    namespace: str,
    api_p95_seconds: float = 0.2,
    api_p99_seconds: float = 0.5,
    api_error_ratio: float = 0.01,
    api_sockets_per_pod: int = USERS_PER_API_POD,
    capacity_fraction: float = 0.8,
    postgres_max_connections: int = 100,
    redis_memory_fraction: float = 0.8,
    queue_backlog_min: int = 10,
    oldest_task_seconds: float = 600.0,
    daily_report_late_seconds: float = 26 * 3600.0,
    weekly_report_late_seconds: float = 8 * 86400.0 + 2 * 3600.0,
    bridge_disconnected_fraction: float = 0.1,
    memory_limit_fraction: float = 0.9,
    runbook_base: str = RUNBOOK_BASE,
) -> list[dict[str, Any]]:
    """Prometheus rule groups for one tenant; raises ValueError for a name that is not a DNS label
    or a threshold outside its range."""
    _check_name("tenant", tenant)
    _check_name("namespace", namespace)
    for what, fraction in (
        ("api_error_ratio", api_error_ratio),
        ("capacity_fraction", capacity_fraction),
        ("redis_memory_fraction", redis_memory_fraction),
        ("bridge_disconnected_fraction", bridge_disconnected_fraction),
        ("memory_limit_fraction", memory_limit_fraction),
    ):
        if not 0 < fraction <= 1:
            raise ValueError(f"{what} must be in (0, 1], got {fraction!r}")
    for what, positive in (
        ("api_p95_seconds", api_p95_seconds),
        ("api_p99_seconds", api_p99_seconds),
        ("api_sockets_per_pod", api_sockets_per_pod),
        ("postgres_max_connections", postgres_max_connections),
        ("queue_backlog_min", queue_backlog_min),
        ("oldest_task_seconds", oldest_task_seconds),
        ("daily_report_late_seconds", daily_report_late_seconds),
        ("weekly_report_late_seconds", weekly_report_late_seconds),
    ):
        if not positive > 0:
            raise ValueError(f"{what} must be positive, got {positive!r}")

    t = f'namespace="{namespace}", tenant="{tenant}"'
    api = f'{t}, component="api"'
    # Probes and scrapes are answered in microseconds and would dilute the user-facing latency.
    user_routes = f'{api}, route!~"/healthz|/readyz|/metrics"'
    pgb = f'{t}, component="pgbouncer"'
    redis = f'{t}, component="redis"'
    jobs = f'{t}, component=~"worker|beat"'
    beat = f'{t}, component="beat"'
    bridge = f'{t}, component="bridge"'
    operator = f'tenant_namespace="{namespace}", tenant="{tenant}"'
    pod = f'namespace="{namespace}", pod=~"{tenant}-.+", container!="", container!="POD"'

    def alert(
        name: str, expr: str, *, for_: str, severity: str, summary: str, description: str
    ) -> dict[str, Any]:
        return _alert(
            name,
            expr,
            for_=for_,
            severity=severity,
            summary=summary,
            description=description,
            tenant=tenant,
            namespace=namespace,
            runbook_base=runbook_base,
        )

    def quantile(q: float) -> str:
        return (
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(algoedge_http_request_duration_seconds_bucket{{{user_routes}}}[5m])))"
        )

    pgb_server = " + ".join(
        f"sum(pgbouncer_pools_server_{state}_connections{{{pgb}}})"
        for state in ("active", "idle", "used", "testing", "login")
    )

    api_rules = [
        alert(
            "AlgoEdgeApiLatencyP95High",
            f"{quantile(0.95)} > {api_p95_seconds:g}",
            for_="10m",
            severity="warning",
            summary=f"API p95 latency above {api_p95_seconds * 1000:g} ms for 10 minutes",
            description="p95 of user-facing requests is {{ $value | humanizeDuration }}.",
        ),
        alert(
            "AlgoEdgeApiLatencyP99High",
            f"{quantile(0.99)} > {api_p99_seconds:g}",
            for_="10m",
            severity="critical",
            summary=f"API p99 latency above the {api_p99_seconds * 1000:g} ms target for 10 minutes",
            description="p99 of user-facing requests is {{ $value | humanizeDuration }}.",
        ),
        alert(
            "AlgoEdgeApiErrorRatioHigh",
            f"sum(rate(algoedge_http_errors_total{{{api}}}[5m]))"
            f" / sum(rate(algoedge_http_request_duration_seconds_count{{{api}}}[5m]))"
            f" > {api_error_ratio:g}",
            for_="5m",
            severity="critical",
            summary=f"More than {api_error_ratio:.0%} of API requests answered 5xx",
            description="{{ $value | humanizePercentage }} of requests failed with a 5xx over 5 minutes.",
        ),
        alert(
            "AlgoEdgeApiSocketsNearCapacity",
            f"sum(algoedge_socketio_connected{{{api}}})"
            f" / (count(up{{{api}}} == 1) * {api_sockets_per_pod})"
            f" > {capacity_fraction:g}",
            for_="5m",
            severity="warning",
            summary=f"WebSocket connections above {capacity_fraction:.0%} of what the API replicas hold",
            description=(
                f"Connected sockets are {{{{ $value | humanizePercentage }}}} of "
                f"{api_sockets_per_pod} per ready API pod."
            ),
        ),
    ]
    data_rules = [
        alert(
            "AlgoEdgePgbouncerClientsWaiting",
            f"sum(pgbouncer_pools_client_waiting_connections{{{pgb}}}) > 0",
            for_="5m",
            severity="warning",
            summary="Clients wait for a Postgres connection in pgBouncer",
            description="{{ $value }} client connections are waiting for a server connection.",
        ),
        alert(
            "AlgoEdgePgbouncerPoolSaturated",
            f"(sum by (database) (pgbouncer_pools_server_idle_connections{{{pgb}}}) == 0)"
            f" and (sum by (database) (pgbouncer_pools_client_waiting_connections{{{pgb}}}) > 0)"
            f" and (max by (database) (pgbouncer_pools_client_maxwait_seconds{{{pgb}}}) > 1)",
            for_="10m",
            severity="critical",
            summary="pgBouncer pool {{ $labels.database }} saturated",
            description=(
                "No idle server connection, clients queued and the oldest waiting over a second, "
                "for 10 minutes."
            ),
        ),
        alert(
            "AlgoEdgePostgresConnectionsNearMax",
            f"({pgb_server}) > {capacity_fraction:g} * {postgres_max_connections}",
            for_="10m",
            severity="warning",
            summary=(
                f"pgBouncer holds more than {capacity_fraction:.0%} of Postgres's "
                f"{postgres_max_connections} max_connections"
            ),
            description="The tenant's pgBouncers hold {{ $value }} server connections to Postgres.",
        ),
        alert(
            "AlgoEdgeRedisMemoryHigh",
            f"max(redis_memory_used_bytes{{{redis}}} / (redis_memory_max_bytes{{{redis}}} > 0))"
            f" > {redis_memory_fraction:g}",
            for_="5m",
            severity="warning",
            summary=f"Redis uses more than {redis_memory_fraction:.0%} of maxmemory",
            description="Redis memory is {{ $value | humanizePercentage }} of maxmemory.",
        ),
        alert(
            "AlgoEdgeRedisEvictions",
            f"sum(increase(redis_evicted_keys_total{{{redis}}}[5m])) > 0",
            for_="0s",
            severity="critical",
            summary="Redis evicted keys",
            description=(
                "{{ $value }} keys evicted in 5 minutes: queued tasks, sessions or leases may be lost."
            ),
        ),
    ]
    jobs_rules = [
        alert(
            "AlgoEdgeQueueBacklogGrowing",
            f"(max by (queue) (deriv(algoedge_jobs_queue_backlog{{{beat}}}[10m])) > 0)"
            f" and (max by (queue) (algoedge_jobs_queue_backlog{{{beat}}}) > {queue_backlog_min})",
            for_="10m",
            severity="warning",
            summary="Queue {{ $labels.queue }} backlog growing for 10 minutes",
            description=f"More than {queue_backlog_min} tasks and still growing.",
        ),
        alert(
            "AlgoEdgeQueueOldestTaskOld",
            f"max by (queue) (algoedge_jobs_queue_oldest_task_age_seconds{{{beat}}})"
            f" > {oldest_task_seconds:g}",
            for_="2m",
            severity="warning",
            summary="Queue {{ $labels.queue }}: the oldest waiting task is old",
            description=(
                "The oldest task has waited at least {{ $value | humanizeDuration }} "
                f"(threshold {oldest_task_seconds:g} s)."
            ),
        ),
        alert(
            "AlgoEdgeDailyReportLate",
            f'max(algoedge_jobs_report_run_lag_seconds{{{jobs}, kind="daily"}})'
            f" > {daily_report_late_seconds:g}",
            for_="5m",
            severity="warning",
            summary="The daily report run is late",
            description="The newest completed daily run was scheduled {{ $value | humanizeDuration }} ago.",
        ),
        alert(
            "AlgoEdgeWeeklyReportLate",
            f'max(algoedge_jobs_report_run_lag_seconds{{{jobs}, kind="weekly"}})'
            f" > {weekly_report_late_seconds:g}",
            for_="5m",
            severity="warning",
            summary="The weekly report run is late",
            description="The newest completed weekly run was scheduled {{ $value | humanizeDuration }} ago.",
        ),
    ]
    bridge_rules = [
        alert(
            "AlgoEdgeBridgeAccountsDisconnected",
            f'sum(algoedge_bridge_accounts{{{bridge}, state!~"connected|synchronizing"}})'
            f" / sum(algoedge_bridge_accounts{{{bridge}}}) > {bridge_disconnected_fraction:g}",
            for_="15m",
            severity="warning",
            summary=(
                f"More than {bridge_disconnected_fraction:.0%} of linked accounts are not connected"
            ),
            description="{{ $value | humanizePercentage }} of the bridge's accounts are not connected.",
        ),
    ]
    kube_rules = [
        alert(
            "AlgoEdgeTargetDown",
            f"up{{{t}}} == 0",
            for_="5m",
            severity="warning",
            summary="{{ $labels.component }} target {{ $labels.instance }} cannot be scraped",
            description=(
                "Prometheus has failed to scrape it for 5 minutes: the pod is down or not "
                "answering on its metrics port, and its other alerts are blind."
            ),
        ),
        alert(
            "AlgoEdgePodMemoryNearLimit",
            f"max by (pod, container) (container_memory_working_set_bytes{{{pod}}})"
            f' / max by (pod, container) (kube_pod_container_resource_limits{{{pod}, resource="memory"}})'
            f" > {memory_limit_fraction:g}",
            for_="10m",
            severity="warning",
            summary="{{ $labels.pod }}/{{ $labels.container }} near its memory limit",
            description="Working set is {{ $value | humanizePercentage }} of the memory limit.",
        ),
        alert(
            "AlgoEdgeOperatorReconcileErrors",
            f"sum(increase(algoedge_operator_tenant_reconcile_errors_total{{{operator}}}[15m])) > 0",
            for_="15m",
            severity="warning",
            summary="The operator keeps failing to reconcile the tenant",
            description="{{ $value }} failed reconciles in 15 minutes.",
        ),
        alert(
            "AlgoEdgeTenantNotReady",
            f"max(algoedge_operator_tenant_ready{{{operator}}}) == 0",
            for_="15m",
            severity="critical",
            summary="The tenant has not been Ready for 15 minutes",
            description="See the tenant's Ready condition: kubectl get aet -n "
            + namespace
            + " "
            + tenant,
        ),
    ]
    prefix = f"algoedge.{namespace}.{tenant}"
    return [
        {"name": f"{prefix}.api", "rules": api_rules},
        {"name": f"{prefix}.data", "rules": data_rules},
        {"name": f"{prefix}.jobs", "rules": jobs_rules},
        {"name": f"{prefix}.bridge", "rules": bridge_rules},
        {"name": f"{prefix}.kubernetes", "rules": kube_rules},
    ]
