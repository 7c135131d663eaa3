"""Celery workers and beat on real Postgres, pgBouncer, Redis and SMTP: effects, guarantees, probes."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from algoedge.capacity import read_capacity
from algoedge.config import ApiSettings, ServiceSettings, load_settings
from algoedge.db import Database
from algoedge.jobs import names
from algoedge.jobs.beat import beat_schedule
from algoedge.jobs.queue import JobQueue
from redis.asyncio import Redis

from devtools.services import PostgresServer
from devtools.smtp import SmtpSink
from tests.integration.conftest import ApiClient
from tests.integration.jobs import JobProcess, Trading, decoded_queue, eventually, running
from tests.integration.sockets import Listener

YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def jobs_env(relaxed_settings: ApiSettings, smtp: SmtpSink) -> dict[str, str]:
    """A worker's or beat's environment: the test's database and Redis, the SMTP sink, and a
    12 s visibility timeout (so retry delays are capped at 4 s and redelivery is quick)."""
    return {
        "ALGOEDGE_DATABASE_URL": relaxed_settings.database_url,
        "ALGOEDGE_REDIS_URL": relaxed_settings.redis_url,
        "ALGOEDGE_SMTP_URL": smtp.url,
        "ALGOEDGE_MAIL_FROM": "AlgoEdge Reports <reports@algoedge.test>",
        "ALGOEDGE_JOBS_VISIBILITY_TIMEOUT": "12",
        "ALGOEDGE_SMTP_TIMEOUT": "3",
        "ALGOEDGE_WORKER_SOFT_SHUTDOWN_TIMEOUT": "10",
        "ALGOEDGE_WORKER_CONCURRENCY": "2",
    }


@pytest.fixture
def trading(postgres: PostgresServer, database_name: str, relaxed_settings: ApiSettings) -> Trading:
    return Trading(postgres, database_name)


@pytest.fixture
async def queue(jobs_env: dict[str, str]) -> AsyncIterator[JobQueue]:
    jobs = JobQueue.from_settings(load_settings(ServiceSettings, jobs_env))
    yield jobs
    jobs.close()


@pytest.fixture
async def redis(relaxed_settings: ApiSettings) -> AsyncIterator[Redis]:
    client = Redis.from_url(relaxed_settings.redis_url)
    yield client
    await client.aclose()


def worker(env: dict[str, str], name: str = "worker", **settings: str) -> JobProcess:
    """A worker process; ``settings`` override variables by field name (WORKER_QUEUES="emails")."""
    return JobProcess("worker", {**env, **{f"ALGOEDGE_{k}": v for k, v in settings.items()}}, name)


def beat(env: dict[str, str], name: str = "beat", **settings: str) -> JobProcess:
    return JobProcess("beat", {**env, **{f"ALGOEDGE_{k}": v for k, v in settings.items()}}, name)


def seeded_trader(trading: Trading, email: str, *, email_reports: bool = True) -> tuple[int, int]:
    user = trading.trader(email, email_reports=email_reports)
    account = trading.account(user)
    day = YESTERDAY.isoformat()
    trading.trade(account, profit="12.50", closed_at=f"{day}T09:00:00Z")
    trading.trade(account, profit="-4.00", closed_at=f"{day}T10:00:00Z", symbol="XAUUSD")
    return user, account


class TestRequestedReports:
    async def test_should_compute_store_notify_and_mail_a_report(
        self, jobs_env: dict[str, str], trading: Trading, queue: JobQueue, smtp: SmtpSink
    ) -> None:
        user, account = seeded_trader(trading, "ann@example.com")
        day = YESTERDAY.isoformat()
        # Exactly on the boundaries: the start is in the period, the end belongs to the next.
        trading.trade(account, profit="1.00", closed_at=f"{day}T00:00:00Z")
        trading.trade(
            account, profit="100.00", closed_at=f"{YESTERDAY + timedelta(days=1)}T00:00:00Z"
        )
        report = trading.pending_report(user, "daily", f"{day}T00:00:00Z")

        with running(worker(jobs_env)):
            assert await queue.generate_report(report)
            await eventually(
                "the report to be ready",
                lambda: trading.value(f"SELECT status FROM reports WHERE id = {report}") == "ready",
            )
            (message,) = smtp.wait_for(1, timeout=15)

        summary = trading.payload(report)["summary"]
        assert summary["trades"] == 3
        assert summary["net_profit"] == "9.50"
        assert summary["gross_loss"] == "-4.00"
        assert set(trading.payload(report)["by_symbol"]) == {"EURUSD", "XAUUSD"}
        assert trading.rows(f"SELECT kind, key FROM notifications WHERE user_id = {user}") == [
            ["report.ready", f"report:{report}"]
        ]
        assert message["To"] == "Trader ann <ann@example.com>"
        assert message["Subject"] == f"Your daily AlgoEdge report for {day}"
        assert (
            message["List-Unsubscribe"]
            == "<mailto:reports@algoedge.test?subject=unsubscribe%20reports>"
        )
        assert re.fullmatch(r"<[0-9a-f]{24}\.algoedge@algoedge\.test>", message["Message-ID"])
        assert message["Date"]
        assert [part.get_content_type() for part in message.iter_parts()] == [
            "text/plain",
            "text/html",
        ]
        assert "Net P&L: 9.50" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert trading.rows("SELECT status, message_id FROM email_deliveries") == [
            ["sent", message["Message-ID"]]
        ]

    async def test_should_not_mail_users_who_did_not_opt_in_nor_redo_a_ready_report(
        self, jobs_env: dict[str, str], trading: Trading, queue: JobQueue, smtp: SmtpSink
    ) -> None:
        user, _ = seeded_trader(trading, "bob@example.com", email_reports=False)
        report = trading.pending_report(user, "daily", f"{YESTERDAY}T00:00:00Z")
        with running(worker(jobs_env)) as (process,):
            await queue.generate_report(report)
            await queue.generate_report(report)  # a duplicate delivery
            await eventually(
                "both tasks to finish",
                lambda: (
                    process.sample(
                        "algoedge_jobs_tasks_total", task=names.GENERATE_REPORT, outcome="succeeded"
                    )
                    == 2
                ),
            )
        assert trading.value(f"SELECT status FROM reports WHERE id = {report}") == "ready"
        assert trading.value("SELECT count(*) FROM notifications") == "1"
        assert trading.value("SELECT count(*) FROM email_deliveries") == "0"
        assert smtp.received() == []


class TestBadPayloads:
    async def test_should_fail_permanently_with_a_reason_and_keep_working(
        self, jobs_env: dict[str, str], trading: Trading, queue: JobQueue, redis: Redis
    ) -> None:
        user, _ = seeded_trader(trading, "cat@example.com", email_reports=False)
        deleted = trading.trader("gone@example.com")
        orphan = trading.pending_report(deleted, "daily", f"{YESTERDAY}T00:00:00Z")
        trading.sql(f"DELETE FROM users WHERE id = {deleted}")
        good = trading.pending_report(user, "daily", f"{YESTERDAY}T00:00:00Z")
        with running(worker(jobs_env)) as (process,):
            await queue.send(names.GENERATE_REPORT, "not-a-number")
            await queue.send(names.GENERATE_REPORT, orphan)  # its user (and report) deleted
            await queue.send(names.REPORT_FAN_OUT, "monthly", "2026-01-01")
            await queue.send(names.REPORT_FAN_OUT, "weekly", "2026-01-06")  # a Tuesday
            await queue.send(names.REPORT_BATCH, "daily", str(YESTERDAY), 1, "not-a-list")
            await queue.send(names.SEND_EMAIL, 987654)
            await queue.generate_report(good)
            await eventually(
                "six permanent failures",
                lambda: process.sample("algoedge_jobs_tasks_total", outcome="failed") == 6,
            )
            await eventually(
                "the good report",
                lambda: trading.value(f"SELECT status FROM reports WHERE id = {good}") == "ready",
            )
            assert process.process is not None
            assert process.process.poll() is None
            # Every message acknowledged (a moment after the last task returned): none redelivered.
            for _ in range(50):
                if await redis.hlen("unacked") == 0:  # type: ignore[misc]
                    break
                await asyncio.sleep(0.1)
            assert await redis.hlen("unacked") == 0  # type: ignore[misc]
            log = process.log()
        for reason in (
            "report id must be a positive integer",
            f"report {orphan} does not exist",
            "unknown report kind 'monthly'",
            "a weekly period starts on a Monday",
            "user_ids must be a list",
            "e-mail delivery 987654 does not exist",
        ):
            assert reason in log


class TestEmail:
    async def test_should_retry_a_4xx_and_stop_at_a_5xx(
        self, jobs_env: dict[str, str], trading: Trading, queue: JobQueue, smtp: SmtpSink
    ) -> None:
        first = trading.trader("dan@example.com")
        second = trading.trader("eve@example.com")
        ids = [trading.welcome_delivery(first), trading.welcome_delivery(second)]
        smtp.refuse_next("451 4.3.0 Try again later", "451 4.3.0 Try again later")
        with running(worker(jobs_env, WORKER_CONCURRENCY="1")) as (process,):
            await queue.send_email(ids[0])
            (message,) = smtp.wait_for(1, timeout=30)
            assert message["To"] == "Trader dan <dan@example.com>"
            assert message["Subject"] == "Welcome to AlgoEdge"
            smtp.refuse_next("550 5.1.1 No such user")
            await queue.send_email(ids[1])
            await eventually(
                "the permanent failure to be recorded",
                lambda: (
                    trading.value(f"SELECT status FROM email_deliveries WHERE id = {ids[1]}")
                    == "failed"
                ),
            )
            emails = {
                o: process.sample("algoedge_jobs_emails_total", outcome=o)
                for o in ("deferred", "sent", "failed")
            }
        assert len(smtp.received()) == 1
        assert trading.rows("SELECT status, attempts, error FROM email_deliveries ORDER BY id") == [
            ["sent", "3", ""],
            ["failed", "1", "recipient refused (550)"],
        ]
        assert emails == {"deferred": 2, "sent": 1, "failed": 1}


class TestBeat:
    async def test_should_schedule_each_period_once_with_two_beats(
        self, jobs_env: dict[str, str], trading: Trading, redis: Redis
    ) -> None:
        env = {**jobs_env, "ALGOEDGE_REPORT_DAILY_AT": "00:00"}
        with running(beat(env, "beat-a"), beat(env, "beat-b")):
            await eventually(
                "both runs claimed",
                lambda: (
                    trading.value("SELECT count(*) FROM report_runs WHERE enqueued_at IS NOT NULL")
                    == "2"
                ),
            )
            await asyncio.sleep(2)  # both beats have ticked at least once more by now
            messages = await redis.lrange("reports", 0, -1)  # type: ignore[misc]
        sent = sorted(decoded_queue(messages))
        monday = YESTERDAY - timedelta(days=YESTERDAY.weekday())
        last_week = (monday if YESTERDAY.weekday() == 6 else monday - timedelta(days=7)).isoformat()
        assert sent == sorted(
            [
                (names.REPORT_FAN_OUT, ["daily", YESTERDAY.isoformat()]),
                (names.REPORT_FAN_OUT, ["weekly", last_week]),
            ]
        )

    async def test_should_run_a_daily_report_for_every_trader_and_record_its_completion(
        self, jobs_env: dict[str, str], trading: Trading, smtp: SmtpSink
    ) -> None:
        traders = [
            seeded_trader(trading, f"t{i}@example.com", email_reports=i == 0)[0] for i in range(3)
        ]
        trading.trader("no-accounts@example.com")  # no linked account: no report
        env = {**jobs_env, "ALGOEDGE_REPORT_DAILY_AT": "00:00"}
        with running(beat(env), worker(env)) as (scheduler, _):
            await eventually(
                "the daily run to complete",
                lambda: (
                    trading.value(
                        "SELECT completed_at IS NOT NULL FROM report_runs WHERE kind = 'daily'"
                    )
                    == "t"
                ),
                within=60,
            )
            await eventually(
                "the lag gauge",
                lambda: scheduler.sample("algoedge_jobs_report_run_lag_seconds", kind="daily") > 0,
            )
            # The weekly run of last week is due as well: the opted-in trader gets both e-mails.
            smtp.wait_for(2, timeout=15)
        assert trading.rows(
            "SELECT user_id, status FROM reports WHERE kind = 'daily' ORDER BY user_id"
        ) == [[str(t), "ready"] for t in traders]
        assert trading.rows(
            "SELECT users_total, batches_total, batches_done FROM report_runs WHERE kind = 'daily'"
        ) == [["3", "1", "1"]]
        subjects = sorted(str(m["Subject"]) for m in smtp.received())
        assert len(subjects) == 2
        assert subjects[0] == f"Your daily AlgoEdge report for {YESTERDAY}"
        assert subjects[1].startswith("Your weekly AlgoEdge report for ")


class TestDelivery:
    async def test_should_finish_a_report_on_another_worker_after_a_sigkill(
        self,
        jobs_env: dict[str, str],
        trading: Trading,
        queue: JobQueue,
        smtp: SmtpSink,
        db: Database,
    ) -> None:
        user, _ = seeded_trader(trading, "kim@example.com")
        report = trading.pending_report(user, "daily", f"{YESTERDAY}T00:00:00Z")
        first = worker(jobs_env, "worker-a").start().wait_ready()
        # Hold the report's row so the worker stops in the middle of completing it.
        async with db.transaction() as cur:
            await cur.execute("SELECT 1 FROM reports WHERE id = %s FOR UPDATE", (report,))
            await queue.generate_report(report)
            await eventually(
                "worker-a to start the task",
                lambda: "reports.generate" in first.log() and "received" in first.log(),
            )
            await asyncio.sleep(1)
            first.kill()
        assert trading.value(f"SELECT status FROM reports WHERE id = {report}") == "pending"
        # Redis hands the task on once the visibility timeout (12 s) has passed.
        await asyncio.sleep(13)
        with running(worker(jobs_env, "worker-b")):
            await eventually(
                "the report on worker-b",
                lambda: trading.value(f"SELECT status FROM reports WHERE id = {report}") == "ready",
            )
            smtp.wait_for(1, timeout=15)
            await asyncio.sleep(1)
        assert trading.value("SELECT count(*) FROM reports") == "1"
        assert trading.value("SELECT count(*) FROM notifications") == "1"
        assert len(smtp.received()) == 1

    async def test_should_send_an_email_once_after_a_sigkill_mid_send(
        self, jobs_env: dict[str, str], trading: Trading, queue: JobQueue, smtp: SmtpSink
    ) -> None:
        delivery = trading.welcome_delivery(trading.trader("lee@example.com"))
        smtp.hold_rcpt(30)
        first = worker(jobs_env, "worker-a").start().wait_ready()
        await queue.send_email(delivery)
        await eventually("worker-a to be inside the SMTP exchange", smtp.rcpt_seen.is_set)
        first.kill()
        smtp.hold_rcpt(0)
        await asyncio.sleep(13)
        with running(worker(jobs_env, "worker-b")):
            await eventually(
                "the e-mail to be sent",
                lambda: trading.delivery_status(delivery) == "sent",
                within=60,
            )
            await asyncio.sleep(1)
        (message,) = smtp.received()
        assert message["To"] == "Trader lee <lee@example.com>"

    async def test_should_finish_a_running_task_on_sigterm(
        self, jobs_env: dict[str, str], trading: Trading, queue: JobQueue, smtp: SmtpSink
    ) -> None:
        delivery = trading.welcome_delivery(trading.trader("max@example.com"))
        smtp.hold_rcpt(2)
        process = worker(jobs_env).start().wait_ready()
        await queue.send_email(delivery)
        await eventually("the send to start", smtp.rcpt_seen.is_set)
        started = time.monotonic()
        process.terminate(timeout=30)
        # Soft shutdown (10 s here) let the send finish instead of cutting it off.
        assert time.monotonic() - started < 10
        assert len(smtp.received()) == 1
        assert trading.delivery_status(delivery) == "sent"
        assert "soft shutdown: 1 running tasks" in process.log()

    async def test_should_hand_back_what_does_not_finish_within_the_soft_shutdown(
        self,
        jobs_env: dict[str, str],
        trading: Trading,
        queue: JobQueue,
        smtp: SmtpSink,
        redis: Redis,
    ) -> None:
        delivery = trading.welcome_delivery(trading.trader("ned@example.com"))
        smtp.hold_rcpt(8)
        process = worker(jobs_env, WORKER_SOFT_SHUTDOWN_TIMEOUT="1").start().wait_ready()
        await queue.send_email(delivery)
        await eventually("the send to start", smtp.rcpt_seen.is_set)
        process.terminate(timeout=30)
        smtp.hold_rcpt(0)
        with running(worker(jobs_env, "worker-b")):
            await eventually(
                "the e-mail to be sent by worker-b",
                lambda: trading.delivery_status(delivery) == "sent",
                within=90,
            )
            await asyncio.sleep(1)
        assert len(smtp.received()) == 1


class TestPlatform:
    async def test_should_count_waiting_and_reserved_tasks_in_the_backlog(
        self,
        jobs_env: dict[str, str],
        trading: Trading,
        queue: JobQueue,
        smtp: SmtpSink,
        db: Database,
        redis: Redis,
    ) -> None:
        queues = ("default", "reports", "emails")
        for _ in range(3):
            await queue.send(names.SWEEP)
        waiting = await read_capacity(
            db, Redis.from_url(jobs_env["ALGOEDGE_REDIS_URL"], decode_responses=True), queues=queues
        )
        assert waiting.queue_backlog == {"default": 3, "reports": 0, "emails": 0}

        delivery = trading.welcome_delivery(trading.trader("oz@example.com"))
        smtp.hold_rcpt(30)
        with running(worker(jobs_env, WORKER_CONCURRENCY="1", WORKER_QUEUES="emails")):
            await queue.send_email(delivery)
            await eventually("the send to start", smtp.rcpt_seen.is_set)
            client = Redis.from_url(jobs_env["ALGOEDGE_REDIS_URL"], decode_responses=True)
            reserved = await read_capacity(db, client, queues=queues)
            await client.aclose()
            assert await redis.llen("emails") == 0  # type: ignore[misc]  # a list-length scaler would see nothing
            assert reserved.queue_backlog == {"default": 3, "reports": 0, "emails": 1}
            smtp.hold_rcpt(0)

    async def test_should_probe_the_heartbeat_not_the_broker(
        self, jobs_env: dict[str, str]
    ) -> None:
        with running(worker(jobs_env)) as (process,):
            assert process.probe(60) == 0
            process.kill()
            await asyncio.sleep(2.2)
            assert process.probe(2) == 1
        assert process.probe(3600) == 0  # a SIGKILL leaves the file; only its age tells
        missing = JobProcess("worker", jobs_env, "never-started")
        assert missing.probe(60) == 1


class TestWalk:
    """The README's walk: ask the API for a report, the worker makes it, the socket hears it."""

    async def test_should_deliver_a_requested_report_to_the_socket_the_api_and_the_mailbox(
        self, api: ApiClient, jobs_env: dict[str, str], trading: Trading, smtp: SmtpSink
    ) -> None:
        user, token = await api.signed_up("ada@example.com")
        status, _, _ = await api.call(
            "PATCH", "/api/v1/me", token=token, json={"email_reports": True}
        )
        assert status == 200
        account = trading.account(user)
        trading.trade(account, profit="7.25", closed_at=f"{YESTERDAY}T12:00:00Z")
        listener = Listener()
        await listener.connect(api.base_url, token)
        try:
            with running(worker(jobs_env)):
                status, body, response = await api.call(
                    "POST",
                    "/api/v1/reports",
                    token=token,
                    json={"kind": "daily", "period_start": YESTERDAY.isoformat()},
                )
                assert status == 202, body
                assert body["status"] == "pending"
                ready = await listener.wait_for("report.ready", within=30)
                notification = await listener.wait_for("notification", within=5)
                # The welcome e-mail (register) and the report e-mail.
                mails = smtp.wait_for(2, timeout=15)
        finally:
            await listener.client.disconnect()
        assert ready == {"id": body["id"], "kind": "daily", "period_start": YESTERDAY.isoformat()}
        assert notification["kind"] == "report.ready"
        assert response.headers["Location"] == f"/api/v1/reports/{body['id']}"
        status, report, _ = await api.call("GET", f"/api/v1/reports/{body['id']}", token=token)
        assert status == 200
        assert report["status"] == "ready"
        assert report["payload"]["summary"]["net_profit"] == "7.25"
        status, unread, _ = await api.call("GET", "/api/v1/notifications?unread=true", token=token)
        assert [n["id"] for n in unread["items"]] == [notification["id"]]
        assert sorted(str(m["Subject"]) for m in mails) == [
            "Welcome to AlgoEdge",
            f"Your daily AlgoEdge report for {YESTERDAY}",
        ]


class TestSessionPruning:
    async def test_should_delete_expired_sessions_and_keep_live_and_revoked_ones(
        self, jobs_env: dict[str, str], trading: Trading, queue: JobQueue
    ) -> None:
        user = trading.trader("sam@example.com")
        trading.sql(
            "INSERT INTO sessions (jti, user_id, expires_at, revoked_at) VALUES "
            f"('expired', {user}, now() - interval '1 minute', NULL), "
            f"('expired-revoked', {user}, now() - interval '1 day', now() - interval '2 days'), "
            f"('live', {user}, now() + interval '1 hour', NULL), "
            # Revoked but not yet expired: the row is what keeps its token refused.
            f"('revoked-live', {user}, now() + interval '1 hour', now())"
        )
        with running(worker(jobs_env)):
            assert await queue.send(names.PRUNE_SESSIONS)
            await eventually(
                "the expired sessions to be pruned",
                lambda: (
                    trading.value("SELECT count(*) FROM sessions WHERE expires_at < now()") == "0"
                ),
            )
        assert trading.rows("SELECT jti FROM sessions ORDER BY jti") == [["live"], ["revoked-live"]]

    def test_should_have_beat_prune_sessions_at_least_hourly(self) -> None:
        schedule = {entry["task"]: entry["schedule"] for entry in beat_schedule().values()}
        assert schedule[names.PRUNE_SESSIONS] <= timedelta(hours=1)


class TestRegistrationAttemptMail:
    async def test_should_tell_the_owner_not_the_caller_that_their_email_was_registered_again(
        self, api: ApiClient, jobs_env: dict[str, str], smtp: SmtpSink
    ) -> None:
        await api.register("owner@example.com", name="Owner")
        await api.register("OWNER@example.com", password="another-password", name="Mallory")
        with running(worker(jobs_env)):
            messages = smtp.wait_for(2, timeout=20)
        by_subject = {message["Subject"]: message for message in messages}
        attempt = by_subject["Someone tried to register with your e-mail address"]
        assert attempt["To"] == "Owner <owner@example.com>"
        assert "Mallory" not in attempt.as_string()
        assert "Welcome to AlgoEdge" in by_subject
