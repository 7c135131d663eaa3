"""The typed ``AlgoEdgeTenant``: the raw custom resource parsed, defaulted and sized by its capacity profile.

The API server applies the CRD's defaults before the operator sees a tenant; ``SPEC_DEFAULTS``
repeats them so the builders also work on a spec that was never defaulted (unit tests, an older
CRD), and a unit test keeps the two identical. Sizes the CRD leaves unset come from
:func:`algoedge_operator.profile.profile_for`; explicit fields always win.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import parse_qs, unquote, urlsplit

from algoedge_operator.profile import CapacityProfile, Resources, profile_for

GROUP = "algoedge.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AlgoEdgeTenant"
PLURAL = "algoedgetenants"

#: Annotation that stops every write for one tenant while it is "true".
PAUSED_ANNOTATION = "algoedge.io/paused"

#: The CRD's leaf defaults, by dotted path under ``spec`` (kept equal to the CRD by a unit test).
SPEC_DEFAULTS: Mapping[str, Any] = {
    "imagePullPolicy": "IfNotPresent",
    "expectedUsers": 100,
    "logLevel": "INFO",
    "database.secretRef.key": "url",
    "database.pool.mode": "transaction",
    "redis.mode": "managed",
    "redis.storage": "1Gi",
    "redis.external.secretRef.key": "url",
    "api.targetCPUUtilizationPercentage": 70,
    "workers.queues": ["default", "reports", "emails"],
    "workers.tasksPerReplica": 50,
    "workers.concurrency": 4,
    "workers.scaleDownStabilizationSeconds": 300,
    "beat.enabled": True,
    "reports.dailyAt": "00:15",
    "mail.smtpSecretRef.key": "url",
    "bridge.accountsPerReplica": 100,
    "bridge.minReplicas": 1,
    "bridge.maxReplicas": 50,
    "bridge.scaleDownStabilizationSeconds": 300,
    "rateLimits.perUser.requests": 100,
    "rateLimits.perUser.windowSeconds": 900,
    "rateLimits.perIP.requests": 300,
    "rateLimits.perIP.windowSeconds": 900,
    "rateLimits.auth.requests": 10,
    "rateLimits.auth.windowSeconds": 900,
}

#: Workers and the bridge have no profile-sized resources of their own in the table; these apply.
WORKER_RESOURCES = Resources("100m", "256Mi", "1", "512Mi")
BRIDGE_RESOURCES = Resources("100m", "256Mi", "1", "768Mi")

_MEMORY = re.compile(r"^([1-9][0-9]*)(Mi|Gi)$")
#: spec.reports.dailyAt: UTC HH:MM, the CRD's pattern (a unit test keeps the two equal).
DAILY_AT_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class SpecError(ValueError):
    """The tenant's spec cannot be used (the CRD's validation should have caught it)."""


@dataclass(frozen=True)
class SecretKeyRef:
    """A key in a Secret in the tenant's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class ReplicaRange:
    minimum: int
    maximum: int

    def clamp(self, replicas: int) -> int:
        return max(self.minimum, min(self.maximum, replicas))


@dataclass(frozen=True)
class RateLimit:
    requests: int
    window_seconds: int

    @property
    def env_value(self) -> str:
        """The app's ``REQUESTS/SECONDS`` form."""
        return f"{self.requests}/{self.window_seconds}"


@dataclass(frozen=True)
class RateLimits:
    per_user: RateLimit
    per_ip: RateLimit
    auth: RateLimit


@dataclass(frozen=True)
class PoolSpec:
    mode: Literal["transaction", "session"]
    default_pool_size: int
    max_client_connections: int


@dataclass(frozen=True)
class DatabaseSpec:
    secret: SecretKeyRef
    pool: PoolSpec


@dataclass(frozen=True)
class RedisSpec:
    mode: Literal["managed", "external"]
    storage: str
    max_memory_mib: int
    #: Set in external mode only (the CRD enforces it).
    external_secret: SecretKeyRef | None


@dataclass(frozen=True)
class ApiSpec:
    replicas: ReplicaRange
    target_cpu_utilization: int
    resources: Resources


@dataclass(frozen=True)
class WorkersSpec:
    queues: tuple[str, ...]
    replicas: ReplicaRange
    tasks_per_replica: int
    concurrency: int
    scale_down_stabilization_seconds: int
    resources: Resources


@dataclass(frozen=True)
class ReportsSpec:
    #: UTC ``HH:MM`` of the daily report run; the weekly run is on Mondays at the same time.
    daily_at: str


@dataclass(frozen=True)
class MailSpec:
    #: The From: mailbox (the app's default when None).
    from_address: str | None
    #: Secret key holding the SMTP URL; only worker pods read it (None: no SMTP server).
    smtp_secret: SecretKeyRef | None


@dataclass(frozen=True)
class BridgeSpec:
    accounts_per_replica: int
    replicas: ReplicaRange
    scale_down_stabilization_seconds: int
    resources: Resources


@dataclass(frozen=True)
class TenantSpec:
    image: str
    bridge_image: str
    image_pull_policy: str
    expected_users: int
    profile: CapacityProfile
    log_level: str
    database: DatabaseSpec
    redis: RedisSpec
    api: ApiSpec
    workers: WorkersSpec
    beat_enabled: bool
    reports: ReportsSpec
    mail: MailSpec
    bridge: BridgeSpec
    rate_limits: RateLimits
    trusted_proxies: tuple[str, ...]
    allowed_origins: tuple[str, ...]


@dataclass(frozen=True)
class DatabaseTarget:
    """The tenant's PostgreSQL, parsed from its Secret (parsed by :func:`parse_database_url`)."""

    host: str
    port: int
    dbname: str
    user: str
    password: str
    #: libpq ``sslmode`` from the URL, passed to pgBouncer as ``server_tls_sslmode``.
    sslmode: str


@dataclass(frozen=True)
class Tenant:
    """One ``AlgoEdgeTenant`` as the builders and the reconciler see it."""

    name: str
    namespace: str
    uid: str
    generation: int
    paused: bool
    spec: TenantSpec


class _Reader:
    """Reads dotted paths from a raw spec, falling back to ``SPEC_DEFAULTS``; records what it read."""

    def __init__(self, raw: Mapping[str, Any], seen: set[str] | None) -> None:
        self._raw = raw
        self._seen = seen

    def get(self, path: str, default: Any = None) -> Any:
        if self._seen is not None:
            self._seen.add(path)
        node: Any = self._raw
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return SPEC_DEFAULTS.get(path, default)
            node = node[part]
        return node

    def has(self, path: str) -> bool:
        node: Any = self._raw
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        return True

    def integer(self, path: str, default: int | None = None) -> int:
        value = self.get(path, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"spec.{path} must be an integer")
        return value

    def text(self, path: str, default: str | None = None) -> str:
        value = self.get(path, default)
        if not isinstance(value, str) or not value:
            raise SpecError(f"spec.{path} must be a non-empty string")
        return value


def _memory_mib(path: str, text: str) -> int:
    match = _MEMORY.match(text)
    if match is None:
        raise SpecError(f"spec.{path} must look like 256Mi or 1Gi")
    amount = int(match.group(1))
    return amount * 1024 if match.group(2) == "Gi" else amount


def _replicas(reader: _Reader, prefix: str, *, minimum: int, maximum: int) -> ReplicaRange:
    low = reader.integer(f"{prefix}.minReplicas", minimum)
    # An explicit minimum above the profile's maximum lifts the maximum with it.
    high = reader.integer(f"{prefix}.maxReplicas", max(maximum, low))
    if low > high:
        raise SpecError(f"spec.{prefix}.minReplicas must not exceed spec.{prefix}.maxReplicas")
    return ReplicaRange(low, high)


def _resources(reader: _Reader, prefix: str, fallback: Resources) -> Resources:
    base = f"{prefix}.resources"
    return Resources(
        cpu_request=reader.text(f"{base}.requests.cpu", fallback.cpu_request),
        memory_request=reader.text(f"{base}.requests.memory", fallback.memory_request),
        cpu_limit=reader.text(f"{base}.limits.cpu", fallback.cpu_limit),
        memory_limit=reader.text(f"{base}.limits.memory", fallback.memory_limit),
    )


def _rate(reader: _Reader, name: str) -> RateLimit:
    return RateLimit(
        requests=reader.integer(f"rateLimits.{name}.requests"),
        window_seconds=reader.integer(f"rateLimits.{name}.windowSeconds"),
    )


def parse_spec(raw: Mapping[str, Any], *, seen: set[str] | None = None) -> TenantSpec:
    """Type, default and size a raw ``spec``; ``seen`` collects every path read (for tests)."""
    reader = _Reader(raw, seen)
    expected_users = reader.integer("expectedUsers")
    profile = profile_for(expected_users)

    redis_mode = reader.text("redis.mode")
    if redis_mode not in ("managed", "external"):
        raise SpecError("spec.redis.mode must be managed or external")
    external_secret: SecretKeyRef | None = None
    if redis_mode == "external":
        if not reader.has("redis.external.secretRef.name"):
            raise SpecError("spec.redis.external.secretRef is required when redis.mode is external")
        external_secret = SecretKeyRef(
            reader.text("redis.external.secretRef.name"),
            reader.text("redis.external.secretRef.key"),
        )
    else:
        # Read for the path record: the fields exist even when unused.
        reader.get("redis.external.secretRef.name")
        reader.get("redis.external.secretRef.key")
    pool_mode = reader.text("database.pool.mode")
    if pool_mode not in ("transaction", "session"):
        raise SpecError("spec.database.pool.mode must be transaction or session")
    queues = reader.get("workers.queues")
    if not isinstance(queues, list) or not queues or not all(isinstance(q, str) for q in queues):
        raise SpecError("spec.workers.queues must be a non-empty list of queue names")
    proxies = reader.get("trustedProxies", [])
    if not isinstance(proxies, list) or not all(isinstance(p, str) for p in proxies):
        raise SpecError("spec.trustedProxies must be a list of CIDRs")
    origins = reader.get("allowedOrigins", [])
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise SpecError("spec.allowedOrigins must be a list of origins")
    daily_at = reader.text("reports.dailyAt")
    if not re.fullmatch(DAILY_AT_PATTERN, daily_at):
        raise SpecError("spec.reports.dailyAt must be HH:MM (UTC, 00:00 to 23:59)")
    mail_from = reader.get("mail.from")
    if mail_from is not None and (not isinstance(mail_from, str) or not mail_from):
        raise SpecError("spec.mail.from must be a non-empty string")
    smtp_secret: SecretKeyRef | None = None
    if reader.has("mail.smtpSecretRef.name"):
        smtp_secret = SecretKeyRef(
            reader.text("mail.smtpSecretRef.name"), reader.text("mail.smtpSecretRef.key")
        )
    else:
        # Read for the path record: the fields exist even when unused.
        reader.get("mail.smtpSecretRef.name")
        reader.get("mail.smtpSecretRef.key")

    return TenantSpec(
        image=reader.text("image"),
        bridge_image=reader.text("bridgeImage"),
        image_pull_policy=reader.text("imagePullPolicy"),
        expected_users=expected_users,
        profile=profile,
        log_level=reader.text("logLevel"),
        database=DatabaseSpec(
            secret=SecretKeyRef(
                reader.text("database.secretRef.name"), reader.text("database.secretRef.key")
            ),
            pool=PoolSpec(
                mode=cast(Literal["transaction", "session"], pool_mode),
                default_pool_size=reader.integer(
                    "database.pool.defaultPoolSize", profile.pool_default_size
                ),
                max_client_connections=reader.integer(
                    "database.pool.maxClientConnections", profile.pool_max_client_connections
                ),
            ),
        ),
        redis=RedisSpec(
            mode=cast(Literal["managed", "external"], redis_mode),
            storage=reader.text("redis.storage"),
            max_memory_mib=_memory_mib(
                "redis.maxMemory",
                reader.text("redis.maxMemory", f"{profile.redis_max_memory_mib}Mi"),
            ),
            external_secret=external_secret,
        ),
        api=ApiSpec(
            replicas=_replicas(
                reader,
                "api",
                minimum=profile.api_min_replicas,
                maximum=profile.api_max_replicas,
            ),
            target_cpu_utilization=reader.integer("api.targetCPUUtilizationPercentage"),
            resources=_resources(reader, "api", profile.api_resources),
        ),
        workers=WorkersSpec(
            queues=tuple(queues),
            replicas=_replicas(
                reader,
                "workers",
                minimum=profile.worker_min_replicas,
                maximum=profile.worker_max_replicas,
            ),
            tasks_per_replica=reader.integer("workers.tasksPerReplica"),
            concurrency=reader.integer("workers.concurrency"),
            scale_down_stabilization_seconds=reader.integer(
                "workers.scaleDownStabilizationSeconds"
            ),
            resources=_resources(reader, "workers", WORKER_RESOURCES),
        ),
        beat_enabled=bool(reader.get("beat.enabled")),
        reports=ReportsSpec(daily_at=daily_at),
        mail=MailSpec(from_address=mail_from, smtp_secret=smtp_secret),
        bridge=BridgeSpec(
            accounts_per_replica=reader.integer("bridge.accountsPerReplica"),
            replicas=_replicas(reader, "bridge", minimum=1, maximum=50),
            scale_down_stabilization_seconds=reader.integer("bridge.scaleDownStabilizationSeconds"),
            resources=_resources(reader, "bridge", BRIDGE_RESOURCES),
        ),
        rate_limits=RateLimits(
            per_user=_rate(reader, "perUser"),
            per_ip=_rate(reader, "perIP"),
            auth=_rate(reader, "auth"),
        ),
        trusted_proxies=tuple(proxies),
        allowed_origins=tuple(origins),
    )


def parse_tenant(body: Mapping[str, Any]) -> Tenant:
    """A tenant from the custom resource's body (``metadata`` and ``spec``)."""
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    return Tenant(
        name=str(metadata["name"]),
        namespace=str(metadata["namespace"]),
        uid=str(metadata["uid"]),
        generation=int(metadata.get("generation") or 0),
        paused=annotations.get(PAUSED_ANNOTATION) == "true",
        spec=parse_spec(body.get("spec") or {}),
    )


def parse_database_url(url: str) -> DatabaseTarget:
    """The tenant's ``postgresql://USER:PASSWORD@HOST:PORT/DBNAME``; ValueError says what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("must start with postgresql:// or postgres://")
    try:
        port = parts.port or 5432
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.hostname:
        raise ValueError("has no host")
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ValueError("names no database")
    if not parts.username or parts.password is None:
        raise ValueError("needs a user and a password (pgBouncer authenticates clients with them)")
    sslmode = parse_qs(parts.query).get("sslmode", ["prefer"])[-1]
    if sslmode not in ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"):
        raise ValueError("has an unknown sslmode")
    return DatabaseTarget(
        host=parts.hostname,
        port=port,
        dbname=dbname,
        user=unquote(parts.username),
        password=unquote(parts.password),
        sslmode=sslmode,
    )
