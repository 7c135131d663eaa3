"""A real Prometheus (built from Go modules) scrapes a running tenant and the rules are loaded:
every alert expression's series and every dashboard panel query must return data.

The tenant runs locally as the operator would run it, one process per component: the API (in
this process), a worker and a beat, a bridge with the MetaAPI simulator (both from .venv-bridge),
and the two exporters against the fixtures' pgBouncer and Redis. Static scrape configs add the
label contract the operator's PodMonitors add (``namespace``, ``tenant``, ``component``), so the
rules are the ones ``rule_groups`` renders for tenant ``demo`` in ``default``. Load: users sign up
and log in, link accounts that the bridge connects and that trade, logins fail until the account
limit refuses them (429) and the hashing queue overflows (503).

What cannot exist here is listed in EXPECTED_ABSENT with the reason; everything else must
return series: a metric name typo, a wrong label or a dead panel fails the test.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from algoedge.config import ApiSettings
from algoedge_operator.builders.alerts import rule_groups
from redis.asyncio import Redis

from devtools.bridge import BridgeProcess
from devtools.monitoring import dashboards, rules, tools
from devtools.monitoring.local import LocalMonitoring
from devtools.services import PgBouncer, RedisServer
from devtools.smtp import SmtpSink
from tests.integration.conftest import ApiClient, running_api
from tests.integration.jobs import JobProcess, poll
from tests.integration.sockets import Listener

# The simulator and bridge fixtures of the bridge end-to-end tests (one replica, fast simulator).
from tests.integration.test_bridge_events import bridge, simulator  # noqa: F401

NS, TENANT = rules.DEFAULT_NAMESPACE, rules.DEFAULT_TENANT
SCRAPE_SECONDS = 1
#: Metric names whose series cannot exist in this test, and why. A selector or panel naming one
#: of them is checked to be absent (so this list cannot go stale silently).
EXPECTED_ABSENT = {
    "container_memory_working_set_bytes": "cAdvisor: no kubelet runs here",
    "kube_pod_container_resource_limits": "kube-state-metrics: no cluster runs here",
    "algoedge_operator_tenant_ready": "the operator is not run by this test (tests/e2e/operator)",
    "algoedge_operator_tenant_reconcile_errors_total": "the operator is not run by this test",
}
#: Counters born at their first event, which this test does not provoke but a loaded machine
#: may (a Redis command past its 1 s timeout): neither required nor refused.
EVENT_ONLY = {
    "algoedge_redis_errors_total": "appears at the first Redis failure; Redis stays up",
    "algoedge_jobs_enqueue_failures_total": "appears when Redis refuses a task; Redis stays up",
    "algoedge_bridge_reconnects_total": "appears when a connection goes stale or is dropped",
    "algoedge_bridge_errors_total": "appears at the bridge's first survived error",
}
#: Panels whose whole query is empty for a reason other than an absent metric.
EXPECTED_EMPTY_PANELS = {
    "Failed or rejected tasks/s": "no task fails here (the outcome label appears at the first failure)",
}


def selectors(expr: str) -> list[str]:
    """Every ``name{...}`` vector selector of an expression (ours always carry labels)."""
    return [m.group(0) for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*\{[^{}]*\}", expr)]


def metric_of(selector: str) -> str:
    return selector.split("{", 1)[0]


def panel_queries() -> Iterator[tuple[str, str, str]]:
    for board in dashboards.dashboards():
        rendered = dashboards.render(board)
        for panel in rendered["panels"]:
            for target in panel["targets"]:
                expr = (
                    target["expr"]
                    .replace("$__rate_interval", "1m")
                    .replace("$namespace", NS)
                    .replace("$tenant", TENANT)
                )
                yield board.title, panel["title"], expr


@pytest.fixture
async def redis_with_maxmemory(redis_server: RedisServer) -> AsyncIterator[RedisServer]:
    """The fixture's Redis with a maxmemory (the memory alert divides by it), restored after."""
    client = Redis.from_url(redis_server.url)
    before = (await client.config_get("maxmemory"))["maxmemory"]
    await client.config_set("maxmemory", str(1 << 30))
    try:
        yield redis_server
    finally:
        await client.config_set("maxmemory", before)
        await client.aclose()


@pytest.fixture
def monitoring(
    redis_with_maxmemory: RedisServer, pgbouncer: PgBouncer, tmp_path: Path
) -> Iterator[LocalMonitoring]:
    local = LocalMonitoring(tmp_path / "monitoring", scrape_seconds=SCRAPE_SECONDS)
    try:
        local.start_exporters(redis=redis_with_maxmemory, bouncer=pgbouncer)
    except tools.ToolsMissing as error:
        local.stop()
        pytest.fail(str(error), pytrace=False)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def jobs(relaxed_settings: ApiSettings) -> Iterator[dict[str, JobProcess]]:
    smtp = SmtpSink().start()
    env = {
        "ALGOEDGE_DATABASE_URL": relaxed_settings.database_url,
        "ALGOEDGE_REDIS_URL": relaxed_settings.redis_url,
        "ALGOEDGE_SMTP_URL": smtp.url,
        "ALGOEDGE_JOBS_VISIBILITY_TIMEOUT": "12",
        "ALGOEDGE_WORKER_CONCURRENCY": "2",
    }
    processes = {name: JobProcess(name, env, name).start() for name in ("worker", "beat")}
    try:
        for process in processes.values():
            process.wait_ready(timeout=60)
        yield processes
    finally:
        for process in processes.values():
            process.terminate()
        smtp.stop()


@pytest.fixture
async def api_pod(relaxed_settings: ApiSettings) -> AsyncIterator[ApiClient]:
    # No hashing queue and one hashing thread: concurrent logins overflow into 503s (a 5xx).
    settings = relaxed_settings.model_copy(
        update={"password_hash_queue": 0, "password_hash_concurrency": 1}
    )
    async with running_api(settings) as client:
        yield client


async def overflow_hashing(api: ApiClient) -> None:
    """Concurrent logins with one hashing thread and no queue: some get 503."""
    results = await asyncio.gather(
        *(
            api.call(
                "POST",
                "/api/v1/auth/login",
                json={"email": f"x{n}@example.com", "password": "whatever pw 1"},
            )
            for n in range(8)
        )
    )
    assert 503 in {status for status, _, _ in results}, [s for s, _, _ in results]


async def drive_load(api: ApiClient) -> list[Listener]:
    """Users with linked accounts and sockets, reads, 404s, a 429 and some 503s."""
    sockets = []
    base = 60_000_000 + secrets.randbelow(10_000_000)
    for n in range(2):
        _, token = await api.signed_up()
        socket = Listener()
        await socket.connect(api.base_url, token)
        sockets.append(socket)
        status, body, _ = await api.call(
            "POST",
            "/api/v1/accounts",
            token=token,
            json={"login": str(base + n), "server": "AlgoEdge-Demo", "password": "investor-pw"},
        )
        assert status == 201, body
        for path in ("/api/v1/accounts", "/api/v1/trades", "/api/v1/me", "/api/v1/no-such-route"):
            await api.call("GET", path, token=token)
    # Failed logins for one account until the per-account limit answers 429.
    email = f"{secrets.token_hex(4)}@example.com"
    await api.register(email)
    statuses = set()
    for _ in range(15):
        status, _, _ = await api.call(
            "POST", "/api/v1/auth/login", json={"email": email, "password": "wrong password!"}
        )
        statuses.add(status)
    assert 429 in statuses, statuses
    await overflow_hashing(api)
    return sockets


async def test_every_alert_series_and_panel_query_returns_data(
    api_pod: ApiClient,
    bridge: BridgeProcess,  # noqa: F811 - the fixture imported above
    jobs: dict[str, JobProcess],
    monitoring: LocalMonitoring,
) -> None:
    targets = {
        "api": urllib.parse.urlsplit(api_pod.metrics_url).netloc,
        "worker": f"127.0.0.1:{jobs['worker'].metrics_port}",
        "beat": f"127.0.0.1:{jobs['beat'].metrics_port}",
        "bridge": urllib.parse.urlsplit(bridge.url).netloc,
    }
    try:
        await asyncio.to_thread(monitoring.start_prometheus, targets)
    except tools.ToolsMissing as error:
        pytest.fail(str(error), pytrace=False)
    # Scraped once before the load, so rate() has a sample from before every increase.
    await every_target_up(monitoring, [*targets, *monitoring.exporters])
    sockets = await drive_load(api_pod)
    try:
        await check(monitoring, sockets)
    finally:
        for socket in sockets:
            await socket.client.disconnect()


async def every_target_up(prom: LocalMonitoring, components: list[str]) -> None:
    def all_up() -> bool:
        up = prom.query(f'up{{namespace="{NS}", tenant="{TENANT}"}} == 1')
        return {s["metric"]["component"] for s in up} == set(components)

    await asyncio.to_thread(poll, "every target up", all_up, timeout=60)


async def check(prom: LocalMonitoring, sockets: list[Listener]) -> None:
    def bridge_connected() -> bool:
        found = prom.query(
            f'sum(algoedge_bridge_accounts{{namespace="{NS}", tenant="{TENANT}", state="connected"}}) >= 2'
        )
        return bool(found)

    await asyncio.to_thread(poll, "both accounts connected", bridge_connected, timeout=120)

    def report_lag_known() -> bool:
        return bool(prom.query("algoedge_jobs_report_run_lag_seconds"))

    await asyncio.to_thread(poll, "a completed report run", report_lag_known, timeout=120)
    # A few more scrapes, so every rate() has two samples after the load.
    await asyncio.sleep(5 * SCRAPE_SECONDS)

    # The rules loaded and evaluate without errors.
    groups = prom.api("rules")["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"]}
    expected = {r["alert"] for g in rule_groups(tenant=TENANT, namespace=NS) for r in g["rules"]}
    assert loaded == expected
    unhealthy = [
        (r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"
    ]
    assert not unhealthy, unhealthy

    missing, unexpected = [], []
    for group in rule_groups(tenant=TENANT, namespace=NS):
        for rule in group["rules"]:
            for selector in selectors(rule["expr"]):
                if metric_of(selector) in EVENT_ONLY:
                    continue
                present = bool(prom.query(f"count({selector})"))
                if metric_of(selector) in EXPECTED_ABSENT:
                    if present:
                        unexpected.append((rule["alert"], selector))
                elif not present:
                    missing.append((rule["alert"], selector))
    for board, title, expr in panel_queries():
        named = {metric_of(s) for s in selectors(expr)}
        if named & set(EVENT_ONLY):
            continue
        absent = named & set(EXPECTED_ABSENT)
        present = bool(prom.query(expr))
        if absent or title in EXPECTED_EMPTY_PANELS:
            if present and title not in EXPECTED_EMPTY_PANELS:
                unexpected.append((f"{board} / {title}", expr))
            continue
        if not present:
            missing.append((f"{board} / {title}", expr))
    assert not missing, "queries without data:\n" + "\n".join(f"{w}: {e}" for w, e in missing)
    assert not unexpected, "listed as absent but present:\n" + "\n".join(
        f"{w}: {e}" for w, e in unexpected
    )
    # The load reached the dashboards: sockets, a 429 and 5xx answers are visible.
    sel = f'namespace="{NS}", tenant="{TENANT}"'
    assert prom.query(
        f'sum(algoedge_socketio_connected{{{sel}, component="api"}}) >= {len(sockets)}'
    )
    assert prom.query(f"sum(algoedge_ratelimit_denied_total{{{sel}}}) > 0")
    assert prom.query(f"sum(algoedge_http_errors_total{{{sel}}}) > 0")
    assert prom.query(f'max(algoedge_jobs_queue_backlog{{{sel}, component="beat"}}) >= 0')

    # The rules evaluate on these series: the 503s put the error-ratio alert in its 5 minutes
    # of pending (it would fire after them). They are the first 5xx answers of the process: rate()
    # sees them because the API creates every route's error counter at 0 (zero_route_errors).
    def error_alert() -> bool:
        alerts = prom.api("alerts")["alerts"]
        return any(
            a["labels"]["alertname"] == "AlgoEdgeApiErrorRatioHigh"
            and a["labels"]["tenant"] == TENANT
            and a["state"] in ("pending", "firing")
            for a in alerts
        )

    await asyncio.to_thread(poll, "AlgoEdgeApiErrorRatioHigh pending", error_alert, timeout=30)
