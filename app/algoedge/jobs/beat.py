"""`algoedge beat`: Celery beat with a scheduler that claims each report run in Postgres before sending it.

Daily runs are due at ``ALGOEDGE_REPORT_DAILY_AT`` (UTC) for the previous UTC day, weekly runs
on Mondays at the same time for the previous ISO week. A run is a row in ``report_runs``; the
beat that inserts it sends the one fan-out task, so two beats (a rollout overlapping the old
pod) schedule each period once. A beat that was down catches up on missed periods (at most a
week of dailies, four weeklies); one whose send failed leaves the row unenqueued and the
sweeper sends it. The schedule itself lives nowhere on disk: the pod needs no volume.
"""

from __future__ import annotations

import logging
import signal
import time
from datetime import UTC, date, datetime, timedelta
from types import FrameType
from typing import Any

from celery import Celery
from celery.beat import Scheduler, Service
from kombu.exceptions import KombuError
from prometheus_client import start_http_server
from redis.asyncio import Redis
from redis.exceptions import RedisError

from algoedge.config import BeatSettings
from algoedge.db import jobs as store
from algoedge.jobs import backlog, heartbeat, names
from algoedge.jobs.celery_app import create_celery
from algoedge.jobs.metrics import REPORT_RUN_LAG, RUNS_SCHEDULED
from algoedge.jobs.runtime import Runtime
from algoedge.jobs.tasks import TRANSIENT
from algoedge.reporting import KINDS, ReportKind, due_at, due_periods, period_bounds

log = logging.getLogger(__name__)

#: The longest the beat sleeps, so the heartbeat and report checks run at least this often.
TICK_SECONDS = 30.0
SWEEP_SECONDS = 60.0
#: Expired sessions are deleted this often (each login adds a row to ``sessions``).
PRUNE_SESSIONS_SECONDS = 600.0
LOOKBACK: dict[ReportKind, int] = {"daily": 7, "weekly": 4}


class ReportRuns:
    """The report-run half of the beat, independent of Celery's scheduler for testing."""

    def __init__(self, app: Celery, runtime: Runtime, settings: BeatSettings) -> None:
        self.app = app
        self.runtime = runtime
        self.settings = settings

    def schedule_due(self, now: datetime) -> list[tuple[ReportKind, date]]:
        """Claim and send every due, unscheduled run; returns the runs this beat sent."""
        sent: list[tuple[ReportKind, date]] = []
        for kind in KINDS:
            last = self.runtime.query(store.last_scheduled_period, kind)
            for period in due_periods(
                kind,
                now=now,
                daily_at=self.settings.report_daily_at,
                last_scheduled=last,
                lookback=LOOKBACK[kind],
            ):
                start, _ = period_bounds(kind, period)
                scheduled = due_at(kind, period, daily_at=self.settings.report_daily_at)
                claimed = self.runtime.query(
                    store.claim_run, kind=kind, period_start=start, scheduled_at=scheduled
                )
                if not claimed:
                    continue  # another beat has it
                try:
                    self.app.send_task(names.REPORT_FAN_OUT, args=[kind, period.isoformat()])
                except (KombuError, RedisError, OSError) as exc:
                    log.warning(
                        "%s run %s claimed but not sent (%r); will resend", kind, period, exc
                    )
                    continue
                self.runtime.query(store.mark_run_enqueued, kind=kind, period_start=start)
                RUNS_SCHEDULED.labels(kind=kind).inc()
                log.info("scheduled the %s report run for %s", kind, period)
                sent.append((kind, period))
        return sent

    def update_lag(self, now: datetime) -> None:
        for kind in KINDS:
            last = self.runtime.query(store.last_completed_run, kind)
            if last is not None:
                REPORT_RUN_LAG.labels(kind=kind).set((now - last).total_seconds())


class QueueMetrics:
    """Samples every queue's backlog and oldest task age for /metrics (docs/monitoring.md)."""

    def __init__(self, runtime: Runtime, queues: tuple[str, ...]) -> None:
        self.runtime = runtime
        self.sampler = backlog.QueueSampler(queues)

    def update(self) -> None:
        async def work(_db: object, redis: Redis) -> list[backlog.QueueSample]:
            return await self.sampler.sample(redis, now=time.monotonic())

        backlog.publish(self.runtime.call(work))


def scheduler_class(
    report_runs: ReportRuns, heartbeat_file: str, queue_metrics: QueueMetrics | None = None
) -> type[Scheduler]:
    class ReportScheduler(Scheduler):  # type: ignore[misc]
        """Celery's in-memory scheduler (the sweeper entry) plus the report runs and the heartbeat."""

        def tick(self, *args: Any, **kwargs: Any) -> float:
            now = datetime.now(UTC)
            try:
                report_runs.schedule_due(now)
                report_runs.update_lag(now)
            except TRANSIENT as exc:
                log.warning("report runs not checked (%r); next tick retries", exc)
            if queue_metrics is not None:
                try:
                    queue_metrics.update()
                except TRANSIENT as exc:
                    log.warning("queue backlog not sampled (%r); next tick retries", exc)
            heartbeat.touch(heartbeat_file)
            return float(min(super().tick(*args, **kwargs), TICK_SECONDS))

    return ReportScheduler


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def beat_schedule() -> dict[str, dict[str, Any]]:
    """Celery's in-memory schedule: the tasks sent at a fixed interval (report runs are not;
    the scheduler claims them in Postgres)."""
    return {
        "sweep": {"task": names.SWEEP, "schedule": timedelta(seconds=SWEEP_SECONDS)},
        "prune-sessions": {
            "task": names.PRUNE_SESSIONS,
            "schedule": timedelta(seconds=PRUNE_SESSIONS_SECONDS),
        },
    }


def run(settings: BeatSettings) -> int:
    app = create_celery(settings)
    app.conf.beat_schedule = beat_schedule()
    runtime = Runtime(settings, pool_max=2)
    report_runs = ReportRuns(app, runtime, settings)
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    signal.signal(signal.SIGTERM, _stop)
    log.info(
        "beat: daily reports at %s UTC, weekly on Mondays; metrics on :%d",
        settings.report_daily_at.strftime("%H:%M"),
        settings.metrics_port,
    )
    service = Service(
        app,
        max_interval=TICK_SECONDS,
        scheduler_cls=scheduler_class(
            report_runs, settings.heartbeat_file, QueueMetrics(runtime, settings.worker_queues)
        ),
    )
    try:
        service.start()
    finally:
        heartbeat.remove(settings.heartbeat_file)
        runtime.close()
    return 0
