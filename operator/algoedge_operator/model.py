"""The typed ``AlgoEdgeTenant``: the raw custom resource validated, defaulted and sized by its capacity profile.

Two steps. :class:`SpecFields` (pydantic) mirrors the CRD's ``spec``: the same fields, types and
defaults, so the builders also work on a spec that was never defaulted by the API server (unit
tests, an older CRD); a unit test holds its fields and defaults equal to the CRD's. Then
:func:`parse_spec` resolves what the CRD leaves to the capacity profile
(:func:`algoedge_operator.profile.profile_for`) into the frozen :class:`TenantSpec` the builders
read; explicit fields always win. Every refusal is a :class:`SpecError` naming the field
(``spec.workers.queues: …``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from algoedge.urls import parse_postgres_url
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from algoedge_operator.profile import CapacityProfile, Resources, mebibytes, profile_for

GROUP = "algoedge.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AlgoEdgeTenant"
PLURAL = "algoedgetenants"

#: Annotation that stops every write for one tenant while it is "true".
PAUSED_ANNOTATION = "algoedge.io/paused"

#: Workers and the bridge have no profile-sized resources of their own in the table; these apply.
WORKER_RESOURCES = Resources("100m", "256Mi", "1", "512Mi")
BRIDGE_RESOURCES = Resources("100m", "256Mi", "1", "768Mi")

#: spec.reports.dailyAt: UTC HH:MM, the CRD's pattern (a unit test keeps the two equal).
DAILY_AT_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
#: spec.redis.maxMemory, as the CRD's pattern allows it.
MEMORY_PATTERN = r"^[1-9][0-9]*(Mi|Gi)$"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
#: spec.bridge.metaapi.region: a DNS label, the CRD's pattern and the app's rule for
#: ALGOEDGE_METAAPI_REGION (unit and contract tests keep the three equal).
METAAPI_REGION_PATTERN = rf"^{_DNS_LABEL}$"
#: spec.bridge.metaapi.domain: a DNS domain of two labels or more (ALGOEDGE_METAAPI_DOMAIN).
METAAPI_DOMAIN_PATTERN = rf"^{_DNS_LABEL}(\.{_DNS_LABEL})+$"
#: The MetaAPI tokens the operator passes on: the app's rule for ALGOEDGE_METAAPI_TOKEN (three
#: parts), and no whitespace, which MetaAPI would refuse only once the bridge runs.
METAAPI_TOKEN_FORM = "three dot-separated parts and no whitespace (a JWT)"  # noqa: S105

Text = Annotated[StrictStr, Field(min_length=1)]


# -- the spec as written (the CRD's fields and defaults) ----------------------------------------


class _Fields(BaseModel):
    """camelCase like the CRD; unknown fields are refused (the CRD's schema has them all)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


class SecretRefFields(_Fields):
    name: Text
    key: Text = "url"


class PoolFields(_Fields):
    mode: Literal["transaction", "session"] = "transaction"
    #: Profile-sized when unset.
    default_pool_size: StrictInt | None = None
    max_client_connections: StrictInt | None = None


class ReadReplicasFields(_Fields):
    secret_ref: SecretRefFields
    max_lag_seconds: Annotated[StrictInt, Field(ge=1, le=3600)] = 5


class DatabaseFields(_Fields):
    secret_ref: SecretRefFields
    pool: PoolFields = PoolFields()
    #: Unset: every query goes to the primary.
    read_replicas: ReadReplicasFields | None = None


class ExternalRedisFields(_Fields):
    secret_ref: SecretRefFields | None = None


class RedisFields(_Fields):
    mode: Literal["managed", "external"] = "managed"
    storage: Text = "1Gi"
    #: Profile-sized when unset.
    max_memory: Annotated[StrictStr, Field(pattern=MEMORY_PATTERN)] | None = None
    external: ExternalRedisFields | None = None

    @model_validator(mode="after")
    def _external_needs_a_secret(self) -> RedisFields:
        has_secret = self.external is not None and self.external.secret_ref is not None
        if self.mode == "external" and not has_secret:
            raise ValueError(
                "spec.redis.external.secretRef is required when spec.redis.mode is external"
            )
        return self


class QuantityFields(_Fields):
    cpu: Text | None = None
    memory: Text | None = None


class ResourceFields(_Fields):
    """Requests and limits; unset values keep the component's default."""

    requests: QuantityFields = QuantityFields()
    limits: QuantityFields = QuantityFields()

    def over(self, fallback: Resources) -> Resources:
        return Resources(
            cpu_request=self.requests.cpu or fallback.cpu_request,
            memory_request=self.requests.memory or fallback.memory_request,
            cpu_limit=self.limits.cpu or fallback.cpu_limit,
            memory_limit=self.limits.memory or fallback.memory_limit,
        )


class ApiFields(_Fields):
    min_replicas: StrictInt | None = None
    max_replicas: StrictInt | None = None
    target_cpu_utilization_percentage: StrictInt = Field(
        default=70, alias="targetCPUUtilizationPercentage"
    )
    resources: ResourceFields = ResourceFields()


class WorkersFields(_Fields):
    queues: tuple[Text, ...] = Field(default=("default", "reports", "emails"), min_length=1)
    min_replicas: StrictInt | None = None
    max_replicas: StrictInt | None = None
    tasks_per_replica: StrictInt = 50
    concurrency: StrictInt = 4
    scale_down_stabilization_seconds: StrictInt = 300
    resources: ResourceFields = ResourceFields()


class BeatFields(_Fields):
    enabled: StrictBool = True


class ReportsFields(_Fields):
    daily_at: Annotated[StrictStr, Field(pattern=DAILY_AT_PATTERN)] = "00:15"


class MailFields(_Fields):
    #: The app's default sender when unset.
    from_: Text | None = Field(default=None, alias="from")
    smtp_secret_ref: SecretRefFields | None = None


class TokenSecretRefFields(_Fields):
    name: Text
    key: Text = "token"


class MetaApiFields(_Fields):
    #: Unset: the bridge runs no pods (every one would exit without a token).
    token_secret_ref: TokenSecretRefFields | None = None
    region: Annotated[StrictStr, Field(pattern=METAAPI_REGION_PATTERN)] | None = None
    domain: Annotated[StrictStr, Field(pattern=METAAPI_DOMAIN_PATTERN)] = (
        "agiliumtrade.agiliumtrade.ai"
    )


class BridgeFields(_Fields):
    accounts_per_replica: StrictInt = 100
    min_replicas: StrictInt = 1
    max_replicas: StrictInt = 50
    scale_down_stabilization_seconds: StrictInt = 300
    max_concurrent_syncs: StrictInt = 10
    metaapi: MetaApiFields = MetaApiFields()
    resources: ResourceFields = ResourceFields()


class RateFields(_Fields):
    requests: StrictInt
    window_seconds: StrictInt

    @property
    def limit(self) -> RateLimit:
        return RateLimit(self.requests, self.window_seconds)


class PerUserRateFields(RateFields):
    requests: StrictInt = 100
    window_seconds: StrictInt = 900


class PerIPRateFields(RateFields):
    requests: StrictInt = 300
    window_seconds: StrictInt = 900


class AuthRateFields(RateFields):
    requests: StrictInt = 10
    window_seconds: StrictInt = 900


class RateLimitsFields(_Fields):
    per_user: PerUserRateFields = PerUserRateFields()
    per_ip: PerIPRateFields = Field(default=PerIPRateFields(), alias="perIP")
    auth: AuthRateFields = AuthRateFields()


class LimitsFields(_Fields):
    accounts_per_user: StrictInt = Field(default=10, ge=1, le=1000)


#: A Kubernetes label key: an optional DNS-subdomain prefix and ``/``, then a name of 1-63
#: alphanumerics, ``-``, ``_``, ``.`` that starts and ends alphanumeric (apimachinery's
#: ``IsQualifiedName``). The CRD's CEL rule uses the same expression (a unit test holds them equal).
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
#: A Kubernetes label value: empty, or what a key's name part may be (``IsValidLabelValue``).
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
#: Label keys under this prefix are the operator's own (the informers select on one of them).
RESERVED_LABEL_PREFIX = "app.kubernetes.io/"

LabelKey = Annotated[StrictStr, Field(pattern=LABEL_KEY_PATTERN, max_length=317)]
LabelValue = Annotated[StrictStr, Field(pattern=LABEL_VALUE_PATTERN, max_length=63)]


class MonitoringFields(_Fields):
    enabled: StrictBool = Field(
        default=False,
        description="Create a PodMonitor per component and a PrometheusRule (when the "
        "monitoring.coreos.com CRDs exist) and run the pgBouncer and Redis exporter sidecars.",
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default={},
        description="Labels put on every PodMonitor and PrometheusRule, so a Prometheus's "
        "selectors pick them up (kube-prometheus-stack: release: <its release>).",
    )

    @model_validator(mode="after")
    def _not_the_operators_labels(self) -> MonitoringFields:
        reserved = sorted(key for key in self.labels if key.startswith(RESERVED_LABEL_PREFIX))
        if reserved:
            raise ValueError(
                f"spec.monitoring.labels: {', '.join(reserved)}: keys under "
                f"{RESERVED_LABEL_PREFIX} are the operator's own"
            )
        if any(len(key.rsplit("/", 1)[0]) > 253 for key in self.labels if "/" in key):
            raise ValueError("spec.monitoring.labels: a key's prefix is longer than 253 characters")
        return self


class SpecFields(_Fields):
    """``spec`` of an AlgoEdgeTenant, field for field and default for default as in the CRD."""

    image: Text
    bridge_image: Text
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    expected_users: StrictInt = Field(default=100, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    trusted_proxies: tuple[Text, ...] | None = None
    allowed_origins: tuple[Text, ...] | None = None
    database: DatabaseFields
    redis: RedisFields = RedisFields()
    api: ApiFields = ApiFields()
    workers: WorkersFields = WorkersFields()
    beat: BeatFields = BeatFields()
    reports: ReportsFields = ReportsFields()
    mail: MailFields = MailFields()
    bridge: BridgeFields = BridgeFields()
    rate_limits: RateLimitsFields = RateLimitsFields()
    limits: LimitsFields = LimitsFields()
    monitoring: MonitoringFields = Field(
        default=MonitoringFields(),
        description="Prometheus Operator monitoring of the tenant (docs/operator.md).",
    )


# -- the spec as the builders read it -------------------------------------------------------------


class SpecError(ValueError):
    """The tenant's spec cannot be used (the CRD's validation should have caught it); the message
    starts with the field's path, e.g. ``spec.workers.queues``."""


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
class ReadReplicasSpec:
    #: Secret key holding the replicas' URL (one replica, or a Service in front of several).
    secret: SecretKeyRef
    #: ``ALGOEDGE_DATABASE_READ_MAX_LAG``.
    max_lag_seconds: int


@dataclass(frozen=True)
class DatabaseSpec:
    secret: SecretKeyRef
    pool: PoolSpec
    read_replicas: ReadReplicasSpec | None


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
class MetaApiSpec:
    #: Secret key holding the MetaAPI token; only bridge pods read it. None: no bridge pods.
    token_secret: SecretKeyRef | None
    #: ``ALGOEDGE_METAAPI_REGION`` (None: MetaAPI's default region).
    region: str | None
    #: ``ALGOEDGE_METAAPI_DOMAIN``.
    domain: str


@dataclass(frozen=True)
class BridgeSpec:
    accounts_per_replica: int
    #: What the scaler chooses from: the spec's bounds, or 0..0 while no MetaAPI token is
    #: referenced.
    replicas: ReplicaRange
    scale_down_stabilization_seconds: int
    #: ``ALGOEDGE_BRIDGE_MAX_CONCURRENT_SYNCS``.
    max_concurrent_syncs: int
    metaapi: MetaApiSpec
    resources: Resources


@dataclass(frozen=True)
class MonitoringSpec:
    enabled: bool
    #: ``spec.monitoring.labels``, sorted by key.
    labels: tuple[tuple[str, str], ...]


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
    #: ``ALGOEDGE_ACCOUNTS_PER_USER``.
    accounts_per_user: int
    monitoring: MonitoringSpec = MonitoringSpec(enabled=False, labels=())


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


def _spec_error(error: ValidationError) -> SpecError:
    """The first problem, as ``spec.<path>: <reason>`` (a model rule names its fields itself)."""
    first = error.errors()[0]
    reason = str(first["msg"]).removeprefix("Value error, ")
    if reason.startswith("spec."):
        return SpecError(reason)
    path = ".".join(str(part) for part in first["loc"])
    return SpecError(f"spec.{path}: {reason}" if path else f"spec: {reason}")


def _or(value: int | None, profile_value: int) -> int:
    return profile_value if value is None else value


def _memory_mib(text: str) -> int:
    return mebibytes(text)


def _replicas(
    prefix: str, fields: ApiFields | WorkersFields | BridgeFields, profile: tuple[int, int]
) -> ReplicaRange:
    """``spec.<prefix>.minReplicas``/``maxReplicas``, the profile's where unset."""
    low = profile[0] if fields.min_replicas is None else fields.min_replicas
    # An explicit minimum above the profile's maximum lifts the maximum with it.
    high = max(profile[1], low) if fields.max_replicas is None else fields.max_replicas
    if low > high:
        raise SpecError(f"spec.{prefix}.minReplicas must not exceed spec.{prefix}.maxReplicas")
    return ReplicaRange(low, high)


def _secret(ref: SecretRefFields | TokenSecretRefFields | None) -> SecretKeyRef | None:
    return None if ref is None else SecretKeyRef(ref.name, ref.key)


def parse_spec(raw: Mapping[str, Any]) -> TenantSpec:
    """Validate and default a raw ``spec``, then size what it leaves unset by its profile."""
    try:
        fields = SpecFields.model_validate(raw)
    except ValidationError as error:
        raise _spec_error(error) from None
    profile = profile_for(fields.expected_users)
    redis, pool, replicas, api, workers, bridge = (
        fields.redis,
        fields.database.pool,
        fields.database.read_replicas,
        fields.api,
        fields.workers,
        fields.bridge,
    )
    bridge_replicas = _replicas("bridge", bridge, (bridge.min_replicas, bridge.max_replicas))
    if bridge.metaapi.token_secret_ref is None:
        # Without ALGOEDGE_METAAPI_TOKEN every bridge process exits at start: run none rather
        # than crash-looping pods (the status says why).
        bridge_replicas = ReplicaRange(0, 0)
    return TenantSpec(
        image=fields.image,
        bridge_image=fields.bridge_image,
        image_pull_policy=fields.image_pull_policy,
        expected_users=fields.expected_users,
        profile=profile,
        log_level=fields.log_level,
        database=DatabaseSpec(
            secret=SecretKeyRef(fields.database.secret_ref.name, fields.database.secret_ref.key),
            pool=PoolSpec(
                mode=pool.mode,
                default_pool_size=_or(pool.default_pool_size, profile.pool_default_size),
                max_client_connections=_or(
                    pool.max_client_connections, profile.pool_max_client_connections
                ),
            ),
            read_replicas=(
                None
                if replicas is None
                else ReadReplicasSpec(
                    secret=SecretKeyRef(replicas.secret_ref.name, replicas.secret_ref.key),
                    max_lag_seconds=replicas.max_lag_seconds,
                )
            ),
        ),
        redis=RedisSpec(
            mode=redis.mode,
            storage=redis.storage,
            max_memory_mib=(
                profile.redis_max_memory_mib
                if redis.max_memory is None
                else _memory_mib(redis.max_memory)
            ),
            external_secret=(
                _secret(redis.external.secret_ref)
                if redis.mode == "external" and redis.external is not None
                else None
            ),
        ),
        api=ApiSpec(
            replicas=_replicas("api", api, (profile.api_min_replicas, profile.api_max_replicas)),
            target_cpu_utilization=api.target_cpu_utilization_percentage,
            resources=api.resources.over(profile.api_resources),
        ),
        workers=WorkersSpec(
            queues=workers.queues,
            replicas=_replicas(
                "workers", workers, (profile.worker_min_replicas, profile.worker_max_replicas)
            ),
            tasks_per_replica=workers.tasks_per_replica,
            concurrency=workers.concurrency,
            scale_down_stabilization_seconds=workers.scale_down_stabilization_seconds,
            resources=workers.resources.over(WORKER_RESOURCES),
        ),
        beat_enabled=fields.beat.enabled,
        reports=ReportsSpec(daily_at=fields.reports.daily_at),
        mail=MailSpec(
            from_address=fields.mail.from_, smtp_secret=_secret(fields.mail.smtp_secret_ref)
        ),
        bridge=BridgeSpec(
            accounts_per_replica=bridge.accounts_per_replica,
            replicas=bridge_replicas,
            scale_down_stabilization_seconds=bridge.scale_down_stabilization_seconds,
            max_concurrent_syncs=bridge.max_concurrent_syncs,
            metaapi=MetaApiSpec(
                token_secret=_secret(bridge.metaapi.token_secret_ref),
                region=bridge.metaapi.region,
                domain=bridge.metaapi.domain,
            ),
            resources=bridge.resources.over(BRIDGE_RESOURCES),
        ),
        rate_limits=RateLimits(
            per_user=fields.rate_limits.per_user.limit,
            per_ip=fields.rate_limits.per_ip.limit,
            auth=fields.rate_limits.auth.limit,
        ),
        trusted_proxies=fields.trusted_proxies or (),
        allowed_origins=fields.allowed_origins or (),
        accounts_per_user=fields.limits.accounts_per_user,
        monitoring=MonitoringSpec(
            enabled=fields.monitoring.enabled,
            labels=tuple(sorted(fields.monitoring.labels.items())),
        ),
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
    """The tenant's database from its Secret, by the app's own URL rule (:mod:`algoedge.urls`),
    plus what pgBouncer needs: a user and a password to authenticate clients with. ValueError
    says what is wrong (never the value)."""
    target = parse_postgres_url(url.strip())
    if not target.user or target.password is None:
        raise ValueError("needs a user and a password (pgBouncer authenticates clients with them)")
    database = DatabaseTarget(
        host=target.host,
        port=target.port,
        dbname=target.dbname,
        user=target.user,
        password=target.password,
        sslmode=target.sslmode,
    )
    check_pgbouncer_values(database)
    return database


#: A database name pgBouncer reads as a ``[databases]`` key without quoting (its documented
#: unquoted set; quoted keys fail its parser, pgbouncer/pgbouncer#971), at most Postgres' 63.
PGBOUNCER_DBNAME_PATTERN = r"[0-9A-Za-z_.-]{1,63}"
PGBOUNCER_DBNAME_FORM = "1-63 of the characters A-Z a-z 0-9 _ . -"
#: Control characters end or break a line of pgbouncer.ini or of its userlist, whatever the
#: quoting: a newline in a value would start a new configuration line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_pgbouncer_values(database: DatabaseTarget) -> None:
    """Refuse what pgBouncer cannot be given safely: every value of ``database`` is written into
    ``pgbouncer.ini`` (host, database name; the user as ``user=`` of a replica) or its userlist
    (user, password). Quoting covers quotes and backslashes (``builders.pgbouncer``); a control
    character or a database name outside pgBouncer's unquoted set cannot be written safely.
    ValueError says what is wrong (never the value)."""
    if not re.fullmatch(PGBOUNCER_DBNAME_PATTERN, database.dbname):
        raise ValueError(
            f"names a database pgBouncer cannot serve (the name must be {PGBOUNCER_DBNAME_FORM})"
        )
    for part in ("host", "user", "password"):
        if _CONTROL.search(getattr(database, part)):
            raise ValueError(
                f"has a control character (such as a line break) in its {part}, which "
                "pgBouncer's configuration cannot hold"
            )


def check_read_replica(primary: DatabaseTarget, replica: DatabaseTarget) -> None:
    """Refuse a replica URL one pgBouncer cannot serve beside the primary's. ValueError says what
    is wrong (never a value).

    pgBouncer has one ``server_tls_sslmode`` for every server, and one password per user in its
    userlist: a streaming replica has the primary's roles, so the same user with another
    password is a mistake (another user is fine: the replica's alias logs in as that user).
    """
    if replica.sslmode != primary.sslmode:
        raise ValueError(
            f"has sslmode {replica.sslmode} where the primary's URL has {primary.sslmode} "
            "(pgBouncer uses one sslmode for both)"
        )
    if replica.user == primary.user and replica.password != primary.password:
        raise ValueError(
            "has the primary's user with another password (a streaming replica has the "
            "primary's roles and passwords)"
        )


def check_metaapi_token(token: str) -> None:
    """Refuse a MetaAPI token the bridge would refuse at start-up (or send broken: whitespace
    from ``kubectl create secret --from-file``). ValueError says what is wrong (never the value)."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts) or any(c.isspace() for c in token):
        raise ValueError(f"must have {METAAPI_TOKEN_FORM}")
