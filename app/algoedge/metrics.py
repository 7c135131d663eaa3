"""Prometheus metrics of the app processes, on the default registry (one set per process)."""

from __future__ import annotations

from collections.abc import Iterable

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
DB_QUERIES = Counter(
    "algoedge_db_queries_total",
    "Data-layer calls (one statement, or one transaction) by the pool that ran them: primary "
    "or replica.",
    ["pool"],
)
DB_REPLICA_LAG = Gauge(
    "algoedge_db_replica_lag_seconds",
    "How far the read replica trails the primary at the last check (NaN while it cannot be asked).",
)
DB_REPLICA_USABLE = Gauge(
    "algoedge_db_replica_usable",
    "1 while replica reads go to the replica, 0 while the primary answers them (lag above "
    "ALGOEDGE_DATABASE_READ_MAX_LAG, the replica not answering, or no replica configured).",
)
DB_REPLICA_FALLBACKS = Counter(
    "algoedge_db_replica_fallbacks_total",
    "Reads meant for the replica that the primary answered, by reason: lag, unreachable, "
    "not_standby, read_failed (failed on the replica and retried on the primary).",
    ["reason"],
)
PASSWORD_HASHES = Counter(
    "algoedge_password_hashes_total",
    "argon2id computations started, by operation (hash for register, verify for login).",
    ["operation"],
)
PASSWORD_HASHES_REFUSED = Counter(
    "algoedge_password_hashes_refused_total",
    "Logins and registrations answered 503 because every hashing slot and queue place was taken.",
)
OUTBOX_DROPPED = Counter(
    "algoedge_outbox_dropped_total",
    "Best-effort Redis deliveries (socket.io emits, session ends, bridge wake-ups) dropped "
    "because this process's outbox was full (Redis slower than the requests queueing them), "
    "by kind.",
    ["kind"],
)
SOCKETS_DISCONNECTED = Counter(
    "algoedge_socketio_disconnects_total",
    "Connections the server closed, by reason: connect_timeout (no CONNECT in time), "
    "session_ended (logout, or found ended by the periodic check), expired (the token's end).",
    ["reason"],
)
SOCKET_SESSION_CHECK_ERRORS = Counter(
    "algoedge_socketio_session_check_errors_total",
    "Checks of a socket's session (at CONNECT, or the periodic one) that got no answer because "
    "Redis and Postgres were both failing: the CONNECT is refused, a connected socket stays "
    "until a later check answers.",
)


def zero_route_errors(routes: Iterable[str]) -> None:
    """Create each route's 5xx counter at 0 before any request.

    A labelled series is born at its first increment, and rate() needs an earlier sample to see
    an increase: without this, the first 5xx answers of every route are invisible to the error
    ratio alert (docs/monitoring.md).
    """
    for route in routes:
        HTTP_ERRORS.labels(route=route)


API_EVENT_LOOP_LAG = Histogram(
    "algoedge_api_event_loop_lag_seconds",
    "How late the API process's event loop ran a timer it had asked for every 0.1 s: while "
    "a callback or garbage collection holds the loop, every request and socket on it waits.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
API_GC_PAUSES = Histogram(
    "algoedge_api_gc_pause_seconds",
    "Garbage-collection pauses of the API process, by generation (the loop is held for each).",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
