"""pgBouncer in front of the tenant's PostgreSQL: Deployment (2 replicas), Service, config and userlist."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from algoedge_operator.builders.common import (
    PGBOUNCER_PORT,
    PGBOUNCER_UID,
    Images,
    Manifest,
    checksum,
    child_name,
    container_security_context,
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


def client_database_url(tenant: Tenant, database: DatabaseTarget) -> str:
    """``ALGOEDGE_DATABASE_URL`` for app pods: same credentials, pgBouncer's address."""
    host = f"{child_name(tenant, COMPONENT)}.{tenant.namespace}.svc"
    user = quote(database.user, safe="")
    password = quote(database.password, safe="")
    dbname = quote(database.dbname, safe="")
    return f"postgresql://{user}:{password}@{host}:{PGBOUNCER_PORT}/{dbname}"


def _ini_value(value: str) -> str:
    # pgBouncer parses connect strings like libpq: single quotes, backslash escapes.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pgbouncer_config(tenant: Tenant, database: DatabaseTarget) -> str:
    """pgbouncer.ini; no secrets (the password lives in the userlist)."""
    pool = tenant.spec.database.pool
    return "\n".join(
        [
            "[databases]",
            f"{database.dbname} = host={_ini_value(database.host)} port={database.port} "
            f"dbname={_ini_value(database.dbname)}",
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
            "",
        ]
    )


def pgbouncer_userlist(database: DatabaseTarget) -> str:
    user = database.user.replace('"', '""')
    password = database.password.replace('"', '""')
    return f'"{user}" "{password}"\n'


def pgbouncer_secret_values(tenant: Tenant, database: DatabaseTarget) -> dict[str, str]:
    return {
        USERLIST_KEY: pgbouncer_userlist(database),
        CLIENT_URL_KEY: client_database_url(tenant, database),
    }


def pgbouncer_config_map(tenant: Tenant, database: DatabaseTarget) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(tenant, COMPONENT),
        "data": {CONFIG_KEY: pgbouncer_config(tenant, database)},
    }


def pgbouncer_secret(tenant: Tenant, database: DatabaseTarget) -> Manifest:
    return secret_manifest(tenant, COMPONENT, pgbouncer_secret_values(tenant, database))


def pgbouncer_service(tenant: Tenant) -> Manifest:
    return service_manifest(tenant, COMPONENT, port=PGBOUNCER_PORT, port_name="postgres")


def pgbouncer_deployment(tenant: Tenant, database: DatabaseTarget, images: Images) -> Manifest:
    name = child_name(tenant, COMPONENT)
    version = image_version(images.pgbouncer)
    _, tmp_mount = tmp_volume()
    config_checksum = checksum(
        [
            {CONFIG_KEY: pgbouncer_config(tenant, database)},
            pgbouncer_secret_values(tenant, database),
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
                containers=[container],
                volumes=own_file_volumes(name, key_volume="secret", key=USERLIST_KEY),
                spread=True,
            ),
        },
    }
