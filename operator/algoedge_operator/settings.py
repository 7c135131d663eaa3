"""The operator's own settings, read once from ``ALGOEDGE_OPERATOR_*`` variables and validated at start-up."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from string import Formatter
from urllib.parse import urlsplit

PREFIX = "ALGOEDGE_OPERATOR_"
DEFAULT_CAPACITY_URL = "http://{name}-api.{namespace}.svc:8080/internal/v1/capacity"


class SettingsError(ValueError):
    """A setting is malformed; the message names the variable and the expected form."""


@dataclass(frozen=True)
class OperatorSettings:
    #: ALGOEDGE_OPERATOR_CAPACITY_URL: template of the capacity endpoint, with {name} and
    #: {namespace} of the tenant (local runs and tests point it at a port-forward or a fake).
    capacity_url: str = DEFAULT_CAPACITY_URL
    #: ALGOEDGE_OPERATOR_SCALE_INTERVAL: seconds between two capacity reads per tenant.
    scale_interval: float = 30.0
    #: ALGOEDGE_OPERATOR_RESYNC_INTERVAL: seconds between two full reconciles of a quiet tenant
    #: (drift is repaired within one of these).
    resync_interval: float = 60.0
    #: ALGOEDGE_OPERATOR_CAPACITY_TIMEOUT: seconds for one capacity request.
    capacity_timeout: float = 5.0
    #: ALGOEDGE_OPERATOR_HTTP_HOST / _HTTP_PORT: where /metrics and /healthz listen; port 0 = off.
    http_host: str = "0.0.0.0"  # noqa: S104 - a pod listens on its own address
    http_port: int = 8080
    #: ALGOEDGE_OPERATOR_REDIS_IMAGE: the managed Redis image (7.x; needs redis-server, redis-cli).
    redis_image: str = "docker.io/library/redis:7.4.2-alpine"
    #: ALGOEDGE_OPERATOR_PGBOUNCER_IMAGE: an image with `pgbouncer` on PATH (1.21+ for SCRAM).
    pgbouncer_image: str = "docker.io/edoburu/pgbouncer:v1.24.1-p1"
    #: ALGOEDGE_OPERATOR_CONCURRENCY: reconciles that may run at once (threads talking to the API).
    concurrency: int = 8
    #: ALGOEDGE_OPERATOR_WATCH_CHILDREN: list+watch children into memory (true) or GET each one
    #: on every reconcile (false: needs no list/watch RBAC, costs ~25 GETs per tenant per resync).
    watch_children: bool = True

    def capacity_url_for(self, *, name: str, namespace: str) -> str:
        return self.capacity_url.format(name=name, namespace=namespace)


def _seconds(environ: Mapping[str, str], suffix: str, default: float, *, maximum: float) -> float:
    variable = PREFIX + suffix
    raw = environ.get(variable)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{variable} must be a number of seconds, e.g. 30") from None
    if not math.isfinite(value) or not 0 < value <= maximum:
        raise SettingsError(f"{variable} must be a number of seconds in (0, {maximum:g}]")
    return value


def _integer(environ: Mapping[str, str], suffix: str, default: int, *, low: int, high: int) -> int:
    variable = PREFIX + suffix
    raw = environ.get(variable)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{variable} must be an integer in {low}..{high}") from None
    if not low <= value <= high:
        raise SettingsError(f"{variable} must be an integer in {low}..{high}")
    return value


def _capacity_url(environ: Mapping[str, str]) -> str:
    variable = PREFIX + "CAPACITY_URL"
    template = environ.get(variable) or DEFAULT_CAPACITY_URL
    form = "an http(s) URL template using only {name} and {namespace}"
    try:
        fields = {field for _, field, _, _ in Formatter().parse(template) if field is not None}
    except ValueError:
        raise SettingsError(f"{variable} must be {form}") from None
    if not fields <= {"name", "namespace"}:
        raise SettingsError(f"{variable} must be {form}")
    sample = urlsplit(template.format(name="tenant", namespace="ns"))
    if sample.scheme not in ("http", "https") or not sample.hostname:
        raise SettingsError(f"{variable} must be {form}")
    return template


def _boolean(environ: Mapping[str, str], suffix: str, default: bool) -> bool:
    variable = PREFIX + suffix
    raw = environ.get(variable)
    if raw is None or raw == "":
        return default
    if raw not in ("true", "false"):
        raise SettingsError(f"{variable} must be true or false")
    return raw == "true"


def _text(environ: Mapping[str, str], suffix: str, default: str) -> str:
    return environ.get(PREFIX + suffix) or default


def load_operator_settings(environ: Mapping[str, str]) -> OperatorSettings:
    """Settings from ``environ``; the first malformed variable raises :class:`SettingsError`."""
    return OperatorSettings(
        capacity_url=_capacity_url(environ),
        scale_interval=_seconds(environ, "SCALE_INTERVAL", 30.0, maximum=3600),
        resync_interval=_seconds(environ, "RESYNC_INTERVAL", 60.0, maximum=86400),
        capacity_timeout=_seconds(environ, "CAPACITY_TIMEOUT", 5.0, maximum=60),
        http_host=_text(environ, "HTTP_HOST", OperatorSettings.http_host),
        http_port=_integer(environ, "HTTP_PORT", 8080, low=0, high=65535),
        redis_image=_text(environ, "REDIS_IMAGE", OperatorSettings.redis_image),
        pgbouncer_image=_text(environ, "PGBOUNCER_IMAGE", OperatorSettings.pgbouncer_image),
        concurrency=_integer(environ, "CONCURRENCY", 8, low=1, high=64),
        watch_children=_boolean(environ, "WATCH_CHILDREN", True),
    )
