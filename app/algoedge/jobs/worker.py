"""`algoedge worker`: a Celery worker with a threads pool, a heartbeat file and Prometheus metrics.

Why threads (docs/jobs.md): the tasks wait on Postgres, Redis and SMTP, not on the CPU; threads
share one asyncio loop with one bounded connection pool per pod, and one process means the
default Prometheus registry is the whole truth (prefork needs multiprocess mode). The price:
no hard time limits (the pool cannot kill a thread), so every wait has its own timeout and
batches hand their remainder on before a third of the visibility timeout has passed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from celery import Celery, bootsteps, signals
from celery.concurrency.thread import TaskPool as ThreadTaskPool
from celery.worker import WorkController
from celery.worker import state as worker_state
from prometheus_client import start_http_server

from algoedge.config import WorkerSettings
from algoedge.jobs import heartbeat
from algoedge.jobs.celery_app import create_celery
from algoedge.jobs.metrics import TASK_DURATION, TASKS, TASKS_IN_PROGRESS
from algoedge.jobs.runtime import Runtime
from algoedge.jobs.tasks import Jobs, register_tasks

log = logging.getLogger(__name__)

_OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}


def heartbeat_step(path: str) -> type[bootsteps.StartStopStep]:
    class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
        """Touches the heartbeat file on the worker's timer while the worker runs."""

        requires = ("celery.worker.components:Timer",)

        def __init__(self, parent: WorkController, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.tref: Any = None

        def start(self, worker: WorkController) -> None:
            heartbeat.touch(path)
            self.tref = worker.timer.call_repeatedly(
                heartbeat.INTERVAL_SECONDS, heartbeat.touch, (path,), priority=10
            )

        def stop(self, worker: WorkController) -> None:
            if self.tref is not None:
                self.tref.cancel()
            heartbeat.remove(path)

    return Heartbeat


class WakingThreadPool(ThreadTaskPool):  # type: ignore[misc]
    """Celery's threads pool, waking the consumer's event loop each time a task is acknowledged.

    With threads, a task is acknowledged from its pool thread. When every thread was busy the
    consumer had stopped reading Redis (the prefetch limit), and its event loop sleeps until
    its next timer, seconds away: measured, 20 trivial tasks on 4 threads took 12.5 s. A byte
    on a pipe the loop watches, written after the acknowledgement, lets it read the next task
    at once (a 50 ms polling timer, tried first, capped a thread at 20 tasks/s).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    def register_with_event_loop(self, loop: Any) -> None:
        super().register_with_event_loop(loop)
        loop.add_reader(self._wake_read, self._drain)

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_read, 4096)

    def _wake(self) -> None:
        # A full pipe already holds a wake-up: nothing is lost by dropping this one.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"w")

    def on_apply(
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Callable[..., Any] | None = None,
        accept_callback: Callable[..., Any] | None = None,
        **options: Any,
    ) -> Any:
        def finished(*result: Any) -> None:
            try:
                if callback is not None:
                    callback(*result)  # acknowledges the message (late ack)
            finally:
                self._wake()

        return super().on_apply(target, args, kwargs, finished, accept_callback, **options)

    def on_stop(self) -> None:
        super().on_stop()
        os.close(self._wake_read)
        os.close(self._wake_write)


def _connect_metrics() -> None:
    started: dict[str, float] = {}

    @signals.task_prerun.connect(weak=False)  # type: ignore[untyped-decorator]
    def prerun(task_id: str, task: Any, **_: Any) -> None:
        started[task_id] = time.monotonic()
        TASKS_IN_PROGRESS.labels(task=task.name).inc()

    @signals.task_postrun.connect(weak=False)  # type: ignore[untyped-decorator]
    def postrun(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
        TASKS_IN_PROGRESS.labels(task=task.name).dec()
        began = started.pop(task_id, None)
        if began is not None:
            TASK_DURATION.labels(task=task.name).observe(time.monotonic() - began)
        TASKS.labels(task=task.name, outcome=_OUTCOMES.get(state or "", "failed")).inc()


def soft_shutdown_worker(app: Celery) -> type[WorkController]:
    """Celery's worker, whose soft shutdown ends as soon as no task is running.

    Celery's own waits the whole ``worker_soft_shutdown_timeout`` whenever a task runs (or
    always, with ``worker_enable_soft_shutdown_on_idle``), so every rollout would take the full
    grace period. Reserved but not started tasks (prefetched, or waiting out a retry countdown)
    need no waiting: the worker hands them back to Redis when it closes its channel.
    """

    class SoftShutdownWorker(app.Worker):  # type: ignore[misc]
        def wait_for_soft_shutdown(self) -> None:
            timeout = float(self.app.conf.worker_soft_shutdown_timeout or 0)
            deadline = time.monotonic() + timeout
            if worker_state.active_requests:
                log.warning(
                    "soft shutdown: %d running tasks get up to %.0fs",
                    len(worker_state.active_requests),
                    timeout,
                )
            while worker_state.active_requests and time.monotonic() < deadline:
                time.sleep(0.1)

    return SoftShutdownWorker


def build(settings: WorkerSettings) -> tuple[Celery, Runtime]:
    app = create_celery(settings)
    # Threads plus the loop's own connection, the sweeper and a spare.
    runtime = Runtime(settings, pool_max=settings.worker_concurrency + 2)
    register_tasks(app, Jobs(app, runtime, settings))
    app.steps["worker"].add(heartbeat_step(settings.heartbeat_file))
    return app, runtime


def run(settings: WorkerSettings) -> int:
    app, runtime = build(settings)
    _connect_metrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    log.info(
        "worker consuming %s with %d threads; metrics on :%d",
        ",".join(settings.worker_queues),
        settings.worker_concurrency,
        settings.metrics_port,
    )
    worker = soft_shutdown_worker(app)(
        pool_cls=WakingThreadPool,
        concurrency=settings.worker_concurrency,
        queues=list(settings.worker_queues),
        hostname=f"worker-{os.getpid()}@{socket.gethostname()}",
        loglevel=settings.log_level,
        # No broadcast chatter at start-up or every few seconds: nothing here reads it.
        without_mingle=True,
        without_gossip=True,
        without_heartbeat=True,
        optimization="fair",
    )
    try:
        worker.start()
    finally:
        runtime.close()
    return int(worker.exitcode or 0)
