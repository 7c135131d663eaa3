"""The tenant's alerting rules, checked and unit-tested by promtool (built from Go modules).

Every alert has a case where it fires (labels and its description with the value filled in,
rendered by promtool's own templating) and one where it stays quiet; a new alert without both
fails ``test_every_alert_has_a_firing_and_a_quiet_case``. The cases are written against the
rules as ``devtools.monitoring.rules`` renders them for tenant ``demo`` in namespace ``default``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from algoedge_operator.builders.alerts import rule_groups

from devtools.monitoring import rules, tools

REPO = Path(__file__).resolve().parents[3]
MONITORING_DOC = REPO / "docs" / "monitoring.md"

NS, TENANT = rules.DEFAULT_NAMESPACE, rules.DEFAULT_TENANT
BASE = f'namespace="{NS}", tenant="{TENANT}"'


def s(metric: str, component: str | None = None, **labels: str) -> str:
    """An input series name of the tenant (with the label contract)."""
    parts = [BASE] + ([f'component="{component}"'] if component else [])
    parts += [f'{k}="{v}"' for k, v in labels.items()]
    return f"{metric}{{{', '.join(parts)}}}"


@dataclass(frozen=True)
class Fires:
    alert: str
    labels: dict[str, str]
    description: str


@dataclass(frozen=True)
class Case:
    name: str
    series: dict[str, str]  # series -> promtool values notation, one sample a minute
    eval_time: str
    fires: tuple[Fires, ...] = ()
    quiet: tuple[str, ...] = ()


def buckets(route: str, counts: dict[str, str]) -> dict[str, str]:
    return {
        s(
            "algoedge_http_request_duration_seconds_bucket",
            "api",
            route=route,
            method="GET",
            status="200",
            le=le,
        ): values
        for le, values in counts.items()
    }


SLOW = {"0.1": "0x20", "0.2": "0x20", "0.5": "0x20", "1": "0+60x20", "+Inf": "0+60x20"}
MEDIUM = {"0.1": "0x20", "0.2": "0x20", "0.5": "0+60x20", "1": "0+60x20", "+Inf": "0+60x20"}
FAST = {"0.1": "0+60x20", "0.2": "0+60x20", "0.5": "0+60x20", "1": "0+60x20", "+Inf": "0+60x20"}

CASES = [
    Case(
        "user routes slow: p95 and p99 fire",
        buckets("/api/v1/trades", SLOW),
        "15m",
        fires=(
            Fires("AlgoEdgeApiLatencyP95High", {}, "p95 of user-facing requests is 975ms."),
            Fires("AlgoEdgeApiLatencyP99High", {}, "p99 of user-facing requests is 995ms."),
        ),
    ),
    Case(
        "p95 over 200 ms, p99 under 500 ms",
        buckets("/api/v1/trades", MEDIUM),
        "15m",
        fires=(Fires("AlgoEdgeApiLatencyP95High", {}, "p95 of user-facing requests is 485ms."),),
        quiet=("AlgoEdgeApiLatencyP99High",),
    ),
    Case(
        "fast user routes, slow probes: quiet",
        {
            **buckets("/api/v1/trades", FAST),
            **buckets("/healthz", SLOW),
            **buckets("/metrics", SLOW),
        },
        "15m",
        quiet=("AlgoEdgeApiLatencyP95High", "AlgoEdgeApiLatencyP99High"),
    ),
    Case(
        "3% of requests 5xx",
        {
            s("algoedge_http_errors_total", "api", route="/api/v1/trades"): "0+3x20",
            s(
                "algoedge_http_request_duration_seconds_count",
                "api",
                route="/api/v1/trades",
                method="GET",
                status="200",
            ): "0+97x20",
            s(
                "algoedge_http_request_duration_seconds_count",
                "api",
                route="/api/v1/trades",
                method="GET",
                status="500",
            ): "0+3x20",
        },
        "10m",
        fires=(
            Fires(
                "AlgoEdgeApiErrorRatioHigh", {}, "3% of requests failed with a 5xx over 5 minutes."
            ),
        ),
    ),
    Case(
        "0.5% of requests 5xx",
        {
            s("algoedge_http_errors_total", "api", route="/api/v1/trades"): "0+1x20",
            s(
                "algoedge_http_request_duration_seconds_count",
                "api",
                route="/api/v1/trades",
                method="GET",
                status="200",
            ): "0+199x20",
            s(
                "algoedge_http_request_duration_seconds_count",
                "api",
                route="/api/v1/trades",
                method="GET",
                status="500",
            ): "0+1x20",
        },
        "10m",
        quiet=("AlgoEdgeApiErrorRatioHigh",),
    ),
    Case(
        "one API pod holding 450 sockets",
        {
            s("algoedge_socketio_connected", "api", instance="a"): "450x10",
            s("up", "api", instance="a"): "1x10",
        },
        "10m",
        fires=(
            Fires(
                "AlgoEdgeApiSocketsNearCapacity",
                {},
                "Connected sockets are 90% of 500 per ready API pod.",
            ),
        ),
    ),
    Case(
        "two API pods holding 450 sockets; a down pod does not count",
        {
            s("algoedge_socketio_connected", "api", instance="a"): "250x10",
            s("algoedge_socketio_connected", "api", instance="b"): "200x10",
            s("up", "api", instance="a"): "1x10",
            s("up", "api", instance="b"): "1x10",
            s("up", "api", instance="c"): "0x10",
        },
        "10m",
        quiet=("AlgoEdgeApiSocketsNearCapacity",),
    ),
    Case(
        "pgBouncer pool exhausted: clients waiting, no idle server",
        {
            s(
                "pgbouncer_pools_client_waiting_connections",
                "pgbouncer",
                database="algoedge",
                user="app",
            ): "3x20",
            s(
                "pgbouncer_pools_client_maxwait_seconds",
                "pgbouncer",
                database="algoedge",
                user="app",
            ): "2.5x20",
            s(
                "pgbouncer_pools_server_idle_connections",
                "pgbouncer",
                database="algoedge",
                user="app",
            ): "0x20",
        },
        "15m",
        fires=(
            Fires(
                "AlgoEdgePgbouncerClientsWaiting",
                {},
                "3 client connections are waiting for a server connection.",
            ),
            Fires(
                "AlgoEdgePgbouncerPoolSaturated",
                {"database": "algoedge"},
                "No idle server connection, clients queued and the oldest waiting over a second, for 10 minutes.",
            ),
        ),
    ),
    Case(
        "pgBouncer with idle servers and nobody waiting",
        {
            s(
                "pgbouncer_pools_client_waiting_connections",
                "pgbouncer",
                database="algoedge",
                user="app",
            ): "0x20",
            s(
                "pgbouncer_pools_client_maxwait_seconds",
                "pgbouncer",
                database="algoedge",
                user="app",
            ): "0x20",
            s(
                "pgbouncer_pools_server_idle_connections",
                "pgbouncer",
                database="algoedge",
                user="app",
            ): "2x20",
        },
        "15m",
        quiet=("AlgoEdgePgbouncerClientsWaiting", "AlgoEdgePgbouncerPoolSaturated"),
    ),
    Case(
        "pgBouncers hold 90 of 100 Postgres connections",
        {
            s(
                f"pgbouncer_pools_server_{state}_connections",
                "pgbouncer",
                database="algoedge",
                user="app",
                pod=pod,
            ): value
            for pod in ("p1", "p2")
            for state, value in (
                ("active", "30x20"),
                ("idle", "15x20"),
                ("used", "0x20"),
                ("testing", "0x20"),
                ("login", "0x20"),
            )
        },
        "15m",
        fires=(
            Fires(
                "AlgoEdgePostgresConnectionsNearMax",
                {},
                "The tenant's pgBouncers hold 90 server connections to Postgres.",
            ),
        ),
    ),
    Case(
        "pgBouncers hold 60 of 100 Postgres connections",
        {
            s(
                f"pgbouncer_pools_server_{state}_connections",
                "pgbouncer",
                database="algoedge",
                user="app",
            ): value
            for state, value in (
                ("active", "40x20"),
                ("idle", "10x20"),
                ("used", "5x20"),
                ("testing", "0x20"),
                ("login", "5x20"),
            )
        },
        "15m",
        quiet=("AlgoEdgePostgresConnectionsNearMax",),
    ),
    Case(
        "Redis at 90% of maxmemory, evicting",
        {
            s("redis_memory_used_bytes", "redis"): "900x10",
            s("redis_memory_max_bytes", "redis"): "1000x10",
            s("redis_evicted_keys_total", "redis", db="db0"): "0+2x10",
        },
        "10m",
        fires=(
            Fires("AlgoEdgeRedisMemoryHigh", {}, "Redis memory is 90% of maxmemory."),
            Fires(
                "AlgoEdgeRedisEvictions",
                {},
                "10 keys evicted in 5 minutes: queued tasks, sessions or leases may be lost.",
            ),
        ),
    ),
    Case(
        "Redis at half of maxmemory, not evicting; another without maxmemory",
        {
            s("redis_memory_used_bytes", "redis", instance="a"): "500x10",
            s("redis_memory_max_bytes", "redis", instance="a"): "1000x10",
            s("redis_memory_used_bytes", "redis", instance="b"): "900x10",
            s("redis_memory_max_bytes", "redis", instance="b"): "0x10",
            s("redis_evicted_keys_total", "redis", db="db0"): "7x10",
        },
        "10m",
        quiet=("AlgoEdgeRedisMemoryHigh", "AlgoEdgeRedisEvictions"),
    ),
    Case(
        "reports queue growing, oldest task waiting 15 minutes",
        {
            s("algoedge_jobs_queue_backlog", "beat", queue="reports"): "0+5x30",
            s("algoedge_jobs_queue_oldest_task_age_seconds", "beat", queue="reports"): "0+60x30",
        },
        "15m",
        fires=(
            Fires(
                "AlgoEdgeQueueBacklogGrowing",
                {"queue": "reports"},
                "More than 10 tasks and still growing.",
            ),
            Fires(
                "AlgoEdgeQueueOldestTaskOld",
                {"queue": "reports"},
                "The oldest task has waited at least 15m 0s (threshold 600 s).",
            ),
        ),
    ),
    Case(
        "a large but steady backlog drained in order",
        {
            s("algoedge_jobs_queue_backlog", "beat", queue="reports"): "50x30",
            s("algoedge_jobs_queue_oldest_task_age_seconds", "beat", queue="reports"): "30x30",
        },
        "15m",
        quiet=("AlgoEdgeQueueBacklogGrowing", "AlgoEdgeQueueOldestTaskOld"),
    ),
    Case(
        "the newest daily and weekly runs are old",
        {
            s("algoedge_jobs_report_run_lag_seconds", "beat", kind="daily"): "100000+60x10",
            s("algoedge_jobs_report_run_lag_seconds", "beat", kind="weekly"): "700000+60x10",
        },
        "10m",
        fires=(
            Fires(
                "AlgoEdgeDailyReportLate",
                {},
                "The newest completed daily run was scheduled 1d 3h 56m 40s ago.",
            ),
            Fires(
                "AlgoEdgeWeeklyReportLate",
                {},
                "The newest completed weekly run was scheduled 8d 2h 36m 40s ago.",
            ),
        ),
    ),
    Case(
        "runs completed on time",
        {
            s("algoedge_jobs_report_run_lag_seconds", "beat", kind="daily"): "3600+60x10",
            s("algoedge_jobs_report_run_lag_seconds", "beat", kind="weekly"): "90000+60x10",
        },
        "10m",
        quiet=("AlgoEdgeDailyReportLate", "AlgoEdgeWeeklyReportLate"),
    ),
    Case(
        "a fifth of the accounts disconnected or failed",
        {
            s("algoedge_bridge_accounts", "bridge", state="connected", instance="b0"): "8x30",
            s("algoedge_bridge_accounts", "bridge", state="disconnected", instance="b0"): "1x30",
            s("algoedge_bridge_accounts", "bridge", state="failed", instance="b1"): "1x30",
        },
        "20m",
        fires=(
            Fires(
                "AlgoEdgeBridgeAccountsDisconnected",
                {},
                "20% of the bridge's accounts are not connected.",
            ),
        ),
    ),
    Case(
        "one account in twenty reconnecting",
        {
            s("algoedge_bridge_accounts", "bridge", state="connected"): "17x30",
            s("algoedge_bridge_accounts", "bridge", state="synchronizing"): "2x30",
            s("algoedge_bridge_accounts", "bridge", state="connecting"): "1x30",
        },
        "20m",
        quiet=("AlgoEdgeBridgeAccountsDisconnected",),
    ),
    Case(
        "the beat has not answered a scrape for 6 minutes",
        {
            s("up", "beat", instance="10.0.0.7:9090"): "1 1 1 1 0x10",
            s("up", "worker", instance="10.0.0.8:9090"): "1x14",
        },
        "12m",
        fires=(
            Fires(
                "AlgoEdgeTargetDown",
                {"component": "beat", "instance": "10.0.0.7:9090"},
                "Prometheus has failed to scrape it for 5 minutes: the pod is down or not "
                "answering on its metrics port, and its other alerts are blind.",
            ),
        ),
    ),
    Case(
        "a target down for two minutes",
        {s("up", "api", instance="10.0.0.9:8080"): "1 1 0 0 1x10"},
        "3m",  # down for two minutes: pending, not firing
        quiet=("AlgoEdgeTargetDown",),
    ),
    Case(
        "the API container at 95% of its memory limit",
        {
            f'container_memory_working_set_bytes{{namespace="{NS}", pod="{TENANT}-api-7d9-x", container="api"}}': "950x20",
            f'kube_pod_container_resource_limits{{namespace="{NS}", pod="{TENANT}-api-7d9-x", container="api", resource="memory", unit="byte"}}': "1000x20",
        },
        "15m",
        fires=(
            Fires(
                "AlgoEdgePodMemoryNearLimit",
                {"pod": f"{TENANT}-api-7d9-x", "container": "api"},
                "Working set is 95% of the memory limit.",
            ),
        ),
    ),
    Case(
        "another tenant's pod near its limit, ours at half",
        {
            f'container_memory_working_set_bytes{{namespace="{NS}", pod="other-api-1", container="api"}}': "990x20",
            f'kube_pod_container_resource_limits{{namespace="{NS}", pod="other-api-1", container="api", resource="memory", unit="byte"}}': "1000x20",
            f'container_memory_working_set_bytes{{namespace="{NS}", pod="{TENANT}-worker-1", container="worker"}}': "500x20",
            f'kube_pod_container_resource_limits{{namespace="{NS}", pod="{TENANT}-worker-1", container="worker", resource="memory", unit="byte"}}': "1000x20",
            f'kube_pod_container_resource_limits{{namespace="{NS}", pod="{TENANT}-worker-1", container="worker", resource="cpu", unit="core"}}': "1x20",
        },
        "15m",
        quiet=("AlgoEdgePodMemoryNearLimit",),
    ),
    Case(
        "the operator fails every reconcile and the tenant is not Ready",
        {
            f'algoedge_operator_tenant_reconcile_errors_total{{namespace="algoedge-system", tenant_namespace="{NS}", tenant="{TENANT}"}}': "0+1x40",
            f'algoedge_operator_tenant_ready{{namespace="algoedge-system", tenant_namespace="{NS}", tenant="{TENANT}"}}': "0x40",
        },
        "35m",
        fires=(
            Fires("AlgoEdgeOperatorReconcileErrors", {}, "15 failed reconciles in 15 minutes."),
            Fires(
                "AlgoEdgeTenantNotReady",
                {},
                f"See the tenant's Ready condition: kubectl get aet -n {NS} {TENANT}",
            ),
        ),
    ),
    Case(
        "our tenant Ready; another tenant failing",
        {
            f'algoedge_operator_tenant_reconcile_errors_total{{namespace="algoedge-system", tenant_namespace="{NS}", tenant="{TENANT}"}}': "2x40",
            f'algoedge_operator_tenant_ready{{namespace="algoedge-system", tenant_namespace="{NS}", tenant="{TENANT}"}}': "1x40",
            f'algoedge_operator_tenant_reconcile_errors_total{{namespace="algoedge-system", tenant_namespace="{NS}", tenant="other"}}': "0+1x40",
            f'algoedge_operator_tenant_ready{{namespace="algoedge-system", tenant_namespace="{NS}", tenant="other"}}': "0x40",
        },
        "35m",
        quiet=("AlgoEdgeOperatorReconcileErrors", "AlgoEdgeTenantNotReady"),
    ),
]


def alerts_by_name() -> dict[str, dict[str, Any]]:
    return {
        rule["alert"]: rule
        for group in rule_groups(tenant=TENANT, namespace=NS)
        for rule in group["rules"]
    }


def expand(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)


def promtool_tests() -> dict[str, Any]:
    rules_by_name = alerts_by_name()
    tests = []
    for case in CASES:
        checks = []
        for fired in case.fires:
            rule = rules_by_name[fired.alert]
            labels = {**rule["labels"], **fired.labels}
            checks.append(
                {
                    "eval_time": case.eval_time,
                    "alertname": fired.alert,
                    "exp_alerts": [
                        {
                            "exp_labels": labels,
                            "exp_annotations": {
                                "summary": expand(rule["annotations"]["summary"], labels),
                                "description": fired.description,
                                "runbook_url": rule["annotations"]["runbook_url"],
                            },
                        }
                    ],
                }
            )
        checks += [
            {"eval_time": case.eval_time, "alertname": alert, "exp_alerts": []}
            for alert in case.quiet
        ]
        tests.append(
            {
                "name": case.name,
                "interval": "1m",
                "input_series": [{"series": k, "values": v} for k, v in case.series.items()],
                "alert_rule_test": checks,
            }
        )
    return {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    fired = {f.alert for case in CASES for f in case.fires}
    quiet = {alert for case in CASES for alert in case.quiet}
    names = set(alerts_by_name())
    assert names - fired == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"
    assert fired | quiet <= names


def test_every_alert_has_a_runbook_section() -> None:
    doc = MONITORING_DOC.read_text()
    for name, rule in alerts_by_name().items():
        assert re.search(rf"^### {name}$", doc, re.MULTILINE), (
            f"docs/monitoring.md lacks ### {name}"
        )
        assert rule["annotations"]["runbook_url"] == f"docs/monitoring.md#{name.lower()}"


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return tools.tool("promtool")
    except tools.ToolsMissing as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    return rules.write(tmp_path / "rules.yaml")


def run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def test_promtool_checks_the_rendered_rules(promtool: Path, rendered: Path) -> None:
    result = run(
        promtool, "check", "rules", "--lint=all", "--lint-fatal", rendered.name, cwd=rendered.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts_by_name())} rules found" in result.stdout


def test_promtool_rejects_a_broken_rule(promtool: Path, tmp_path: Path) -> None:
    # The check above can fail: a typo in an expression is refused.
    groups = rule_groups(tenant=TENANT, namespace=NS)
    groups[0]["rules"][0]["expr"] = "sum(rate(algoedge_http_errors_total[5m]) >"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    result = run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "AlgoEdgeApiLatencyP95High" in result.stdout + result.stderr or "parse error" in (
        result.stdout + result.stderr
    )


def test_promtool_unit_tests_every_alert(promtool: Path, rendered: Path) -> None:
    test_file = rendered.parent / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump(promtool_tests(), sort_keys=False, width=1000))
    result = run(promtool, "test", "rules", test_file.name, cwd=rendered.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tenant": "Demo"}, "tenant must be a DNS label"),
        ({"tenant": 'x"}) or vector(1'}, "tenant must be a DNS label"),
        ({"namespace": ""}, "namespace must be a DNS label"),
        ({"api_error_ratio": 0}, "api_error_ratio must be in (0, 1]"),
        ({"capacity_fraction": 1.5}, "capacity_fraction must be in (0, 1]"),
        ({"api_sockets_per_pod": 0}, "api_sockets_per_pod must be positive"),
        ({"oldest_task_seconds": -1}, "oldest_task_seconds must be positive"),
    ],
)
def test_bad_input_is_refused_clearly(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"tenant": TENANT, "namespace": NS, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        rule_groups(**arguments)


def test_thresholds_reach_the_expressions() -> None:
    groups = rule_groups(
        tenant="acme", namespace="trading", api_p95_seconds=0.3, postgres_max_connections=400
    )
    exprs = {r["alert"]: r["expr"] for g in groups for r in g["rules"]}
    assert exprs["AlgoEdgeApiLatencyP95High"].endswith("> 0.3")
    assert exprs["AlgoEdgePostgresConnectionsNearMax"].endswith("> 0.8 * 400")
    assert all(
        'namespace="trading"' in e or 'tenant_namespace="trading"' in e for e in exprs.values()
    )
    assert all('"acme' in e for e in exprs.values())
    assert [g["name"] for g in groups] == [
        f"algoedge.trading.acme.{part}" for part in ("api", "data", "jobs", "bridge", "kubernetes")
    ]
