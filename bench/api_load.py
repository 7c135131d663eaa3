"""Load benchmark of the AlgoEdge API against real PostgreSQL, pgBouncer and Redis on this machine.

One command does everything, then cleans up:

1. starts throwaway PostgreSQL, pgBouncer (transaction pooling) and Redis (``devtools.services``) in
   a temp folder, migrates, and seeds bots, signal providers with signals, and users with one
   linked account and their trades, through the data layer;
2. for each target in turn, starts it as real separate processes on loopback, logs every user
   in and connects one socket.io websocket per user (not measured), then runs U concurrent users
   for a warm-up and a fixed measured window: GET /me, a trades page, the active bot list, and
   every seventh request a write (PATCH /me or subscribe to a bot), with think time between;
3. prints req/s, client-side p50/p95/p99 latency and errors by kind as Markdown (``--json``
   writes everything).

Targets: ``hello`` (bench/hello.py, a bare aiohttp endpoint: the ceiling), ``baseline`` (the
analysis's current state, bench/baseline_app.py: a new direct Postgres connection per query and
the user read from Postgres on every request) and ``api`` (``algoedge api`` as deployed: pooled
through pgBouncer, sessions and user cache in Redis).

``--read-replica`` also starts a streaming replica of the PostgreSQL (``pg_basebackup -R``)
behind the same pgBouncer (alias ``<db>_ro``) and runs ``api`` twice: everything on the primary,
then as ``api+replica`` with ``ALGOEDGE_DATABASE_READ_URL`` on the alias. Each phase then also
reports the CPU of each PostgreSQL server and the transactions per second it ran.

Run from the repository root: ``.venv/bin/python -m bench.api_load --users 500``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import socketio
from algoedge.api.looplag import tune_gc
from algoedge.config import MigrateSettings, load_settings
from algoedge.credentials import CredentialsCipher
from algoedge.db import Database, accounts, marketplace, trades, users
from algoedge.realtime import publish_event
from argon2 import PasswordHasher
from redis.asyncio import Redis

from devtools.app import api_environment, migrated
from devtools.services import (
    LOOPBACK,
    PgBouncer,
    PostgresServer,
    RedisServer,
    StreamingReplica,
    free_port,
    wait_healthy,
)

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ALGOEDGE = str(Path(sys.executable).with_name("algoedge"))
#: ``api-me`` is the real API with every user asking only ``GET /api/v1/me`` (a cached user, no
#: Postgres): the cheapest authenticated request, the hot path in isolation. ``api-trades``: only
#: ``GET /api/v1/trades`` (a Postgres read and a list to render), the mix's costliest read alone.
#: ``api-writes``: only the mix's writes (PATCH /api/v1/me and subscribe to a bot, alternating).
TARGETS = ("hello", "baseline", "api", "api-me", "api-trades", "api-writes")
DEFAULT_TARGETS = ("hello", "baseline", "api")
PASSWORD = "bench correct horse battery"  # noqa: S105 - the seeded users' throwaway password
# Far above what the generator can send, so the numbers are the service's, not the limiter's.
BENCH_RATE_LIMIT = "1000000/60"
BENCH_LIMITS = {
    "ALGOEDGE_RATE_LIMIT_PER_USER": BENCH_RATE_LIMIT,
    "ALGOEDGE_RATE_LIMIT_PER_IP": BENCH_RATE_LIMIT,
    "ALGOEDGE_RATE_LIMIT_AUTH": BENCH_RATE_LIMIT,
    "ALGOEDGE_RATE_LIMIT_ACCOUNT": BENCH_RATE_LIMIT,
    "ALGOEDGE_RATE_LIMIT_SOCKET": BENCH_RATE_LIMIT,
}
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "US500", "BTCUSD", "AUDUSD", "USDCHF")
# One cycle of a user's requests; the write alternates PATCH /me and subscribe.
MIX = ("me", "trades", "bots", "me", "trades", "bots", "write")
ME_ONLY = ("me",)
#: Each target's requests (the other API targets' are the mix).
MIXES = {"api-me": ME_ONLY, "api-trades": ("trades",), "api-writes": ("write",)}
#: The API's own event-loop lag histogram (it samples its loop; see algoedge.api.looplag).
LOOP_LAG_METRIC = "algoedge_api_event_loop_lag_seconds"
GC_PAUSE_METRIC = "algoedge_api_gc_pause_seconds"
REQUEST_TIMEOUT_SECONDS = 30.0


# ---------------------------------------------------------------------------------------------
# machine facts and resource accounting


def raise_file_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit; the processes we start inherit it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def machine_facts() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(total_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def process_rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    kib = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
    return kib * 1024


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cluster_cpu_seconds(server: PostgresServer) -> float:
    """CPU time of a PostgreSQL server: the postmaster with its reaped children, plus every
    live backend and worker (a backend that exits moves from the second term to the first)."""
    try:
        postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        stat = Path(f"/proc/{postmaster}/stat").read_text()
    except (OSError, ValueError, IndexError):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    fields = stat.rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(child[1]) == postmaster:
            total += int(child[11]) + int(child[12])
    return total / ticks


def transactions(server: PostgresServer) -> int:
    """Transactions the server has run since its statistics began (each autocommit statement
    is one): commits and rollbacks of every database. A standby counts its own read-only ones."""
    return int(server.psql("SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database"))


# ---------------------------------------------------------------------------------------------
# services, seed data, target processes


@dataclass
class Stack:
    postgres: PostgresServer
    bouncer: PgBouncer
    redis: RedisServer
    #: With --read-replica: a streaming replica, pgBouncer's ``<db>_ro``.
    replica: StreamingReplica | None = None

    def servers(self) -> dict[str, PostgresServer]:
        """The PostgreSQL servers whose load each phase reports, by name."""
        found: dict[str, PostgresServer] = {"primary": self.postgres}
        if self.replica is not None:
            found["replica"] = self.replica
        return found

    def stop(self) -> None:
        stops = [self.bouncer.stop, self.redis.stop]
        if self.replica is not None:
            stops.append(self.replica.stop)
        for stop in (*stops, self.postgres.stop):
            with contextlib.suppress(Exception):
                stop()


def start_stack(root: Path, *, read_replica: bool = False) -> Stack:
    postgres = PostgresServer(root=root / "postgres")
    redis = RedisServer(root=root / "redis")
    replica = StreamingReplica(root=root / "replica", primary=postgres) if read_replica else None
    bouncer = PgBouncer(root=root / "pgbouncer", upstream=postgres, replica=replica)
    stack = Stack(postgres=postgres, bouncer=bouncer, redis=redis, replica=replica)
    try:
        postgres.start()
        if replica is not None:
            replica.start()
        redis.start()
        bouncer.start()
    except BaseException:
        stack.stop()
        raise
    return stack


@dataclass(frozen=True)
class Seeded:
    emails: list[str]
    user_ids: list[int]
    active_bot_ids: list[int]
    trades: int
    seconds: float


async def seed(
    database_url: str,
    *,
    user_count: int,
    trades_per_user: int,
    credentials_key: str,
    cheap_hashes: bool,
) -> Seeded:
    """Marketplace, providers with signals, and users with one account and their trades."""
    started = time.monotonic()
    rng = random.Random(7)  # noqa: S311 - workload shape, not security
    settings = load_settings(
        MigrateSettings,
        {
            "ALGOEDGE_DATABASE_URL": database_url,
            "ALGOEDGE_DB_POOL_MIN": "0",
            "ALGOEDGE_DB_POOL_MAX": "8",
        },
    )
    # The login path verifies whatever parameters the stored hash names. Seeded users get cheap
    # argon2id parameters so thousands of logins take seconds (the default costs ~0.27 s of CPU
    # per login here); logins happen before the measured window either way.
    hasher = (
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        if cheap_hashes
        else PasswordHasher()
    )
    password_hash = hasher.hash(PASSWORD)
    cipher = CredentialsCipher(credentials_key)
    db = await Database.connect(settings)
    try:
        active: list[int] = []
        for n in range(50):
            status = "active" if n < 40 else ("paused" if n < 46 else "retired")
            bot = await marketplace.create_bot(
                db,
                name=f"Bench bot {n}",
                description=f"{rng.choice(SYMBOLS)} strategy number {n}",
                strategy=rng.choice(("trend", "grid", "scalping", "mean-reversion")),
                status=status,
                monthly_price=Decimal(rng.randrange(0, 20000)) / 100,
            )
            if status == "active":
                active.append(bot.id)
        for n in range(20):
            provider = await marketplace.create_provider(db, name=f"Bench provider {n}")
            for _ in range(10):
                await marketplace.publish_signal(
                    db,
                    provider_id=provider.id,
                    symbol=rng.choice(SYMBOLS),
                    side=rng.choice(("buy", "sell")),
                    entry_price=Decimal(rng.randrange(10_000, 200_000)) / 100,
                )

        gate = asyncio.Semaphore(8)
        emails = [f"trader{n}@bench.example.com" for n in range(user_count)]
        user_ids = [0] * user_count
        now = datetime.now(UTC)

        async def one_user(n: int) -> None:
            async with gate:
                user = (
                    await users.create_user(
                        db, email=emails[n], name=f"Trader {n}", password_hash=password_hash
                    )
                ).user
                user_ids[n] = user.id
                account = await accounts.link_account(
                    db,
                    user_id=user.id,
                    login=str(50_000_000 + n),
                    server="BenchBroker-Demo",
                    platform="mt5",
                    encrypted_password=cipher.encrypt(PASSWORD),
                )
                for k in range(trades_per_user):
                    opened = now - timedelta(minutes=37 * (trades_per_user - k))
                    open_price = Decimal(rng.randrange(10_000, 200_000)) / 100
                    closed = k < trades_per_user - 2  # the newest two are still open
                    await trades.record_trade(
                        db,
                        account_id=account.id,
                        symbol=rng.choice(SYMBOLS),
                        side=rng.choice(("buy", "sell")),
                        volume=Decimal(rng.randrange(1, 500)) / 100,
                        open_price=open_price,
                        opened_at=opened,
                        close_price=open_price + Decimal(rng.randrange(-500, 500)) / 100
                        if closed
                        else None,
                        profit=Decimal(rng.randrange(-20_000, 20_000)) / 100 if closed else None,
                        closed_at=opened + timedelta(minutes=rng.randrange(1, 30))
                        if closed
                        else None,
                    )

        await asyncio.gather(*(one_user(n) for n in range(user_count)))
    finally:
        await db.close()
    return Seeded(
        emails=emails,
        user_ids=user_ids,
        active_bot_ids=active,
        trades=user_count * trades_per_user,
        seconds=time.monotonic() - started,
    )


@dataclass
class Target:
    """One configuration under test: N processes on N loopback ports."""

    name: str
    processes: list[subprocess.Popen[bytes]]
    ports: list[int]
    logs: list[Path]
    metrics_ports: list[int] = field(default_factory=list)

    @property
    def bases(self) -> list[str]:
        return [f"http://{LOOPBACK}:{port}" for port in self.ports]

    @property
    def authenticates(self) -> bool:
        return self.name != "hello"

    @property
    def mix(self) -> tuple[str, ...]:
        return MIXES.get(self.name, MIX)

    def cpu_seconds(self) -> float:
        return sum(process_cpu_seconds(p.pid) for p in self.processes)

    def rss_bytes(self) -> int:
        return sum(process_rss_bytes(p.pid) for p in self.processes)

    @property
    def metrics_urls(self) -> list[list[str]]:
        """Where each process may serve /metrics, first choice first: its own metrics port
        (an API that serves it on ALGOEDGE_METRICS_PORT), then its HTTP port."""
        metrics = [[port] for port in self.metrics_ports] or [[] for _ in self.ports]
        return [
            [f"http://{LOOPBACK}:{port}/metrics" for port in (*first, http)]
            for first, http in zip(metrics, self.ports, strict=True)
        ]


def start_target(name: str, *, count: int, env: dict[str, str], root: Path) -> Target:
    target = Target(name=name, processes=[], ports=[], logs=[])
    try:
        for index in range(count):
            port = free_port()
            log = root / f"{name}-{index}.log"
            child_env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("ALGOEDGE_")},
                **env,
                "ALGOEDGE_HTTP_HOST": LOOPBACK,
                "ALGOEDGE_HTTP_PORT": str(port),
                # No metrics listener: several API processes run side by side here.
                "ALGOEDGE_METRICS_PORT": "0",
            }
            if name == "hello":
                argv = [PYTHON, "-m", "bench.hello", "--port", str(port)]
            elif name == "baseline":
                argv = [PYTHON, "-m", "bench.baseline_app"]
            else:
                argv = [ALGOEDGE, "api"]
                # Several processes on one host need a metrics port each (when the API serves
                # /metrics on a port of its own; otherwise the variable is ignored).
                metrics_port = free_port()
                child_env["ALGOEDGE_METRICS_PORT"] = str(metrics_port)
                target.metrics_ports.append(metrics_port)
            with log.open("ab") as out:
                process = subprocess.Popen(
                    argv,
                    cwd=REPO,
                    env=child_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            target.processes.append(process)
            target.ports.append(port)
            target.logs.append(log)
        for process, base, log in zip(target.processes, target.bases, target.logs, strict=True):
            wait_healthy(f"{base}/healthz", process, log=log)
    except BaseException:
        stop_target(target)
        raise
    return target


def stop_target(target: Target) -> None:
    for process in target.processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    for process in target.processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def server_errors(target: Target) -> list[str]:
    """ERROR log lines and tracebacks the target's processes wrote (they point at API bugs)."""
    found: list[str] = []
    for log in target.logs:
        for line in log.read_text(errors="replace").splitlines():
            if '"level": "ERROR"' in line or line.startswith("Traceback"):
                found.append(f"{log.name}: {line[:2000]}")
    return found


# ---------------------------------------------------------------------------------------------
# the load generator


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (NaN when empty)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class LatencyStats:
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> LatencyStats:
        ordered = sorted(seconds)
        return cls(
            count=len(ordered),
            p50_ms=percentile(ordered, 0.50) * 1000,
            p95_ms=percentile(ordered, 0.95) * 1000,
            p99_ms=percentile(ordered, 0.99) * 1000,
            max_ms=(ordered[-1] * 1000) if ordered else math.nan,
        )


class Recorder:
    """Client-side outcomes of requests that started inside the measured window."""

    def __init__(self) -> None:
        self.window_start = math.inf
        self.window_end = math.inf
        self.latencies: dict[str, list[float]] = {}
        self.errors: Counter[str] = Counter()
        self.warmup_requests = 0
        self.socket_disconnects = 0
        # Set before the benchmark closes the sockets itself, so only unexpected drops count.
        self.closing = False
        self.event_latencies: list[float] = []

    def record(self, route: str, started: float, elapsed: float, error: str | None) -> None:
        if not self.window_start <= started < self.window_end:
            self.warmup_requests += started < self.window_start
            return
        if error is None:
            self.latencies.setdefault(route, []).append(elapsed)
        else:
            self.errors[f"{route}: {error}"] += 1


@dataclass
class User:
    index: int
    user_id: int
    base: str
    token: str
    socket: Any = None


async def login_all(
    session: aiohttp.ClientSession,
    target: Target,
    seeded: Seeded,
    *,
    count: int,
    concurrency: int,
) -> tuple[list[User], Counter[str], float]:
    """Log every user in (bounded, before measuring); users whose login failed are dropped."""
    started = time.monotonic()
    bases = target.bases
    failures: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> User | None:
        base = bases[n % len(bases)]
        if not target.authenticates:
            return User(index=n, user_id=seeded.user_ids[n], base=base, token="hello")  # noqa: S106 - the ceiling checks no token
        async with gate:
            try:
                async with session.post(
                    f"{base}/api/v1/auth/login",
                    json={"email": seeded.emails[n], "password": PASSWORD},
                ) as response:
                    body = await response.json(content_type=None)
                    if response.status != 200:
                        failures[f"login: HTTP {response.status}"] += 1
                        return None
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures[f"login: {type(exc).__name__}"] += 1
                return None
        return User(index=n, user_id=seeded.user_ids[n], base=base, token=body["access_token"])

    found = await asyncio.gather(*(one(n) for n in range(count)))
    return [u for u in found if u is not None], failures, time.monotonic() - started


async def connect_sockets(
    users_: list[User],
    session: aiohttp.ClientSession,
    recorder: Recorder,
    *,
    concurrency: int,
) -> tuple[Counter[str], float]:
    """One socket.io websocket per user, authenticated with the access token."""
    started = time.monotonic()
    failures: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(user: User) -> None:
        client = socketio.AsyncClient(reconnection=False, handle_sigint=False, http_session=session)

        async def on_tick(data: Any) -> None:
            recorder.event_latencies.append(time.time() - float(data["t"]))

        async def on_disconnect(*_: Any) -> None:
            if not recorder.closing:
                recorder.socket_disconnects += 1

        client.on("bench.tick", on_tick)
        client.on("disconnect", on_disconnect)
        async with gate:
            try:
                await client.connect(
                    user.base,
                    auth={"token": user.token},
                    transports=["websocket"],
                    wait_timeout=15,
                )
            except (socketio.exceptions.ConnectionError, aiohttp.ClientError, TimeoutError) as exc:
                failures[f"socket connect: {type(exc).__name__}: {str(exc)[:80]}"] += 1
                return
        user.socket = client

    await asyncio.gather(*(one(u) for u in users_))
    return failures, time.monotonic() - started


async def disconnect_sockets(users_: list[User], *, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(user: User) -> None:
        if user.socket is None:
            return
        async with gate:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(user.socket.disconnect(), 10)
        user.socket = None

    await asyncio.gather(*(one(u) for u in users_))


async def run_user(
    user: User,
    session: aiohttp.ClientSession,
    recorder: Recorder,
    *,
    bot_ids: list[int],
    think: float,
    stop: asyncio.Event,
    mix: tuple[str, ...] = MIX,
) -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(user.index)  # noqa: S311 - workload shape, not security
    headers = {"Authorization": f"Bearer {user.token}"}
    step = rng.randrange(len(mix))
    writes = rng.randrange(2)
    trades_cursor: str | None = None
    # Spread the first requests over one think time instead of all at once.
    await asyncio.sleep(rng.uniform(0, think))
    while not stop.is_set():
        kind = mix[step % len(mix)]
        step += 1
        body: dict[str, Any] | None = None
        if kind == "me":
            method, path, route = "GET", "/api/v1/me", "GET /me"
        elif kind == "trades":
            # Usually the newest page; now and then the next one (keyset cursor).
            if trades_cursor is not None and rng.random() < 0.3:
                path = f"/api/v1/trades?limit=20&cursor={trades_cursor}"
                method, route = "GET", "GET /trades (page 2+)"
            else:
                method, path, route = "GET", "/api/v1/trades?limit=20", "GET /trades"
        elif kind == "bots":
            method, path, route = "GET", "/api/v1/bots?status=active", "GET /bots"
        else:
            writes += 1
            if writes % 2:
                method, path, route = "PATCH", "/api/v1/me", "PATCH /me"
                body = {"name": f"Trader {user.index} v{writes}"}
            else:
                bot = rng.choice(bot_ids)
                method, path, route = "POST", f"/api/v1/bots/{bot}/subscribe", "POST /subscribe"
        started = loop.time()
        error: str | None = None
        try:
            async with session.request(method, user.base + path, headers=headers, json=body) as r:
                raw = await r.read()
                if not 200 <= r.status < 300:
                    error = f"HTTP {r.status}"
                elif kind == "trades":
                    trades_cursor = json.loads(raw).get("next_cursor")
        except TimeoutError:
            error = "timeout"
        except (aiohttp.ClientError, ValueError) as exc:
            error = type(exc).__name__
        recorder.record(route, started, loop.time() - started, error)
        await asyncio.sleep(think * rng.uniform(0.5, 1.5))


async def publish_events(
    redis: Redis, users_: list[User], *, rate: float, stop: asyncio.Event
) -> int:
    """Push events the way a worker or the bridge does (Redis channel the API pods relay)."""
    if rate <= 0:
        return 0
    rng = random.Random(99)  # noqa: S311 - workload shape, not security
    sent = 0
    while not stop.is_set():
        user = rng.choice(users_)
        await publish_event(redis, user.user_id, "bench.tick", {"t": time.time()})
        sent += 1
        await asyncio.sleep(1 / rate)
    return sent


async def scrape_histogram(
    http: aiohttp.ClientSession, urls: list[list[str]], name: str, *, label: str = ""
) -> dict[float, float]:
    """The cumulative bucket counts (by upper bound, seconds) of histogram ``name`` (only its
    series carrying ``label``, e.g. ``generation="2"``, when given), summed over the processes'
    /metrics; empty when none reports it."""
    buckets: dict[float, float] = {}
    prefix = f"{name}_bucket{{{label}"
    for choices in urls:
        text = ""
        for url in choices:
            try:
                async with http.get(url) as response:
                    text = await response.text() if response.status == 200 else ""
            except (aiohttp.ClientError, TimeoutError):
                continue
            if text:
                break
        for line in text.splitlines():
            if not line.startswith(prefix):
                continue
            labels, _, value = line.rpartition(" ")
            bound = labels.split('le="', 1)[1].split('"', 1)[0]
            upper = math.inf if bound == "+Inf" else float(bound)
            buckets[upper] = buckets.get(upper, 0.0) + float(value)
    return buckets


def histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound (seconds) of the bucket holding quantile ``q`` of what a histogram
    observed between two scrapes; NaN when it observed nothing."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return math.nan
    return next(b for b, c in zip(bounds, counts, strict=True) if c >= q * counts[-1])


def samples_above(before: dict[float, float], after: dict[float, float], bound: float) -> int:
    """Observations above ``bound`` seconds (a bucket edge) between two scrapes."""
    if bound not in after or math.inf not in after:
        return 0
    total = after[math.inf] - before.get(math.inf, 0.0)
    below = after[bound] - before.get(bound, 0.0)
    return int(total - below)


class Profiler:
    """py-spy sampling every target process for the measured window (collapsed stacks, which
    speedscope opens), then a table of the functions with the most samples."""

    def __init__(self, target: Target, out_dir: Path, *, label: str, seconds: float) -> None:
        self._target = target
        self._out_dir = out_dir
        self._label = label
        self._seconds = seconds
        self._runs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def window_opened(self) -> None:
        self._out_dir.mkdir(parents=True, exist_ok=True)
        for index, process in enumerate(self._target.processes):
            out = self._out_dir / f"{self._label}-{index}.collapsed"
            argv = [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(process.pid),
                "--duration",
                str(max(1, int(self._seconds))),
                "--rate",
                "200",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(out),
            ]
            self._runs.append((subprocess.Popen(argv, stdout=subprocess.DEVNULL), out))

    def window_closed(self) -> None:
        """py-spy stops by itself after the window's length (see :meth:`summary`)."""

    def summary(self, top: int = 25) -> str:
        """Functions by samples in which they were running (own) and on the stack (total)."""
        for run, _ in self._runs:
            try:
                run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
        own: Counter[str] = Counter()
        total: Counter[str] = Counter()
        samples = 0
        for _, out in self._runs:
            if not out.exists():
                continue
            for line in out.read_text(errors="replace").splitlines():
                stack, _, count_text = line.rpartition(" ")
                if not stack or not count_text.isdigit():
                    continue
                count = int(count_text)
                frames = [frame_name(f) for f in stack.split(";")]
                samples += count
                own[frames[-1]] += count
                for frame in set(frames):
                    total[frame] += count
        if not samples:
            return f"{self._label}: no py-spy samples (py-spy needs ptrace: run as root)"
        lines = [
            f"py-spy, {self._label}: {samples} samples; files in {self._out_dir}",
            "",
            "| own % | total % | function |",
            "|---:|---:|---|",
        ]
        for name, count in own.most_common(top):
            lines.append(
                f"| {100 * count / samples:.1f} | {100 * total[name] / samples:.1f} | `{name}` |"
            )
        return "\n".join(lines)


def frame_name(frame: str) -> str:
    """``function (path/to/module.py:line)`` as ``function (package/module.py)``: one row per
    function, with the path shortened past site-packages or the repository."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/app/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


async def measure_loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    """How late the generator's own event loop runs: when high, its latencies are inflated."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.05)
        samples.append(max(0.0, loop.time() - before - 0.05))


@dataclass
class PhaseResult:
    target: str
    users: int
    api_processes: int
    duration_s: float
    think_s: float
    requests: int
    rps: float
    latency: LatencyStats
    routes: dict[str, LatencyStats]
    errors: dict[str, int]
    error_count: int
    logins_ok: int
    login_seconds: float
    sockets_ok: int
    socket_connect_seconds: float
    socket_disconnects: int
    events_sent: int
    event_latency: LatencyStats
    # percent of one core (target, generator); percent of all cores (system)
    target_cpu_pct: float
    generator_cpu_pct: float
    system_cpu_pct: float
    generator_lag_p99_ms: float
    #: The generator's longest loop stall in the window: every request in flight then waited it.
    generator_lag_max_ms: float
    loadavg_before: tuple[float, float, float]
    loadavg_after: tuple[float, float, float]
    #: The target's own event-loop lag in the window (upper bound of the histogram bucket that
    #: holds the p99, summed over its processes; NaN when it reports none, e.g. hello).
    api_lag_p99_ms: float = math.nan
    #: Lag samples above 50 ms in the window (each a stall of at least that long).
    api_lag_over_50ms: int = 0
    #: Full (generation 2) garbage collections in the window, and how many took over 50 ms.
    api_gc2_count: int = 0
    api_gc2_over_50ms: int = 0
    #: Upper bounds (ms) of the buckets holding the longest lag sample and the longest full GC.
    api_lag_max_ms: float = math.nan
    api_gc2_max_ms: float = math.nan
    #: Young (generation 0 and 1) collections in the window, how many over 10 ms, the longest.
    api_young_gc_count: int = 0
    api_young_gc_over_10ms: int = 0
    api_young_gc_max_ms: float = math.nan
    #: Target CPU seconds per login during the logins (argon2 verify dominates).
    login_cpu_seconds_each: float = math.nan
    #: Resident memory the target gained per connected socket (RSS after the sockets connected
    #: minus before, over the sockets).
    rss_per_socket_kib: float = math.nan
    server_errors: list[str] = field(default_factory=list)
    #: With --read-replica: each PostgreSQL server's load in the window, by name.
    databases: dict[str, ServerLoad] = field(default_factory=dict)


class WindowHooks(Protocol):
    """Called at the exact start and end of a phase's measured window (other benchmarks use it)."""

    def window_opened(self) -> None: ...

    def window_closed(self) -> None: ...


@dataclass
class ServerLoad:
    """What one PostgreSQL server did in a measured window."""

    cpu_cores: float
    transactions_per_s: float


class ServerLoadWindow:
    """WindowHooks sampling each server's CPU time and transaction count at the window's edges."""

    def __init__(self, servers: dict[str, PostgresServer]) -> None:
        self._servers = servers
        self._opened: dict[str, tuple[float, float, int]] = {}
        self.loads: dict[str, ServerLoad] = {}

    def _sample(self) -> dict[str, tuple[float, float, int]]:
        return {
            name: (time.monotonic(), cluster_cpu_seconds(server), transactions(server))
            for name, server in self._servers.items()
        }

    def window_opened(self) -> None:
        self._opened = self._sample()

    def window_closed(self) -> None:
        for name, (at, cpu, xacts) in self._sample().items():
            at0, cpu0, xacts0 = self._opened[name]
            self.loads[name] = ServerLoad(
                cpu_cores=(cpu - cpu0) / (at - at0),
                transactions_per_s=(xacts - xacts0) / (at - at0),
            )


async def run_phase(
    target: Target,
    seeded: Seeded,
    *,
    users_count: int,
    duration: float,
    warmup: float,
    think: float,
    login_concurrency: int,
    event_rate: float,
    redis_url: str,
    hooks: WindowHooks | None = None,
    label: str | None = None,
    profiler: Profiler | None = None,
) -> PhaseResult:
    recorder = Recorder()
    failures: Counter[str] = Counter()
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
    )
    sockets_http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    redis = Redis.from_url(redis_url)
    users_: list[User] = []
    try:
        login_cpu = target.cpu_seconds()
        users_, login_failures, login_seconds = await login_all(
            http, target, seeded, count=users_count, concurrency=login_concurrency
        )
        login_cpu = target.cpu_seconds() - login_cpu
        failures.update(login_failures)
        socket_seconds = 0.0
        rss_per_socket_kib = math.nan
        if target.authenticates:
            rss_before = target.rss_bytes()
            socket_failures, socket_seconds = await connect_sockets(
                users_, sockets_http, recorder, concurrency=100
            )
            failures.update(socket_failures)
            connected = sum(u.socket is not None for u in users_)
            if connected:
                rss_per_socket_kib = (target.rss_bytes() - rss_before) / connected / 1024
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        lag: list[float] = []
        recorder.window_start = loop.time() + warmup
        recorder.window_end = recorder.window_start + duration
        tasks = [
            asyncio.create_task(
                run_user(
                    u,
                    http,
                    recorder,
                    bot_ids=seeded.active_bot_ids,
                    think=think,
                    stop=stop,
                    mix=target.mix,
                )
            )
            for u in users_
        ]
        lag_task = asyncio.create_task(measure_loop_lag(lag, stop))
        events_task = asyncio.create_task(
            publish_events(
                redis,
                [u for u in users_ if u.socket is not None],
                rate=event_rate if target.authenticates else 0,
                stop=stop,
            )
        )
        await asyncio.sleep(warmup)
        lag.clear()
        load_before = os.getloadavg()
        cpu_target, cpu_self, (busy0, total0) = (
            target.cpu_seconds(),
            self_cpu_seconds(),
            system_cpu(),
        )
        lag_before = await scrape_histogram(http, target.metrics_urls, LOOP_LAG_METRIC)
        gc_before = await scrape_histogram(
            http, target.metrics_urls, GC_PAUSE_METRIC, label='generation="2"'
        )
        young_before = [
            await scrape_histogram(
                http, target.metrics_urls, GC_PAUSE_METRIC, label=f'generation="{g}"'
            )
            for g in (0, 1)
        ]
        window_hooks = [h for h in (hooks, profiler) if h is not None]
        for hook in window_hooks:
            hook.window_opened()
        await asyncio.sleep(duration)
        for hook in window_hooks:
            hook.window_closed()
        lag_after = await scrape_histogram(http, target.metrics_urls, LOOP_LAG_METRIC)
        gc_after = await scrape_histogram(
            http, target.metrics_urls, GC_PAUSE_METRIC, label='generation="2"'
        )
        young_after = [
            await scrape_histogram(
                http, target.metrics_urls, GC_PAUSE_METRIC, label=f'generation="{g}"'
            )
            for g in (0, 1)
        ]
        api_lag_p99 = histogram_quantile(lag_before, lag_after, 0.99)
        cpu_target = target.cpu_seconds() - cpu_target
        cpu_self = self_cpu_seconds() - cpu_self
        busy1, total1 = system_cpu()
        load_after = os.getloadavg()
        stop.set()
        # Let in-flight requests finish (they started inside the window), then give up on them.
        _, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_SECONDS + 5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await lag_task
        events_sent = await events_task
        await asyncio.sleep(0.5 if event_rate > 0 else 0)
        failures.update(recorder.errors)
        if recorder.socket_disconnects:
            failures["socket disconnected during the run"] += recorder.socket_disconnects
        everything = [x for values in recorder.latencies.values() for x in values]
        ok = len(everything)
        errors = sum(recorder.errors.values())
        return PhaseResult(
            target=label or target.name,
            users=users_count,
            api_processes=len(target.processes),
            duration_s=duration,
            think_s=think,
            requests=ok + errors,
            rps=(ok + errors) / duration,
            latency=LatencyStats.of(everything),
            routes={k: LatencyStats.of(v) for k, v in sorted(recorder.latencies.items())},
            errors=dict(failures.most_common()),
            error_count=sum(failures.values()),
            logins_ok=len(users_),
            login_seconds=login_seconds,
            sockets_ok=sum(u.socket is not None for u in users_),
            socket_connect_seconds=socket_seconds,
            socket_disconnects=recorder.socket_disconnects,
            events_sent=events_sent,
            event_latency=LatencyStats.of(recorder.event_latencies),
            target_cpu_pct=100 * cpu_target / duration,
            generator_cpu_pct=100 * cpu_self / duration,
            system_cpu_pct=100 * (busy1 - busy0) / max(1.0, total1 - total0),
            generator_lag_p99_ms=percentile(sorted(lag), 0.99) * 1000,
            generator_lag_max_ms=max(lag, default=math.nan) * 1000,
            loadavg_before=load_before,
            loadavg_after=load_after,
            api_lag_p99_ms=api_lag_p99 * 1000,
            api_lag_over_50ms=samples_above(lag_before, lag_after, 0.05),
            api_gc2_count=int(gc_after.get(math.inf, 0.0) - gc_before.get(math.inf, 0.0)),
            api_gc2_over_50ms=samples_above(gc_before, gc_after, 0.05),
            api_lag_max_ms=histogram_quantile(lag_before, lag_after, 1.0) * 1000,
            api_gc2_max_ms=histogram_quantile(gc_before, gc_after, 1.0) * 1000,
            api_young_gc_count=sum(
                int(a.get(math.inf, 0.0) - b.get(math.inf, 0.0))
                for b, a in zip(young_before, young_after, strict=True)
            ),
            api_young_gc_over_10ms=sum(
                samples_above(b, a, 0.01) for b, a in zip(young_before, young_after, strict=True)
            ),
            # NaN for a generation that did not collect in the window; max() would keep it.
            api_young_gc_max_ms=max(
                (
                    longest
                    for b, a in zip(young_before, young_after, strict=True)
                    if not math.isnan(longest := histogram_quantile(b, a, 1.0))
                ),
                default=math.nan,
            )
            * 1000,
            login_cpu_seconds_each=login_cpu / len(users_) if users_ else math.nan,
            rss_per_socket_kib=rss_per_socket_kib,
        )
    finally:
        recorder.closing = True
        await disconnect_sockets(users_, concurrency=200)
        await http.close()
        await sockets_http.close()
        await redis.aclose()


# ---------------------------------------------------------------------------------------------
# reporting


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def results_table(results: list[PhaseResult]) -> str:
    lines = [
        "| target | users | procs | req/s | p50 ms | p95 ms | p99 ms | max ms | requests | errors "
        "| sockets | target CPU (cores) | target CPU ms per request | generator CPU (cores) "
        "| machine busy (cores of "
        f"{os.cpu_count()}) | gen. loop lag p99 ms | target loop lag p99 ms (≤ bucket) "
        "| target lags > 50 ms | load avg (1m) before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        sockets = f"{r.sockets_ok}/{r.users}" if r.target != "hello" else "none"
        lines.append(
            f"| {r.target} | {r.users} | {r.api_processes} | {r.rps:.0f} | {_ms(r.latency.p50_ms)} "
            f"| {_ms(r.latency.p95_ms)} | {_ms(r.latency.p99_ms)} | {_ms(r.latency.max_ms)} "
            f"| {r.requests} | {r.error_count} | {sockets} | {r.target_cpu_pct / 100:.2f} "
            f"| {cpu_ms_per_request(r):.3f} "
            f"| {r.generator_cpu_pct / 100:.2f} | {r.system_cpu_pct * (os.cpu_count() or 1) / 100:.2f} "
            f"| {_ms(r.generator_lag_p99_ms)} | {_ms(r.api_lag_p99_ms)} "
            f"| {r.api_lag_over_50ms if not math.isnan(r.api_lag_p99_ms) else 'n/a'} "
            f"| {r.loadavg_before[0]:.2f} → {r.loadavg_after[0]:.2f} |"
        )
    return "\n".join(lines)


def cpu_ms_per_request(result: PhaseResult) -> float:
    """The target's CPU per request in the window: what capacity costs, whoever else shares the
    cores (req/s ratios on a busy machine say as much about the scheduler as about the code)."""
    return 10 * result.target_cpu_pct / result.rps if result.rps else math.nan


def routes_table(results: list[PhaseResult]) -> str:
    lines = [
        "| target | route | count | p50 ms | p95 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for route, s in r.routes.items():
            lines.append(
                f"| {r.target} | {route} | {s.count} | {_ms(s.p50_ms)} | {_ms(s.p95_ms)} "
                f"| {_ms(s.p99_ms)} |"
            )
    return "\n".join(lines)


def ratios(results: list[PhaseResult]) -> list[str]:
    by = {r.target: r for r in results}
    api = by.get("api") or by.get("api-me")
    lines: list[str] = []
    if api is None:
        return lines
    if "baseline" in by:
        base = by["baseline"]
        lines.append(
            f"- api vs baseline: {api.rps / base.rps:.2f}x the req/s, p95 "
            f"{base.latency.p95_ms / api.latency.p95_ms:.1f}x lower, p99 "
            f"{base.latency.p99_ms / api.latency.p99_ms:.1f}x lower"
        )
    if "api+replica" in by:
        replicated = by["api+replica"]
        primary_before = api.databases.get("primary")
        primary_after = replicated.databases.get("primary")
        lines.append(
            f"- api+replica vs api: {replicated.rps / api.rps:.2f}x the req/s, p95 "
            f"{replicated.latency.p95_ms / api.latency.p95_ms:.2f}x, p99 "
            f"{replicated.latency.p99_ms / api.latency.p99_ms:.2f}x"
            + (
                f", primary transactions/s {primary_after.transactions_per_s:.0f} vs "
                f"{primary_before.transactions_per_s:.0f}, primary CPU "
                f"{primary_after.cpu_cores:.2f} vs {primary_before.cpu_cores:.2f} cores"
                if primary_before is not None and primary_after is not None
                else ""
            )
        )
    if "hello" in by:
        hello = by["hello"]
        for name in ("api", "api-me", "api-trades", "api-writes"):
            if name in by:
                lines.append(
                    f"- {name} vs ceiling (hello): {100 * by[name].rps / hello.rps:.0f}% of the "
                    f"req/s, p95 {by[name].latency.p95_ms / hello.latency.p95_ms:.1f}x the "
                    f"ceiling's; CPU per request {cpu_ms_per_request(by[name]):.3f} ms, "
                    f"{cpu_ms_per_request(by[name]) / cpu_ms_per_request(hello):.1f}x the "
                    "ceiling's"
                )
    return lines


def databases_table(results: list[PhaseResult]) -> str:
    names = sorted({name for r in results for name in r.databases})
    lines = [
        "| target | " + " | ".join(f"{n} CPU (cores) | {n} transactions/s" for n in names) + " |",
        "|---|" + "---:|---:|" * len(names),
    ]
    for r in results:
        cells = []
        for name in names:
            load = r.databases.get(name)
            cells += (
                [f"{load.cpu_cores:.2f}", f"{load.transactions_per_s:.0f}"]
                if load is not None
                else ["n/a", "n/a"]
            )
        lines.append(f"| {r.target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(results: list[PhaseResult], header: list[str]) -> str:
    out = [*header, "", results_table(results), "", "Per route:", "", routes_table(results)]
    if any(r.databases for r in results):
        out += ["", "PostgreSQL servers in the measured window:", "", databases_table(results)]
    ratio_lines = ratios(results)
    if ratio_lines:
        out += ["", "Ratios:", "", *ratio_lines]
    for r in results:
        setup = (
            f"- {r.target}: logins {r.logins_ok}/{r.users} in {r.login_seconds:.1f} s"
            + (
                f", sockets {r.sockets_ok}/{r.users} in {r.socket_connect_seconds:.1f} s"
                if r.target != "hello"
                else ""
            )
            + (
                f", events {r.events_sent} sent, {r.event_latency.count} delivered, "
                f"p50/p99 {_ms(r.event_latency.p50_ms)}/{_ms(r.event_latency.p99_ms)} ms"
                if r.events_sent
                else ""
            )
            + (
                f"; target CPU {1000 * r.login_cpu_seconds_each:.1f} ms per login "
                f"({1 / r.login_cpu_seconds_each:.1f} logins/s per core)"
                if r.target != "hello" and r.login_cpu_seconds_each > 0
                else ""
            )
            + (
                f"; target loop lag max ≤ {_ms(r.api_lag_max_ms)} ms; full GCs in the window "
                f"{r.api_gc2_count} ({r.api_gc2_over_50ms} over 50 ms, longest ≤ "
                f"{_ms(r.api_gc2_max_ms)} ms); young GCs {r.api_young_gc_count} "
                f"({r.api_young_gc_over_10ms} over 10 ms, longest ≤ {_ms(r.api_young_gc_max_ms)} ms)"
                if not math.isnan(r.api_lag_p99_ms)
                else ""
            )
            + f"; generator loop lag max {_ms(r.generator_lag_max_ms)} ms"
            + (
                f"; RSS {r.rss_per_socket_kib:.1f} KiB per connected socket"
                if not math.isnan(r.rss_per_socket_kib)
                else ""
            )
        )
        out.append(setup)
        for kind, n in r.errors.items():
            out.append(f"  - error {kind}: {n}")
        for line in r.server_errors[:5]:
            out.append(f"  - server log: {line[:300]}")
        if len(r.server_errors) > 5:
            out.append(f"  - server log: … {len(r.server_errors) - 5} more ERROR lines")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# the command


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_load",
        description="Benchmark the AlgoEdge API against a hello-world ceiling and the analysis's "
        "current-state baseline, on throwaway Postgres, pgBouncer and Redis.",
    )
    parser.add_argument("--users", type=int, default=500, help="concurrent users (default 500)")
    parser.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help="comma-separated, run in this order: hello, baseline, api, api-me (the API with "
        "GET /api/v1/me only), api-trades (GET /api/v1/trades only), api-writes (PATCH /api/v1/me "
        "and subscribe only) (default hello,baseline,api)",
    )
    parser.add_argument(
        "--duration", type=float, default=20.0, help="measured seconds per target (default 20)"
    )
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="unmeasured seconds of load first (default 5)"
    )
    parser.add_argument(
        "--think",
        type=float,
        default=1.0,
        help="mean think time between a user's requests, uniform in [0.5x, 1.5x] (default 1.0 s)",
    )
    parser.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="processes per target, one port each, users spread round-robin (default 1)",
    )
    parser.add_argument(
        "--trades-per-user", type=int, default=50, help="seeded trades per user (default 50)"
    )
    parser.add_argument(
        "--event-rate",
        type=float,
        default=0.0,
        help="socket events per second pushed through Redis to random users (default 0: off)",
    )
    parser.add_argument(
        "--login-concurrency", type=int, default=16, help="parallel logins in set-up (default 16)"
    )
    parser.add_argument(
        "--real-hashes",
        action="store_true",
        help="seed users with the default (slow) argon2id parameters instead of cheap ones",
    )
    parser.add_argument(
        "--api-log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="ALGOEDGE_LOG_LEVEL of the targets (default INFO: one JSON line per request, as deployed)",
    )
    parser.add_argument(
        "--api-env",
        action="append",
        default=[],
        metavar="ALGOEDGE_NAME=VALUE",
        help="one more setting for the API processes (repeatable), e.g. "
        "ALGOEDGE_SOCKETIO_SESSION_CHECK_INTERVAL=5 to put session checks in the window",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=900.0,
        help="hard cap on the whole run after the services are up (default 900)",
    )
    parser.add_argument(
        "--read-replica",
        action="store_true",
        help="also start a streaming replica (pgBouncer alias <db>_ro) and run the api target "
        "twice, without and with ALGOEDGE_DATABASE_READ_URL (api, api+replica); report each "
        "PostgreSQL server's CPU and transactions/s",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the api targets' processes with py-spy during the measured window (as "
        "root); collapsed stacks in DIR and the top functions in the report",
    )
    parser.add_argument("--json", type=Path, help="also write every result to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, data)")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown or not targets:
        parser.error(f"--targets: unknown {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    if args.users < 1 or args.api_processes < 1 or args.duration <= 0 or args.think <= 0:
        parser.error("--users, --api-processes, --duration and --think must be positive")
    args.target_list = targets
    args.api_settings = {}
    for setting in args.api_env:
        name, equals, value = setting.partition("=")
        if not (equals and name.startswith("ALGOEDGE_")):
            parser.error(f"--api-env: {setting!r} is not ALGOEDGE_NAME=VALUE")
        args.api_settings[name] = value
    return args


async def benchmark(args: argparse.Namespace, root: Path, stack: Stack) -> list[PhaseResult]:
    env = {
        **api_environment(stack.bouncer.url, stack.redis.url),
        **BENCH_LIMITS,
        "ALGOEDGE_LOG_LEVEL": args.api_log_level,
        **args.api_settings,
    }
    settings = load_settings(MigrateSettings, {"ALGOEDGE_DATABASE_URL": stack.bouncer.url})
    await migrated(settings)
    print(f"seeding {args.users} users x {args.trades_per_user} trades …", flush=True)
    seeded = await seed(
        stack.postgres.url,
        user_count=args.users,
        trades_per_user=args.trades_per_user,
        credentials_key=env["ALGOEDGE_CREDENTIALS_KEY"],
        cheap_hashes=not args.real_hashes,
    )
    stack.postgres.psql("ANALYZE", database=stack.postgres.database)
    if stack.replica is not None:
        stack.replica.wait_caught_up(timeout=300)
    print(f"seeded {seeded.trades} trades in {seeded.seconds:.0f} s", flush=True)
    phases: list[tuple[str, str]] = []  # (label, target)
    for name in args.target_list:
        phases.append((name, name))
        if name == "api" and stack.replica is not None:
            phases.append(("api+replica", name))
    results: list[PhaseResult] = []
    profiles: list[str] = []
    for label, name in phases:
        redis = Redis.from_url(stack.redis.url)
        await redis.flushall()  # each target starts with an empty cache and fresh rate budgets
        await redis.aclose()
        target_env = dict(env)
        if name == "baseline":
            # The current state connected straight to Postgres, not through pgBouncer.
            target_env["ALGOEDGE_DATABASE_URL"] = stack.postgres.url
        if label == "api+replica":
            target_env["ALGOEDGE_DATABASE_READ_URL"] = stack.bouncer.read_url
        window = ServerLoadWindow(stack.servers()) if stack.replica is not None else None
        print(f"{label}: starting {args.api_processes} process(es) …", flush=True)
        target = start_target(name, count=args.api_processes, env=target_env, root=root)
        profiler = (
            Profiler(target, args.profile, label=label, seconds=args.duration)
            if args.profile is not None and name.startswith("api")
            else None
        )
        try:
            result = await run_phase(
                target,
                seeded,
                users_count=args.users,
                duration=args.duration,
                warmup=args.warmup,
                think=args.think,
                login_concurrency=args.login_concurrency,
                event_rate=args.event_rate,
                redis_url=stack.redis.url,
                hooks=window,
                label=label,
                profiler=profiler,
            )
        finally:
            stop_target(target)
        if profiler is not None:
            profiles.append(profiler.summary())
        result.server_errors = server_errors(target)
        if window is not None:
            result.databases = window.loads
        results.append(result)
        print(
            f"{label}: {result.rps:.0f} req/s, p95 {_ms(result.latency.p95_ms)} ms, "
            f"p99 {_ms(result.latency.p99_ms)} ms, {result.error_count} errors",
            flush=True,
        )
    for summary in profiles:
        print("\n" + summary, flush=True)
    return results


async def redis_setting(url: str, name: str) -> str:
    redis = Redis.from_url(url, decode_responses=True)
    try:
        found: dict[str, str] = await redis.config_get(name)
    finally:
        await redis.aclose()
    return found.get(name, "?")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    soft, hard = raise_file_limit()
    facts = machine_facts()
    root = Path(tempfile.mkdtemp(prefix="algoedge-bench-"))
    root.chmod(0o755)  # postgres and pgbouncer run as the postgres user when we are root
    stack: Stack | None = None
    started = datetime.now(UTC)
    try:
        stack = start_stack(root, read_replica=args.read_replica)
        max_connections = stack.postgres.psql("SHOW max_connections")
        redis_maxclients = asyncio.run(redis_setting(stack.redis.url, "maxclients"))
        header = [
            f"AlgoEdge API benchmark, {started:%Y-%m-%d %H:%M} UTC: {args.users} users, "
            f"{args.duration:.0f} s measured after {args.warmup:.0f} s warm-up per target, "
            f"think time {args.think} s (uniform 0.5x-1.5x), so at most "
            f"~{args.users / args.think:.0f} req/s offered (closed loop); "
            f"{args.api_processes} process(es) per target.",
            f"Machine: {facts['nproc']} CPUs shared by the load generator, the target, "
            f"PostgreSQL, pgBouncer and Redis; {facts['memory_gib']} GiB; Python "
            f"{facts['python']}; RLIMIT_NOFILE {soft}/{hard}; Postgres max_connections "
            f"{max_connections}; Redis maxclients {redis_maxclients}.",
            f"Rate limits relaxed to {BENCH_RATE_LIMIT} (user, IP, auth) so the benchmark "
            "measures the service, not the limiter. Latency is client-side, per request, "
            "including the generator's own scheduling delay (see loop lag).",
        ]
        if args.read_replica:
            header.append(
                "With --read-replica: a streaming replica (hot standby, same machine) behind the "
                "same pgBouncer; api runs twice, then api+replica with ALGOEDGE_DATABASE_READ_URL "
                "on its <db>_ro alias (lag bound: the app's default)."
            )
        if not args.real_hashes:
            header.append(
                "Seeded users have cheap argon2id parameters (t=1, m=1 MiB) so logins "
                "(set-up, not measured) take seconds."
            )
        print(f"services up in {root}; benchmarking {', '.join(args.target_list)}", flush=True)
        # The generator holds thousands of client sockets' objects, like an API process: with
        # CPython's default thresholds its own full collections held its loop for 0.5-0.6 s at
        # 5,000 users and made most of the measured p99 (docs/benchmarks.md, third pass, item 8).
        tune_gc()
        results = asyncio.run(
            asyncio.wait_for(benchmark(args, root, stack), timeout=args.max_seconds)
        )
        text = report(results, header)
        print("\n" + text, flush=True)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "started": started.isoformat(),
                        "machine": facts,
                        "arguments": {
                            k: v for k, v in vars(args).items() if k not in ("json", "target_list")
                        },
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
