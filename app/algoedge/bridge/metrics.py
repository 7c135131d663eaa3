"""Prometheus metrics of a bridge process (served on ALGOEDGE_METRICS_PORT with its probes)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

STATES = (
    "pending",
    "provisioning",
    "connecting",
    "synchronizing",
    "connected",
    "disconnected",
    "failed",
)

ACCOUNTS = Gauge(
    "algoedge_bridge_accounts",
    "Accounts this replica owns, by connection state.",
    ["state"],
)
LEASES_HELD = Gauge("algoedge_bridge_leases_held", "Account leases this replica holds now.")
LEASE_LOSSES = Counter(
    "algoedge_bridge_lease_losses_total",
    "Leases lost, by reason: taken (another holder found at renewal), fenced (not renewed in "
    "time; connections closed before the lease could expire).",
    ["reason"],
)
MEMBERS = Gauge("algoedge_bridge_members", "Live bridge members this replica sees.")
SYNCS_IN_FLIGHT = Gauge(
    "algoedge_bridge_syncs_in_flight",
    "Synchronizations started and not finished (from synchronizationStarted to the deals).",
)
SYNCS_IN_FLIGHT_MAX = Gauge(
    "algoedge_bridge_syncs_in_flight_max",
    "The most synchronizations this process had in flight at once since it started.",
)
QUEUE_WAITING = Gauge(
    "algoedge_bridge_connect_queue_waiting",
    "Accounts waiting for a slot in this replica's connect queue.",
)
SYNC_DURATION = Histogram(
    "algoedge_bridge_sync_duration_seconds",
    "Time from taking a connect slot to synchronized (provisioning included when it happened).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
CONNECTS = Counter(
    "algoedge_bridge_connects_total",
    "Connect attempts by outcome: connected, retry (backed off), throttled (429), failed "
    "(credentials or server refused; not retried until the user edits the account).",
    ["outcome"],
)
RECONNECTS = Counter(
    "algoedge_bridge_reconnects_total",
    "Connections closed and queued again by the bridge, by reason (stale, disconnected).",
    ["reason"],
)
TOO_MANY_REQUESTS = Counter(
    "algoedge_bridge_too_many_requests_total", "MetaAPI 429 answers the bridge honoured."
)
PACKETS = Counter(
    "algoedge_bridge_packets_total",
    "Synchronization packets received from MetaAPI, by kind.",
    ["kind"],
)
TRADES = Counter(
    "algoedge_bridge_trades_total",
    "Deals turned into trades, by outcome: opened, closed, duplicate (seen before), "
    "unmatched (an exit whose entry was never seen), malformed.",
    ["outcome"],
)
PUBLISH_LAG = Histogram(
    "algoedge_bridge_publish_lag_seconds",
    "From a deal's arrival to its trade event's publication on Redis.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REMOVALS = Counter(
    "algoedge_bridge_removals_total",
    "MetaAPI accounts undeployed and deleted after an unlink or edit, by outcome.",
    ["outcome"],
)
ERRORS = Counter(
    "algoedge_bridge_errors_total",
    "Errors the bridge caught and survived, by where (redis, database, sdk).",
    ["where"],
)
