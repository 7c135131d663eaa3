"""Typed process settings loaded from ``ALGOEDGE_*`` environment variables and validated at start-up.

Each process builds exactly one settings object (``MigrateSettings``, ``ServiceSettings`` or
``ApiSettings``) through :func:`load_settings`; a missing or malformed variable raises
:class:`ConfigError` whose one-line message names the variable and the expected form, and never
echoes the offending value (URLs carry passwords). The names are a contract with the operator:
docs/architecture.md lists them.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from email.utils import formataddr, parseaddr
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qs, unquote

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from algoedge import credentials
from algoedge.hashing import DEFAULT_HASH_CONCURRENCY, DEFAULT_MEMORY_LIMIT_MIB
from algoedge.rates import RateLimit, parse_rate, parse_trusted_proxies
from algoedge.urls import POSTGRES_FORM, REDIS_FORM, check_redis_url, parse_postgres_url, split_url

ENV_PREFIX = "ALGOEDGE_"

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """A setting is missing or malformed; the message is meant for the person starting the process."""


def _postgres_url(value: str) -> str:
    parse_postgres_url(value)
    return value


def _min_secret_length(length: int) -> AfterValidator:
    def check(value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < length:
            raise ValueError(f"is shorter than {length} characters")
        return value

    return AfterValidator(check)


def _rate(value: object) -> object:
    return parse_rate(value) if isinstance(value, str) else value


def _proxies(value: object) -> object:
    return parse_trusted_proxies(value) if isinstance(value, str) else value


_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
#: A browser's Origin: lower-case scheme and host, optional port, nothing after. The CRD's
#: spec.allowedOrigins rule uses this same expression (RE2 and Python agree on it).
ORIGIN_PATTERN = rf"^https?://({_LABEL}(\.{_LABEL})*|\[[0-9a-f:.]+\])(:{_PORT})?$"
ORIGIN_FORM = "comma-separated origins like https://app.example.com (lower case, no path)"


def _origins(value: object) -> object:
    if not isinstance(value, str):
        return value
    origins = tuple(origin.strip() for origin in value.split(",") if origin.strip())
    if any(not re.fullmatch(ORIGIN_PATTERN, origin) for origin in origins):
        raise ValueError(f"must be {ORIGIN_FORM}")
    return origins


def _queues(value: object) -> object:
    if not isinstance(value, str):
        return value
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    # The same rule as the CRD's spec.workers.queues items.
    if not names or any(not re.fullmatch(r"[a-z0-9][-_.a-z0-9]{0,62}", n) for n in names):
        raise ValueError("must be comma-separated queue names (lower case letters, digits, _ . -)")
    return names


def _credentials_key(value: SecretStr) -> SecretStr:
    credentials.parse_key(value.get_secret_value())
    return value


PostgresUrl = Annotated[str, AfterValidator(_postgres_url)]
CredentialsKey = Annotated[
    SecretStr,
    AfterValidator(_credentials_key),
    Field(
        description="Encrypts MT5 trading passwords at rest (api); the bridge decrypts with the same key.",
        json_schema_extra={"form": credentials.FORM},
    ),
]
MetricsPort = Annotated[
    int,
    Field(
        ge=0,
        le=65535,
        description="Port of this process's Prometheus /metrics and probes (0: none).",
        json_schema_extra={"form": "a port number from 0 (off) to 65535"},
    ),
]
RedisUrl = Annotated[str, AfterValidator(check_redis_url)]
Rate = Annotated[RateLimit, BeforeValidator(_rate)]
RATE_FORM = "REQUESTS/SECONDS, requests 1-1000000, seconds 1-86400"


class _Settings(BaseModel):
    # Built only by load_settings() from the process environment: no .env files that could
    # differ between pods, and strict field types so "8080abc" is not quietly accepted.
    model_config = ConfigDict(frozen=True, extra="forbid")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="Root log level.",
        json_schema_extra={"form": "one of DEBUG, INFO, WARNING, ERROR"},
    )


class MigrateSettings(_Settings):
    """What `algoedge migrate` needs: only the database."""

    database_url: PostgresUrl = Field(
        description="Postgres the process talks to; in the cluster this is pgBouncer (transaction pooling).",
        json_schema_extra={"form": POSTGRES_FORM},
    )
    db_pool_min: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Connections the aiopg pool keeps open even when idle.",
        json_schema_extra={"form": "an integer from 0 to 1000"},
    )
    db_pool_max: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Upper bound of the aiopg pool; pgBouncer multiplexes these onto fewer server connections.",
        json_schema_extra={"form": "an integer from 1 to 1000"},
    )
    db_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds one database operation (connecting, or a statement) may take; "
        "`algoedge migrate` allows itself at least an hour, for index builds.",
        json_schema_extra={"form": "seconds, a number above 0 and at most 300"},
    )


class ReadReplicaSettings(MigrateSettings):
    """A streaming replica for the reads that tolerate bounded staleness (api, worker).

    Beat, the bridge and migrate read what they have just written (claims, connection states,
    the schema), so they never read from a replica and do not have these fields.
    """

    database_read_url: PostgresUrl | None = Field(
        default=None,
        description=(
            "A streaming replica of ALGOEDGE_DATABASE_URL (in the cluster: pgBouncer's read "
            "alias) for listing and report reads; unset: every query goes to the primary."
        ),
        json_schema_extra={"form": POSTGRES_FORM},
    )
    database_read_max_lag: float = Field(
        default=5.0,
        ge=1,
        le=3600,
        description=(
            "Seconds the replica may trail the primary; beyond it (or while the replica does not "
            "answer) its reads go to the primary until it has caught up to half of this."
        ),
        json_schema_extra={"form": "seconds from 1 to 3600"},
    )


class ServiceSettings(MigrateSettings):
    """What every long-running service (API, worker, beat) needs: database and Redis."""

    redis_url: RedisUrl = Field(
        description="Redis for sessions, cache, rate limits, socket.io fan-out and the Celery broker.",
        json_schema_extra={"form": REDIS_FORM},
    )
    worker_queues: Annotated[tuple[str, ...], BeforeValidator(_queues)] = Field(
        default=("default", "reports", "emails"),
        description="Celery queues the workers consume, tasks are routed to and /internal/v1/capacity counts.",
        json_schema_extra={"form": "comma-separated queue names, like default,reports,emails"},
    )


class ApiSettings(ServiceSettings, ReadReplicaSettings):
    """The API process."""

    jwt_secret: Annotated[SecretStr, _min_secret_length(32)] = Field(
        description="HMAC key that signs access tokens.",
        json_schema_extra={"form": "a secret of at least 32 characters"},
    )
    internal_token: Annotated[SecretStr, _min_secret_length(16)] = Field(
        description="Bearer token for /internal/v1/* (the operator's capacity reads).",
        json_schema_extra={"form": "a secret of at least 16 characters"},
    )
    http_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a pod must listen on its pod IP
        min_length=1,
        description="Address the HTTP server binds.",
        json_schema_extra={"form": "an IP address or host name"},
    )
    http_port: int = Field(
        default=8080,
        ge=1,
        le=65535,
        description="Port of the public HTTP API and /socket.io/ (and the probes).",
        json_schema_extra={"form": "a port number from 1 to 65535"},
    )
    metrics_port: MetricsPort = Field(
        default=9090,
        description=(
            "Port of /metrics and /internal/v1/* (and the probes), kept off the public port so "
            "that only the NetworkPolicy's sources reach them (0: not served at all)."
        ),
    )

    @field_validator("metrics_port")
    @classmethod
    def _metrics_port_apart(cls, port: int, info: ValidationInfo) -> int:
        # One port for both would serve /metrics and /internal/v1/* to the public again.
        if port and port == info.data.get("http_port"):
            raise ValueError("must differ from ALGOEDGE_HTTP_PORT")
        return port

    credentials_key: CredentialsKey
    rate_limit_per_user: Rate = Field(
        default=RateLimit(100, 900),
        description="Requests one signed-in user may make per window, across all pods.",
        json_schema_extra={"form": RATE_FORM},
    )
    rate_limit_per_ip: Rate = Field(
        default=RateLimit(300, 900),
        description="Requests one client address may make per window, across all pods.",
        json_schema_extra={"form": RATE_FORM},
    )
    rate_limit_auth: Rate = Field(
        default=RateLimit(10, 900),
        description="Login and register attempts per client address per window (brute force).",
        json_schema_extra={"form": RATE_FORM},
    )
    rate_limit_account: Rate = Field(
        default=RateLimit(10, 3600),
        description=(
            "Failed logins per account (e-mail) per window, from any address; networks the "
            "account logged in from before are exempt once it is spent (docs/security.md)."
        ),
        json_schema_extra={"form": RATE_FORM},
    )
    password_hash_concurrency: int = Field(
        default=DEFAULT_HASH_CONCURRENCY,
        ge=1,
        le=64,
        description=(
            "argon2id hashes computed at once (64 MiB each); the default fits a "
            f"{DEFAULT_MEMORY_LIMIT_MIB} MiB container, the operator sets it from the API's "
            "memory limit (algoedge.hashing)."
        ),
        json_schema_extra={"form": "an integer from 1 to 64"},
    )
    password_hash_queue: int = Field(
        default=16,
        ge=0,
        le=1000,
        description=(
            "Logins and registrations that may wait for a hashing slot; beyond them the API "
            "answers 503 with Retry-After."
        ),
        json_schema_extra={"form": "an integer from 0 to 1000"},
    )
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], BeforeValidator(_proxies)] = (
        Field(
            default=(),
            description="Peers whose X-Forwarded-For is believed when finding the client address.",
            json_schema_extra={"form": "comma-separated CIDRs, like 10.0.0.0/8,fd00::/8"},
        )
    )
    allowed_origins: Annotated[tuple[str, ...], BeforeValidator(_origins)] = Field(
        default=(),
        description=(
            "Browser origins that may call the API cross-origin (CORS) and open sockets; "
            "unset: no CORS answers, and sockets are not checked by Origin."
        ),
        json_schema_extra={"form": ORIGIN_FORM},
    )
    accounts_per_user: int = Field(
        default=10,
        ge=1,
        le=1000,
        description=(
            "MetaTrader accounts one user may have linked at once; linking another answers 409 "
            "(each linked account costs a MetaAPI connection and a share of a bridge)."
        ),
        json_schema_extra={"form": "a number from 1 to 1000"},
    )
    user_cache_ttl: int = Field(
        default=1800,
        ge=900,
        le=3600,
        description="Seconds a user record stays cached in Redis (updates replace it at once).",
        json_schema_extra={"form": "seconds from 900 to 3600"},
    )
    access_token_ttl: int = Field(
        default=3600,
        ge=300,
        le=86400,
        description="Lifetime of an access token and its session.",
        json_schema_extra={"form": "seconds from 300 to 86400"},
    )
    socketio_transports: Literal["websocket", "websocket,polling"] = Field(
        default="websocket",
        description="socket.io transports; polling needs sticky sessions across pods.",
        json_schema_extra={"form": "websocket or websocket,polling"},
    )
    socketio_connect_timeout: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description=(
            "Seconds a new socket.io connection has to send its CONNECT with a live token; "
            "then it is closed (an idle connection that never authenticates holds nothing)."
        ),
        json_schema_extra={"form": "seconds, a number above 0 and at most 60"},
    )
    socketio_session_check_interval: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description=(
            "Seconds between a pod's checks that the sessions of its sockets are live: the "
            "bound on how long a socket outlives a logout whose announcement was lost."
        ),
        json_schema_extra={"form": "seconds from 1 to 3600"},
    )
    rate_limit_socket: Rate = Field(
        default=RateLimit(60, 60),
        description="New socket.io connections (handshakes) per client address per window.",
        json_schema_extra={"form": RATE_FORM},
    )


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where workers send mail: parsed from ALGOEDGE_SMTP_URL (the password stays secret)."""

    host: str
    port: int
    #: ``plain`` (no TLS), ``starttls`` (upgrade after EHLO) or ``tls`` (smtps://, TLS from the start).
    security: Literal["plain", "starttls", "tls"]
    username: str | None
    password: SecretStr | None


SMTP_FORM = "smtp://[USER:PASSWORD@]HOST:PORT[?starttls=true] or smtps://[USER:PASSWORD@]HOST:PORT"


def _smtp_url(value: object) -> object:
    if not isinstance(value, str):
        return value
    parts = split_url(value, schemes=("smtp", "smtps"))
    if parts.port is None:
        raise ValueError("has no port")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("has a path; only ?starttls=true may follow the port")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    if set(query) - {"starttls"} or any(len(v) != 1 for v in query.values()):
        raise ValueError("has an unknown query parameter; only ?starttls=true is understood")
    starttls = query.get("starttls", ["false"])[0]
    if starttls not in ("true", "false"):
        raise ValueError("has starttls that is neither true nor false")
    if parts.scheme == "smtps" and starttls == "true":
        raise ValueError("has starttls=true on smtps://, which is TLS already")
    security: Literal["plain", "starttls", "tls"] = (
        "tls" if parts.scheme == "smtps" else "starttls" if starttls == "true" else "plain"
    )
    return SmtpTarget(
        host=str(parts.hostname),
        port=parts.port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=SecretStr(unquote(parts.password)) if parts.password is not None else None,
    )


MAILBOX_FORM = "a mailbox like reports@example.com or AlgoEdge <reports@example.com>"


def _mailbox(value: object) -> object:
    if not isinstance(value, str):
        return value
    name, address = parseaddr(value)
    if not re.fullmatch(r"[^@\s<>]{1,64}@[^@\s<>]+", address) or any(c in value for c in "\r\n"):
        raise ValueError(f"must be {MAILBOX_FORM}")
    return formataddr((name, address)) if name else address


def _clock_time(value: object) -> object:
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])", value)
    if match is None:
        raise ValueError("must be HH:MM (UTC, 00:00 to 23:59)")
    return time(int(match[1]), int(match[2]))


class JobsSettings(ServiceSettings):
    """What both Celery processes (worker and beat) need beside the database and Redis."""

    metrics_port: MetricsPort = 9090
    heartbeat_file: str = Field(
        default="/tmp/algoedge-heartbeat",  # noqa: S108 - the pod's own emptyDir /tmp
        min_length=1,
        pattern=r"^/",
        description="File the process touches while healthy; `algoedge probe` checks its age.",
        json_schema_extra={"form": "an absolute path"},
    )
    jobs_visibility_timeout: int = Field(
        default=900,
        ge=6,
        le=43200,
        description=(
            "Seconds before Redis hands an unacknowledged task to another worker. A task's hard "
            "time limit and its longest retry delay are each a third of it, so a task that is "
            "still running or waiting to retry is never delivered twice."
        ),
        json_schema_extra={"form": "seconds from 6 to 43200"},
    )

    @property
    def task_time_limit(self) -> int:
        return self.jobs_visibility_timeout // 3

    @property
    def max_retry_delay(self) -> int:
        return self.jobs_visibility_timeout // 3


class WorkerSettings(JobsSettings, ReadReplicaSettings):
    """`algoedge worker`: runs tasks (reports, e-mail, notifications)."""

    worker_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Tasks one worker process runs at once (threads).",
        json_schema_extra={"form": "an integer from 1 to 64"},
    )
    worker_prefetch_multiplier: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Tasks reserved per thread beyond the running one; 1 keeps the backlog in Redis.",
        json_schema_extra={"form": "an integer from 1 to 16"},
    )
    worker_soft_shutdown_timeout: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description=(
            "On SIGTERM, seconds running tasks get to finish before the rest are handed back to "
            "the queue; keep it below the pod's terminationGracePeriodSeconds."
        ),
        json_schema_extra={"form": "seconds from 0 to 3600"},
    )
    smtp_url: Annotated[SmtpTarget | None, BeforeValidator(_smtp_url)] = Field(
        default=None,
        description="The SMTP server workers send through; unset: e-mails fail with that reason.",
        json_schema_extra={"form": SMTP_FORM},
    )
    smtp_timeout: float = Field(
        default=30.0,
        gt=0,
        le=300,
        description="Seconds one SMTP connection or command may take.",
        json_schema_extra={"form": "seconds, a number above 0 and at most 300"},
    )
    mail_from: Annotated[str, BeforeValidator(_mailbox)] = Field(
        default="AlgoEdge <no-reply@localhost>",
        description="From: of every e-mail.",
        json_schema_extra={"form": MAILBOX_FORM},
    )


class BeatSettings(JobsSettings):
    """`algoedge beat`: schedules the daily and weekly report runs and the sweeper."""

    report_daily_at: Annotated[time, BeforeValidator(_clock_time)] = Field(
        default=time(0, 15),
        description="UTC time of day of the daily report run (weekly runs: Mondays, same time).",
        json_schema_extra={"form": "HH:MM (UTC, 00:00 to 23:59)"},
    )


def _metaapi_token(value: SecretStr) -> SecretStr:
    parts = value.get_secret_value().split(".")
    if len(parts) != 3 or not all(parts):
        raise ValueError("must have three dot-separated parts (a MetaAPI API token is a JWT)")
    return value


METAAPI_URL_FORM = "http(s)://HOST[:PORT] with no path (a MetaAPI-compatible server)"


def _metaapi_url(value: object) -> object:
    if not isinstance(value, str):
        return value
    parts = split_url(value, schemes=("http", "https"))
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"must be {METAAPI_URL_FORM}")
    return value.rstrip("/")


class BridgeSettings(ServiceSettings):
    """`algoedge bridge`: keeps every linked account it owns connected to MetaAPI."""

    metaapi_token: Annotated[SecretStr, AfterValidator(_metaapi_token)] = Field(
        description="MetaAPI API access token of the platform's MetaAPI account.",
        json_schema_extra={"form": "a MetaAPI token (three dot-separated parts)"},
    )
    metaapi_domain: str = Field(
        default="agiliumtrade.agiliumtrade.ai",
        pattern=rf"^{_LABEL}(\.{_LABEL})+$",
        description="MetaAPI's domain (the SDK's `domain` option).",
        json_schema_extra={"form": "a DNS domain like agiliumtrade.agiliumtrade.ai"},
    )
    metaapi_region: str | None = Field(
        default=None,
        pattern=rf"^{_LABEL}$",
        description="MetaAPI region new accounts are created in (unset: MetaAPI's default).",
        json_schema_extra={"form": "a region name like vint-hill, new-york, london, singapore"},
    )
    metaapi_url: Annotated[str | None, BeforeValidator(_metaapi_url)] = Field(
        default=None,
        description=(
            "Send every MetaAPI REST call and socket to this base URL instead of the domain's "
            "hosts: the local simulator in tests and `make dev`. Unset in production."
        ),
        json_schema_extra={"form": METAAPI_URL_FORM},
    )
    credentials_key: CredentialsKey
    bridge_pod_name: str = Field(
        pattern=rf"^{_LABEL}$",
        description=(
            "This replica's member name for sharding accounts (the StatefulSet pod's name); "
            "two live processes must never share one."
        ),
        json_schema_extra={"form": "a DNS label like acme-bridge-0"},
    )
    bridge_max_concurrent_syncs: int = Field(
        default=10,
        ge=1,
        le=100,
        description=(
            "Account connects and synchronizations this replica runs at once (its connection "
            "queue, and the SDK's synchronization throttler)."
        ),
        json_schema_extra={"form": "an integer from 1 to 100"},
    )
    bridge_lease_ttl: float = Field(
        default=30.0,
        ge=3,
        le=600,
        description=(
            "Seconds an account lease and a member registration live unless renewed (renewed "
            "every third of it); bounds how long a dead replica's accounts stay unconnected."
        ),
        json_schema_extra={"form": "seconds from 3 to 600"},
    )
    bridge_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds between reads of the linked accounts (the API also wakes bridges at once).",
        json_schema_extra={"form": "seconds, above 0 and at most 300"},
    )
    metrics_port: MetricsPort = 9090


SettingsT = TypeVar("SettingsT", bound=_Settings)

ALL_SETTINGS: tuple[type[_Settings], ...] = (
    MigrateSettings,
    ReadReplicaSettings,
    ServiceSettings,
    ApiSettings,
    JobsSettings,
    WorkerSettings,
    BeatSettings,
    BridgeSettings,
)


def env_name(model: type[_Settings], field: str) -> str:
    """The environment variable that fills ``field`` of ``model``."""
    return f"{ENV_PREFIX}{field.upper()}"


def known_variables() -> frozenset[str]:
    """Every ``ALGOEDGE_*`` variable some process reads."""
    return frozenset(env_name(m, f) for m in ALL_SETTINGS for f in m.model_fields)


def _expected_form(model: type[_Settings], field: str) -> str:
    extra = model.model_fields[field].json_schema_extra
    form = extra.get("form") if isinstance(extra, dict) else None
    return str(form) if form else "a valid value"


def _describe(model: type[_Settings], error: Mapping[str, Any]) -> str:
    field = str((error.get("loc") or ("?",))[0])
    variable = env_name(model, field)
    form = _expected_form(model, field)
    if error.get("type") == "missing":
        return f"{variable} is not set (expected {form})"
    # Pydantic's "Value error, " prefix adds nothing for a person reading a start-up error.
    reason = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    if not reason.startswith(("must", "has", "is", "names")):
        reason = f"is invalid: {reason.lower()}"
    return f"{variable} {reason} (expected {form})"


def load_settings(model: type[SettingsT], environ: Mapping[str, str]) -> SettingsT:
    """Validate ``environ`` into ``model``; raise ConfigError naming every bad variable."""
    relevant = {k: v for k, v in environ.items() if k.startswith(ENV_PREFIX)}
    for name in sorted(set(relevant) - known_variables()):
        close = difflib.get_close_matches(name, sorted(known_variables()), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        log.warning("ignoring unknown setting %s%s", name, hint)
    try:
        return model.model_validate(
            {
                name: relevant[env_name(model, name)]
                for name in model.model_fields
                if env_name(model, name) in relevant
            }
        )
    except ValidationError as exc:
        problems = sorted({_describe(model, dict(e)) for e in exc.errors()})
        raise ConfigError("; ".join(problems)) from None
