"""The Celery application of AlgoEdge: one definition of every setting the delivery guarantees rest on.

Why each setting (docs/jobs.md says more):
- late acks + reject on worker lost + prefetch 1: a task leaves Redis only after it ran; a worker
  that dies mid-task has its task redelivered, and each thread holds at most one unstarted task,
  so the backlog stays countable in Redis (``/internal/v1/capacity``).
- the visibility timeout (``ALGOEDGE_JOBS_VISIBILITY_TIMEOUT``, 900 s by default) exceeds the
  task hard time limit plus the longest retry delay (a third of it each), so Redis never hands a
  task that is still running, or waiting out its retry countdown, to a second worker.
- soft shutdown on SIGTERM (``REMAP_SIGTERM=SIGQUIT``, set by ``algoedge worker`` before Celery is
  imported): running tasks get ``ALGOEDGE_WORKER_SOFT_SHUTDOWN_TIMEOUT`` seconds, then whatever is
  unfinished goes back to the queue when the worker closes its channel.
- no result backend: tasks record their effects in Postgres, and a Redis result backend would
  subscribe to every sent task's result channel (and fail the send when Redis is down).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from algoedge.config import JobsSettings, ServiceSettings, WorkerSettings
from algoedge.jobs.names import PREFERRED_QUEUE, queue_for

TASK_MODULES = ("algoedge.jobs.tasks",)


def transport_options(settings: ServiceSettings) -> dict[str, Any]:
    visibility = (
        settings.jobs_visibility_timeout
        if isinstance(settings, JobsSettings)
        else JobsSettings.model_fields["jobs_visibility_timeout"].default
    )
    return {
        "visibility_timeout": visibility,
        # Publishing gives up after ~2 s when Redis is down: the caller records the work in
        # Postgres first, and the sweeper enqueues it again later.
        "max_retries": 2,
        "interval_start": 0.2,
        "interval_step": 0.5,
        "interval_max": 1.0,
        "socket_timeout": 5.0,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 25,
    }


def create_celery(settings: ServiceSettings) -> Celery:
    """A configured Celery app for any process that sends (api, beat) or runs (worker) tasks."""
    app = Celery("algoedge", set_as_current=False)
    options = transport_options(settings)
    queues = settings.worker_queues
    app.conf.update(
        broker_url=settings.redis_url,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_pool_limit=10,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        enable_utc=True,
        timezone="UTC",
        task_default_queue=queues[0],
        task_routes={name: {"queue": queue_for(name, queues)} for name in PREFERRED_QUEUE},
        task_create_missing_queues=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_track_started=False,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        broker_connection_timeout=5.0,
        include=list(TASK_MODULES),
    )
    if isinstance(settings, WorkerSettings):
        app.conf.update(
            worker_concurrency=settings.worker_concurrency,
            worker_prefetch_multiplier=settings.worker_prefetch_multiplier,
            worker_soft_shutdown_timeout=settings.worker_soft_shutdown_timeout,
        )
    return app
