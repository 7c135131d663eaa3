"""The Grafana dashboards of a tenant, written as JSON into charts/algoedge-operator/dashboards/.

This module is the one source of the dashboards: ``python -m devtools.monitoring.dashboards``
rewrites the chart's files from it, and tests/unit/monitoring checks the files equal its output,
so a hand edit of the JSON fails the test (edit here, regenerate). Every query selects the
tenant with the dashboard variables ``$namespace`` and ``$tenant`` (the label contract in
docs/monitoring.md) and reads the Prometheus chosen by the ``$datasource`` variable.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "charts" / "algoedge-operator" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

#: The selector of the tenant's own series (labels added by the operator's PodMonitors).
T = 'namespace="$namespace", tenant="$tenant"'
#: The operator's per-tenant series (its scrape's namespace is the operator's own).
OP = 'tenant_namespace="$namespace", tenant="$tenant"'
#: cAdvisor / kube-state-metrics series of the tenant's pods (children are named <tenant>-...).
POD = 'namespace="$namespace", pod=~"$tenant-.+", container!="", container!="POD"'
USER_ROUTES = 'route!~"/healthz|/readyz|/metrics"'
RATE = "$__rate_interval"


def c(component: str) -> str:
    return f'{T}, component="{component}"'


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[tuple[str, str], ...]  # (expr, legend)
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel] = field(default_factory=list)


def _quantile(q: float, metric: str, selector: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[{RATE}])))"
    )


def _variables() -> list[dict[str, Any]]:
    def query(name: str, expr: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": name,
            "type": "query",
            "datasource": DATASOURCE,
            "definition": expr,
            "query": {"query": expr, "refId": f"{name}-variable"},
            "refresh": 2,
            "sort": 1,
            "includeAll": False,
            "multi": False,
        }

    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "refresh": 1,
            "includeAll": False,
            "multi": False,
        },
        query("namespace", 'label_values(up{tenant!=""}, namespace)'),
        query("tenant", 'label_values(up{namespace="$namespace", tenant!=""}, tenant)'),
    ]


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    width, height = 12, 8
    for index, panel in enumerate(dashboard.panels):
        panels.append(
            {
                "id": index + 1,
                "type": panel.kind,
                "title": panel.title,
                "description": panel.description,
                "datasource": DATASOURCE,
                "gridPos": {
                    "h": height,
                    "w": width,
                    "x": (index % 2) * width,
                    "y": (index // 2) * height,
                },
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {
                        "refId": chr(ord("A") + n),
                        "datasource": DATASOURCE,
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for n, (expr, legend) in enumerate(panel.targets)
                ],
            }
        )
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["algoedge"],
        "editable": True,
        "schemaVersion": 39,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "utc",
        "templating": {"list": _variables()},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def dashboards() -> list[Dashboard]:
    api, pgb, redis, beat, bridge = (c(x) for x in ("api", "pgbouncer", "redis", "beat", "bridge"))
    jobs = f'{T}, component=~"worker|beat"'
    worker = c("worker")
    requests = "algoedge_http_request_duration_seconds"
    overview = Dashboard(
        "algoedge-tenant-overview",
        "AlgoEdge / Tenant overview",
        "One tenant at a glance: traffic, latency, errors, sockets, database connections, "
        "queues, bridge accounts, memory and CPU.",
        [
            Panel(
                "Targets up by component",
                ((f"sum by (component) (up{{{T}}})", "{{component}}"),),
            ),
            Panel(
                "API requests/s by status",
                ((f"sum by (status) (rate({requests}_count{{{api}}}[{RATE}]))", "{{status}}"),),
                unit="reqps",
            ),
            Panel(
                "API latency p95 / p99",
                (
                    (_quantile(0.95, requests, f"{api}, {USER_ROUTES}"), "p95"),
                    (_quantile(0.99, requests, f"{api}, {USER_ROUTES}"), "p99"),
                ),
                unit="s",
            ),
            Panel(
                "API 5xx ratio",
                (
                    (
                        f'sum(rate({requests}_count{{{api}, status=~"5.."}}[{RATE}]))'
                        f" / sum(rate({requests}_count{{{api}}}[{RATE}]))",
                        "5xx",
                    ),
                ),
                unit="percentunit",
            ),
            Panel(
                "WebSocket connections",
                ((f"sum(algoedge_socketio_connected{{{api}}})", "connected"),),
            ),
            Panel(
                "Database connections",
                (
                    (
                        f"sum by (state) (algoedge_db_pool_connections{{{api}}})",
                        "api pool {{state}}",
                    ),
                    (
                        f"sum(pgbouncer_pools_client_active_connections{{{pgb}}})",
                        "pgBouncer clients active",
                    ),
                    (
                        f"sum(pgbouncer_pools_server_active_connections{{{pgb}}})",
                        "Postgres connections active",
                    ),
                ),
            ),
            Panel(
                "Queue backlog",
                ((f"sum by (queue) (algoedge_jobs_queue_backlog{{{beat}}})", "{{queue}}"),),
            ),
            Panel(
                "Bridge accounts by state",
                ((f"sum by (state) (algoedge_bridge_accounts{{{bridge}}})", "{{state}}"),),
            ),
            Panel(
                "Process memory by component",
                ((f"sum by (component) (process_resident_memory_bytes{{{T}}})", "{{component}}"),),
                unit="bytes",
            ),
            Panel(
                "Process CPU by component",
                (
                    (
                        f"sum by (component) (rate(process_cpu_seconds_total{{{T}}}[{RATE}]))",
                        "{{component}}",
                    ),
                ),
                unit="percentunit",
                description="Cores used (1 = one core).",
            ),
            Panel(
                "Pod memory against limit",
                (
                    (
                        f"max by (pod, container) (container_memory_working_set_bytes{{{POD}}})"
                        f' / max by (pod, container) (kube_pod_container_resource_limits{{{POD}, resource="memory"}})',
                        "{{pod}}/{{container}}",
                    ),
                ),
                unit="percentunit",
                description="cAdvisor working set over the kube-state-metrics memory limit.",
            ),
            Panel(
                "Tenant Ready (operator)",
                ((f"max(algoedge_operator_tenant_ready{{{OP}}})", "ready"),),
                kind="stat",
            ),
        ],
    )
    api_dashboard = Dashboard(
        "algoedge-api",
        "AlgoEdge / API",
        "The API per route: latency, traffic, errors, rate-limit denials, sockets and its "
        "connections to Postgres and Redis.",
        [
            Panel(
                "p95 latency by route",
                ((_quantile(0.95, requests, f"{api}, {USER_ROUTES}", "route"), "{{route}}"),),
                unit="s",
            ),
            Panel(
                "p99 latency by route",
                ((_quantile(0.99, requests, f"{api}, {USER_ROUTES}", "route"), "{{route}}"),),
                unit="s",
            ),
            Panel(
                "Requests/s by route",
                (
                    (
                        f"sum by (route, method) (rate({requests}_count{{{api}}}[{RATE}]))",
                        "{{method}} {{route}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Answers/s by status",
                ((f"sum by (status) (rate({requests}_count{{{api}}}[{RATE}]))", "{{status}}"),),
                unit="reqps",
            ),
            Panel(
                "4xx/5xx answers/s by route",
                (
                    (
                        f'sum by (route, status) (rate({requests}_count{{{api}, status=~"[45].."}}[{RATE}]))',
                        "{{status}} {{route}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Rate-limit denials/s by scope",
                (
                    (
                        f"sum by (scope) (rate(algoedge_ratelimit_denied_total{{{api}}}[{RATE}]))",
                        "{{scope}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Rate-limit answers from memory (Redis down)",
                ((f"sum(rate(algoedge_ratelimit_fallback_total{{{api}}}[{RATE}]))", "fallback"),),
                unit="reqps",
            ),
            Panel(
                "Sockets connected by pod",
                ((f"sum by (instance) (algoedge_socketio_connected{{{api}}})", "{{instance}}"),),
            ),
            Panel(
                "Events relayed to sockets/s",
                ((f"sum(rate(algoedge_events_relayed_total{{{api}}}[{RATE}]))", "relayed"),),
                unit="ops",
            ),
            Panel(
                "Database pool by state",
                ((f"sum by (state) (algoedge_db_pool_connections{{{api}}})", "{{state}}"),),
            ),
            Panel(
                "Queries/s by pool",
                (
                    (
                        f"sum by (pool) (rate(algoedge_db_queries_total{{{api}}}[{RATE}]))",
                        "{{pool}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Password hashes/s",
                (
                    (
                        f"sum by (operation) (rate(algoedge_password_hashes_total{{{api}}}[{RATE}]))",
                        "{{operation}}",
                    ),
                    (
                        f"sum(rate(algoedge_password_hashes_refused_total{{{api}}}[{RATE}]))",
                        "refused (503)",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Redis errors/s by operation",
                (
                    (
                        f"sum by (operation) (rate(algoedge_redis_errors_total{{{api}}}[{RATE}]))",
                        "{{operation}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Process memory by pod",
                ((f"sum by (instance) (process_resident_memory_bytes{{{api}}})", "{{instance}}"),),
                unit="bytes",
            ),
        ],
    )
    tasks = "algoedge_jobs_tasks_total"
    jobs_dashboard = Dashboard(
        "algoedge-jobs",
        "AlgoEdge / Jobs",
        "The job monitoring dashboard: queues, throughput, failures, durations and report lag.",
        [
            Panel(
                "Queue backlog (waiting + reserved)",
                ((f"sum by (queue) (algoedge_jobs_queue_backlog{{{beat}}})", "{{queue}}"),),
            ),
            Panel(
                "Oldest waiting task",
                (
                    (
                        f"max by (queue) (algoedge_jobs_queue_oldest_task_age_seconds{{{beat}}})",
                        "{{queue}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Tasks/s by task and outcome",
                (
                    (
                        f"sum by (task, outcome) (rate({tasks}{{{worker}}}[{RATE}]))",
                        "{{task}} {{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Failed or rejected tasks/s",
                (
                    (
                        f'sum by (task) (rate({tasks}{{{worker}, outcome=~"failed|rejected"}}[{RATE}]))',
                        "{{task}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Task duration p95 by task",
                (
                    (
                        _quantile(0.95, "algoedge_jobs_task_duration_seconds", worker, "task"),
                        "{{task}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Tasks in progress",
                ((f"sum by (task) (algoedge_jobs_tasks_in_progress{{{worker}}})", "{{task}}"),),
            ),
            Panel(
                "Report run lag",
                ((f"max by (kind) (algoedge_jobs_report_run_lag_seconds{{{jobs}}})", "{{kind}}"),),
                unit="s",
                description="Now minus the scheduled time of the newest completed run.",
            ),
            Panel(
                "Report runs scheduled",
                (
                    (
                        f"sum by (kind) (increase(algoedge_jobs_report_runs_scheduled_total{{{beat}}}[1d]))",
                        "{{kind}}",
                    ),
                ),
            ),
            Panel(
                "E-mails/s by outcome",
                (
                    (
                        f"sum by (outcome) (rate(algoedge_jobs_emails_total{{{worker}}}[{RATE}]))",
                        "{{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Enqueue failures/s (API)",
                (
                    (
                        f"sum by (task) (rate(algoedge_jobs_enqueue_failures_total{{{api}}}[{RATE}]))",
                        "{{task}}",
                    ),
                ),
                unit="ops",
            ),
        ],
    )
    bridge_dashboard = Dashboard(
        "algoedge-bridge",
        "AlgoEdge / Bridge",
        "The MetaAPI bridge: accounts by state, synchronizations, reconnects and 429s.",
        [
            Panel(
                "Accounts by state",
                ((f"sum by (state) (algoedge_bridge_accounts{{{bridge}}})", "{{state}}"),),
            ),
            Panel(
                "Leases held by replica",
                ((f"sum by (instance) (algoedge_bridge_leases_held{{{bridge}}})", "{{instance}}"),),
            ),
            Panel(
                "Members seen",
                ((f"max(algoedge_bridge_members{{{bridge}}})", "members"),),
            ),
            Panel(
                "Synchronizations in flight",
                (
                    (f"sum(algoedge_bridge_syncs_in_flight{{{bridge}}})", "in flight"),
                    (
                        f"sum(algoedge_bridge_connect_queue_waiting{{{bridge}}})",
                        "waiting for a slot",
                    ),
                ),
            ),
            Panel(
                "Synchronization duration p95",
                ((_quantile(0.95, "algoedge_bridge_sync_duration_seconds", bridge), "p95"),),
                unit="s",
            ),
            Panel(
                "Connect attempts/s by outcome",
                (
                    (
                        f"sum by (outcome) (rate(algoedge_bridge_connects_total{{{bridge}}}[{RATE}]))",
                        "{{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Reconnects/s by reason",
                (
                    (
                        f"sum by (reason) (rate(algoedge_bridge_reconnects_total{{{bridge}}}[{RATE}]))",
                        "{{reason}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "MetaAPI 429s/s",
                (
                    (
                        f"sum(rate(algoedge_bridge_too_many_requests_total{{{bridge}}}[{RATE}]))",
                        "429",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Packets/s by kind",
                (
                    (
                        f"sum by (kind) (rate(algoedge_bridge_packets_total{{{bridge}}}[{RATE}]))",
                        "{{kind}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Trades/s by outcome",
                (
                    (
                        f"sum by (outcome) (rate(algoedge_bridge_trades_total{{{bridge}}}[{RATE}]))",
                        "{{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Trade publish lag p95",
                ((_quantile(0.95, "algoedge_bridge_publish_lag_seconds", bridge), "p95"),),
                unit="s",
            ),
            Panel(
                "Errors/s by where",
                (
                    (
                        f"sum by (where) (rate(algoedge_bridge_errors_total{{{bridge}}}[{RATE}]))",
                        "{{where}}",
                    ),
                ),
                unit="ops",
            ),
        ],
    )
    data_dashboard = Dashboard(
        "algoedge-data",
        "AlgoEdge / Data",
        "pgBouncer (pools), Postgres (as pgBouncer and the app see it) and Redis.",
        [
            Panel(
                "pgBouncer clients by database",
                (
                    (
                        f"sum by (database) (pgbouncer_pools_client_active_connections{{{pgb}}})",
                        "{{database}} active",
                    ),
                    (
                        f"sum by (database) (pgbouncer_pools_client_waiting_connections{{{pgb}}})",
                        "{{database}} waiting",
                    ),
                ),
            ),
            Panel(
                "pgBouncer server connections by database",
                (
                    (
                        f"sum by (database) (pgbouncer_pools_server_active_connections{{{pgb}}})",
                        "{{database}} active",
                    ),
                    (
                        f"sum by (database) (pgbouncer_pools_server_idle_connections{{{pgb}}})",
                        "{{database}} idle",
                    ),
                ),
            ),
            Panel(
                "Oldest client wait",
                (
                    (
                        f"max by (database) (pgbouncer_pools_client_maxwait_seconds{{{pgb}}})",
                        "{{database}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Queries/s through pgBouncer",
                (
                    (
                        f"sum by (database) (rate(pgbouncer_stats_queries_total{{{pgb}}}[{RATE}]))",
                        "{{database}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Postgres: statements/s by pool (app)",
                (
                    (
                        f"sum by (pool, component) (rate(algoedge_db_queries_total{{{T}}}[{RATE}]))",
                        "{{component}} {{pool}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Postgres: replica lag",
                ((f"max(algoedge_db_replica_lag_seconds{{{api}}})", "lag"),),
                unit="s",
            ),
            Panel(
                "Redis memory against maxmemory",
                (
                    (f"max(redis_memory_used_bytes{{{redis}}})", "used"),
                    (f"max(redis_memory_max_bytes{{{redis}}})", "maxmemory"),
                ),
                unit="bytes",
            ),
            Panel(
                "Redis evictions/s",
                ((f"sum(rate(redis_evicted_keys_total{{{redis}}}[{RATE}]))", "evicted"),),
                unit="ops",
            ),
            Panel(
                "Redis clients",
                ((f"sum(redis_connected_clients{{{redis}}})", "connected"),),
            ),
            Panel(
                "Redis commands/s",
                ((f"sum(rate(redis_commands_processed_total{{{redis}}}[{RATE}]))", "commands"),),
                unit="ops",
            ),
        ],
    )
    return [overview, api_dashboard, jobs_dashboard, bridge_dashboard, data_dashboard]


def files() -> dict[str, str]:
    """File name -> JSON text of every dashboard (what the chart ships)."""
    return {
        f"{d.uid}.json": json.dumps(render(d), indent=2, sort_keys=True) + "\n"
        for d in dashboards()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=DASHBOARD_DIR)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, text in files().items():
        (args.dir / name).write_text(text)
        print(args.dir / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
