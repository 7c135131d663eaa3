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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from algoedge.urls import parse_postgres_url, split_url
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

from algoedge_operator.profile import (
    PROFILES,
    CapacityProfile,
    Resources,
    mebibytes,
    profile_for,
)

GROUP = "algoedge.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AlgoEdgeTenant"
PLURAL = "algoedgetenants"

#: What ``kubectl explain algoedgetenant`` and ``…spec`` say first (devtools/crd.py writes them).
TENANT_DESCRIPTION = (
    "One complete AlgoEdge deployment (API, Celery workers and beat, Redis, pgBouncer, MetaAPI "
    "bridge) in this namespace, kept as its spec says by algoedge-operator. Children are named "
    "<tenant>-<component> and deleted with it. Annotate algoedge.io/paused=true to stop every "
    "write. Fields: docs/operator.md."
)
SPEC_DESCRIPTION = (
    "The tenant as you want it. Sizes left unset come from the capacity profile "
    "spec.expectedUsers picks; explicit fields always win."
)

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
#: The schemes of spec.bridge.metaapi.url and their default ports (MetaAPI itself: HTTPS).
SCHEME_PORTS = {"http": 80, "https": 443}
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
#: spec.bridge.metaapi.url: http(s)://HOST[:PORT], no path (ALGOEDGE_METAAPI_URL); a subset of
#: what the app accepts (a contract test), lower-case DNS names and IPv4 addresses only.
METAAPI_URL_PATTERN = rf"^https?://{_DNS_LABEL}(\.{_DNS_LABEL})*(:{_PORT})?/?$"
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


def _by_profile(what: str, value: Callable[[CapacityProfile], object]) -> str:
    """How the capacity profile sizes a field left unset, with each profile's value (so the CRD's
    description follows profile.py)."""
    sizes = ", ".join(f"{p.name} {value(p)}" for p in PROFILES)
    return f"Unset: {what} from the capacity profile spec.expectedUsers picks ({sizes})."


def _resources(default: Callable[[CapacityProfile], Resources] | Resources) -> str:
    def text(r: Resources) -> str:
        return f"requests {r.cpu_request}/{r.memory_request}, limits {r.cpu_limit}/{r.memory_limit}"

    if isinstance(default, Resources):
        fallback = f"Unset values keep the fixed default ({text(default)}; cpu/memory)."
    else:
        fallback = _by_profile("each value", lambda p: f"[{text(default(p))}]")
    return (
        "CPU and memory requests and limits of the container; each value given replaces only "
        f"itself. {fallback}"
    )


#: Said of every Secret reference (the operator refuses one without it: SecretNotLabelled).
_REFERENCED_NAME = (
    "Name of the Secret, in the tenant's namespace. It must carry the label "
    "algoedge.io/tenant=<tenant name>, or nothing is deployed (Degraded, reason "
    "SecretNotLabelled); the operator reads it at every resync and does not watch it."
)
_REPLICAS_NOTE = "must not exceed maxReplicas (CEL rule)"


class SecretRefFields(_Fields):
    name: Text = Field(description=_REFERENCED_NAME)
    key: Text = Field(default="url", description="Key in the Secret whose value is the URL.")


class PoolFields(_Fields):
    mode: Literal["transaction", "session"] = Field(
        default="transaction",
        description=(
            "pgBouncer pool_mode: transaction (a server connection per transaction; what the app "
            "is written for) or session (a server connection per client connection)."
        ),
    )
    default_pool_size: StrictInt | None = Field(
        default=None,
        description=(
            "pgBouncer default_pool_size: server connections to PostgreSQL per database and "
            "user, 1-10000; must not exceed maxClientConnections (CEL rule). "
            + _by_profile("connections", lambda p: p.pool_default_size)
        ),
    )
    max_client_connections: StrictInt | None = Field(
        default=None,
        description=(
            "pgBouncer max_client_conn: client connections (app pods' pools) pgBouncer accepts, "
            "1-100000; size it for api maxReplicas x 10 (the app's pool) plus workers if you "
            "raise those. " + _by_profile("connections", lambda p: p.pool_max_client_connections)
        ),
    )


class ReadReplicasFields(_Fields):
    secret_ref: SecretRefFields = Field(
        description=(
            "Secret whose key holds postgresql://USER:PASSWORD@HOST:PORT/DBNAME of a streaming "
            "replica, or of a Service in front of several; not the primary's own Secret and key "
            "(CEL rule). Same sslmode as the primary's URL."
        )
    )
    max_lag_seconds: Annotated[StrictInt, Field(ge=1, le=3600)] = Field(
        default=5,
        description=(
            "Seconds, 1-3600, a replica may trail the primary before the app reads from the "
            "primary instead (ALGOEDGE_DATABASE_READ_MAX_LAG)."
        ),
    )


class DatabaseFields(_Fields):
    secret_ref: SecretRefFields = Field(
        description=(
            "Secret whose key holds the tenant's PostgreSQL as "
            "postgresql://USER:PASSWORD@HOST:PORT/DBNAME[?sslmode=...]; pgBouncer connects "
            "to it, the app connects to pgBouncer. Missing or invalid: nothing is deployed "
            "(SecretMissing / SecretInvalid)."
        )
    )
    pool: PoolFields = Field(
        default=PoolFields(),
        description="pgBouncer's pooling in front of the database; sizes follow the capacity profile.",
    )
    read_replicas: ReadReplicasFields | None = Field(
        default=None,
        description=(
            "Streaming replicas for the app's listing and report reads (pgBouncer alias "
            "<dbname>_ro, ALGOEDGE_DATABASE_READ_URL of api and workers). Unset: every query "
            "goes to the primary."
        ),
    )


class ExternalRedisFields(_Fields):
    secret_ref: SecretRefFields | None = Field(
        default=None,
        description=(
            "Secret whose key holds redis://[:PASSWORD@]HOST:PORT/DB or rediss://...; required "
            "in external mode (CEL rule). Given to app pods as ALGOEDGE_REDIS_URL."
        ),
    )


class RedisFields(_Fields):
    mode: Literal["managed", "external"] = Field(
        default="managed",
        description=(
            "managed: the operator runs Redis (<tenant>-redis StatefulSet, password, AOF, "
            "noeviction); external: the app uses the Redis of redis.external.secretRef."
        ),
    )
    storage: Text = Field(
        default="1Gi",
        description=(
            "Size of the managed Redis volume (Mi, Gi or Ti). Fixed at creation: "
            "StatefulSet volume claims are immutable (CEL transition rule); resize the "
            "PersistentVolumeClaim itself."
        ),
    )
    max_memory: Annotated[StrictStr, Field(pattern=MEMORY_PATTERN)] | None = Field(
        default=None,
        description=(
            "Managed Redis maxmemory (Mi or Gi; noeviction, so writes fail beyond it); the "
            "container's memory limit is this plus 64Mi. "
            + _by_profile("MiB", lambda p: p.redis_max_memory_mib)
        ),
    )
    external: ExternalRedisFields | None = Field(
        default=None,
        description="The Redis to use in external mode; only allowed when mode is external (CEL rule).",
    )

    @model_validator(mode="after")
    def _external_needs_a_secret(self) -> RedisFields:
        has_secret = self.external is not None and self.external.secret_ref is not None
        if self.mode == "external" and not has_secret:
            raise ValueError(
                "spec.redis.external.secretRef is required when spec.redis.mode is external"
            )
        return self


class QuantityFields(_Fields):
    cpu: Text | None = Field(
        default=None,
        description="CPU in cores (1, 0.5) or millicores (250m). Unset: the default named above.",
    )
    memory: Text | None = Field(
        default=None,
        description="Memory in Ki, Mi or Gi (512Mi). Unset: the default named above.",
    )


class ResourceFields(_Fields):
    """Requests and limits; unset values keep the component's default."""

    requests: QuantityFields = Field(
        default=QuantityFields(),
        description="What the scheduler reserves for the container (and the HPA's CPU base).",
    )
    limits: QuantityFields = Field(
        default=QuantityFields(),
        description="The most the container may use (memory beyond it: the container is killed).",
    )

    def over(self, fallback: Resources) -> Resources:
        return Resources(
            cpu_request=self.requests.cpu or fallback.cpu_request,
            memory_request=self.requests.memory or fallback.memory_request,
            cpu_limit=self.limits.cpu or fallback.cpu_limit,
            memory_limit=self.limits.memory or fallback.memory_limit,
        )


class ApiFields(_Fields):
    min_replicas: StrictInt | None = Field(
        default=None,
        description=(
            f"Fewest API pods the HPA keeps, 1-100; {_REPLICAS_NOTE}. An explicit value above "
            "the profile's maximum lifts the maximum with it. "
            + _by_profile("pods", lambda p: p.api_min_replicas)
        ),
    )
    max_replicas: StrictInt | None = Field(
        default=None,
        description=(
            "Most API pods the HPA may run, 1-100. "
            + _by_profile("pods", lambda p: p.api_max_replicas)
        ),
    )
    target_cpu_utilization_percentage: StrictInt = Field(
        default=70,
        alias="targetCPUUtilizationPercentage",
        description="Average CPU use, in percent of the CPU request (10-100), the HPA aims for.",
    )
    resources: ResourceFields = Field(
        default=ResourceFields(), description=_resources(lambda p: p.api_resources)
    )


class WorkersFields(_Fields):
    queues: tuple[Text, ...] = Field(
        default=("default", "reports", "emails"),
        min_length=1,
        description=(
            "Celery queues the workers consume and the API's capacity endpoint counts "
            "(ALGOEDGE_WORKER_QUEUES), 1-32 names; report and e-mail tasks go to reports and "
            "emails when listed, else to default."
        ),
    )
    min_replicas: StrictInt | None = Field(
        default=None,
        description=(
            f"Fewest worker pods the backlog scaler keeps, 0-500 (0: none without backlog); "
            f"{_REPLICAS_NOTE}. " + _by_profile("pods", lambda p: p.worker_min_replicas)
        ),
    )
    max_replicas: StrictInt | None = Field(
        default=None,
        description=(
            "Most worker pods the backlog scaler runs, 1-500. "
            + _by_profile("pods", lambda p: p.worker_max_replicas)
        ),
    )
    tasks_per_replica: StrictInt = Field(
        default=50,
        description=(
            "Queued tasks one worker pod is expected to absorb: the scaler runs "
            "ceil(backlog / this) pods, within the bounds."
        ),
    )
    concurrency: StrictInt = Field(
        default=4,
        description="Tasks one worker pod runs at once, 1-64 (ALGOEDGE_WORKER_CONCURRENCY).",
    )
    scale_down_stabilization_seconds: StrictInt = Field(
        default=300,
        description=(
            "Seconds, 0-3600, the scaler looks back before scaling down: it goes down only to "
            "the highest recommendation of that window (scaling up is at once)."
        ),
    )
    resources: ResourceFields = Field(
        default=ResourceFields(), description=_resources(WORKER_RESOURCES)
    )


class BeatFields(_Fields):
    enabled: StrictBool = Field(
        default=True,
        description=(
            "Run <tenant>-beat (one Celery beat: daily and weekly reports, the sweeper); false "
            "deletes it."
        ),
    )


class ReportsFields(_Fields):
    daily_at: Annotated[StrictStr, Field(pattern=DAILY_AT_PATTERN)] = Field(
        default="00:15",
        description=(
            "UTC time, HH:MM, of the daily report run; the weekly run is on Mondays at the same "
            "time (ALGOEDGE_REPORT_DAILY_AT, read by beat)."
        ),
    )


class MailFields(_Fields):
    from_: Text | None = Field(
        default=None,
        alias="from",
        description=(
            "The From: mailbox, e.g. AlgoEdge <reports@example.com>, at most 320 characters "
            "(ALGOEDGE_MAIL_FROM). Unset: the app's default, AlgoEdge <no-reply@localhost>."
        ),
    )
    smtp_secret_ref: SecretRefFields | None = Field(
        default=None,
        description=(
            "Secret whose key holds smtp://[USER:PASSWORD@]HOST:PORT[?starttls=true] or "
            "smtps://...; given to worker pods only (ALGOEDGE_SMTP_URL). Unset: e-mail tasks "
            "fail, saying so."
        ),
    )


class TokenSecretRefFields(_Fields):
    name: Text = Field(description=_REFERENCED_NAME)
    key: Text = Field(default="token", description="Key in the Secret whose value is the token.")


class MetaApiFields(_Fields):
    token_secret_ref: TokenSecretRefFields | None = Field(
        default=None,
        description=(
            "Secret whose key holds the MetaAPI API token (a JWT), given to bridge pods only "
            "(ALGOEDGE_METAAPI_TOKEN). Unset: the bridge runs 0 pods, linked accounts are not "
            "connected and the tenant is Degraded, reason MetaApiTokenNotSet."
        ),
    )
    region: Annotated[StrictStr, Field(pattern=METAAPI_REGION_PATTERN)] | None = Field(
        default=None,
        description=(
            "MetaAPI region new accounts are created in, a DNS label such as london, new-york, "
            "singapore, vint-hill (ALGOEDGE_METAAPI_REGION). Unset: MetaAPI's default."
        ),
    )
    domain: Annotated[StrictStr, Field(pattern=METAAPI_DOMAIN_PATTERN)] = Field(
        default="agiliumtrade.agiliumtrade.ai",
        description="MetaAPI's domain, a DNS name (ALGOEDGE_METAAPI_DOMAIN).",
    )
    url: Annotated[StrictStr, Field(pattern=METAAPI_URL_PATTERN)] | None = Field(
        default=None,
        description=(
            "Base URL of a MetaAPI-compatible server, http(s)://HOST[:PORT] with no path, that "
            "every MetaAPI REST call and socket of the bridge goes to instead of the domain's "
            "hosts (ALGOEDGE_METAAPI_URL): the MetaAPI simulator (algoedge-metaapi-sim) on a "
            "test cluster. The bridge's NetworkPolicy then allows egress to its port instead of "
            "443. Unset (production): MetaAPI itself."
        ),
    )


class BridgeFields(_Fields):
    accounts_per_replica: StrictInt = Field(
        default=100,
        description=(
            "Linked MetaTrader accounts per bridge pod, 1-100 (one MetaAPI socket carries at "
            "most 100): the scaler runs ceil(linked accounts / this) pods, within the bounds."
        ),
    )
    min_replicas: StrictInt = Field(
        default=1,
        description=(
            f"Fewest bridge pods, 0-500, once a MetaAPI token is referenced (without one: 0); "
            f"{_REPLICAS_NOTE}. Not sized by the capacity profile."
        ),
    )
    max_replicas: StrictInt = Field(
        default=50, description="Most bridge pods the scaler runs, 1-500."
    )
    scale_down_stabilization_seconds: StrictInt = Field(
        default=300,
        description=(
            "Seconds, 0-3600, the scaler looks back before scaling down: it goes down only to "
            "the highest recommendation of that window (scaling up is at once)."
        ),
    )
    max_concurrent_syncs: StrictInt = Field(
        default=10,
        description=(
            "Account connects and synchronizations one bridge pod runs at once, 1-100 "
            "(ALGOEDGE_BRIDGE_MAX_CONCURRENT_SYNCS)."
        ),
    )
    metaapi: MetaApiFields = Field(
        default=MetaApiFields(),
        description="MetaAPI, through which the bridge connects the linked MetaTrader accounts.",
    )
    resources: ResourceFields = Field(
        default=ResourceFields(), description=_resources(BRIDGE_RESOURCES)
    )


class RateFields(_Fields):
    requests: StrictInt = Field(description="Requests allowed per window, 1-1000000.")
    window_seconds: StrictInt = Field(description="Length of the window in seconds, 1-86400.")

    @property
    def limit(self) -> RateLimit:
        return RateLimit(self.requests, self.window_seconds)


class PerUserRateFields(RateFields):
    requests: StrictInt = Field(
        default=100, description=RateFields.model_fields["requests"].description
    )
    window_seconds: StrictInt = Field(
        default=900, description=RateFields.model_fields["window_seconds"].description
    )


class PerIPRateFields(RateFields):
    requests: StrictInt = Field(
        default=300, description=RateFields.model_fields["requests"].description
    )
    window_seconds: StrictInt = Field(
        default=900, description=RateFields.model_fields["window_seconds"].description
    )


class AuthRateFields(RateFields):
    requests: StrictInt = Field(
        default=10, description=RateFields.model_fields["requests"].description
    )
    window_seconds: StrictInt = Field(
        default=900, description=RateFields.model_fields["window_seconds"].description
    )


class RateLimitsFields(_Fields):
    per_user: PerUserRateFields = Field(
        default=PerUserRateFields(),
        description="Per signed-in user, every API route (ALGOEDGE_RATE_LIMIT_PER_USER); 429 beyond it.",
    )
    per_ip: PerIPRateFields = Field(
        default=PerIPRateFields(),
        alias="perIP",
        description="Per client IP, every API route (ALGOEDGE_RATE_LIMIT_PER_IP); 429 beyond it.",
    )
    auth: AuthRateFields = Field(
        default=AuthRateFields(),
        description=(
            "Login and registration per client IP, a brute-force guard "
            "(ALGOEDGE_RATE_LIMIT_AUTH); 429 beyond it."
        ),
    )


class LimitsFields(_Fields):
    accounts_per_user: StrictInt = Field(
        default=10,
        ge=1,
        le=1000,
        description=(
            "MetaTrader accounts one user may have linked at once, 1-1000 "
            "(ALGOEDGE_ACCOUNTS_PER_USER); linking one more answers 409."
        ),
    )


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

    image: Text = Field(
        description=(
            "Image of api, worker, beat and migrate (`algoedge <command>`; images/Dockerfile "
            "target app). Must match the operator's image allow-list when one is set."
        )
    )
    bridge_image: Text = Field(
        description=(
            "Image of the MetaAPI bridge (`algoedge bridge`; images/Dockerfile target bridge). "
            "Must match the operator's image allow-list when one is set."
        )
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="When the kubelet pulls the two images."
    )
    expected_users: StrictInt = Field(
        default=100,
        ge=1,
        description=(
            "Users the tenant is sized for, 1-1000000: picks the capacity profile (<= 100 "
            "small, <= 250 medium, more large) that sizes every replica bound, resource, pool "
            "and Redis memory left unset; explicit fields always win. Changing it resizes the "
            "tenant."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of every app process (ALGOEDGE_LOG_LEVEL)."
    )
    trusted_proxies: tuple[Text, ...] | None = Field(
        default=None,
        description=(
            "Networks in CIDR form, no host bits set (10.0.0.0/8, not 10.0.0.1/8; CEL rule), "
            "whose X-Forwarded-For the API trusts for the client address (ALGOEDGE_TRUSTED_PROXIES), "
            "at most 32. Unset: none."
        ),
    )
    allowed_origins: tuple[Text, ...] | None = Field(
        default=None,
        description=(
            "Browser origins such as https://app.example.com (scheme, host, optional port; CEL "
            "rule) that may call the API cross-origin and open sockets "
            "(ALGOEDGE_ALLOWED_ORIGINS), at most 32. Unset: no cross-origin access."
        ),
    )
    database: DatabaseFields = Field(
        description="The tenant's own PostgreSQL, reached through the pgBouncer the operator runs."
    )
    redis: RedisFields = Field(
        default=RedisFields(),
        description="Redis for sessions, cache, rate limits, socket.io fan-out and the Celery broker.",
    )
    api: ApiFields = Field(
        default=ApiFields(),
        description="The API Deployment (aiohttp + socket.io) and its HorizontalPodAutoscaler.",
    )
    workers: WorkersFields = Field(
        default=WorkersFields(),
        description="The Celery workers, scaled by the operator on the queues' backlog.",
    )
    beat: BeatFields = Field(default=BeatFields(), description="The Celery beat scheduler.")
    reports: ReportsFields = Field(
        default=ReportsFields(), description="When beat runs the report jobs."
    )
    mail: MailFields = Field(
        default=MailFields(),
        description="Outgoing e-mail (reports, notifications); only worker pods send it.",
    )
    bridge: BridgeFields = Field(
        default=BridgeFields(),
        description=(
            "The MetaAPI bridge StatefulSet, scaled by the operator on the linked accounts."
        ),
    )
    rate_limits: RateLimitsFields = Field(
        default=RateLimitsFields(),
        description="The API's rate limits: requests per window, answered 429 beyond.",
    )
    limits: LimitsFields = Field(
        default=LimitsFields(), description="Per-user limits the API enforces."
    )
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
    #: ``ALGOEDGE_METAAPI_URL``: a MetaAPI-compatible server instead of the domain's hosts (None:
    #: MetaAPI itself).
    url: str | None

    @property
    def port(self) -> int:
        """The TCP port the bridge reaches MetaAPI on: the URL's (or its scheme's), else HTTPS."""
        if self.url is None:
            return SCHEME_PORTS["https"]
        parts = split_url(self.url, schemes=SCHEME_PORTS)
        return parts.port or SCHEME_PORTS[parts.scheme]


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
                url=bridge.metaapi.url,
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
