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
import json
import re
import secrets
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from algoedge.config import ApiSettings
from algoedge_operator.builders.alerts import rule_groups
from redis.asyncio import Redis

from devtools.bridge import BridgeProcess
from devtools.monitoring import dashboards, rules, tools
from devtools.services import PgBouncer, RedisServer, free_port
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
    "algoedge_redis_errors_total": "appears at the first Redis failure; Redis stays up",
    "algoedge_jobs_enqueue_failures_total": "appears when Redis refuses a task; Redis stays up",
    "algoedge_bridge_reconnects_total": "appears when a connection goes stale or is dropped",
    "algoedge_bridge_errors_total": "appears at the bridge's first survived error",
}
#: Panels whose whole query is empty for a reason other than an absent metric.
EXPECTED_EMPTY_PANELS = {
    "Failed or rejected tasks/s": "no task fails here (the outcome label appears at the first failure)",
}


def prometheus_config(targets: dict[str, str], rules_file: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {
                "job_name": component,
                "scrape_timeout": "900ms",
                "static_configs": [
                    {
                        "targets": [address],
                        "labels": {"namespace": NS, "tenant": TENANT, "component": component},
                    }
                ],
            }
            for component, address in targets.items()
        ],
    }


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback only
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])


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


def start(argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kwargs)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(
                f"{url}: process exited {process.returncode}\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
                return bool(response.status == 200)
        except OSError:
            return False

    poll(f"{url} (log {log})", answers, timeout=60)


@pytest.fixture
def monitoring_bin() -> dict[str, Path]:
    try:
        return {
            "prometheus": tools.tool("prometheus"),
            "pgbouncer-exporter": tools.tool("pgbouncer-exporter"),
            "redis-exporter": tools.redis_exporter(),
        }
    except tools.ToolsMissing as error:
        pytest.fail(str(error), pytrace=False)


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
def exporters(
    monitoring_bin: dict[str, Path],
    redis_with_maxmemory: RedisServer,
    pgbouncer: PgBouncer,
    relaxed_settings: ApiSettings,
    tmp_path: Path,
) -> Iterator[dict[str, str]]:
    redis_port, pgb_port = free_port(), free_port()
    redis_log, pgb_log = tmp_path / "redis-exporter.log", tmp_path / "pgbouncer-exporter.log"
    redis_exporter = start(
        [
            str(monitoring_bin["redis-exporter"]),
            f"-redis.addr=redis://127.0.0.1:{redis_with_maxmemory.port}",
            f"-web.listen-address=127.0.0.1:{redis_port}",
        ],
        redis_log,
        # The password through the environment, not the command line.
        env={"REDIS_PASSWORD": redis_with_maxmemory.password},
    )
    # The application role is one of pgBouncer's stats_users (devtools.services.PgBouncer).
    database_url = urllib.parse.urlsplit(relaxed_settings.database_url)
    config = tmp_path / "pgbouncer-exporter.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "exporter_host": "127.0.0.1",
                "exporter_port": pgb_port,
                "pgbouncers": [
                    {
                        "dsn": f"postgresql://{database_url.username}:$(PGBOUNCER_PASS)"
                        f"@127.0.0.1:{pgbouncer.port}/pgbouncer",
                        "exclude_databases": ["pgbouncer"],
                    }
                ],
            }
        )
    )
    pgb_exporter = start(
        [str(monitoring_bin["pgbouncer-exporter"]), "--config", str(config)],
        pgb_log,
        env={"PGBOUNCER_PASS": database_url.password or ""},
    )
    try:
        wait_http(f"http://127.0.0.1:{redis_port}/metrics", redis_exporter, redis_log)
        wait_http(f"http://127.0.0.1:{pgb_port}/metrics", pgb_exporter, pgb_log)
        yield {"redis": f"127.0.0.1:{redis_port}", "pgbouncer": f"127.0.0.1:{pgb_port}"}
    finally:
        stop(redis_exporter)
        stop(pgb_exporter)


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
            if process.process is not None:
                stop(process.process)
        smtp.stop()


@pytest.fixture
async def api_pod(relaxed_settings: ApiSettings) -> AsyncIterator[ApiClient]:
    # No hashing queue and one hashing thread: concurrent logins overflow into 503s (a 5xx).
    settings = relaxed_settings.model_copy(
        update={"password_hash_queue": 0, "password_hash_concurrency": 1}
    )
    async with running_api(settings) as client:
        yield client


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
    # Concurrent logins with one hashing thread and no queue: some get 503.
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
    return sockets


async def test_every_alert_series_and_panel_query_returns_data(
    api_pod: ApiClient,
    bridge: BridgeProcess,  # noqa: F811 - the fixture imported above
    jobs: dict[str, JobProcess],
    exporters: dict[str, str],
    monitoring_bin: dict[str, Path],
    tmp_path: Path,
) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    rules_file = rules.write(folder / "rules.yaml")
    targets = {
        "api": urllib.parse.urlsplit(api_pod.base_url).netloc,
        "worker": f"127.0.0.1:{jobs['worker'].metrics_port}",
        "beat": f"127.0.0.1:{jobs['beat'].metrics_port}",
        "bridge": urllib.parse.urlsplit(bridge.url).netloc,
        **exporters,
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(targets, rules_file)))
    port = free_port()
    log = folder / "prometheus.log"
    process = start(
        [
            str(monitoring_bin["prometheus"]),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
    )
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/-/ready", process, log)
        prom = Prometheus(f"http://127.0.0.1:{port}")
        sockets = await drive_load(api_pod)
        try:
            await check(prom, targets, sockets)
        finally:
            for socket in sockets:
                await socket.client.disconnect()
    finally:
        stop(process)


async def check(prom: Prometheus, targets: dict[str, str], sockets: list[Listener]) -> None:
    def all_up() -> bool:
        up = prom.query(f'up{{namespace="{NS}", tenant="{TENANT}"}} == 1')
        return {s["metric"]["component"] for s in up} == set(targets)

    await asyncio.to_thread(poll, "every target up", all_up, timeout=60)

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
    groups = prom.get("/api/v1/rules")["groups"]
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
                present = bool(prom.query(f"count({selector})"))
                if metric_of(selector) in EXPECTED_ABSENT:
                    if present:
                        unexpected.append((rule["alert"], selector))
                elif not present:
                    missing.append((rule["alert"], selector))
    for board, title, expr in panel_queries():
        absent = {metric_of(s) for s in selectors(expr)} & set(EXPECTED_ABSENT)
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
