"""pgBouncer in front of the tenant's PostgreSQL: Deployment (2 replicas), Service, config and userlist.

With ``spec.database.readReplicas`` pgBouncer also serves the replicas, as the database alias
``<dbname>_ro``: the app reaches both with the same credentials, so the replicas' own (possibly
another user's) stay in pgBouncer's userlist like the primary's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from algoedge_operator.builders.common import (
    PGBOUNCER_EXPORTER_PORT,
    PGBOUNCER_PORT,
    PGBOUNCER_UID,
    Images,
    Manifest,
    checksum,
    child_name,
    container_security_context,
    exporter_container,
    image_version,
    metadata,
    own_file_volumes,
    pod_template,
    secret_manifest,
    selector_labels,
    service_manifest,
    tmp_volume,
)
from algoedge_operator.model import DatabaseTarget, Tenant

COMPONENT = "pgbouncer"
REPLICAS = 2
CONFIG_KEY = "pgbouncer.ini"
USERLIST_KEY = "userlist.txt"
#: Key of ``<t>-pgbouncer`` (Secret) holding the URL app pods use: pgBouncer, not Postgres.
CLIENT_URL_KEY = "database-url"
#: Key of ``<t>-pgbouncer`` holding ``ALGOEDGE_DATABASE_READ_URL`` (with read replicas only).
CLIENT_READ_URL_KEY = "database-read-url"
#: pgBouncer's database alias for the read replicas is the database's name plus this.
READ_ALIAS_SUFFIX = "_ro"
#: The exporter's login to pgBouncer's admin console (``stats_users``: SHOW commands only),
#: with a generated password (``TenantSecrets.pgbouncer_stats_password``).
STATS_USER = "algoedge_pgbouncer_stats"
#: Key of ``<t>-pgbouncer`` holding that password (kept so it is generated once).
STATS_PASSWORD_KEY = "stats-password"  # noqa: S105 - a key name
#: Key of ``<t>-pgbouncer`` holding the exporter's connection string (admin console, loopback).
EXPORTER_URL_KEY = "exporter-url"


def read_alias(database: DatabaseTarget) -> str:
    """The name app pods use for the replicas of ``database`` (the primary's target)."""
    return f"{database.dbname}{READ_ALIAS_SUFFIX}"


def _client_url(tenant: Tenant, database: DatabaseTarget, dbname: str) -> str:
    host = f"{child_name(tenant, COMPONENT)}.{tenant.namespace}.svc"
    user = quote(database.user, safe="")
    password = quote(database.password, safe="")
    return f"postgresql://{user}:{password}@{host}:{PGBOUNCER_PORT}/{quote(dbname, safe='')}"


def client_database_url(tenant: Tenant, database: DatabaseTarget) -> str:
    """``ALGOEDGE_DATABASE_URL`` for app pods: same credentials, pgBouncer's address."""
    return _client_url(tenant, database, database.dbname)


def client_read_url(tenant: Tenant, database: DatabaseTarget) -> str:
    """``ALGOEDGE_DATABASE_READ_URL``: the primary's credentials (pgBouncer's clients), the
    replicas' alias."""
    return _client_url(tenant, database, read_alias(database))


def _ini_value(value: str) -> str:
    # pgBouncer parses connect strings like libpq: single quotes, backslash escapes.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _database_entry(name: str, target: DatabaseTarget) -> str:
    return (
        f"{name} = host={_ini_value(target.host)} port={target.port} "
        f"dbname={_ini_value(target.dbname)}"
    )


def _replica_entry(database: DatabaseTarget, replica: DatabaseTarget) -> str:
    entry = _database_entry(read_alias(database), replica)
    # Clients log in as the primary's user; another replica user is taken from the userlist.
    return entry if replica.user == database.user else f"{entry} user={_ini_value(replica.user)}"


def monitored(tenant: Tenant) -> bool:
    """Whether pgBouncer gets its stats user and exporter sidecar."""
    return tenant.spec.monitoring.enabled


def pgbouncer_config(
    tenant: Tenant, database: DatabaseTarget, *, replica: DatabaseTarget | None = None
) -> str:
    """pgbouncer.ini; no secrets (the passwords live in the userlist)."""
    pool = tenant.spec.database.pool
    stats = [f"stats_users = {STATS_USER}"] if monitored(tenant) else []
    return "\n".join(
        [
            "[databases]",
            _database_entry(database.dbname, database),
            *([] if replica is None else [_replica_entry(database, replica)]),
            "",
            "[pgbouncer]",
            "listen_addr = *",
            f"listen_port = {PGBOUNCER_PORT}",
            "unix_socket_dir =",
            "auth_type = scram-sha-256",
            f"auth_file = /etc/pgbouncer/secret/{USERLIST_KEY}",
            f"pool_mode = {pool.mode}",
            f"default_pool_size = {pool.default_pool_size}",
            f"max_client_conn = {pool.max_client_connections}",
            # The app's driver sends these; pgBouncer would refuse the connection otherwise.
            "ignore_startup_parameters = extra_float_digits,options",
            f"server_tls_sslmode = {database.sslmode}",
            "server_reset_query = DISCARD ALL",
            "log_connections = 0",
            "log_disconnections = 0",
            *stats,
            "",
        ]
    )


def _userlist_line(user: str, password: str) -> str:
    user = user.replace('"', '""')
    password = password.replace('"', '""')
    return f'"{user}" "{password}"\n'


def pgbouncer_userlist(
    database: DatabaseTarget,
    *,
    replica: DatabaseTarget | None = None,
    stats_password: str | None = None,
) -> str:
    """The primary's user, and the replicas' when it is another (check_read_replica refuses the
    same user with another password); the stats user when given its password."""
    lines = [_userlist_line(database.user, database.password)]
    if replica is not None and replica.user != database.user:
        lines.append(_userlist_line(replica.user, replica.password))
    if stats_password is not None:
        lines.append(_userlist_line(STATS_USER, stats_password))
    return "".join(lines)


def exporter_url(stats_password: str) -> str:
    """The exporter's connection string: the admin console over loopback (same pod)."""
    password = quote(stats_password, safe="")
    return (
        f"postgres://{STATS_USER}:{password}@127.0.0.1:{PGBOUNCER_PORT}/pgbouncer?sslmode=disable"
    )


def _stats_password(tenant: Tenant, stats_password: str | None) -> str | None:
    if not monitored(tenant):
        return None
    if stats_password is None:
        raise ValueError("a monitored pgBouncer needs a generated stats password")
    return stats_password


def pgbouncer_secret_values(
    tenant: Tenant,
    database: DatabaseTarget,
    *,
    replica: DatabaseTarget | None = None,
    stats_password: str | None = None,
) -> dict[str, str]:
    """``stats_password`` is used (and required) only while ``spec.monitoring.enabled``."""
    stats = _stats_password(tenant, stats_password)
    values = {
        USERLIST_KEY: pgbouncer_userlist(database, replica=replica, stats_password=stats),
        CLIENT_URL_KEY: client_database_url(tenant, database),
    }
    if replica is not None:
        values[CLIENT_READ_URL_KEY] = client_read_url(tenant, database)
    if stats is not None:
        values[STATS_PASSWORD_KEY] = stats
        values[EXPORTER_URL_KEY] = exporter_url(stats)
    return values


def pgbouncer_config_map(
    tenant: Tenant, database: DatabaseTarget, *, replica: DatabaseTarget | None = None
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(tenant, COMPONENT),
        "data": {CONFIG_KEY: pgbouncer_config(tenant, database, replica=replica)},
    }


def pgbouncer_secret(
    tenant: Tenant,
    database: DatabaseTarget,
    *,
    replica: DatabaseTarget | None = None,
    stats_password: str | None = None,
) -> Manifest:
    return secret_manifest(
        tenant,
        COMPONENT,
        pgbouncer_secret_values(tenant, database, replica=replica, stats_password=stats_password),
    )


def pgbouncer_service(tenant: Tenant) -> Manifest:
    return service_manifest(tenant, COMPONENT, port=PGBOUNCER_PORT, port_name="postgres")


def pgbouncer_deployment(
    tenant: Tenant,
    database: DatabaseTarget,
    images: Images,
    *,
    replica: DatabaseTarget | None = None,
    stats_password: str | None = None,
) -> Manifest:
    name = child_name(tenant, COMPONENT)
    version = image_version(images.pgbouncer)
    _, tmp_mount = tmp_volume()
    config_checksum = checksum(
        [
            {CONFIG_KEY: pgbouncer_config(tenant, database, replica=replica)},
            pgbouncer_secret_values(
                tenant, database, replica=replica, stats_password=stats_password
            ),
        ]
    )
    # pgBouncer speaks only the Postgres protocol: TCP probes are the honest check.
    tcp_probe: dict[str, Any] = {"tcpSocket": {"port": "postgres"}, "timeoutSeconds": 3}
    container: dict[str, Any] = {
        "name": "pgbouncer",
        "image": images.pgbouncer,
        "imagePullPolicy": tenant.spec.image_pull_policy,
        "command": ["pgbouncer", f"/etc/pgbouncer/{CONFIG_KEY}"],
        "ports": [{"name": "postgres", "containerPort": PGBOUNCER_PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "50m", "memory": "32Mi"},
            "limits": {"cpu": "500m", "memory": "128Mi"},
        },
        "livenessProbe": {**tcp_probe, "periodSeconds": 10, "failureThreshold": 6},
        "readinessProbe": {**tcp_probe, "periodSeconds": 5, "failureThreshold": 2},
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": f"/etc/pgbouncer/{CONFIG_KEY}", "subPath": CONFIG_KEY},
            {"name": "secret", "mountPath": "/etc/pgbouncer/secret", "readOnly": True},
            tmp_mount,
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(tenant, COMPONENT, version=version),
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": selector_labels(tenant, COMPONENT)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": pod_template(
                tenant,
                COMPONENT,
                uid=PGBOUNCER_UID,
                version=version,
                config_checksum=config_checksum,
                containers=[container, *_exporter(tenant, images)],
                volumes=own_file_volumes(name, key_volume="secret", key=USERLIST_KEY),
                spread=True,
            ),
        },
    }


def _exporter(tenant: Tenant, images: Images) -> list[dict[str, Any]]:
    """pgbouncer_exporter beside pgBouncer while monitored (and its image allowed)."""
    if not monitored(tenant) or images.pgbouncer_exporter is None:
        return []
    secret = child_name(tenant, COMPONENT)
    return [
        exporter_container(
            tenant,
            image=images.pgbouncer_exporter,
            port=PGBOUNCER_EXPORTER_PORT,
            args=[
                f"--web.listen-address=:{PGBOUNCER_EXPORTER_PORT}",
                "--web.telemetry-path=/metrics",
            ],
            env=[
                {
                    "name": "PGBOUNCER_EXPORTER_CONNECTION_STRING",
                    "valueFrom": {"secretKeyRef": {"name": secret, "key": EXPORTER_URL_KEY}},
                }
            ],
        )
    ]
