"""The operator's own settings, read once from ``ALGOEDGE_OPERATOR_*`` variables and validated at start-up.

One pydantic model, like the app's settings: each field is documented in place with the form a
person must give it, and a malformed variable stops the operator with
``<VARIABLE> must be <form>`` (never echoing the value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from string import Formatter
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from algoedge_operator.profile import USERS_PER_API_POD

PREFIX = "ALGOEDGE_OPERATOR_"
#: The API Service's ``metrics`` port: /internal/v1/* is not served on the public one.
DEFAULT_CAPACITY_URL = "http://{name}-api.{namespace}.svc:9090/internal/v1/capacity"


class SettingsError(ValueError):
    """A setting is malformed; the message names the variable and the expected form."""


def _capacity_url(template: str) -> str:
    fields = {field for _, field, _, _ in Formatter().parse(template) if field is not None}
    if not fields <= {"name", "namespace"}:
        raise ValueError("uses a field other than {name} and {namespace}")
    sample = urlsplit(template.format(name="tenant", namespace="ns"))
    if sample.scheme not in ("http", "https") or not sample.hostname:
        raise ValueError("is not an http(s) URL")
    return template


def _boolean(value: object) -> object:
    # Exactly the two words a manifest writes; pydantic alone would also take yes, 1, True.
    if isinstance(value, str) and value not in ("true", "false"):
        raise ValueError("is neither true nor false")
    return value


#: One image prefix: a registry host (with its port) and repository path (a tag at most), without
#: whitespace or digest.
_IMAGE_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-/:]*")


def _comma_separated(value: object) -> object:
    # The variable is one comma-separated string; blanks around an entry are ignored.
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def _checked_prefixes(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    for prefix in prefixes:
        if not _IMAGE_PREFIX.fullmatch(prefix) or "@" in prefix:
            raise ValueError("is not a registry/repository prefix")
    return prefixes


def image_allowed(image: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``image`` is under one of ``prefixes`` (none: every image is). A prefix matches
    at a path boundary: ``registry.example.com/team`` allows ``registry.example.com/team:1``
    and ``registry.example.com/team/api:1``, not ``registry.example.com/team-b/api:1``; one
    ending in ``/`` allows everything below it. The image itself (no tag: ``latest``) is under
    its own name."""
    if not prefixes:
        return True
    return any(
        image.startswith(prefix)
        and (prefix.endswith("/") or image[len(prefix) : len(prefix) + 1] in ("", "/", ":", "@"))
        for prefix in prefixes
    )


#: A namespace name: an RFC 1123 label (what the API server accepts for a Namespace).
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _namespace_list(value: object) -> object:
    # Strict, unlike the allow-list: a stray comma must not leave an empty name that could be
    # read as "every namespace".
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(","))
    return value


def _checked_namespaces(namespaces: tuple[str, ...]) -> tuple[str, ...]:
    for namespace in namespaces:
        if not _NAMESPACE.fullmatch(namespace):
            raise ValueError("is not a namespace name")
    if len(set(namespaces)) != len(namespaces):
        raise ValueError("names a namespace twice")
    return namespaces


def kopf_scope_args(namespaces: tuple[str, ...]) -> list[str]:
    """kopf's own flags for :attr:`OperatorSettings.namespaces`, so kopf watches tenants where
    the operator's other reads and writes are (the chart renders the same from one value)."""
    if not namespaces:
        return ["--all-namespaces"]
    return [f"--namespace={namespace}" for namespace in namespaces]


def _form(form: str) -> Any:
    return {"form": form}


def _seconds(default: float, *, maximum: float) -> Any:
    """A duration in (0, ``maximum``] seconds."""
    return Field(
        default=default,
        gt=0,
        le=maximum,
        allow_inf_nan=False,
        json_schema_extra=_form(f"a number of seconds in (0, {maximum:g}]"),
    )


def _price(default: float) -> Any:
    """A non-negative amount of money."""
    return Field(
        default=default,
        ge=0,
        le=1_000_000,
        allow_inf_nan=False,
        json_schema_extra=_form("a non-negative number (at most 1000000)"),
    )


class OperatorSettings(BaseModel):
    """Everything the operator process is configured with (``ALGOEDGE_OPERATOR_<FIELD>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Template of each tenant's capacity endpoint, filled with its {name} and {namespace} (local
    #: runs and tests point it at a port-forward or a fake).
    capacity_url: Annotated[str, AfterValidator(_capacity_url)] = Field(
        default=DEFAULT_CAPACITY_URL,
        json_schema_extra=_form("an http(s) URL template using only {name} and {namespace}"),
    )
    #: Seconds between two capacity reads per tenant.
    scale_interval: float = _seconds(30.0, maximum=3600)
    #: Seconds between two full reconciles of a quiet tenant (a safety net: child changes
    #: reconcile at once).
    resync_interval: float = _seconds(60.0, maximum=86400)
    #: Seconds one capacity request may take.
    capacity_timeout: float = _seconds(5.0, maximum=60)
    #: Where /metrics and /healthz listen.
    http_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a pod listens on its own address
        min_length=1,
        json_schema_extra=_form("an IP address or host name"),
    )
    #: Port of /metrics and /healthz; 0 turns the server off.
    http_port: int = Field(
        default=8080, ge=0, le=65535, json_schema_extra=_form("an integer in 0..65535")
    )
    #: The managed Redis image (7.x; needs redis-server and redis-cli).
    redis_image: str = Field(
        default="docker.io/library/redis:7.4.2-alpine",
        min_length=1,
        json_schema_extra=_form("an image reference"),
    )
    #: An image with `pgbouncer` on PATH (1.21+ for SCRAM).
    pgbouncer_image: str = Field(
        default="docker.io/edoburu/pgbouncer:v1.24.1-p1",
        min_length=1,
        json_schema_extra=_form("an image reference"),
    )
    #: prometheus-community's pgbouncer_exporter, the pgBouncer pods' sidecar while a tenant's
    #: ``spec.monitoring.enabled`` (reads pgBouncer's admin console; serves :9127/metrics). Like
    #: the redis exporter's, it runs only where ``image_allowlist`` allows it (else the tenant's
    #: MonitoringReady condition says ExporterImageNotAllowed).
    pgbouncer_exporter_image: str = Field(
        default="quay.io/prometheuscommunity/pgbouncer-exporter:v0.11.0",
        min_length=1,
        json_schema_extra=_form("an image reference"),
    )
    #: oliver006's redis_exporter, the managed Redis pod's sidecar while a tenant's
    #: ``spec.monitoring.enabled`` (serves :9121/metrics).
    redis_exporter_image: str = Field(
        default="docker.io/oliver006/redis_exporter:v1.62.0",
        min_length=1,
        json_schema_extra=_form("an image reference"),
    )
    #: Users one API pod serves within the latency target: ``status.capacity`` is this times the
    #: ready API pods. Default: the 500-user run of docs/benchmarks.md ("500 users: ceiling,
    #: baseline, real": p95 9.8 ms, 0 errors, 500/500 sockets on one process), the most users one
    #: process was measured to serve within p95 < 200 ms (2,000 was not).
    api_users_per_pod: int = Field(
        default=USERS_PER_API_POD,
        ge=1,
        le=1_000_000,
        json_schema_extra=_form("an integer in 1..1000000"),
    )
    #: The price sheet of ``status.cost`` (docs/operator.md, "Cost"): one CPU core requested for
    #: a month (730 h), in ``cost_currency``.
    price_cpu_core_month: float = _price(16.0)
    #: One GiB of memory requested for a month.
    price_memory_gib_month: float = _price(2.15)
    #: One GiB of persistent volume requested for a month.
    price_storage_gib_month: float = _price(0.10)
    #: One linked MetaTrader account at MetaAPI for a month.
    price_metaapi_account_month: float = _price(15.0)
    #: The currency of the prices, as ``status.cost`` shows it.
    cost_currency: str = Field(
        default="USD", pattern=r"^[A-Z]{3}$", json_schema_extra=_form("a 3-letter currency code")
    )
    #: Reconciles that may run at once (threads talking to the API).
    concurrency: int = Field(default=8, ge=1, le=64, json_schema_extra=_form("an integer in 1..64"))
    #: List+watch children into memory (true) or GET each one on every reconcile (false: needs no
    #: list/watch RBAC, costs ~25 GETs per tenant per resync).
    watch_children: Annotated[bool, BeforeValidator(_boolean)] = Field(
        default=True, json_schema_extra=_form("true or false")
    )

    #: Registry/repository prefixes that a tenant's ``spec.image`` and ``spec.bridgeImage`` must
    #: start with (at a path boundary, :func:`image_allowed`); empty allows every image.
    image_allowlist: Annotated[
        tuple[str, ...], BeforeValidator(_comma_separated), AfterValidator(_checked_prefixes)
    ] = Field(
        default=(),
        json_schema_extra=_form(
            "comma-separated registry/repository prefixes such as registry.example.com/algoedge"
        ),
    )

    #: The namespaces whose tenants the operator serves; empty: every namespace. Set, every
    #: read, watch and write of the operator (kopf's tenant watch included, through
    #: :func:`kopf_scope_args`) stays in them, so namespaced Roles suffice (docs/operator.md).
    namespaces: Annotated[
        tuple[str, ...], BeforeValidator(_namespace_list), AfterValidator(_checked_namespaces)
    ] = Field(
        default=(),
        json_schema_extra=_form(
            "comma-separated namespace names (lowercase RFC 1123 labels), each named once"
        ),
    )

    def serves(self, namespace: str) -> bool:
        """Whether tenants of ``namespace`` are this operator's."""
        return not self.namespaces or namespace in self.namespaces

    def capacity_url_for(self, *, name: str, namespace: str) -> str:
        return self.capacity_url.format(name=name, namespace=namespace)


def variable(field: str) -> str:
    """The environment variable that sets ``field``."""
    return PREFIX + field.upper()


def _expected_form(field: str) -> str:
    extra = OperatorSettings.model_fields[field].json_schema_extra
    return str(extra["form"]) if isinstance(extra, dict) else "a valid value"


def load_operator_settings(environ: Mapping[str, str]) -> OperatorSettings:
    """Settings from ``environ`` (unset or empty: the default); the first malformed variable
    raises :class:`SettingsError`."""
    given = {
        field: environ[variable(field)]
        for field in OperatorSettings.model_fields
        if environ.get(variable(field))
    }
    try:
        return OperatorSettings.model_validate(given)
    except ValidationError as error:
        field = str(error.errors()[0]["loc"][0])
        raise SettingsError(f"{variable(field)} must be {_expected_form(field)}") from None
