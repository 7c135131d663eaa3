"""The tenant's app configuration: ``<t>-config`` ConfigMap, ``<t>-internal`` Secret and app pod env.

The variable names are the app's contract (docs/architecture.md). Every app process (api,
migrate, worker, beat, bridge) gets its settings from here, so one checksum covers them all.
"""

from __future__ import annotations

import hashlib
from typing import Any

from algoedge_operator.builders.common import (
    HTTP_PORT,
    Manifest,
    TenantSecrets,
    checksum,
    child_name,
    metadata,
    secret_manifest,
)
from algoedge_operator.builders.pgbouncer import (
    CLIENT_READ_URL_KEY,
    CLIENT_URL_KEY,
    client_database_url,
    client_read_url,
)
from algoedge_operator.builders.redis import redis_url
from algoedge_operator.model import Tenant

CONFIG_COMPONENT = "config"
INTERNAL_COMPONENT = "internal"

INTERNAL_TOKEN = "ALGOEDGE_INTERNAL_TOKEN"  # noqa: S105 - a variable name
JWT_SECRET = "ALGOEDGE_JWT_SECRET"  # noqa: S105 - a variable name
CREDENTIALS_KEY = "ALGOEDGE_CREDENTIALS_KEY"
#: Keys of ``<t>-internal``: generated once by the reconciler, never rotated by it.
INTERNAL_KEYS = (INTERNAL_TOKEN, JWT_SECRET, CREDENTIALS_KEY)


def credentials_key_fingerprint(key: str) -> str:
    """``status.credentialsKeyFingerprint``: names the key MT5 passwords are encrypted with (the
    first 16 hex digits of its SHA-256), so a missing key is noticed, never silently replaced;
    useless for recovering the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def config_data(tenant: Tenant) -> dict[str, str]:
    """Non-secret settings every app process reads."""
    limits = tenant.spec.rate_limits
    data = {
        "ALGOEDGE_HTTP_PORT": str(HTTP_PORT),
        "ALGOEDGE_LOG_LEVEL": tenant.spec.log_level,
        "ALGOEDGE_RATE_LIMIT_PER_USER": limits.per_user.env_value,
        "ALGOEDGE_RATE_LIMIT_PER_IP": limits.per_ip.env_value,
        "ALGOEDGE_RATE_LIMIT_AUTH": limits.auth.env_value,
        "ALGOEDGE_ACCOUNTS_PER_USER": str(tenant.spec.accounts_per_user),
        # Workers consume these queues and the API's capacity endpoint reports their backlog:
        # both must read the same list, so it is shared config, not worker-only env.
        "ALGOEDGE_WORKER_QUEUES": ",".join(tenant.spec.workers.queues),
        # Read by beat, which schedules the daily and weekly report runs.
        "ALGOEDGE_REPORT_DAILY_AT": tenant.spec.reports.daily_at,
    }
    if tenant.spec.mail.from_address is not None:
        data["ALGOEDGE_MAIL_FROM"] = tenant.spec.mail.from_address
    if tenant.spec.trusted_proxies:
        data["ALGOEDGE_TRUSTED_PROXIES"] = ",".join(tenant.spec.trusted_proxies)
    if tenant.spec.allowed_origins:
        data["ALGOEDGE_ALLOWED_ORIGINS"] = ",".join(tenant.spec.allowed_origins)
    return data


def config_map(tenant: Tenant) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(tenant, CONFIG_COMPONENT),
        "data": config_data(tenant),
    }


def internal_secret(tenant: Tenant, secrets: TenantSecrets) -> Manifest:
    missing = [key for key in INTERNAL_KEYS if key not in secrets.internal]
    if missing:
        raise ValueError(f"internal secret values missing: {', '.join(missing)}")
    return secret_manifest(
        tenant, INTERNAL_COMPONENT, {key: secrets.internal[key] for key in INTERNAL_KEYS}
    )


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def redis_url_env(tenant: Tenant) -> dict[str, Any]:
    external = tenant.spec.redis.external_secret
    if external is not None:
        return _secret_env("ALGOEDGE_REDIS_URL", external.name, external.key)
    return _secret_env("ALGOEDGE_REDIS_URL", child_name(tenant, "redis"), "url")


def smtp_url_env(tenant: Tenant) -> list[dict[str, Any]]:
    """``ALGOEDGE_SMTP_URL`` from ``spec.mail.smtpSecretRef``, for the worker only (the only
    process that sends mail); none without a reference. Not optional: the reconciler refuses to
    deploy while the Secret or its key is missing (SecretMissing)."""
    smtp = tenant.spec.mail.smtp_secret
    return [] if smtp is None else [_secret_env("ALGOEDGE_SMTP_URL", smtp.name, smtp.key)]


def metaapi_token_env(tenant: Tenant) -> list[dict[str, Any]]:
    """``ALGOEDGE_METAAPI_TOKEN`` from ``spec.bridge.metaapi.tokenSecretRef``, for the bridge only;
    none without a reference (then the bridge runs no pods). Not optional, like the SMTP URL."""
    token = tenant.spec.bridge.metaapi.token_secret
    return [] if token is None else [_secret_env("ALGOEDGE_METAAPI_TOKEN", token.name, token.key)]


def read_replica_env(tenant: Tenant) -> list[dict[str, Any]]:
    """``ALGOEDGE_DATABASE_READ_URL`` (pgBouncer's replica alias) and ``_MAX_LAG`` from
    ``spec.database.readReplicas``, for the api and the workers: the processes with reads that
    may trail the primary (beat and the bridge read what they just wrote); none without it."""
    replicas = tenant.spec.database.read_replicas
    if replicas is None:
        return []
    return [
        _secret_env(
            "ALGOEDGE_DATABASE_READ_URL", child_name(tenant, "pgbouncer"), CLIENT_READ_URL_KEY
        ),
        {"name": "ALGOEDGE_DATABASE_READ_MAX_LAG", "value": str(replicas.max_lag_seconds)},
    ]


def app_env_from(tenant: Tenant) -> list[dict[str, Any]]:
    return [{"configMapRef": {"name": child_name(tenant, CONFIG_COMPONENT)}}]


def app_env(tenant: Tenant, *, internal_keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Secret-backed variables for an app container; ``internal_keys`` picks what it may read."""
    internal = child_name(tenant, INTERNAL_COMPONENT)
    return [
        _secret_env("ALGOEDGE_DATABASE_URL", child_name(tenant, "pgbouncer"), CLIENT_URL_KEY),
        redis_url_env(tenant),
        *(_secret_env(key, internal, key) for key in internal_keys),
    ]


def app_checksum(tenant: Tenant, secrets: TenantSecrets) -> str:
    """Hash of every value an app pod reads, so any change rolls api, workers, beat and bridge."""
    redis = (
        redis_url(tenant, secrets.redis_password)
        if secrets.redis_password is not None
        else secrets.external_redis_digest
    )
    return checksum(
        [
            config_data(tenant),
            dict(secrets.internal),
            {"redis": redis, "database": client_database_url(tenant, secrets.database)},
        ]
    )


def _checksum_with(tenant: Tenant, secrets: TenantSecrets, **digests: str | None) -> str:
    """:func:`app_checksum` plus values only some components read (a referenced secret's
    digest, the read URL), so changing one rolls those components alone; :func:`app_checksum`
    itself when every one is None (nothing referenced)."""
    shared = app_checksum(tenant, secrets)
    named = {name: digest for name, digest in digests.items() if digest is not None}
    return checksum([{"app": shared, **named}]) if named else shared


def _read_url(tenant: Tenant, secrets: TenantSecrets) -> str | None:
    """The ``ALGOEDGE_DATABASE_READ_URL`` api and worker pods read, None without read replicas
    (the replicas' own URL is pgBouncer's, and rolls pgBouncer's pods)."""
    if tenant.spec.database.read_replicas is None:
        return None
    return client_read_url(tenant, secrets.database)


def api_checksum(tenant: Tenant, secrets: TenantSecrets) -> str:
    """The API's pods: the app's values and the read URL."""
    return _checksum_with(tenant, secrets, replica=_read_url(tenant, secrets))


def worker_checksum(tenant: Tenant, secrets: TenantSecrets) -> str:
    """The workers' pods: the app's values, the SMTP URL and the read URL."""
    referenced = tenant.spec.mail.smtp_secret is not None
    return _checksum_with(
        tenant,
        secrets,
        smtp=secrets.smtp_url_digest if referenced else None,
        replica=_read_url(tenant, secrets),
    )


def bridge_checksum(tenant: Tenant, secrets: TenantSecrets) -> str:
    """The bridge's pods: the app's values and the MetaAPI token (the SDK reads it at start)."""
    referenced = tenant.spec.bridge.metaapi.token_secret is not None
    return _checksum_with(
        tenant, secrets, metaapi=secrets.metaapi_token_digest if referenced else None
    )
