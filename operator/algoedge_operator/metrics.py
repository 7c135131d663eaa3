"""Prometheus metrics of the operator and the small HTTP server that serves them with /healthz."""

from __future__ import annotations

import contextlib

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

RECONCILES = Counter(
    "algoedge_operator_reconciles_total",
    "Tenant reconciles by outcome (ready, progressing, paused, the Ready reason of a problem such as SecretMissing or ApplyFailed, error).",
    ["outcome"],
)
RECONCILE_SECONDS = Histogram(
    "algoedge_operator_reconcile_duration_seconds",
    "Time one tenant reconcile took (reads, applies and the status update).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ERRORS = Counter(
    "algoedge_operator_errors_total",
    "Failures by where they happened (reconcile, capacity, status).",
    ["stage"],
)
CHILD_FAILURES = Counter(
    "algoedge_operator_child_failures_total",
    "Children that could not be written (applied, repaired or deleted), by kind; each is retried.",
    ["kind"],
)
DRIFT_REPAIRS = Counter(
    "algoedge_operator_drift_repairs_total",
    "Drift server-side apply could not undo, repaired by a JSON patch (action patch) or by recreating the child (action recreate).",
    ["kind", "action"],
)
SCALE_DECISIONS = Counter(
    "algoedge_operator_scale_decisions_total",
    "Replica changes chosen by the scalers.",
    ["component", "direction"],
)
API_WRITES = Counter(
    "algoedge_operator_api_writes_total",
    "Write requests the operator sent to the Kubernetes API.",
    ["verb", "kind"],
)
API_READS = Counter(
    "algoedge_operator_api_reads_total",
    "Read requests the operator sent to the Kubernetes API (get; list and watch by the informers).",
    ["verb", "kind"],
)
CACHE_READS = Counter(
    "algoedge_operator_cache_reads_total",
    "Reads of children answered from the watch-fed cache instead of the API.",
    ["kind"],
)
TENANTS = Gauge("algoedge_operator_tenants", "Tenants the operator currently watches.")
# Per tenant, for the tenant's own alerts and the tenant-at-a-glance panels (docs/monitoring.md).
# The labels are tenant_namespace and tenant: the operator's scrape sets `namespace` to the
# operator's own.
TENANT_READY = Gauge(
    "algoedge_operator_tenant_ready",
    "1 while the tenant's Ready condition is True after its last reconcile, else 0.",
    ["tenant_namespace", "tenant"],
)
TENANT_RECONCILE_ERRORS = Counter(
    "algoedge_operator_tenant_reconcile_errors_total",
    "Reconciles of the tenant that raised (retried), per tenant.",
    ["tenant_namespace", "tenant"],
)
TENANT_CAPACITY_USERS = Gauge(
    "algoedge_operator_tenant_capacity_users",
    "Users the tenant's ready API pods can serve (status.capacity.users).",
    ["tenant_namespace", "tenant"],
)
TENANT_MONTHLY_COST = Gauge(
    "algoedge_operator_tenant_monthly_cost",
    "The tenant's monthly cost estimate (status.cost.monthlyTotal) in the price sheet's currency.",
    ["tenant_namespace", "tenant", "currency"],
)
#: The currency each tenant's cost series is labelled with now (to drop it when it changes).
_COST_CURRENCY: dict[tuple[str, str], str] = {}


def record_tenant(
    namespace: str, tenant: str, *, users: int, monthly_cost: float, currency: str
) -> None:
    """The per-tenant capacity and cost gauges after a reconcile (readiness: the controller)."""
    TENANT_CAPACITY_USERS.labels(tenant_namespace=namespace, tenant=tenant).set(users)
    before = _COST_CURRENCY.get((namespace, tenant))
    if before is not None and before != currency:
        TENANT_MONTHLY_COST.remove(namespace, tenant, before)
    _COST_CURRENCY[(namespace, tenant)] = currency
    TENANT_MONTHLY_COST.labels(tenant_namespace=namespace, tenant=tenant, currency=currency).set(
        monthly_cost
    )


def forget_tenant(namespace: str, tenant: str) -> None:
    """Drop a deleted tenant's series, so its alerts do not fire for something gone."""
    for metric in (TENANT_READY, TENANT_RECONCILE_ERRORS, TENANT_CAPACITY_USERS):
        # Never reconciled or never failed: no series to remove.
        with contextlib.suppress(KeyError):
            metric.remove(namespace, tenant)
    currency = _COST_CURRENCY.pop((namespace, tenant), None)
    if currency is not None:
        with contextlib.suppress(KeyError):
            TENANT_MONTHLY_COST.remove(namespace, tenant, currency)


async def _metrics(_: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def _healthz(_: web.Request) -> web.Response:
    # Served from the operator's own event loop: a wedged loop fails the liveness probe.
    return web.json_response({"status": "ok"})


async def start_http_server(host: str, port: int) -> web.AppRunner:
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
