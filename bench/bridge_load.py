"""Benchmark of one bridge process at N accounts, side by side with the naive design, on the same storm.

One command does everything, then cleans up. For each N (``--accounts``) and each design
(``--design``), in that order, with a fresh simulator on identical settings:

1. a simulator (``bench.bridge_sim`` in ``.venv-bridge``: the real one plus request counters) with
   the simulated strategy trading on every subscribed account (``--strategy-seconds``);
2. ``bridge``: a fresh migrated database behind pgBouncer and an empty Redis
   (``devtools.services``, started once), N/10 users with passwords, one ``algoedge api`` (main
   venv) with every user logged in over its socket.io websocket, and ONE ``algoedge bridge``
   (``.venv-bridge``) started with no accounts; then the N accounts are linked (data layer) and
   the bridge woken. ``naive``: ``bench.bridge_naive`` (``.venv-bridge``) opens the same N
   logins all at once on ``POST /open``;
3. measures the time until every account is connected (the design's own view: the
   ``mt_accounts.state`` column, or the SDK's ``synchronized``) and synchronized (the provider's
   view: an open subscription that finished a synchronization), the process's RSS before the
   accounts and after, its CPU while connecting, then over a steady window (strategy traffic
   only): the CPU of every process, and for the bridge each ``trade.opened`` / ``trade.closed``
   a user's socket received, from the deal's time (simulator clock) to the receipt (same
   machine clock): p50 / p99;
4. drops every simulator socket at once (``/admin/faults/drop-sockets``) and measures the time
   until every account is synchronized again, the synchronizations in flight at once (the
   design's count, sampled, and its own peak) and what the provider was asked per second
   (subscribes, synchronizes, REST);
5. records errors, 429s, accounts not synchronized at the end, and accounts the simulator saw
   subscribed twice at once; prints Markdown tables (``--json`` writes everything).

Run from the repository root: ``.venv/bin/python -m bench.bridge_load --accounts 100,500,1000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from algoedge.config import MigrateSettings, load_settings
from algoedge.credentials import CredentialsCipher
from algoedge.db import Database, accounts, users
from algoedge.keys import BRIDGE_WAKE_CHANNEL
from argon2 import PasswordHasher
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bench.api_load import (
    BENCH_LIMITS,
    BENCH_RATE_LIMIT,
    PASSWORD,
    Seeded,
    Stack,
    Target,
    login_all,
    machine_facts,
    process_cpu_seconds,
    raise_file_limit,
    self_cpu_seconds,
    start_stack,
    start_target,
    stop_target,
    system_cpu,
)
from bench.bridge_stats import markdown_table, per_account_kib, percentile, trade_event_latency
from bench.jobs_load import tree_cpu_seconds
from bench.operator_scale import proc_status_kib
from devtools.app import api_environment, command_env, migrated
from devtools.bridge import BRIDGE_VENV_ALGOEDGE, BridgeProcess, bridge_environment
from devtools.services import LOOPBACK, free_port, wait_healthy

REPO = Path(__file__).resolve().parent.parent
BRIDGE_PYTHON = REPO / ".venv-bridge/bin/python"
BRIDGE_ALGOEDGE = REPO / BRIDGE_VENV_ALGOEDGE
DESIGNS = ("bridge", "naive")
#: The simulator's API token (the SDK wants three dot-separated parts).
SIM_TOKEN = "bench.simulated-metaapi.token-0001"  # noqa: S105 - a throwaway local token
SERVER = "AlgoEdge-Demo"
ACCOUNTS_PER_USER = 10
POLL_SECONDS = 0.5
#: Pause after a phase ends before the next one's numbers are taken.
SETTLE_SECONDS = 5.0


#: Table cell of a number that was not measured.
NONE = "-"


def step(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# processes


@dataclass(frozen=True)
class SimConfig:
    """The simulator's settings, identical for every design of a run."""

    strategy_seconds: float
    tick_seconds: float = 1.0
    deploy_seconds: float = 0.5
    connect_seconds: float = 0.5
    status_seconds: float = 30.0
    seed: int = 1

    def environment(self, port: int) -> dict[str, str]:
        return {
            "ALGOEDGE_SIM_TOKEN": SIM_TOKEN,
            "ALGOEDGE_SIM_HOST": LOOPBACK,
            "ALGOEDGE_SIM_PORT": str(port),
            "ALGOEDGE_SIM_SEED": str(self.seed),
            "ALGOEDGE_SIM_TICK_SECONDS": str(self.tick_seconds),
            "ALGOEDGE_SIM_DEPLOY_SECONDS": str(self.deploy_seconds),
            "ALGOEDGE_SIM_CONNECT_SECONDS": str(self.connect_seconds),
            "ALGOEDGE_SIM_STATUS_SECONDS": str(self.status_seconds),
            "ALGOEDGE_SIM_STRATEGY_SECONDS": str(self.strategy_seconds),
            "ALGOEDGE_SIM_LOG_LEVEL": "WARNING",
        }


def spawn(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=command_env(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )


def terminate(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def error_lines(log: Path) -> list[str]:
    """ERROR lines and tracebacks a process wrote."""
    if not log.exists():
        return []
    return [
        line[:500]
        for line in log.read_text(errors="replace").splitlines()
        if "ERROR" in line or line.startswith("Traceback")
    ]


@dataclass
class Simulator:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    http: aiohttp.ClientSession

    @classmethod
    def start(cls, config: SimConfig, folder: Path, http: aiohttp.ClientSession) -> Simulator:
        port = free_port()
        log = folder / "sim.log"
        process = spawn(
            [str(BRIDGE_PYTHON), "-m", "bench.bridge_sim"], config.environment(port), log, REPO
        )
        url = f"http://{LOOPBACK}:{port}"
        wait_healthy(f"{url}/healthz", process, log=log)
        return cls(process, url, log, http)

    async def _call(self, method: str, path: str) -> Any:
        headers = {"Authorization": f"Bearer {SIM_TOKEN}"}
        async with self.http.request(method, self.url + path, headers=headers) as answer:
            answer.raise_for_status()
            return await answer.json()

    async def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = await self._call("GET", "/bench/stats")
        return found

    async def mark(self) -> None:
        await self._call("POST", "/bench/mark")

    async def drop_sockets(self) -> int:
        return int((await self._call("POST", "/admin/faults/drop-sockets"))["dropped"])

    async def accounts_subscribed_twice(self) -> int:
        """Accounts ever subscribed twice at once on one instance index."""
        stats = await self._call("GET", "/admin/stats")
        return sum(
            1 for a in stats["accounts"] if any(n > 1 for n in a["perInstanceIndex"].values())
        )

    def stop(self) -> None:
        terminate(self.process, timeout=30)


def mean_delta_ms(before: dict[str, float], after: dict[str, float], histogram: str) -> float:
    """Mean of a Prometheus histogram's observations between two scrapes, in ms (NaN if none)."""
    count = after.get(f"{histogram}_count", 0.0) - before.get(f"{histogram}_count", 0.0)
    total = after.get(f"{histogram}_sum", 0.0) - before.get(f"{histogram}_sum", 0.0)
    return total / count * 1000 if count > 0 else math.nan


def scrape_metrics(text: str) -> dict[str, float]:
    """Prometheus text as {name{label=value,…}: value}."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


# ---------------------------------------------------------------------------------------------
# the two designs


def account_specs(count: int) -> list[dict[str, str]]:
    """The same N logins for both designs."""
    return [
        {"login": str(60_000_000 + n), "password": f"investor-{n}", "server": SERVER}
        for n in range(count)
    ]


@dataclass
class TradeEvents:
    """Trade events the users' sockets received: (receipt time, latency seconds)."""

    received: list[tuple[float, float]] = field(default_factory=list)
    other: int = 0
    disconnects: int = 0
    closing: bool = False

    def between(self, start: float, end: float) -> list[float]:
        return sorted(lat for at, lat in self.received if start <= at < end)


async def connect_trade_sockets(
    base: str, tokens: list[str], events: TradeEvents, http: aiohttp.ClientSession
) -> list[socketio.AsyncClient]:
    clients = []
    for token in tokens:
        client = socketio.AsyncClient(reconnection=False, handle_sigint=False, http_session=http)

        def on_any(event: str, data: Any) -> None:
            received = time.time()
            latency = trade_event_latency(event, data, received)
            if latency is None:
                events.other += 1
            else:
                events.received.append((received, latency))

        async def on_disconnect(*_: Any) -> None:
            if not events.closing:
                events.disconnects += 1

        client.on("*", on_any)
        client.on("disconnect", on_disconnect)
        await client.connect(base, auth={"token": token}, transports=["websocket"], wait_timeout=15)
        clients.append(client)
    return clients


class BridgeDesign:
    """One ``algoedge bridge`` with the API and users' sockets; accounts linked in the database."""

    name = "bridge"

    def __init__(
        self,
        *,
        stack: Stack,
        folder: Path,
        sim: Simulator,
        accounts_count: int,
        max_syncs: int,
        http: aiohttp.ClientSession,
    ) -> None:
        self.stack, self.folder, self.sim, self.http = stack, folder, sim, http
        self.count = accounts_count
        self.max_syncs = max_syncs
        self.key = Fernet.generate_key().decode()
        self.events = TradeEvents()
        self.db: Database | None = None
        self.api: Target | None = None
        self.bridge: BridgeProcess | None = None
        self.sockets: list[socketio.AsyncClient] = []
        self.user_ids: list[int] = []
        self.pid = 0
        self.log = folder / "bench-bridge-0.log"

    async def start(self) -> None:
        stack = self.stack
        redis = Redis.from_url(stack.redis.url)
        await redis.flushall()  # no leases, members or sessions of an earlier run
        await redis.aclose()
        database = stack.postgres.create_database(f"bridge_{secrets.token_hex(4)}")
        url = stack.bouncer.url_for(database)
        settings = load_settings(
            MigrateSettings, {"ALGOEDGE_DATABASE_URL": url, "ALGOEDGE_DB_POOL_MAX": "8"}
        )
        await migrated(settings)
        self.db = await Database.connect(settings.model_copy(update={"db_pool_min": 0}))
        # Cheap argon2id parameters: logins are set-up, not measured (as bench.api_load).
        password_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
        user_count = max(1, math.ceil(self.count / ACCOUNTS_PER_USER))
        emails = [f"trader{n}@bridge.bench.example.com" for n in range(user_count)]
        for n, email in enumerate(emails):
            new = await users.create_user(
                self.db, email=email, name=f"Trader {n}", password_hash=password_hash
            )
            self.user_ids.append(new.user.id)
        env = {
            **api_environment(url, stack.redis.url),
            **BENCH_LIMITS,
            # Every user's socket comes from 127.0.0.1: the per-address handshake limit would
            # refuse most of them.
            "ALGOEDGE_RATE_LIMIT_SOCKET": BENCH_RATE_LIMIT,
            "ALGOEDGE_CREDENTIALS_KEY": self.key,
        }
        self.api = start_target("api", count=1, env=env, root=self.folder)
        seeded = Seeded(
            emails=emails, user_ids=self.user_ids, active_bot_ids=[], trades=0, seconds=0
        )
        logged_in, failures, _ = await login_all(
            self.http, self.api, seeded, count=user_count, concurrency=8
        )
        if failures:
            raise RuntimeError(f"logins failed: {dict(failures)}")
        self.sockets = await connect_trade_sockets(
            self.api.bases[0], [u.token for u in logged_in], self.events, self.http
        )
        bridge_env = bridge_environment(
            database_url=url,
            redis_url=stack.redis.url,
            credentials_key=self.key,
            metaapi_url=self.sim.url,
            metaapi_token=SIM_TOKEN,
            pod_name="bench-bridge-0",
            max_concurrent_syncs=self.max_syncs,
        )
        self.bridge = BridgeProcess(
            "bench-bridge-0", bridge_env, self.folder, executable=str(BRIDGE_ALGOEDGE)
        ).start()
        assert self.bridge.process is not None
        self.pid = self.bridge.process.pid
        wait_healthy(f"{self.bridge.url}/readyz", self.bridge.process, timeout=60, log=self.log)

    async def open(self) -> None:
        assert self.db is not None
        cipher = CredentialsCipher(self.key)
        gate = asyncio.Semaphore(8)

        async def link(n: int, spec: dict[str, str]) -> None:
            assert self.db is not None
            async with gate:
                await accounts.link_account(
                    self.db,
                    user_id=self.user_ids[n // ACCOUNTS_PER_USER],
                    login=spec["login"],
                    server=spec["server"],
                    platform="mt5",
                    encrypted_password=cipher.encrypt(spec["password"]),
                )

        await asyncio.gather(*(link(n, s) for n, s in enumerate(account_specs(self.count))))
        # What the API does after a link: wake the bridges rather than wait for their poll.
        redis = Redis.from_url(self.stack.redis.url)
        await redis.publish(BRIDGE_WAKE_CHANNEL, "bench")
        await redis.aclose()

    async def states(self) -> dict[str, int]:
        assert self.db is not None
        async with self.db.cursor() as cur:
            await cur.execute("SELECT state, count(*) FROM mt_accounts GROUP BY state")
            return {state: int(n) for state, n in await cur.fetchall()}

    async def connected(self) -> int:
        return (await self.states()).get("connected", 0)

    async def metrics(self) -> dict[str, float]:
        assert self.bridge is not None
        async with self.http.get(self.bridge.url + "/metrics") as answer:
            return scrape_metrics(await answer.text())

    async def syncs_in_flight(self) -> int:
        return int((await self.metrics()).get("algoedge_bridge_syncs_in_flight", 0))

    async def syncs_peak(self) -> int:
        # The process's peak since it started: mark() cannot restart it, so the storm's own
        # peak is the sampled one.
        return int((await self.metrics()).get("algoedge_bridge_syncs_in_flight_max", 0))

    async def mark(self) -> None:
        return None

    async def problems(self) -> dict[str, float]:
        metrics = await self.metrics()
        wanted = (
            "algoedge_bridge_connects_total",
            "algoedge_bridge_reconnects_total",
            "algoedge_bridge_errors_total",
            "algoedge_bridge_too_many_requests_total",
            "algoedge_bridge_trades_total",
            "algoedge_bridge_lease_losses_total",
        )
        return {k: v for k, v in metrics.items() if k.startswith(wanted) and v}

    def helper_pids(self) -> dict[str, int]:
        return {"api": self.api.processes[0].pid} if self.api is not None else {}

    def stop(self) -> None:
        if self.bridge is not None:
            self.bridge.stop(timeout=120)
        if self.api is not None:
            stop_target(self.api)

    async def close(self) -> None:
        self.events.closing = True
        for client in self.sockets:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5)
        self.stop()
        if self.db is not None:
            await self.db.close()


class NaiveDesign:
    """``bench.bridge_naive``: every account opened at once through one SDK instance."""

    name = "naive"

    def __init__(
        self, *, folder: Path, sim: Simulator, accounts_count: int, http: aiohttp.ClientSession
    ) -> None:
        self.folder, self.sim, self.http = folder, sim, http
        self.count = accounts_count
        self.port = free_port()
        self.log = folder / "naive.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def start(self) -> None:
        specs = self.folder / "accounts.json"
        specs.write_text(json.dumps(account_specs(self.count)))
        cwd = self.folder / "naive"  # the SDK writes ./.metaapi
        cwd.mkdir(exist_ok=True)
        env = {
            "ALGOEDGE_METAAPI_URL": self.sim.url,
            "ALGOEDGE_METAAPI_TOKEN": SIM_TOKEN,
            "BENCH_NAIVE_PORT": str(self.port),
            "PYTHONPATH": str(REPO),
        }
        self.process = spawn(
            [str(BRIDGE_PYTHON), "-m", "bench.bridge_naive", str(specs)], env, self.log, cwd
        )
        self.pid = self.process.pid
        wait_healthy(f"{self.url}/stats", self.process, timeout=60, log=self.log)

    async def _stats(self) -> dict[str, Any]:
        async with self.http.get(self.url + "/stats") as answer:
            found: dict[str, Any] = await answer.json()
            return found

    async def open(self) -> None:
        async with self.http.post(self.url + "/open") as answer:
            answer.raise_for_status()

    async def connected(self) -> int:
        return int((await self._stats())["synchronized"])

    async def syncs_in_flight(self) -> int:
        return int((await self._stats())["syncsInFlight"])

    async def syncs_peak(self) -> int:
        return int((await self._stats())["syncsInFlightPeak"])

    async def mark(self) -> None:
        async with self.http.post(self.url + "/mark") as answer:
            answer.raise_for_status()

    async def problems(self) -> dict[str, float]:
        stats = await self._stats()
        found = {f"error {k}": float(v) for k, v in stats["errors"].items()}
        found["opened"] = float(stats["opened"])
        found["deals"] = float(stats["deals"])
        return found

    def helper_pids(self) -> dict[str, int]:
        return {}

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, timeout=60)

    async def close(self) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# measuring


def rss_mib(pid: int) -> float:
    kib = proc_status_kib(pid, "VmRSS")
    return math.nan if kib is None else kib / 1024


@dataclass
class Cpu:
    """CPU seconds of the processes that matter, and the machine's busy share, at one moment."""

    at: float
    seconds: dict[str, float]
    busy: float
    total: float

    @classmethod
    def now(cls, pids: dict[str, int], stack: Stack) -> Cpu:
        seconds = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
        postmaster = int((stack.postgres.data_dir / "postmaster.pid").read_text().split()[0])
        seconds["postgres"] = tree_cpu_seconds(postmaster)
        for name, server in (("pgbouncer", stack.bouncer), ("redis", stack.redis)):
            if server.process is not None:
                seconds[name] = tree_cpu_seconds(server.process.pid)
        seconds["bench"] = self_cpu_seconds()
        busy, total = system_cpu()
        return cls(time.monotonic(), seconds, busy, total)

    def cores_since(self, before: Cpu) -> dict[str, float]:
        """Cores each used between ``before`` and this snapshot; ``machine`` is all CPUs busy."""
        elapsed = max(1e-9, self.at - before.at)
        cores = {k: (v - before.seconds.get(k, 0.0)) / elapsed for k, v in self.seconds.items()}
        share = (self.busy - before.busy) / max(1.0, self.total - before.total)
        cores["machine"] = share * (os.cpu_count() or 1)
        return cores

    def seconds_since(self, before: Cpu, name: str) -> float:
        return self.seconds.get(name, 0.0) - before.seconds.get(name, 0.0)


#: In a storm, how long after the provider recovered a design whose own view never dropped is
#: still watched for a late drop.
NO_DIP_GRACE_SECONDS = 5.0


@dataclass
class Progress:
    """When every account got there, in the design's view and in the provider's.

    With ``after_dip`` (a storm), "got there" counts only after that view first dropped below
    every account; a view that never drops has no recovery time (``design_min`` says so).
    """

    accounts: int
    after_dip: bool
    design_all: float | None = None
    provider_all: float | None = None
    #: When the design first counted an account connected.
    design_first: float | None = None
    sampled_in_flight_max: int = 0
    design_min: int | None = None
    provider_min: int | None = None
    last_design: int = 0
    last_provider: int = 0

    def observe(self, elapsed: float, *, design: int, provider: int, in_flight: int) -> bool:
        """Record one sample; True once there is nothing left to wait for."""
        self.last_design, self.last_provider = design, provider
        self.sampled_in_flight_max = max(self.sampled_in_flight_max, in_flight)
        self.design_min = design if self.design_min is None else min(self.design_min, design)
        self.provider_min = (
            provider if self.provider_min is None else min(self.provider_min, provider)
        )
        if self.design_first is None and design > 0:
            self.design_first = elapsed
        design_dipped = not self.after_dip or self.design_min < self.accounts
        provider_dipped = not self.after_dip or self.provider_min < self.accounts
        if self.design_all is None and design_dipped and design >= self.accounts:
            self.design_all = elapsed
        if self.provider_all is None and provider_dipped and provider >= self.accounts:
            self.provider_all = elapsed
        if self.provider_all is None:
            return False
        if self.design_all is not None:
            return True
        never_dipped = self.after_dip and not design_dipped
        return never_dipped and elapsed >= self.provider_all + NO_DIP_GRACE_SECONDS


async def follow(
    design: BridgeDesign | NaiveDesign,
    sim: Simulator,
    *,
    accounts_count: int,
    started: float,
    within: float,
    after_dip: bool,
) -> Progress:
    """Poll both views until every account is there (see ``Progress``) or ``within`` runs out."""
    progress = Progress(accounts_count, after_dip)
    last_report = started
    while True:
        now = time.monotonic()
        design_count, stats, in_flight = await asyncio.gather(
            design.connected(), sim.stats(), design.syncs_in_flight()
        )
        provider_count = int(stats["synchronizedAccounts"])
        if progress.observe(
            now - started, design=design_count, provider=provider_count, in_flight=in_flight
        ):
            return progress
        if now - started > within:
            step(
                f"  timed out after {within:.0f} s: {design_count} connected (design), "
                f"{provider_count} synchronized (provider)"
            )
            return progress
        if now - last_report > 15:
            last_report = now
            step(
                f"  {now - started:.0f} s: {design_count}/{accounts_count} connected, "
                f"{provider_count} synchronized at the provider, {in_flight} syncs in flight"
            )
        await asyncio.sleep(POLL_SECONDS)


@dataclass
class Latency:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, ordered: list[float]) -> Latency:
        return cls(
            count=len(ordered),
            p50_ms=percentile(ordered, 0.5) * 1000,
            p99_ms=percentile(ordered, 0.99) * 1000,
            max_ms=(ordered[-1] * 1000) if ordered else math.nan,
        )


@dataclass
class RunResult:
    design: str
    accounts: int
    # connecting
    first_connected_s: float | None
    connect_design_s: float | None
    connect_provider_s: float | None
    connected_at_end_of_connect: int
    rss_before_mib: float
    rss_connected_mib: float
    rss_steady_mib: float
    rss_peak_mib: float
    kib_per_account: float
    connect_cpu_s: float
    connect_cores: dict[str, float]
    syncs_peak_connect: int
    sampled_syncs_peak_connect: int
    provider_connect: dict[str, Any]
    # steady window
    steady_s: float
    steady_cores: dict[str, float]
    trade_latency: Latency | None
    trade_events_steady: int
    #: The bridge's own share: a deal's arrival in the bridge to its event's publication.
    publish_lag_mean_ms: float | None
    # the storm
    sockets_dropped: int
    recovery_design_s: float | None
    #: The fewest accounts the design itself counted connected during the storm.
    design_lowest_in_storm: int | None
    recovery_provider_s: float | None
    recovery_cpu_s: float
    storm_cores: dict[str, float]
    syncs_peak_storm: int
    sampled_syncs_peak_storm: int
    provider_storm: dict[str, Any]
    # the end
    not_synchronized_at_end: int
    design_connected_at_end: int
    subscribed_twice: int
    problems: dict[str, float]
    error_lines: list[str]
    socket_disconnects: int
    loadavg_before: tuple[float, float, float]
    loadavg_after: tuple[float, float, float]
    wall_s: float


async def measure(
    design: BridgeDesign | NaiveDesign,
    sim: Simulator,
    stack: Stack,
    args: argparse.Namespace,
) -> RunResult:
    n = design.count
    wall0 = time.monotonic()
    load_before = os.getloadavg()
    await design.start()
    await asyncio.sleep(SETTLE_SECONDS)
    pids = {"design": design.pid, "sim": sim.process.pid, **design.helper_pids()}
    rss_before = rss_mib(design.pid)

    step(f"{design.name} x {n}: connecting (RSS before {rss_before:.0f} MiB)")
    await sim.mark()
    cpu0 = Cpu.now(pids, stack)
    started = time.monotonic()
    await design.open()
    connect = await follow(
        design,
        sim,
        accounts_count=n,
        started=started,
        within=args.connect_timeout,
        after_dip=False,
    )
    cpu1 = Cpu.now(pids, stack)
    provider_connect = await sim.stats()
    syncs_peak_connect = await design.syncs_peak()
    rss_connected = rss_mib(design.pid)
    step(
        f"  all connected in {connect.design_all} s (design), {connect.provider_all} s "
        f"(provider); RSS {rss_connected:.0f} MiB"
    )

    await asyncio.sleep(SETTLE_SECONDS)
    step(f"  steady window of {args.steady_seconds:.0f} s")
    metrics0 = await design.metrics() if isinstance(design, BridgeDesign) else {}
    cpu2 = Cpu.now(pids, stack)
    window_start = time.time()
    await asyncio.sleep(args.steady_seconds)
    window_end = time.time()
    cpu3 = Cpu.now(pids, stack)
    rss_steady = rss_mib(design.pid)
    latency = None
    steady_events = 0
    publish_lag_ms = None
    if isinstance(design, BridgeDesign):
        window = design.events.between(window_start, window_end)
        steady_events = len(window)
        latency = Latency.of(window)
        publish_lag_ms = mean_delta_ms(
            metrics0, await design.metrics(), "algoedge_bridge_publish_lag_seconds"
        )

    await asyncio.sleep(SETTLE_SECONDS)
    step("  reconnect storm: dropping every simulator socket")
    await sim.mark()
    await design.mark()
    cpu4 = Cpu.now(pids, stack)
    dropped_at = time.monotonic()
    dropped = await sim.drop_sockets()
    storm = await follow(
        design,
        sim,
        accounts_count=n,
        started=dropped_at,
        within=args.recovery_timeout,
        after_dip=True,
    )
    cpu5 = Cpu.now(pids, stack)
    provider_storm = await sim.stats()
    syncs_peak_storm = await design.syncs_peak()
    step(
        f"  recovered in {storm.design_all} s (design), {storm.provider_all} s (provider); "
        f"{dropped} sockets dropped"
    )

    await asyncio.sleep(SETTLE_SECONDS)
    end_stats = await sim.stats()
    design_end = await design.connected()
    problems = await design.problems()
    twice = await sim.accounts_subscribed_twice()
    rss_peak_kib = proc_status_kib(design.pid, "VmHWM")
    disconnects = design.events.disconnects if isinstance(design, BridgeDesign) else 0
    await design.close()
    return RunResult(
        design=design.name,
        accounts=n,
        first_connected_s=connect.design_first,
        connect_design_s=connect.design_all,
        connect_provider_s=connect.provider_all,
        connected_at_end_of_connect=connect.last_design,
        rss_before_mib=rss_before,
        rss_connected_mib=rss_connected,
        rss_steady_mib=rss_steady,
        rss_peak_mib=math.nan if rss_peak_kib is None else rss_peak_kib / 1024,
        kib_per_account=per_account_kib(int(rss_before * 1024), int(rss_connected * 1024), n),
        connect_cpu_s=cpu1.seconds_since(cpu0, "design"),
        connect_cores=cpu1.cores_since(cpu0),
        syncs_peak_connect=syncs_peak_connect,
        sampled_syncs_peak_connect=connect.sampled_in_flight_max,
        provider_connect=provider_connect,
        steady_s=args.steady_seconds,
        steady_cores=cpu3.cores_since(cpu2),
        trade_latency=latency,
        trade_events_steady=steady_events,
        publish_lag_mean_ms=publish_lag_ms,
        sockets_dropped=dropped,
        recovery_design_s=storm.design_all,
        design_lowest_in_storm=storm.design_min,
        recovery_provider_s=storm.provider_all,
        recovery_cpu_s=cpu5.seconds_since(cpu4, "design"),
        storm_cores=cpu5.cores_since(cpu4),
        syncs_peak_storm=syncs_peak_storm,
        sampled_syncs_peak_storm=storm.sampled_in_flight_max,
        provider_storm=provider_storm,
        not_synchronized_at_end=n - int(end_stats["synchronizedAccounts"]),
        design_connected_at_end=design_end,
        subscribed_twice=twice,
        problems=problems,
        error_lines=error_lines(design.log)[:20],
        socket_disconnects=disconnects,
        loadavg_before=load_before,
        loadavg_after=os.getloadavg(),
        wall_s=time.monotonic() - wall0,
    )


async def run_design(
    name: str, n: int, stack: Stack, root: Path, args: argparse.Namespace
) -> RunResult:
    folder = root / f"{name}-{n}"
    folder.mkdir()
    config = SimConfig(strategy_seconds=args.strategy_seconds)
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
    )
    sim = Simulator.start(config, folder, http)
    design: BridgeDesign | NaiveDesign
    if name == "bridge":
        design = BridgeDesign(
            stack=stack,
            folder=folder,
            sim=sim,
            accounts_count=n,
            max_syncs=args.max_syncs,
            http=http,
        )
    else:
        design = NaiveDesign(folder=folder, sim=sim, accounts_count=n, http=http)
    try:
        return await measure(design, sim, stack, args)
    finally:
        with contextlib.suppress(Exception):
            await design.close()
        sim.stop()
        await http.close()


# ---------------------------------------------------------------------------------------------
# report


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NONE
    return f"{value:.{digits}f}"


def _seconds(value: float | None, timeout: float) -> str:
    return f"> {timeout:.0f} (timed out)" if value is None else f"{value:.1f}"


def connect_table(results: Sequence[RunResult], args: argparse.Namespace) -> str:
    header = [
        "design",
        "accounts",
        "first connected s",
        "all connected s (own view)",
        "all synchronized s (provider)",
        "RSS before MiB",
        "RSS connected MiB",
        "KiB per account",
        "CPU s while connecting",
        "syncs in flight, peak",
        "provider: subscribes/s peak",
        "synchronizes/s peak",
        "REST/s peak",
    ]
    rows = [
        [
            r.design,
            str(r.accounts),
            _num(r.first_connected_s),
            _seconds(r.connect_design_s, args.connect_timeout),
            _seconds(r.connect_provider_s, args.connect_timeout),
            _num(r.rss_before_mib, 0),
            _num(r.rss_connected_mib, 0),
            _num(r.kib_per_account, 0),
            _num(r.connect_cpu_s),
            f"{r.syncs_peak_connect} (sampled {r.sampled_syncs_peak_connect})",
            str(r.provider_connect["subscribes"]["peakPerSecond"]),
            str(r.provider_connect["synchronizes"]["peakPerSecond"]),
            str(r.provider_connect["rest"]["peakPerSecond"]),
        ]
        for r in results
    ]
    return markdown_table(header, rows)


def steady_table(results: Sequence[RunResult]) -> str:
    header = [
        "design",
        "accounts",
        "window s",
        "design CPU (cores)",
        "simulator",
        "API",
        "Postgres + pgBouncer + Redis",
        "machine busy (of 2)",
        "RSS MiB",
        "trade events",
        "trade → socket p50 ms",
        "p99 ms",
        "max ms",
        "bridge: deal in → published, mean ms",
    ]
    rows = []
    for r in results:
        c = r.steady_cores
        services = c.get("postgres", 0) + c.get("pgbouncer", 0) + c.get("redis", 0)
        lat = r.trade_latency
        rows.append(
            [
                r.design,
                str(r.accounts),
                _num(r.steady_s, 0),
                _num(c.get("design"), 3),
                _num(c.get("sim"), 3),
                _num(c.get("api"), 3) if "api" in c else NONE,
                _num(services, 3),
                _num(c.get("machine"), 2),
                _num(r.rss_steady_mib, 0),
                str(r.trade_events_steady) if lat else NONE,
                _num(lat.p50_ms) if lat else NONE,
                _num(lat.p99_ms) if lat else NONE,
                _num(lat.max_ms) if lat else NONE,
                _num(r.publish_lag_mean_ms),
            ]
        )
    return markdown_table(header, rows)


def storm_table(results: Sequence[RunResult], args: argparse.Namespace) -> str:
    header = [
        "design",
        "accounts",
        "sockets dropped",
        "own view: fewest connected",
        "all connected again s (own view)",
        "all synchronized again s (provider)",
        "CPU s to recover",
        "syncs in flight, sampled peak",
        "provider: subscribes/s peak",
        "synchronizes/s peak",
        "not synchronized at end",
        "subscribed twice",
        "peak RSS MiB",
    ]
    rows = [
        [
            r.design,
            str(r.accounts),
            str(r.sockets_dropped),
            str(r.design_lowest_in_storm),
            "never dropped"
            if r.design_lowest_in_storm is not None and r.design_lowest_in_storm >= r.accounts
            else _seconds(r.recovery_design_s, args.recovery_timeout),
            _seconds(r.recovery_provider_s, args.recovery_timeout),
            _num(r.recovery_cpu_s),
            str(r.sampled_syncs_peak_storm)
            + (f" (own peak {r.syncs_peak_storm})" if r.design == "naive" else ""),
            str(r.provider_storm["subscribes"]["peakPerSecond"]),
            str(r.provider_storm["synchronizes"]["peakPerSecond"]),
            str(r.not_synchronized_at_end),
            str(r.subscribed_twice),
            _num(r.rss_peak_mib, 0),
        ]
        for r in results
    ]
    return markdown_table(header, rows)


def report(results: Sequence[RunResult], args: argparse.Namespace, header: list[str]) -> str:
    lines = [*header, "", "Connecting N accounts:", "", connect_table(results, args), ""]
    lines += ["Steady state (strategy traffic only):", "", steady_table(results), ""]
    lines += ["Reconnect storm (every simulator socket dropped at once):", ""]
    lines += [storm_table(results, args), ""]
    for r in results:
        problems = ", ".join(f"{k} {v:g}" for k, v in sorted(r.problems.items())) or "none"
        lines.append(
            f"- {r.design} x {r.accounts}: {problems}; ERROR lines in its log "
            f"{len(r.error_lines)}; user socket drops {r.socket_disconnects}; load average "
            f"{r.loadavg_before[0]:.2f} → {r.loadavg_after[0]:.2f}; {r.wall_s:.0f} s wall"
        )
        lines.extend(f"    {line}" for line in r.error_lines[:5])
    lines += ["", *ratio_lines(results)]
    return "\n".join(lines)


def ratio_lines(results: Sequence[RunResult]) -> list[str]:
    """Naive over bridge, per N, for what both designs measured."""
    by_key = {(r.design, r.accounts): r for r in results}
    lines = []
    for n in sorted({r.accounts for r in results}):
        bridge, naive = by_key.get(("bridge", n)), by_key.get(("naive", n))
        if bridge is None or naive is None:
            continue

        def ratio(a: float | None, b: float | None) -> str:
            if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
                return NONE
            return f"{a / b:.2f}x"

        lines.append(
            f"- {n} accounts, naive / bridge: connect (provider view) "
            f"{ratio(naive.connect_provider_s, bridge.connect_provider_s)}, recovery "
            f"{ratio(naive.recovery_provider_s, bridge.recovery_provider_s)}, synchronizes/s "
            f"peak in the storm "
            f"{ratio(naive.provider_storm['synchronizes']['peakPerSecond'], bridge.provider_storm['synchronizes']['peakPerSecond'])}, "
            f"KiB per account {ratio(naive.kib_per_account, bridge.kib_per_account)}"
        )
    return lines


# ---------------------------------------------------------------------------------------------
# entry point


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bridge_load",
        description="Accounts per bridge process, against the naive design, on the same storm.",
    )
    parser.add_argument(
        "--accounts",
        default="100,500,1000",
        help="comma-separated account counts (default 100,500,1000)",
    )
    parser.add_argument(
        "--design", default="bridge,naive", help="comma-separated designs: bridge, naive"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke size: 20 accounts, 10 s steady window"
    )
    parser.add_argument(
        "--strategy-seconds",
        type=float,
        default=30.0,
        help="mean seconds between the simulated strategy's trades per account (default 30)",
    )
    parser.add_argument(
        "--steady-seconds", type=float, default=60.0, help="steady window (default 60)"
    )
    parser.add_argument(
        "--max-syncs",
        type=int,
        default=10,
        help="the bridge's ALGOEDGE_BRIDGE_MAX_CONCURRENT_SYNCS (default 10, its own default)",
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=900.0, help="seconds to connect all (900)"
    )
    parser.add_argument(
        "--recovery-timeout", type=float, default=600.0, help="seconds to recover (600)"
    )
    parser.add_argument("--json", type=Path, help="also write every result to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, data)")
    args = parser.parse_args(argv)
    if args.quick:
        args.accounts, args.steady_seconds = "20", 10.0
    try:
        args.account_counts = [int(v) for v in str(args.accounts).split(",") if v.strip()]
    except ValueError:
        parser.error("--accounts: expected comma-separated integers like 100,500,1000")
    designs = [d.strip() for d in str(args.design).split(",") if d.strip()]
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown or not designs:
        parser.error(f"--design: choose from {', '.join(DESIGNS)}")
    if not args.account_counts or min(args.account_counts) < 1:
        parser.error("--accounts must be positive")
    args.designs = designs
    return args


async def benchmark(args: argparse.Namespace, root: Path, stack: Stack) -> list[RunResult]:
    results = []
    for n in args.account_counts:
        for name in args.designs:
            result = await run_design(name, n, stack, root, args)
            results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for needed in (BRIDGE_PYTHON, BRIDGE_ALGOEDGE):
        if not needed.exists():
            print(f"{needed} is missing: run `make bridge-venv`", file=sys.stderr)
            return 2
    soft, hard = raise_file_limit()
    facts = machine_facts()
    root = Path(tempfile.mkdtemp(prefix="algoedge-bridge-bench-"))
    root.chmod(0o755)  # postgres and pgbouncer run as the postgres user when we are root
    stack: Stack | None = None
    started = datetime.now(UTC)
    try:
        stack = start_stack(root)
        header = [
            f"AlgoEdge bridge benchmark, {started:%Y-%m-%d %H:%M} UTC: accounts "
            f"{', '.join(map(str, args.account_counts))}; designs {', '.join(args.designs)}; "
            f"simulator strategy one trade per {args.strategy_seconds:g} s per account "
            "(mean), ticks 1 s, deploy 0.5 s, broker connect 0.5 s; bridge at most "
            f"{args.max_syncs} syncs at once; steady window {args.steady_seconds:.0f} s.",
            f"Machine: {facts['nproc']} CPUs shared by the simulator, the design under test, "
            f"the API, PostgreSQL, pgBouncer, Redis and this runner; {facts['memory_gib']} GiB; "
            f"Python {facts['python']}; RLIMIT_NOFILE {soft}/{hard}; load average at start "
            f"{os.getloadavg()[0]:.2f}.",
        ]
        step(f"services up in {root}")
        results = asyncio.run(benchmark(args, root, stack))
        text = report(results, args, header)
        print("\n" + text, flush=True)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "started": started.isoformat(),
                        "machine": facts,
                        "arguments": {k: v for k, v in vars(args).items() if k not in ("json",)},
                        "results": [asdict(r) for r in results],
                    },
                    indent=2,
                    default=str,
                )
            )
        return 0
    finally:
        if stack is not None:
            stack.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
