"""Prometheus metrics of the app processes, on the default registry (one set per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Histogram(
    "algoedge_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status.",
    ["route", "method", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0),
)
HTTP_ERRORS = Counter(
    "algoedge_http_errors_total",
    "Requests answered with a 5xx status, by route template.",
    ["route"],
)
DB_POOL_CONNECTIONS = Gauge(
    "algoedge_db_pool_connections",
    "aiopg pool connections by state (in_use, idle) and the configured maximum (max).",
    ["state"],
)
REDIS_ERRORS = Counter(
    "algoedge_redis_errors_total",
    "Redis operations that failed and fell back (to Postgres or an in-process limiter).",
    ["operation"],
)
SOCKETS_CONNECTED = Gauge(
    "algoedge_socketio_connected",
    "socket.io clients connected to this process.",
)
EVENTS_RELAYED = Counter(
    "algoedge_events_relayed_total",
    "Events taken from the Redis events channel and emitted to this process's sockets.",
)
JOBS_ENQUEUE_FAILURES = Counter(
    "algoedge_jobs_enqueue_failures_total",
    "Tasks this process could not put on the queue (the work stays recorded in Postgres and the "
    "sweeper enqueues it again), by task name.",
    ["task"],
)
