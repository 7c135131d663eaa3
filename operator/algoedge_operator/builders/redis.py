"""Managed Redis: StatefulSet with one persistent volume, its Service, config and password Secret."""

from __future__ import annotations

from typing import Any

from algoedge_operator.builders.common import (
    REDIS_EXPORTER_PORT,
    REDIS_PORT,
    REDIS_UID,
    Images,
    Manifest,
    TenantSecrets,
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
from algoedge_operator.model import Tenant
from algoedge_operator.profile import REDIS_OVERHEAD_MIB

COMPONENT = "redis"
CONFIG_KEY = "redis.conf"
AUTH_KEY = "auth.conf"


def redis_host(tenant: Tenant) -> str:
    return f"{child_name(tenant, COMPONENT)}.{tenant.namespace}.svc"


def redis_url(tenant: Tenant, password: str) -> str:
    """The URL app pods get as ``ALGOEDGE_REDIS_URL`` in managed mode."""
    return f"redis://:{password}@{redis_host(tenant)}:{REDIS_PORT}/0"


def redis_config(tenant: Tenant) -> str:
    """redis.conf without secrets; the password arrives through an included file."""
    max_memory = tenant.spec.redis.max_memory_mib
    return "\n".join(
        [
            f"port {REDIS_PORT}",
            "bind * -::*",
            "protected-mode no",
            "dir /data",
            # Sessions, rate limits and the Celery broker must never be evicted silently:
            # a full Redis answers writes with an error instead.
            f"maxmemory {max_memory}mb",
            "maxmemory-policy noeviction",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',  # AOF only: no RDB snapshots
            f"include /etc/redis/auth/{AUTH_KEY}",
            "",
        ]
    )


def redis_config_map(tenant: Tenant) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(tenant, COMPONENT),
        "data": {CONFIG_KEY: redis_config(tenant)},
    }


def redis_secret_values(tenant: Tenant, password: str) -> dict[str, str]:
    return {
        "password": password,
        "url": redis_url(tenant, password),
        AUTH_KEY: f'requirepass "{password}"\n',
    }


def redis_secret(tenant: Tenant, secrets: TenantSecrets) -> Manifest:
    if secrets.redis_password is None:
        raise ValueError("managed Redis needs a generated password")
    return secret_manifest(tenant, COMPONENT, redis_secret_values(tenant, secrets.redis_password))


def redis_service(tenant: Tenant) -> Manifest:
    return service_manifest(tenant, COMPONENT, port=REDIS_PORT, port_name="redis")


def redis_stateful_set(tenant: Tenant, secrets: TenantSecrets, images: Images) -> Manifest:
    if secrets.redis_password is None:
        raise ValueError("managed Redis needs a generated password")
    name = child_name(tenant, COMPONENT)
    version = image_version(images.redis)
    memory = f"{tenant.spec.redis.max_memory_mib + REDIS_OVERHEAD_MIB}Mi"
    _, tmp_mount = tmp_volume()
    config_checksum = checksum(
        [
            {CONFIG_KEY: redis_config(tenant)},
            redis_secret_values(tenant, secrets.redis_password),
        ]
    )
    container: dict[str, Any] = {
        "name": "redis",
        "image": images.redis,
        "imagePullPolicy": tenant.spec.image_pull_policy,
        "args": ["/etc/redis/redis.conf"],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "env": [
            {
                # redis-cli reads the password from here, so the probe needs no shell.
                "name": "REDISCLI_AUTH",
                "valueFrom": {"secretKeyRef": {"name": name, "key": "password"}},
            }
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": memory},
            "limits": {"cpu": "1", "memory": memory},
        },
        # Liveness: the port accepts connections (cheap, no auth); readiness: PING answers.
        "livenessProbe": {
            "tcpSocket": {"port": "redis"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 6,
        },
        "readinessProbe": {
            "exec": {"command": ["redis-cli", "-p", str(REDIS_PORT), "ping"]},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "config", "mountPath": "/etc/redis/redis.conf", "subPath": CONFIG_KEY},
            {"name": "auth", "mountPath": "/etc/redis/auth", "readOnly": True},
            tmp_mount,
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(tenant, COMPONENT, version=version),
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": selector_labels(tenant, COMPONENT)},
            # The volume goes with the StatefulSet (and so with the tenant), not with a scale-in.
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Delete",
                "whenScaled": "Retain",
            },
            "template": pod_template(
                tenant,
                COMPONENT,
                uid=REDIS_UID,
                version=version,
                config_checksum=config_checksum,
                containers=[container, *_exporter(tenant, images)],
                volumes=own_file_volumes(name, key_volume="auth", key=AUTH_KEY),
            ),
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": selector_labels(tenant, COMPONENT)},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": tenant.spec.redis.storage}},
                    },
                }
            ],
        },
    }


def _exporter(tenant: Tenant, images: Images) -> list[dict[str, Any]]:
    """redis_exporter beside Redis while monitored (and its image allowed), with the password."""
    if not tenant.spec.monitoring.enabled or images.redis_exporter is None:
        return []
    return [
        exporter_container(
            tenant,
            image=images.redis_exporter,
            port=REDIS_EXPORTER_PORT,
            args=[],
            env=[
                {"name": "REDIS_ADDR", "value": f"redis://127.0.0.1:{REDIS_PORT}"},
                {
                    "name": "REDIS_PASSWORD",
                    "valueFrom": {
                        "secretKeyRef": {"name": child_name(tenant, COMPONENT), "key": "password"}
                    },
                },
                {"name": "REDIS_EXPORTER_WEB_LISTEN_ADDRESS", "value": f":{REDIS_EXPORTER_PORT}"},
            ],
        )
    ]
