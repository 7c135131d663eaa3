"""Benchmark of the background jobs: a daily report run on Celery workers, and what it does to the API.

One command does everything, then cleans up:

1. starts throwaway PostgreSQL, pgBouncer and Redis (``devtools.services``, as ``bench.api_load``)
   and a real aiosmtpd server (``devtools.smtp.SmtpSink``, in a process of its own so it does not
   share the load generator's interpreter), migrates, and seeds with COPY: N traders with one
   linked account and T closed trades each, spread over yesterday (UTC), a share of them opted
   in to report e-mails;
2. runs yesterday's daily report run on 1 and then 2 ``algoedge worker`` processes (the same
   seed; reports, notifications, e-mail deliveries and run records emptied before each run):
   claims the ``report_runs`` row and sends ``algoedge.reports.fan_out`` exactly as the beat
   does (``db.jobs.claim_run``, send, ``db.jobs.mark_run_enqueued``), then measures until
   ``report_runs.completed_at`` is set and every e-mail delivery is sent: wall time, reports/s
   per process, e-mails/s into the SMTP server, the workers' peak RSS (``VmHWM``) and the CPU of
   every process involved;
3. runs ``bench.api_load``'s realistic mix against one ``algoedge api`` process (a) with two
   idle workers, (b) while the daily run executes on two workers, and (c) the analysis's
   current state: the reports computed inside one API request on the API's event loop, with
   blocking SMTP (``bench/inline_reports_app.py``), bounded by the measured window; and prints
   p50/p95/p99 and errors side by side, with ratios.

Run from the repository root: ``.venv/bin/python -m bench.jobs_load``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiohttp
import psycopg2
from algoedge.config import MigrateSettings, ServiceSettings, load_settings
from algoedge.db import Database
from algoedge.db import jobs as store
from algoedge.jobs import names
from algoedge.jobs.queue import JobQueue
from algoedge.reporting import ReportKind, due_at, period_bounds
from argon2 import PasswordHasher
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bench.api_load import (
    ALGOEDGE,
    BENCH_LIMITS,
    PASSWORD,
    PYTHON,
    REPO,
    SYMBOLS,
    PhaseResult,
    Seeded,
    Stack,
    Target,
    machine_facts,
    process_cpu_seconds,
    raise_file_limit,
    redis_setting,
    results_table,
    routes_table,
    run_phase,
    self_cpu_seconds,
    server_errors,
    start_stack,
    start_target,
    stop_target,
    system_cpu,
)
from bench.inline_reports_app import ROUTE as INLINE_ROUTE
from devtools.app import api_environment, migrated
from devtools.services import LOOPBACK, free_port, wait_for_port, wait_healthy
from devtools.smtp import SmtpSink

KIND: ReportKind = "daily"
MAIL_FROM = "AlgoEdge Reports <reports@bench.example.com>"
EMAIL_DOMAIN = "jobs.bench.example.com"
#: The beat's default time of day; only recorded as the run's scheduled_at.
DAILY_AT = clock_time(0, 15)
WORKER_READY_SECONDS = 60.0
POLL_SECONDS = 0.25
PROGRESS_SECONDS = 10.0
#: The API phases, in the order each repetition runs them.
PHASES = {
    "a": "a: idle workers",
    "b": "b: run on 2 workers",
    "c": "c: inline (current state)",
}
#: Phase pairs whose latency ratios are reported (first over second).
PHASE_PAIRS = (("b", "a"), ("c", "a"), ("c", "b"))

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# processes: CPU and memory from /proc


def vm_hwm_kib(status: str) -> int | None:
    """Peak resident set size (``VmHWM``, KiB) from the text of ``/proc/<pid>/status``."""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def peak_rss_mib(pid: int) -> float | None:
    try:
        kib = vm_hwm_kib(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return None if kib is None else kib / 1024


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    ppid: int
    #: utime + stime + cutime + cstime (its own and its reaped children's), in clock ticks.
    ticks: int


def parse_proc_stat(text: str) -> ProcStat:
    """The fields of ``/proc/<pid>/stat`` this benchmark needs (the name may hold spaces)."""
    head, _, tail = text.rpartition(")")
    fields = tail.split()
    return ProcStat(
        pid=int(head.split("(", 1)[0]),
        ppid=int(fields[1]),
        ticks=sum(int(v) for v in fields[11:15]),
    )


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU time of a process and its live descendants, plus the children they already reaped.

    Postgres backends that exited were reaped by the postmaster, so their time is in its
    ``cutime``; live ones are counted one by one.
    """
    stats: dict[int, ProcStat] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = parse_proc_stat(Path(f"/proc/{entry}/stat").read_text())
            stats[stat.pid] = stat
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    total, pending = 0, [root_pid]
    while pending:
        pid = pending.pop()
        if pid in stats:
            total += stats[pid].ticks
            pending.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def runqueue_wait_ns(schedstat: str) -> int:
    """Nanoseconds a thread spent runnable but waiting for a CPU, from ``/proc/…/schedstat``."""
    return int(schedstat.split()[1])


def cpu_wait_seconds(pids: Sequence[int]) -> float:
    """Seconds the threads of ``pids`` waited on a run queue: CPU starvation, directly.

    Divided by the elapsed time it is the average number of the processes' threads that were
    ready to run and had no CPU.
    """
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += runqueue_wait_ns(Path(task.path, "schedstat").read_text())
    return total / 1e9


# ---------------------------------------------------------------------------------------------
# seed data


def closing_times(day: date, count: int, rng: random.Random) -> list[datetime]:
    """``count`` instants spread uniformly over the UTC day ``day`` (inside it), ascending."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return sorted(start + timedelta(milliseconds=rng.randrange(86_400_000)) for _ in range(count))


@dataclass(frozen=True)
class Seed:
    seeded: Seeded
    day: date
    opted_in: int
    trades: int
    seconds: float


def _copy(cur: Any, table_and_columns: str, rows: io.StringIO) -> None:
    rows.seek(0)
    cur.copy_expert(f"COPY {table_and_columns} FROM STDIN", rows)


def seed_traders(dsn: str, *, users: int, trades_per_user: int, optin: float, day: date) -> Seed:
    """Bots for the API mix, then traders, accounts and closed trades, with COPY."""
    started = time.monotonic()
    rng = random.Random(7)  # noqa: S311 - workload shape, not security
    # The login path verifies whatever parameters the stored hash names: cheap ones make the
    # API phases' logins (set-up, not measured) take seconds, as in bench.api_load.
    password_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO marketplace_bots (name, description, strategy, status, monthly_price) "
                "SELECT 'Bench bot ' || n, 'strategy number ' || n, 'trend', "
                "CASE WHEN n < 40 THEN 'active' WHEN n < 46 THEN 'paused' ELSE 'retired' END, "
                "(n * 3.7)::numeric(10, 2) FROM generate_series(0, 49) n RETURNING id, status"
            )
            bot_ids = [int(row[0]) for row in cur.fetchall() if row[1] == "active"]
            emails = [f"trader{n}@{EMAIL_DOMAIN}" for n in range(users)]
            opted = [rng.random() < optin for _ in range(users)]
            rows = io.StringIO()
            for n, email in enumerate(emails):
                rows.write(f"{email}\tTrader {n}\t{password_hash}\t{'t' if opted[n] else 'f'}\n")
            _copy(cur, "users (email, name, password_hash, email_reports)", rows)
            cur.execute("SELECT email, id FROM users WHERE email LIKE %s", (f"%@{EMAIL_DOMAIN}",))
            id_of = {str(email): int(user_id) for email, user_id in cur.fetchall()}
            user_ids = [id_of[email] for email in emails]
            rows = io.StringIO()
            for n, user_id in enumerate(user_ids):
                # A Fernet token is not needed: nothing in the benchmark decrypts it.
                rows.write(f"{user_id}\t{50_000_000 + n}\tBenchBroker-Demo\tmt5\t\\\\x78\n")
            _copy(cur, "mt_accounts (user_id, login, server, platform, encrypted_password)", rows)
            cur.execute("SELECT user_id, id FROM mt_accounts WHERE user_id = ANY(%s)", (user_ids,))
            account_of = {int(user_id): int(account) for user_id, account in cur.fetchall()}
            columns = (
                "trades (account_id, user_id, symbol, side, volume, open_price, close_price, "
                "profit, opened_at, closed_at)"
            )
            for chunk in range(0, users, 500):
                rows = io.StringIO()
                for user_id in user_ids[chunk : chunk + 500]:
                    account = account_of[user_id]
                    for closed in closing_times(day, trades_per_user, rng):
                        opened = closed - timedelta(seconds=rng.randrange(60, 7200))
                        open_price = rng.randrange(10_000, 200_000) / 100
                        close_price = open_price + rng.randrange(-500, 500) / 100
                        rows.write(
                            f"{account}\t{user_id}\t{rng.choice(SYMBOLS)}\t"
                            f"{rng.choice(('buy', 'sell'))}\t{rng.randrange(1, 500) / 100}\t"
                            f"{open_price}\t{close_price}\t{rng.randrange(-20_000, 20_000) / 100}\t"
                            f"{opened.isoformat()}\t{closed.isoformat()}\n"
                        )
                _copy(cur, columns, rows)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE")
    finally:
        conn.close()
    return Seed(
        seeded=Seeded(
            emails=emails,
            user_ids=user_ids,
            active_bot_ids=bot_ids,
            trades=users * trades_per_user,
            seconds=time.monotonic() - started,
        ),
        day=day,
        opted_in=sum(opted),
        trades=users * trades_per_user,
        seconds=time.monotonic() - started,
    )


# ---------------------------------------------------------------------------------------------
# the SMTP server, in a process of its own


def serve_smtp(port: int, folder: str, stop: ProcessEvent) -> None:
    """The child's body: a recording aiosmtpd server until ``stop`` is set."""
    sink = SmtpSink(folder=Path(folder), port=port).start()
    try:
        stop.wait()
    finally:
        sink.stop()


@dataclass
class MailServer:
    """``devtools.smtp.SmtpSink`` in a spawned process; every accepted message is a file."""

    folder: Path
    port: int = 0
    process: multiprocessing.process.BaseProcess | None = None
    stop_event: ProcessEvent | None = None

    @property
    def url(self) -> str:
        return f"smtp://{LOOPBACK}:{self.port}"

    def start(self) -> MailServer:
        context = multiprocessing.get_context("spawn")
        self.port = free_port()
        self.stop_event = context.Event()
        self.process = context.Process(
            target=serve_smtp,
            args=(self.port, str(self.folder), self.stop_event),
            name="smtp-sink",
            daemon=True,
        )
        self.process.start()
        wait_for_port(self.port, timeout=30)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        assert self.process.pid is not None
        return self.process.pid

    def received(self) -> int:
        try:
            return sum(1 for entry in os.scandir(self.folder) if entry.name.endswith(".eml"))
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        if self.process is None or self.stop_event is None:
            return
        self.stop_event.set()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.process = None


# ---------------------------------------------------------------------------------------------
# worker and inline-API processes


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    child_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ALGOEDGE_")},
        **env,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            cwd=REPO,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_workers(
    count: int, *, env: dict[str, str], root: Path, label: str, nice: int = 0
) -> Target:
    """``count`` ``algoedge worker`` processes; ``ports`` are their metrics ports.

    ``nice`` above 0 starts them at that lower CPU priority (``nice`` execs the worker, so the
    process ids are still the workers').
    """
    target = Target(name="worker", processes=[], ports=[], logs=[])
    heartbeats: list[Path] = []
    try:
        for index in range(count):
            port = free_port()
            log = root / f"{label}-worker-{index}.log"
            heartbeat = root / f"{label}-worker-{index}.heartbeat"
            process = _spawn(
                [*(["nice", "-n", str(nice)] if nice else []), ALGOEDGE, "worker"],
                {
                    **env,
                    "ALGOEDGE_METRICS_PORT": str(port),
                    "ALGOEDGE_HEARTBEAT_FILE": str(heartbeat),
                },
                log,
            )
            target.processes.append(process)
            target.ports.append(port)
            target.logs.append(log)
            heartbeats.append(heartbeat)
        deadline = time.monotonic() + WORKER_READY_SECONDS
        for process, log, heartbeat in zip(target.processes, target.logs, heartbeats, strict=True):
            # Celery logs "… ready." once it consumes; the heartbeat step touched its file.
            while not (heartbeat.exists() and " ready." in log.read_text(errors="replace")):
                if process.poll() is not None:
                    raise RuntimeError(f"worker exited with {process.returncode}; see {log}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"worker not ready in {WORKER_READY_SECONDS:.0f} s; see {log}"
                    )
                time.sleep(0.1)
    except BaseException:
        stop_target(target)
        raise
    return target


def start_inline_api(env: dict[str, str], *, root: Path, per_query_connections: bool) -> Target:
    """``bench.inline_reports_app``: the API plus the route that runs the reports inline."""
    port = free_port()
    log = root / "inline-api-0.log"
    argv = [PYTHON, "-m", "bench.inline_reports_app"]
    if per_query_connections:
        argv.append("--per-query-connections")
    process = _spawn(
        argv,
        {
            **env,
            "ALGOEDGE_HTTP_HOST": LOOPBACK,
            "ALGOEDGE_HTTP_PORT": str(port),
            "ALGOEDGE_METRICS_PORT": "0",
        },
        log,
    )
    target = Target(name="inline", processes=[process], ports=[port], logs=[log])
    try:
        wait_healthy(f"{target.bases[0]}/healthz", process, log=log)
    except BaseException:
        stop_target(target)
        raise
    return target


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
        return str(response.read().decode())


@dataclass
class TaskStats:
    """One task name's executions over a run, summed over the worker processes."""

    runs: int = 0
    seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def mean_ms(self) -> float:
        return 1000 * self.seconds / self.runs if self.runs else float("nan")


def task_stats(metrics_texts: Sequence[str]) -> dict[str, TaskStats]:
    """Per task: executions, time and outcomes from the workers' Prometheus exposition."""
    stats: dict[str, TaskStats] = {}
    for text in metrics_texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                task = sample.labels.get("task")
                if task is None:
                    continue
                entry = stats.setdefault(task, TaskStats())
                if sample.name == "algoedge_jobs_task_duration_seconds_count":
                    entry.runs += int(sample.value)
                elif sample.name == "algoedge_jobs_task_duration_seconds_sum":
                    entry.seconds += sample.value
                elif sample.name == "algoedge_jobs_tasks_total":
                    outcome = sample.labels.get("outcome", "?")
                    entry.outcomes[outcome] = entry.outcomes.get(outcome, 0) + int(sample.value)
    return stats


async def worker_metrics(workers: Target) -> list[str]:
    return [await asyncio.to_thread(_scrape, f"{base}/metrics") for base in workers.bases]


# ---------------------------------------------------------------------------------------------
# one daily run


@dataclass
class CpuSnapshot:
    at: float
    seconds: dict[str, float]
    busy: float
    total: float


@dataclass
class Services:
    """What a run's CPU accounting looks at beside the workers."""

    stack: Stack
    mail: MailServer

    def postmaster_pid(self) -> int:
        pid_file = self.stack.postgres.data_dir / "postmaster.pid"
        return int(pid_file.read_text().split()[0])

    def snapshot(self, workers: Target | None, api: Target | None) -> CpuSnapshot:
        bouncer = self.stack.bouncer.process
        redis = self.stack.redis.process
        seconds = {
            "workers": workers.cpu_seconds() if workers is not None else 0.0,
            "api": api.cpu_seconds() if api is not None else 0.0,
            "postgres": tree_cpu_seconds(self.postmaster_pid()),
            "pgbouncer": tree_cpu_seconds(bouncer.pid) if bouncer is not None else 0.0,
            "redis": tree_cpu_seconds(redis.pid) if redis is not None else 0.0,
            "smtp": process_cpu_seconds(self.mail.pid),
            "bench": self_cpu_seconds(),
            # Not CPU used: time the threads were ready and waited for a CPU.
            "workers_wait": cpu_wait_seconds(_pids(workers)),
            "api_wait": cpu_wait_seconds(_pids(api)),
        }
        busy, total = system_cpu()
        return CpuSnapshot(at=time.monotonic(), seconds=seconds, busy=busy, total=total)


def _pids(target: Target | None) -> list[int]:
    return [] if target is None else [p.pid for p in target.processes]


def cores_between(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU used per component between two snapshots, in cores; ``machine`` is all CPUs' busy.

    The ``*_wait`` entries are seconds waited for a CPU per second (threads kept waiting).
    """
    elapsed = max(1e-9, after.at - before.at)
    cores = {k: (after.seconds[k] - before.seconds[k]) / elapsed for k in after.seconds}
    share = (after.busy - before.busy) / max(1.0, after.total - before.total)
    cores["machine"] = share * (os.cpu_count() or 1)
    return cores


@dataclass
class RunResult:
    label: str
    repetition: int
    #: True for the run of API phase b (the API under load on the same machine).
    under_api_load: bool
    processes: int
    threads: int
    users: int
    batches: int
    reports: int
    #: From sending the fan-out to ``report_runs.completed_at``; None: not completed in time.
    wall_s: float | None
    emails_expected: int
    emails_sent: int
    emails_failed: int
    #: From sending the fan-out to the last ``sent_at``.
    emails_done_s: float | None
    smtp_received: int
    worker_peak_rss_mib: list[float | None]
    cpu_cores: dict[str, float]
    tasks: dict[str, TaskStats]
    loadavg_before: tuple[float, float, float]
    loadavg_after: tuple[float, float, float]
    server_errors: list[str] = field(default_factory=list)

    @property
    def reports_per_s(self) -> float:
        return self.reports / self.wall_s if self.wall_s else float("nan")

    @property
    def reports_per_s_per_process(self) -> float:
        return self.reports_per_s / self.processes

    @property
    def emails_per_s(self) -> float:
        return self.emails_sent / self.emails_done_s if self.emails_done_s else float("nan")


async def reset_runs(db: Database) -> None:
    """Forget every report, notification, e-mail delivery and run record (the seed stays)."""
    async with db.cursor() as cur:
        await cur.execute(
            "TRUNCATE report_run_batches, report_runs, email_deliveries, notifications, reports"
        )


async def trigger_run(db: Database, queue: JobQueue, day: date) -> datetime:
    """What the beat does when the daily run is due: claim the period, send the fan-out, mark it."""
    start, _ = period_bounds(KIND, day)
    claimed = await store.claim_run(
        db, kind=KIND, period_start=start, scheduled_at=due_at(KIND, day, daily_at=DAILY_AT)
    )
    if not claimed:
        raise RuntimeError(f"the {KIND} run of {day} was already claimed; reset_runs first")
    sent_at = datetime.now(UTC)
    if not await queue.send(names.REPORT_FAN_OUT, KIND, day.isoformat()):
        raise RuntimeError("the fan-out task could not be sent to Redis")
    await store.mark_run_enqueued(db, kind=KIND, period_start=start)
    return sent_at


@dataclass(frozen=True)
class RunProgress:
    completed_at: datetime | None
    users: int
    batches: int
    reports: int
    deliveries: int
    sent: int
    failed: int
    open: int
    last_sent_at: datetime | None


async def run_progress(db: Database, day: date) -> RunProgress:
    start, _ = period_bounds(KIND, day)
    async with db.cursor() as cur:
        await cur.execute(
            "SELECT completed_at, coalesce(users_total, 0), coalesce(batches_total, 0) "
            "FROM report_runs WHERE kind = %s AND period_start = %s",
            (KIND, start),
        )
        run = await cur.fetchone()
        await cur.execute(
            "SELECT count(*) FROM reports WHERE kind = %s AND period_start = %s "
            "AND status = 'ready'",
            (KIND, start),
        )
        (reports,) = await cur.fetchone()
        await cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'sent'), "
            "count(*) FILTER (WHERE status = 'failed'), "
            "count(*) FILTER (WHERE status IN ('pending', 'sending')), max(sent_at) "
            "FROM email_deliveries"
        )
        deliveries, sent, failed, open_, last_sent = await cur.fetchone()
    return RunProgress(
        completed_at=None if run is None else run[0],
        users=0 if run is None else int(run[1]),
        batches=0 if run is None else int(run[2]),
        reports=int(reports),
        deliveries=int(deliveries),
        sent=int(sent),
        failed=int(failed),
        open=int(open_),
        last_sent_at=last_sent,
    )


async def daily_run(
    db: Database,
    queue: JobQueue,
    services: Services,
    workers: Target,
    *,
    label: str,
    repetition: int,
    seed: Seed,
    threads: int,
    give_up_after: float,
    api: Target | None = None,
) -> RunResult:
    """Trigger the run and wait for its completion and its last e-mail; measure on the way."""
    load_before = os.getloadavg()
    smtp_before = services.mail.received()
    cpu_before = services.snapshot(workers, api)
    started = await trigger_run(db, queue, seed.day)
    deadline = time.monotonic() + give_up_after
    next_progress = time.monotonic() + PROGRESS_SECONDS
    while True:
        progress = await run_progress(db, seed.day)
        if progress.completed_at is not None and progress.open == 0:
            break
        if time.monotonic() > deadline:
            print(f"{label}: gave up after {give_up_after:.0f} s: {progress}", flush=True)
            break
        if time.monotonic() >= next_progress:
            next_progress += PROGRESS_SECONDS
            print(
                f"{label}: {progress.reports}/{len(seed.seeded.user_ids)} reports, "
                f"{progress.sent}/{seed.opted_in} e-mails sent, "
                f"{(datetime.now(UTC) - started).total_seconds():.0f} s",
                flush=True,
            )
        await asyncio.sleep(POLL_SECONDS)
    cpu_after = services.snapshot(workers, api)
    metrics = task_stats(await worker_metrics(workers))
    rss = [peak_rss_mib(p.pid) for p in workers.processes]

    def since_start(instant: datetime | None) -> float | None:
        return None if instant is None else (instant - started).total_seconds()

    return RunResult(
        label=label,
        repetition=repetition,
        under_api_load=api is not None,
        processes=len(workers.processes),
        threads=threads,
        users=progress.users,
        batches=progress.batches,
        reports=progress.reports,
        wall_s=since_start(progress.completed_at),
        emails_expected=seed.opted_in,
        emails_sent=progress.sent,
        emails_failed=progress.failed,
        emails_done_s=since_start(progress.last_sent_at) if progress.open == 0 else None,
        smtp_received=services.mail.received() - smtp_before,
        worker_peak_rss_mib=rss,
        cpu_cores=cores_between(cpu_before, cpu_after),
        tasks=metrics,
        loadavg_before=load_before,
        loadavg_after=os.getloadavg(),
    )


# ---------------------------------------------------------------------------------------------
# the API under the realistic mix, with something started at the measured window's start


@dataclass(frozen=True)
class LoadShape:
    users: int
    duration: float
    warmup: float
    think: float


@dataclass(frozen=True)
class PhaseOutcome(Generic[T]):
    result: PhaseResult
    #: Seconds the API process's threads waited for a CPU, per second of the window.
    api_cpu_wait: float
    #: What the ``during`` hook returned.
    hooked: T | None


class DuringWindow(Generic[T]):
    """Starts ``during`` when the measured window opens and reads the API's CPU wait over it."""

    def __init__(self, target: Target, during: Callable[[], Coroutine[Any, Any, T]] | None) -> None:
        self.target = target
        self.during = during
        self.task: asyncio.Task[T] | None = None
        self.wait_seconds = 0.0

    def window_opened(self) -> None:
        self.wait_seconds = -cpu_wait_seconds(_pids(self.target))
        if self.during is not None:
            self.task = asyncio.create_task(self.during())

    def window_closed(self) -> None:
        self.wait_seconds += cpu_wait_seconds(_pids(self.target))


async def api_phase(
    target: Target,
    seeded: Seeded,
    *,
    label: str,
    shape: LoadShape,
    redis_url: str,
    during: Callable[[], Coroutine[Any, Any, T]] | None = None,
) -> PhaseOutcome[T]:
    """``bench.api_load``'s phase (its users, mix and recorder), with ``during`` at window start."""
    window = DuringWindow(target, during)
    result = await run_phase(
        target,
        seeded,
        users_count=shape.users,
        duration=shape.duration,
        warmup=shape.warmup,
        think=shape.think,
        login_concurrency=16,
        event_rate=0,
        redis_url=redis_url,
        hooks=window,
        label=label,
    )
    hooked = await window.task if window.task is not None else None
    return PhaseOutcome(result, window.wait_seconds / shape.duration, hooked)


async def measured_phase(
    phase: str,
    repetition: int,
    api: Target,
    seeded: Seeded,
    results: Results,
    *,
    shape: LoadShape,
    redis_url: str,
    during: Callable[[], Coroutine[Any, Any, T]] | None = None,
) -> T | None:
    """One API phase on ``api`` (stopped afterwards), recorded in ``results`` under ``key``."""
    try:
        outcome = await api_phase(
            api,
            seeded,
            label=f"{PHASES[phase]} #{repetition}",
            shape=shape,
            redis_url=redis_url,
            during=during,
        )
    finally:
        stop_target(api)
    result = outcome.result
    result.server_errors = server_errors(api)
    results.phases[phase_key(phase, repetition)] = result
    results.api_cpu_wait[phase_key(phase, repetition)] = outcome.api_cpu_wait
    print(
        f"{result.target}: {result.rps:.0f} req/s, p95 {_num(result.latency.p95_ms)} ms, "
        f"p99 {_num(result.latency.p99_ms)} ms, {result.error_count} errors, "
        f"API waited for a CPU {outcome.api_cpu_wait:.2f} s/s",
        flush=True,
    )
    return outcome.hooked


@dataclass
class InlineOutcome:
    """What the inline route answered (its own counts) and how long the request took."""

    status: int
    reports: int
    emails_sent: int
    emails_failed: int
    seconds: float
    finished: bool
    request_seconds: float
    detail: str = ""

    @property
    def reports_per_s(self) -> float:
        return self.reports / self.seconds if self.seconds else float("nan")


async def post_inline_run(base: str, *, token: str, day: date, max_seconds: float) -> InlineOutcome:
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=max_seconds + 300)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(
            f"{base}{INLINE_ROUTE}",
            json={"kind": KIND, "period_start": day.isoformat(), "max_seconds": max_seconds},
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        body = await response.json(content_type=None)
    elapsed = time.monotonic() - started
    if response.status != 200:
        return InlineOutcome(response.status, 0, 0, 0, 0.0, False, elapsed, str(body)[:300])
    return InlineOutcome(
        status=200,
        reports=int(body["reports"]),
        emails_sent=int(body["emails_sent"]),
        emails_failed=int(body["emails_failed"]),
        seconds=float(body["seconds"]),
        finished=bool(body["finished"]),
        request_seconds=elapsed,
    )


# ---------------------------------------------------------------------------------------------
# reporting


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:.{digits}f}"


def phase_key(phase: str, repetition: int) -> str:
    return f"{phase}{repetition}"


def median_of(values: Sequence[float | None]) -> float:
    """The median of the values that were measured (NaN when none was)."""
    measured = [v for v in values if v is not None and v == v]
    return statistics.median(measured) if measured else math.nan


def _spread(values: Sequence[float | None], digits: int = 1) -> str:
    """``median (each, each …)`` for a table cell."""
    median = _num(median_of(values), digits)
    if len(values) < 2:
        return median
    return f"{median} ({', '.join(_num(v, digits) for v in values)})"


def phase_ratios(
    phases: dict[str, PhaseResult], repetitions: int
) -> dict[tuple[str, str], dict[str, list[float]]]:
    """Per phase pair and percentile, one latency ratio per repetition that ran both phases."""
    ratios: dict[tuple[str, str], dict[str, list[float]]] = {}
    for x, y in PHASE_PAIRS:
        for repetition in range(1, repetitions + 1):
            px = phases.get(phase_key(x, repetition))
            py = phases.get(phase_key(y, repetition))
            if px is None or py is None:
                continue
            entry = ratios.setdefault((x, y), {"p50": [], "p95": [], "p99": []})
            entry["p50"].append(px.latency.p50_ms / py.latency.p50_ms)
            entry["p95"].append(px.latency.p95_ms / py.latency.p95_ms)
            entry["p99"].append(px.latency.p99_ms / py.latency.p99_ms)
    return ratios


def _outcomes(run: RunResult) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    for stats in run.tasks.values():
        outcomes.update(stats.outcomes)
    return outcomes


def runs_table(runs: Sequence[RunResult]) -> str:
    lines = [
        "| run | workers x threads | traders | batches | reports | wall s | reports/s "
        "| reports/s per process | e-mails sent / expected (SMTP got) | all e-mails sent at s "
        "| e-mails/s | worker peak RSS MiB | failed / retried tasks |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for r in runs:
        outcomes = _outcomes(r)
        rss = " / ".join(_num(m, 0) for m in r.worker_peak_rss_mib)
        lines.append(
            f"| {r.label} | {r.processes} x {r.threads} | {r.users} | {r.batches} | {r.reports} "
            f"| {_num(r.wall_s)} | {_num(r.reports_per_s)} | {_num(r.reports_per_s_per_process)} "
            f"| {r.emails_sent} / {r.emails_expected} ({r.smtp_received}) "
            f"| {_num(r.emails_done_s)} | {_num(r.emails_per_s)} | {rss} "
            f"| {outcomes['failed']} / {outcomes['retried']} |"
        )
    return "\n".join(lines)


def runs_summary_table(runs: Sequence[RunResult]) -> str:
    """Medians per worker count (and each run's value in brackets)."""
    lines = [
        "| workers x threads | runs | wall s | reports/s per process | e-mails/s "
        "| worker peak RSS MiB (max) | failed / retried tasks |",
        "|---|---:|---|---|---|---:|---|",
    ]
    groups: dict[tuple[bool, int, int], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.under_api_load, r.processes, r.threads), []).append(r)
    for (under_load, processes, threads), group in sorted(groups.items()):
        outcomes: Counter[str] = Counter()
        for r in group:
            outcomes.update(_outcomes(r))
        peak = max((m for r in group for m in r.worker_peak_rss_mib if m is not None), default=None)
        lines.append(
            f"| {processes} x {threads}{', API under load' if under_load else ''} | {len(group)} "
            f"| {_spread([r.wall_s for r in group])} "
            f"| {_spread([r.reports_per_s_per_process for r in group])} "
            f"| {_spread([r.emails_per_s for r in group])} | {_num(peak, 0)} "
            f"| {outcomes['failed']} / {outcomes['retried']} |"
        )
    return "\n".join(lines)


def cpu_table(runs: Sequence[RunResult]) -> str:
    parts = ("workers", "postgres", "pgbouncer", "redis", "smtp", "api", "bench", "machine")
    waits = ("workers_wait", "api_wait")
    lines = [
        "| run | "
        + " | ".join(f"{p} (of {os.cpu_count()})" if p == "machine" else p for p in parts)
        + " | workers waited for a CPU (s/s) | API waited (s/s) | load avg (1m) before → after |",
        "|---|" + "---:|" * (len(parts) + len(waits)) + "---|",
    ]
    for r in runs:
        cells = " | ".join(f"{r.cpu_cores.get(p, 0.0):.2f}" for p in (*parts, *waits))
        lines.append(
            f"| {r.label} | {cells} | {r.loadavg_before[0]:.2f} → {r.loadavg_after[0]:.2f} |"
        )
    return "\n".join(lines)


def tasks_table(runs: Sequence[RunResult]) -> str:
    lines = ["| run | task | executions | mean ms | outcomes |", "|---|---|---:|---:|---|"]
    for r in runs:
        for task, stats in sorted(r.tasks.items()):
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(stats.outcomes.items()))
            lines.append(
                f"| {r.label} | {task} | {stats.runs} | {_num(stats.mean_ms)} | {outcomes} |"
            )
    return "\n".join(lines)


def api_table(
    phases: dict[str, PhaseResult], notes: dict[str, str], cpu_wait: dict[str, float]
) -> str:
    lines = [
        "| phase | req/s | p50 ms | p95 ms | p99 ms | max ms | requests | errors "
        "| API CPU (cores) | API waited for a CPU (s/s) | machine busy (cores) "
        "| during the window |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, p in phases.items():
        lines.append(
            f"| {p.target} | {p.rps:.0f} | {_num(p.latency.p50_ms)} | {_num(p.latency.p95_ms)} "
            f"| {_num(p.latency.p99_ms)} | {_num(p.latency.max_ms)} | {p.requests} "
            f"| {p.error_count} | {p.target_cpu_pct / 100:.2f} | {_num(cpu_wait.get(key), 2)} "
            f"| {p.system_cpu_pct * (os.cpu_count() or 1) / 100:.2f} | {notes.get(key, '')} |"
        )
    return "\n".join(lines)


def api_summary_table(
    phases: dict[str, PhaseResult], cpu_wait: dict[str, float], repetitions: int
) -> str:
    """Per phase, the median of each repetition's percentiles (and each value in brackets)."""
    lines = [
        "| phase | repetitions | p50 ms | p95 ms | p99 ms | errors (all repetitions) "
        "| API waited for a CPU (s/s) |",
        "|---|---:|---|---|---|---:|---|",
    ]
    for phase, name in PHASES.items():
        keys = [phase_key(phase, r) for r in range(1, repetitions + 1)]
        found = [phases[k] for k in keys if k in phases]
        if not found:
            continue
        lines.append(
            f"| {name} | {len(found)} | {_spread([p.latency.p50_ms for p in found])} "
            f"| {_spread([p.latency.p95_ms for p in found])} "
            f"| {_spread([p.latency.p99_ms for p in found])} "
            f"| {sum(p.error_count for p in found)} "
            f"| {_spread([cpu_wait.get(k) for k in keys if k in phases], 2)} |"
        )
    return "\n".join(lines)


def ratio_lines(results: Results, repetitions: int) -> list[str]:
    """Phase against phase, 2 workers against 1, and the inline path against the workers."""
    lines: list[str] = []
    for (x, y), by_percentile in phase_ratios(results.phases, repetitions).items():
        cells = ", ".join(f"{q} {_spread(v, 2)}x" for q, v in by_percentile.items())
        lines.append(f"- {PHASES[x]} over {PHASES[y]}: {cells}")
    plain = [r for r in results.runs if not r.under_api_load]
    one = [r for r in plain if r.processes == 1]
    two = [r for r in plain if r.processes == 2]
    if one and two:
        wall = median_of([r.wall_s for r in two]) / median_of([r.wall_s for r in one])
        rate = median_of([r.reports_per_s for r in two]) / median_of([r.reports_per_s for r in one])
        lines.append(
            f"- 2 workers over 1 (medians): wall time {wall:.2f}x, reports/s {rate:.2f}x, "
            f"reports/s per process {rate / 2:.2f}x"
        )
    inline = [o for o in results.inline if o.reports]
    loaded = [r for r in results.runs if r.under_api_load]
    if inline:
        inline_rate = median_of([o.reports_per_s for o in inline])
        parts = [f"inline path (phase c) {inline_rate:.1f}"]
        for name, group in (("2 workers alone", two), ("2 workers during phase b", loaded)):
            if group:
                rate = median_of([r.reports_per_s for r in group])
                parts.append(f"{name} {rate:.1f} ({rate / inline_rate:.1f}x)")
        lines.append(f"- reports/s (medians): {', '.join(parts)}")
    return lines


# ---------------------------------------------------------------------------------------------
# the command


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.jobs_load",
        description="Benchmark the daily report run on Celery workers and its effect on the API, "
        "against the analysis's current state (reports inside a request).",
    )
    parser.add_argument("--users", type=int, default=5000, help="traders seeded (default 5000)")
    parser.add_argument(
        "--trades", type=int, default=50, help="closed trades per trader yesterday (default 50)"
    )
    parser.add_argument(
        "--optin", type=float, default=0.3, help="share opted in to report e-mails (default 0.3)"
    )
    parser.add_argument(
        "--workers",
        default="1,2",
        help="worker process counts of the daily runs, run in this order (default 1,2)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="ALGOEDGE_WORKER_CONCURRENCY: threads per worker (default 4)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="repetitions of the daily runs (interleaved: 1,2,1,2) and of the API phases "
        "(a,b,c,a,b,c); medians are reported (default 2)",
    )
    parser.add_argument(
        "--load-users",
        type=int,
        default=300,
        help="concurrent API users in the API phases (default 300)",
    )
    parser.add_argument(
        "--phase-seconds",
        type=float,
        default=30.0,
        help="measured seconds per API phase; also bounds the inline run (default 30)",
    )
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="unmeasured load before each window (default 5)"
    )
    parser.add_argument(
        "--think", type=float, default=1.0, help="mean think time of an API user (default 1 s)"
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="start the workers with this nice value (0-19), so the API (nice 0) gets the CPU "
        "first on a shared machine, as CPU requests would give it in a cluster (default 0)",
    )
    parser.add_argument(
        "--inline-per-query-connections",
        action="store_true",
        help="phase c on bench/baseline_app.py's per-query connections instead of the real pool",
    )
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=600.0,
        help="give up waiting for one daily run after this long (default 600 s)",
    )
    parser.add_argument("--skip-api", action="store_true", help="only the daily runs")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=1800.0,
        help="hard cap on the whole run after the services are up (default 1800)",
    )
    parser.add_argument("--json", type=Path, help="also write every result to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, data)")
    args = parser.parse_args(argv)
    try:
        args.worker_counts = [int(n) for n in args.workers.split(",") if n.strip()]
    except ValueError:
        parser.error("--workers: comma-separated process counts, like 1,2")
    if not args.worker_counts or min(args.worker_counts) < 1:
        parser.error("--workers: at least one positive process count")
    if args.users < 1 or args.trades < 0 or not 0 <= args.optin <= 1:
        parser.error("--users must be positive, --trades not negative, --optin within [0, 1]")
    if args.load_users < 1 or args.phase_seconds <= 0 or args.think <= 0 or args.repeat < 1:
        parser.error("--load-users, --phase-seconds, --think and --repeat must be positive")
    if not 0 <= args.worker_nice <= 19:
        parser.error("--worker-nice must be within 0-19")
    if args.load_users > args.users:
        parser.error("--load-users cannot exceed --users (the API users are seeded traders)")
    return args


@dataclass
class Results:
    seed: dict[str, Any] = field(default_factory=dict)
    runs: list[RunResult] = field(default_factory=list)
    #: By phase key (a1, b1, c1, a2 …), in the order they ran.
    phases: dict[str, PhaseResult] = field(default_factory=dict)
    inline: list[InlineOutcome] = field(default_factory=list)
    #: The inline runs as the database and the SMTP server saw them.
    inline_db: list[dict[str, int]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    #: By phase key: seconds the API process waited for a CPU per second of the window.
    api_cpu_wait: dict[str, float] = field(default_factory=dict)


async def flush_redis(url: str) -> None:
    """Only while no worker runs: Celery keeps its queue bindings in Redis."""
    redis = Redis.from_url(url)
    try:
        await redis.flushall()
    finally:
        await redis.aclose()


@dataclass
class Bench:
    """What every part of one benchmark invocation shares."""

    args: argparse.Namespace
    root: Path
    services: Services
    results: Results
    db: Database
    queue: JobQueue
    seed: Seed
    api_env: dict[str, str]
    worker_env: dict[str, str]

    @property
    def shape(self) -> LoadShape:
        return LoadShape(
            users=self.args.load_users,
            duration=self.args.phase_seconds,
            warmup=self.args.warmup,
            think=self.args.think,
        )

    async def daily_run_on(self, count: int, repetition: int) -> None:
        """One daily run on ``count`` fresh workers, from empty report tables."""
        await reset_runs(self.db)
        await flush_redis(self.services.stack.redis.url)
        label = f"{count} worker{'s' if count > 1 else ''} #{repetition}"
        print(f"{label}: starting {count} x {self.args.concurrency} threads …", flush=True)
        workers = start_workers(
            count,
            env=self.worker_env,
            root=self.root,
            label=f"run{count}-{repetition}",
            nice=self.args.worker_nice,
        )
        try:
            run = await daily_run(
                self.db,
                self.queue,
                self.services,
                workers,
                label=label,
                repetition=repetition,
                seed=self.seed,
                threads=self.args.concurrency,
                give_up_after=self.args.run_timeout,
            )
        finally:
            stop_target(workers)
        run.server_errors = server_errors(workers)
        self.results.runs.append(run)
        print(
            f"{label}: {run.reports} reports in {_num(run.wall_s)} s "
            f"({_num(run.reports_per_s_per_process)}/s per process), "
            f"{run.emails_sent} e-mails by {_num(run.emails_done_s)} s",
            flush=True,
        )

    async def api_phases(self, repetition: int) -> None:
        """(a) and (b) on one set of two workers, then (c) with no workers at all."""
        redis_url = self.services.stack.redis.url
        await reset_runs(self.db)
        await flush_redis(redis_url)
        print(f"API phases #{repetition}: starting 2 workers …", flush=True)
        workers = start_workers(
            2,
            env=self.worker_env,
            root=self.root,
            label=f"api-{repetition}",
            nice=self.args.worker_nice,
        )
        run: RunResult | None = None
        try:
            print(f"{PHASES['a']} #{repetition}: starting algoedge api …", flush=True)
            api = start_target(
                "api", count=1, env=self.api_env, root=_folder(self.root, f"a{repetition}")
            )
            await measured_phase(
                "a",
                repetition,
                api,
                self.seed.seeded,
                self.results,
                shape=self.shape,
                redis_url=self.services.stack.redis.url,
            )
            self.results.notes[phase_key("a", repetition)] = "2 workers started, idle"

            print(f"{PHASES['b']} #{repetition}: starting algoedge api …", flush=True)
            api = start_target(
                "api", count=1, env=self.api_env, root=_folder(self.root, f"b{repetition}")
            )

            async def run_on_workers() -> RunResult:
                return await daily_run(
                    self.db,
                    self.queue,
                    self.services,
                    workers,
                    label=f"2 workers, under API load #{repetition}",
                    repetition=repetition,
                    seed=self.seed,
                    threads=self.args.concurrency,
                    give_up_after=self.args.run_timeout,
                    api=api,
                )

            run = await measured_phase(
                "b",
                repetition,
                api,
                self.seed.seeded,
                self.results,
                shape=self.shape,
                redis_url=self.services.stack.redis.url,
                during=run_on_workers,
            )
        finally:
            stop_target(workers)
        if run is not None:
            run.server_errors = server_errors(workers)
            self.results.runs.append(run)
            window = self.shape.duration
            covered = min(run.wall_s or window, window)
            self.results.notes[phase_key("b", repetition)] = (
                f"daily run sent at the window's start: reports done at {_num(run.wall_s)} s "
                f"(so {covered:.0f} of the {window:.0f} s window), e-mails at "
                f"{_num(run.emails_done_s)} s"
            )
        await self.inline_phase(repetition)

    async def inline_phase(self, repetition: int) -> None:
        """(c): the API with the inline report route, the run started at the window's start."""
        await reset_runs(self.db)
        await flush_redis(self.services.stack.redis.url)
        print(f"{PHASES['c']} #{repetition}: starting the API with the inline route …", flush=True)
        env = {
            **self.api_env,
            "ALGOEDGE_SMTP_URL": self.services.mail.url,
            "ALGOEDGE_MAIL_FROM": MAIL_FROM,
        }
        per_query = bool(self.args.inline_per_query_connections)
        if per_query:
            env["ALGOEDGE_DATABASE_URL"] = self.services.stack.postgres.url
        api = start_inline_api(
            env, root=_folder(self.root, f"c{repetition}"), per_query_connections=per_query
        )
        smtp_before = self.services.mail.received()

        async def run_inline() -> InlineOutcome:
            return await post_inline_run(
                api.bases[0],
                token=self.api_env["ALGOEDGE_INTERNAL_TOKEN"],
                day=self.seed.day,
                max_seconds=self.shape.duration,
            )

        inline = await measured_phase(
            "c",
            repetition,
            api,
            self.seed.seeded,
            self.results,
            shape=self.shape,
            redis_url=self.services.stack.redis.url,
            during=run_inline,
        )
        progress = await run_progress(self.db, self.seed.day)
        self.results.inline_db.append(
            {
                "reports_ready": progress.reports,
                "emails_sent": progress.sent,
                "smtp_received": self.services.mail.received() - smtp_before,
            }
        )
        if inline is not None:
            self.results.inline.append(inline)
            self.results.notes[phase_key("c", repetition)] = (
                f"one request generating reports inline from the window's start: "
                f"{inline.reports} reports, {inline.emails_sent} e-mails in {inline.seconds:.1f} s "
                f"({'all done' if inline.finished else 'stopped at the window end'}; "
                f"HTTP {inline.status}, answered after {inline.request_seconds:.1f} s)"
            )


def _folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(exist_ok=True)
    return folder


async def benchmark(
    args: argparse.Namespace, root: Path, services: Services, results: Results
) -> None:
    stack = services.stack
    api_env = {
        **api_environment(stack.bouncer.url, stack.redis.url),
        **BENCH_LIMITS,
        "ALGOEDGE_LOG_LEVEL": "INFO",
    }
    worker_env = {
        "ALGOEDGE_DATABASE_URL": stack.bouncer.url,
        "ALGOEDGE_REDIS_URL": stack.redis.url,
        "ALGOEDGE_SMTP_URL": services.mail.url,
        "ALGOEDGE_MAIL_FROM": MAIL_FROM,
        "ALGOEDGE_WORKER_CONCURRENCY": str(args.concurrency),
        "ALGOEDGE_LOG_LEVEL": "INFO",
    }
    await migrated(load_settings(MigrateSettings, {"ALGOEDGE_DATABASE_URL": stack.bouncer.url}))
    day = (datetime.now(UTC) - timedelta(days=1)).date()
    print(
        f"seeding {args.users} traders x {args.trades} closed trades on {day}, "
        f"{args.optin:.0%} opted in to e-mails …",
        flush=True,
    )
    seed = await asyncio.to_thread(
        seed_traders,
        stack.postgres.url,
        users=args.users,
        trades_per_user=args.trades,
        optin=args.optin,
        day=day,
    )
    print(
        f"seeded {seed.trades} trades in {seed.seconds:.1f} s; {seed.opted_in} traders opted in",
        flush=True,
    )
    results.seed = {
        "traders": args.users,
        "trades": seed.trades,
        "opted_in": seed.opted_in,
        "day": day.isoformat(),
        "seconds": round(seed.seconds, 1),
    }
    # The benchmark's own queries go straight to Postgres, not through the workers' pgBouncer.
    db = await Database.connect(
        load_settings(
            MigrateSettings,
            {
                "ALGOEDGE_DATABASE_URL": stack.postgres.url,
                "ALGOEDGE_DB_POOL_MIN": "0",
                "ALGOEDGE_DB_POOL_MAX": "2",
            },
        )
    )
    queue = JobQueue.from_settings(load_settings(ServiceSettings, worker_env))
    bench = Bench(
        args=args,
        root=root,
        services=services,
        results=results,
        db=db,
        queue=queue,
        seed=seed,
        api_env=api_env,
        worker_env=worker_env,
    )
    try:
        for repetition in range(1, args.repeat + 1):
            for count in args.worker_counts:
                await bench.daily_run_on(count, repetition)
        if not args.skip_api:
            for repetition in range(1, args.repeat + 1):
                await bench.api_phases(repetition)
    finally:
        await asyncio.to_thread(queue.close)
        await db.close()


def report(results: Results, header: list[str], repetitions: int) -> str:
    out = [*header, ""]
    if results.runs:
        out += [
            "Daily runs, medians (each run in brackets):",
            "",
            runs_summary_table(results.runs),
            "",
            "Each run:",
            "",
            runs_table(results.runs),
            "",
            "CPU during each run (cores, from the fan-out until the last e-mail was sent):",
            "",
            cpu_table(results.runs),
            "",
            "Tasks (from the workers' own metrics):",
            "",
            tasks_table(results.runs),
        ]
        for run in results.runs:
            for line in run.server_errors[:5]:
                out.append(f"- {run.label}: worker log: {line[:300]}")
    phases = list(results.phases.values())
    if phases:
        out += [
            "",
            "API phases (one API process, realistic mix), medians (each repetition in brackets):",
            "",
            api_summary_table(results.phases, results.api_cpu_wait, repetitions),
            "",
            "Each phase:",
            "",
            api_table(results.phases, results.notes, results.api_cpu_wait),
            "",
            results_table(phases),
            "",
            "Per route:",
            "",
            routes_table(phases),
        ]
        for phase in phases:
            for kind, n in phase.errors.items():
                out.append(f"- {phase.target}: error {kind}: {n}")
            for line in phase.server_errors[:5]:
                out.append(f"- {phase.target}: server log: {line[:300]}")
            if len(phase.server_errors) > 5:
                out.append(f"- {phase.target}: … {len(phase.server_errors) - 5} more ERROR lines")
        for n, seen in enumerate(results.inline_db, start=1):
            out.append(f"- inline run #{n}, as the database and the SMTP server saw it: {seen}")
    lines = ratio_lines(results, repetitions)
    if lines:
        out += ["", "Ratios:", "", *lines]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    soft, hard = raise_file_limit()
    facts = machine_facts()
    root = Path(tempfile.mkdtemp(prefix="algoedge-jobs-bench-"))
    root.chmod(0o755)  # postgres and pgbouncer run as the postgres user when we are root
    stack: Stack | None = None
    mail: MailServer | None = None
    started = datetime.now(UTC)
    results = Results()
    try:
        stack = start_stack(root)
        mail = MailServer(folder=root / "mail").start()
        services = Services(stack=stack, mail=mail)
        max_connections = stack.postgres.psql("SHOW max_connections")
        redis_maxclients = asyncio.run(redis_setting(stack.redis.url, "maxclients"))
        header = [
            f"AlgoEdge jobs benchmark, {started:%Y-%m-%d %H:%M} UTC: {args.users} traders x "
            f"{args.trades} closed trades yesterday, {args.optin:.0%} opted in to e-mails; "
            f"daily runs on {', '.join(map(str, args.worker_counts))} worker process(es) x "
            f"{args.concurrency} threads (nice {args.worker_nice}), {args.repeat} time(s) each; "
            "API phases "
            f"{args.load_users} users, {args.phase_seconds:.0f} s measured after "
            f"{args.warmup:.0f} s warm-up, think {args.think} s.",
            f"Machine: {facts['nproc']} CPUs shared by the benchmark, workers, API, PostgreSQL, "
            f"pgBouncer, Redis and the SMTP server; {facts['memory_gib']} GiB; Python "
            f"{facts['python']}; RLIMIT_NOFILE {soft}/{hard}; Postgres max_connections "
            f"{max_connections}; Redis maxclients {redis_maxclients}.",
        ]
        print(f"services up in {root}", flush=True)
        asyncio.run(
            asyncio.wait_for(benchmark(args, root, services, results), timeout=args.max_seconds)
        )
        text = report(results, header, args.repeat)
        print("\n" + text, flush=True)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "started": started.isoformat(),
                        "finished": datetime.now(UTC).isoformat(),
                        "machine": facts,
                        "arguments": {k: v for k, v in vars(args).items() if k != "json"},
                        "seed": results.seed,
                        "runs": [
                            {
                                **asdict(r),
                                "reports_per_s": r.reports_per_s,
                                "reports_per_s_per_process": r.reports_per_s_per_process,
                                "emails_per_s": r.emails_per_s,
                            }
                            for r in results.runs
                        ],
                        "phases": {k: asdict(p) for k, p in results.phases.items()},
                        "inline": [asdict(o) for o in results.inline],
                        "inline_db": results.inline_db,
                        "notes": results.notes,
                        "api_cpu_wait": results.api_cpu_wait,
                    },
                    indent=2,
                    default=str,
                )
            )
        return 0
    finally:
        if mail is not None:
            mail.stop()
        if stack is not None:
            stack.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
