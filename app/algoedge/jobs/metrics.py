"""Prometheus metrics of the worker and beat processes (served on ALGOEDGE_METRICS_PORT).

The worker runs tasks in threads of one process, so the default registry is the whole truth:
no multiprocess mode is needed (prefork would need it).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TASKS = Counter(
    "algoedge_jobs_tasks_total",
    "Task executions by task name and outcome (succeeded, failed, retried; rejected = a "
    "delivery refused by the poison guard, also counted as failed).",
    ["task", "outcome"],
)
TASK_DURATION = Histogram(
    "algoedge_jobs_task_duration_seconds",
    "Time one task execution took, by task name.",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
TASKS_IN_PROGRESS = Gauge(
    "algoedge_jobs_tasks_in_progress",
    "Tasks running in this worker now, by task name.",
    ["task"],
)
EMAILS = Counter(
    "algoedge_jobs_emails_total",
    "E-mails by outcome: sent, failed (permanently), deferred (a transient error; retried).",
    ["outcome"],
)
REPORT_RUN_LAG = Gauge(
    "algoedge_jobs_report_run_lag_seconds",
    "Now minus the scheduled time of the newest completed report run, by kind (beat).",
    ["kind"],
)
RUNS_SCHEDULED = Counter(
    "algoedge_jobs_report_runs_scheduled_total",
    "Report runs this beat claimed and enqueued, by kind.",
    ["kind"],
)
QUEUE_BACKLOG = Gauge(
    "algoedge_jobs_queue_backlog",
    "Tasks waiting in a queue (every priority level) plus those workers reserved and have not "
    "acknowledged, by queue (beat, sampled every tick).",
    ["queue"],
)
QUEUE_OLDEST_AGE = Gauge(
    "algoedge_jobs_queue_oldest_task_age_seconds",
    "How long the oldest waiting task of a queue has been seen waiting (a lower bound: counted "
    "from the beat's first sample that saw it at the queue's end; 0 when none waits), by queue.",
    ["queue"],
)
