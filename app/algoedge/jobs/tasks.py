"""The tasks: report generation (requested and scheduled), e-mail delivery, the sweeper and the
session pruner.

Each task body is thin: validate the payload, call the data layer through the process's
:class:`~algoedge.jobs.runtime.Runtime`, publish socket events after the effect is committed.
Payloads that can never succeed (a deleted user, an unknown kind, a malformed argument) fail
permanently with a logged reason; transient errors (Postgres, Redis, SMTP 4xx) retry with
exponential backoff and jitter, at most ``MAX_RETRIES`` times, never past a third of the
visibility timeout per delay.
"""

from __future__ import annotations

import logging
import random
import time as clock
from collections.abc import Callable
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Any, TypeVar

import psycopg2
from celery import Celery, Task
from celery.exceptions import Retry
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from algoedge.config import WorkerSettings
from algoedge.db import jobs as store
from algoedge.db import users
from algoedge.events import publish_event
from algoedge.jobs import mail, names
from algoedge.jobs.metrics import EMAILS, TASKS
from algoedge.jobs.runtime import Runtime
from algoedge.reporting import KINDS, PeriodError, ReportKind, build_report, period_bounds

log = logging.getLogger(__name__)

MAX_RETRIES = 8
#: Users per scheduled-report batch task.
BATCH_SIZE = 500
#: A redelivery of the same attempt beyond this many is a poison message (it keeps killing workers).
MAX_DELIVERIES = 5
#: Expired sessions deleted per statement by the pruner.
PRUNE_BATCH = 5000

T = TypeVar("T")

#: Errors a later attempt may not meet (a server restarting, a network blip, a full pool).
TRANSIENT = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    RedisError,
    KombuError,
    OSError,
    TimeoutError,
)


class PermanentFailure(Exception):
    """The task can never succeed with this payload; recorded, logged and not retried."""


def _backoff(retries: int, *, cap: float) -> float:
    """Exponential (2, 4, 8 … s) with full jitter in its upper half, capped."""
    return min(cap, 2.0 ** (retries + 1)) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter


def _positive_id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PermanentFailure(f"{what} must be a positive integer")
    return value


def _kind(value: object) -> ReportKind:
    if value not in KINDS:
        raise PermanentFailure(f"unknown report kind {str(value)[:20]!r}")
    return value


def _period(kind: ReportKind, value: object) -> tuple[date, datetime, datetime]:
    try:
        start_date = date.fromisoformat(str(value))
        start, end = period_bounds(kind, start_date)
    except (ValueError, PeriodError) as exc:
        raise PermanentFailure(f"bad period_start: {exc}") from None
    return start_date, start, end


class Jobs:
    """The task implementations of one worker process (its settings, runtime and Celery app)."""

    def __init__(self, app: Celery, runtime: Runtime, settings: WorkerSettings) -> None:
        self.app = app
        self.runtime = runtime
        self.settings = settings

    # --- plumbing -------------------------------------------------------------------------

    def send(self, task: str, *args: object) -> None:
        self.app.send_task(task, args=list(args))

    def guard(self, task: Task, body: Callable[[], T]) -> T | None:
        """Run ``body`` with the poison guard, retry policy and permanent-failure handling."""
        request = task.request
        key = f"algoedge:jobs:deliveries:{request.id}:{request.retries}"

        async def count(_db: Any, redis: Any) -> int:
            deliveries = int(await redis.incr(key))
            await redis.expire(key, self.settings.jobs_visibility_timeout * 4)
            return deliveries

        try:
            deliveries = self.runtime.call(count)
        except TRANSIENT:
            deliveries = 1  # Redis is down: the broker is too, so this delivery is not a loop
        if deliveries > MAX_DELIVERIES:
            TASKS.labels(task=task.name, outcome="rejected").inc()
            log.error(
                "task %s[%s] was delivered %d times without finishing (it may crash its worker); "
                "dropped",
                task.name,
                request.id,
                deliveries,
            )
            raise PermanentFailure(f"delivered {deliveries} times without finishing")
        try:
            return body()
        except PermanentFailure as exc:
            log.warning("task %s[%s] failed permanently: %s", task.name, request.id, exc)
            raise
        except TRANSIENT as exc:
            if request.retries >= MAX_RETRIES:
                log.error(
                    "task %s[%s] gave up after %d retries: %r",
                    task.name,
                    request.id,
                    MAX_RETRIES,
                    exc,
                )
                raise PermanentFailure(
                    f"gave up after {MAX_RETRIES} retries: {type(exc).__name__}"
                ) from exc
            delay = _backoff(request.retries, cap=self.settings.max_retry_delay)
            log.warning(
                "task %s[%s] hit %s; retry %d in %.1fs",
                task.name,
                request.id,
                type(exc).__name__,
                request.retries + 1,
                delay,
            )
            raise task.retry(countdown=delay, max_retries=MAX_RETRIES) from exc

    # --- reports --------------------------------------------------------------------------

    def generate_report(self, report_id: object) -> str:
        job = self.runtime.query(store.report_job, _positive_id(report_id, "report id"))
        if job is None:
            raise PermanentFailure(f"report {report_id} does not exist (its user was deleted?)")
        return self._generate(job)

    def _generate(self, job: store.ReportJob) -> str:
        if job.status == "ready":
            return "already ready"
        if job.kind not in KINDS:
            reason = f"unknown report kind {job.kind!r}"
            self.runtime.query(store.fail_report, job.id, reason)
            raise PermanentFailure(reason)
        label = job.period_start.astimezone(UTC).date().isoformat()

        async def compute_and_store(db: Any, _redis: Any) -> store.ReportDone | None:
            trades = await store.closed_trades(
                db, user_id=job.user_id, start=job.period_start, end=job.period_end
            )
            return await store.complete_report(db, job, build_report(trades), period_label=label)

        done = self.runtime.call(compute_and_store)
        if done is None:
            return "already ready"
        self._announce(job, done, label)
        return "ready"

    def _announce(self, job: store.ReportJob, done: store.ReportDone, label: str) -> None:
        """After the commit: socket events (best effort) and the e-mail task (swept if lost)."""

        async def publish(_db: Any, redis: Any) -> None:
            await publish_event(
                redis,
                job.user_id,
                "report.ready",
                {"id": job.id, "kind": job.kind, "period_start": label},
            )
            if done.notification is not None:
                await publish_event(redis, job.user_id, "notification", done.notification)

        try:
            self.runtime.call(publish)
        except TRANSIENT as exc:
            log.warning("report %d is ready but its socket events were lost (%r)", job.id, exc)
        if done.email_delivery_id is not None:
            delivery = done.email_delivery_id
            try:
                self.send(names.SEND_EMAIL, delivery)
            except (KombuError, RedisError, OSError) as exc:
                log.warning("report e-mail %d not enqueued (%r); the sweeper will", delivery, exc)
                return
            self.runtime.query(users.mark_email_enqueued, delivery)

    def fan_out(self, kind: object, period_start: object) -> int:
        """Page through traders and enqueue one batch task per ``BATCH_SIZE`` of them."""
        report_kind = _kind(kind)
        start_date, start, _ = _period(report_kind, period_start)
        after, users, batches = 0, 0, 0
        while True:
            page = self.runtime.query(store.traders_page, after_user_id=after, limit=BATCH_SIZE)
            if not page:
                break
            self.send(names.REPORT_BATCH, report_kind, start_date.isoformat(), page[0], page)
            after, users, batches = page[-1], users + len(page), batches + 1
        self.runtime.query(
            store.set_run_size, kind=report_kind, period_start=start, batches=batches, users=users
        )
        log.info(
            "%s report run for %s: %d users in %d batches", report_kind, start_date, users, batches
        )
        return batches

    def batch(self, kind: object, period_start: object, batch_key: object, user_ids: object) -> int:
        """Generate the reports of a batch of users; hand the rest on if the time budget runs out."""
        report_kind = _kind(kind)
        start_date, start, end = _period(report_kind, period_start)
        key = _positive_id(batch_key, "batch key")
        if not isinstance(user_ids, list) or len(user_ids) > BATCH_SIZE:
            raise PermanentFailure(f"user_ids must be a list of at most {BATCH_SIZE} ids")
        ids = [_positive_id(u, "user id") for u in user_ids]
        # Stay well inside the visibility timeout: a batch never runs long enough to be redelivered.
        deadline = clock.monotonic() + self.settings.task_time_limit / 2
        for index, user_id in enumerate(ids):
            if clock.monotonic() > deadline:
                rest = ids[index:]
                self.send(names.REPORT_BATCH, report_kind, start_date.isoformat(), key, rest)
                log.info("batch %d: %d users handed to a continuation", key, len(rest))
                return index
            job = self.runtime.query(
                store.pending_report,
                user_id=user_id,
                kind=report_kind,
                period_start=start,
                period_end=end,
            )
            if job is not None:  # None: the user was deleted since the fan-out
                self._generate(job)
        self.runtime.query(
            store.finish_batch, kind=report_kind, period_start=start, first_user_id=key
        )
        return len(ids)

    # --- e-mail ---------------------------------------------------------------------------

    def send_email(self, task: Task, delivery_id: object) -> str:
        delivery = _positive_id(delivery_id, "delivery id")
        lease = self.settings.smtp_timeout * 4 + 30
        claim = self.runtime.query(store.claim_email, delivery, lease_seconds=lease)
        if claim.state == "missing":
            raise PermanentFailure(f"e-mail delivery {delivery} does not exist")
        if claim.state == "done":
            return "already handled"
        if claim.state == "busy":
            # Another worker holds it (or died holding it): look again when its claim expires.
            # Not counted against MAX_RETRIES: the lease bounds the wait (a claim is never
            # extended), and the poison guard still bounds redeliveries.
            wait = min(claim.wait_seconds + 1, self.settings.max_retry_delay)
            raise task.retry(countdown=wait)
        job = claim.job
        assert job is not None
        try:
            message = self._build(job)
            if self.settings.smtp_url is None:
                raise mail.MailError("ALGOEDGE_SMTP_URL is not set", permanent=True)
            mail.send(
                self.settings.smtp_url,
                message,
                timeout=self.settings.smtp_timeout,
                # The window: if this process dies between the server's 250 and this UPDATE,
                # the row stays "sending" and the message goes out again once the claim
                # expires (docs/jobs.md measures how often a kill lands here).
                on_accepted=lambda: self.runtime.query(
                    store.mark_email_sent, delivery, message_id=str(message["Message-ID"])
                ),
            )
        except mail.MailError as exc:
            reason = str(exc)
            if exc.permanent or task.request.retries >= MAX_RETRIES:
                EMAILS.labels(outcome="failed").inc()
                self.runtime.query(store.fail_email, delivery, reason)
                raise PermanentFailure(f"e-mail {delivery}: {exc}") from None
            EMAILS.labels(outcome="deferred").inc()
            self.runtime.query(store.release_email, delivery, reason)
            delay = _backoff(task.request.retries, cap=self.settings.max_retry_delay)
            log.warning("e-mail %d deferred (%s); retry in %.1fs", delivery, exc, delay)
            raise task.retry(countdown=delay, max_retries=MAX_RETRIES) from None
        except PermanentFailure as exc:
            EMAILS.labels(outcome="failed").inc()
            permanent = str(exc)
            self.runtime.query(store.fail_email, delivery, permanent)
            raise
        EMAILS.labels(outcome="sent").inc()
        return "sent"

    def _build(self, job: store.EmailJob) -> EmailMessage:
        if job.to_email is None:
            raise PermanentFailure("its user was deleted")
        to = mail.Recipient(email=job.to_email, name=job.to_name or "")
        now = datetime.now(UTC)
        mail_from = self.settings.mail_from
        if job.kind == "welcome":
            return mail.welcome_message(mail_from=mail_from, to=to, delivery_key=job.key, now=now)
        if job.kind == "registration_attempt":
            return mail.registration_attempt_message(
                mail_from=mail_from, to=to, delivery_key=job.key, now=now
            )
        report = job.report
        if report is None or report.get("payload") is None:
            raise PermanentFailure("its report was deleted or never completed")
        return mail.report_message(
            mail_from=mail_from,
            to=to,
            delivery_key=job.key,
            kind=report["kind"],
            period_label=report["period_start"].astimezone(UTC).date().isoformat(),
            summary=report["payload"].get("summary", {}),
            now=now,
        )

    # --- the sweeper ----------------------------------------------------------------------

    def sweep(self) -> dict[str, int]:
        """Enqueue again what was recorded but never (or long ago) enqueued."""
        older = float(self.settings.jobs_visibility_timeout)
        reports, deliveries = self.runtime.query(store.stale_work, older_than=older, limit=1000)
        for report_id in reports:
            self.send(names.GENERATE_REPORT, report_id)
        for delivery_id in deliveries:
            self.send(names.SEND_EMAIL, delivery_id)
        runs = self.runtime.query(store.reclaim_unenqueued_runs, older_than=60.0)
        for kind, start in runs:
            self.send(names.REPORT_FAN_OUT, kind, start.astimezone(UTC).date().isoformat())
            self.runtime.query(store.mark_run_enqueued, kind=kind, period_start=start)
        if reports or deliveries or runs:
            log.info(
                "sweeper re-enqueued %d reports, %d e-mails, %d runs",
                len(reports),
                len(deliveries),
                len(runs),
            )
        return {"reports": len(reports), "emails": len(deliveries), "runs": len(runs)}

    # --- sessions -------------------------------------------------------------------------

    def prune_sessions(self) -> int:
        """Delete expired sessions, a batch at a time (short statements, no long locks)."""
        pruned = 0
        while True:
            batch = self.runtime.query(users.prune_sessions, limit=PRUNE_BATCH)
            pruned += batch
            if batch < PRUNE_BATCH:
                break
        if pruned:
            log.info("pruned %d expired sessions", pruned)
        return pruned


def register_tasks(app: Celery, jobs: Jobs) -> None:
    """Bind the task names of :mod:`algoedge.jobs.names` to ``jobs`` on ``app``."""
    # max_retries=None: each retry below names its own bound (MAX_RETRIES for errors; a busy
    # e-mail claim is bounded by its lease), so the task default must not cap them at 3.
    common: dict[str, Any] = {
        "bind": True,
        "throws": (PermanentFailure, Retry),
        "max_retries": None,
    }

    @app.task(name=names.GENERATE_REPORT, **common)  # type: ignore[untyped-decorator]
    def generate_report(task: Task, report_id: object) -> Any:
        return jobs.guard(task, lambda: jobs.generate_report(report_id))

    @app.task(name=names.REPORT_FAN_OUT, **common)  # type: ignore[untyped-decorator]
    def fan_out(task: Task, kind: object, period_start: object) -> Any:
        return jobs.guard(task, lambda: jobs.fan_out(kind, period_start))

    @app.task(name=names.REPORT_BATCH, **common)  # type: ignore[untyped-decorator]
    def batch(
        task: Task, kind: object, period_start: object, batch_key: object, user_ids: object
    ) -> Any:
        return jobs.guard(task, lambda: jobs.batch(kind, period_start, batch_key, user_ids))

    @app.task(name=names.SEND_EMAIL, **common)  # type: ignore[untyped-decorator]
    def send_email(task: Task, delivery_id: object) -> Any:
        return jobs.guard(task, lambda: jobs.send_email(task, delivery_id))

    @app.task(name=names.SWEEP, **common)  # type: ignore[untyped-decorator]
    def sweep(task: Task) -> Any:
        return jobs.guard(task, jobs.sweep)

    @app.task(name=names.PRUNE_SESSIONS, **common)  # type: ignore[untyped-decorator]
    def prune_sessions(task: Task) -> Any:
        return jobs.guard(task, jobs.prune_sessions)
