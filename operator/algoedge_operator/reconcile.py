"""Reconcile one tenant against the cluster: read inputs, apply what differs, prune, report status.

This layer owns all I/O decisions (the builders are pure) and the two sources of variation the
builders must not see: randomness (secrets are generated here, once, and then read back
forever) and the clock. It is synchronous; the tenant loops run it in worker threads.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
import secrets as random_source
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from algoedge_operator.builders import (
    Images,
    ScaleTargets,
    TenantSecrets,
    desired_children,
    key_of,
    possible_children,
)
from algoedge_operator.builders.common import MANAGER, child_name, secret_digest
from algoedge_operator.builders.config import CREDENTIALS_KEY, INTERNAL_KEYS, INTERNAL_TOKEN
from algoedge_operator.diff import needs_apply, stamp
from algoedge_operator.kube import Kube, KubeError
from algoedge_operator.model import API_VERSION, KIND, SecretKeyRef, Tenant, parse_database_url
from algoedge_operator.settings import OperatorSettings
from algoedge_operator.status import (
    ComponentState,
    Problem,
    ScalingState,
    build_status,
    status_patch,
    workload_state,
)

log = logging.getLogger(__name__)

#: Workloads whose readiness makes the tenant Ready, by status name -> (apiVersion, kind, child).
WORKLOADS: Mapping[str, tuple[str, str, str]] = {
    "api": ("apps/v1", "Deployment", "api"),
    "worker": ("apps/v1", "Deployment", "worker"),
    "beat": ("apps/v1", "Deployment", "beat"),
    "pgbouncer": ("apps/v1", "Deployment", "pgbouncer"),
    "redis": ("apps/v1", "StatefulSet", "redis"),
    "bridge": ("apps/v1", "StatefulSet", "bridge"),
}


def generate_secret_value(key: str) -> str:
    """Fresh secret material in the form the app checks for each key."""
    if key == CREDENTIALS_KEY:
        # A Fernet key: 32 random bytes, url-safe base64.
        return base64.urlsafe_b64encode(random_source.token_bytes(32)).decode()
    return random_source.token_urlsafe(48)


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decoded(secret: Mapping[str, Any] | None) -> dict[str, str]:
    if secret is None:
        return {}
    values = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(value).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue  # unreadable values count as missing and are regenerated
    return values


@dataclass(frozen=True)
class ReconcileResult:
    outcome: str
    #: The status as it now stands (written if it differed).
    status: dict[str, Any]
    #: Live replicas of the scaled components (None when they do not exist yet).
    live_targets: ScaleTargets | None


class TenantReconciler:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        *,
        new_secret_value: Callable[[str], str] = generate_secret_value,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self._kube = kube
        self._images = Images(redis=settings.redis_image, pgbouncer=settings.pgbouncer_image)
        self._new_secret_value = new_secret_value
        self._clock = clock

    # -- inputs -----------------------------------------------------------------------------

    def _owned_values(
        self, tenant: Tenant, component: str, keys: tuple[str, ...]
    ) -> dict[str, str]:
        """Values of an operator-generated Secret; missing keys are generated (once: they are
        applied, and read back from then on)."""
        # A miss is confirmed with a GET: generating values for a Secret that exists unlabelled
        # would rotate them.
        live = self._kube.get_child(
            "v1", "Secret", tenant.namespace, child_name(tenant, component), verify_absence=True
        )
        values = _decoded(live)
        return {key: values.get(key) or self._new_secret_value(key) for key in keys}

    def _referenced_value(self, tenant: Tenant, ref: SecretKeyRef, field: str) -> str | Problem:
        """A key of a Secret the tenant references (``field`` names the reference), or the
        SecretMissing Problem naming it."""
        secret = self._kube.get("v1", "Secret", tenant.namespace, ref.name)
        value = _decoded(secret).get(ref.key)
        if value is None:
            what = "does not exist" if secret is None else f"has no key {ref.key!r}"
            return Problem(
                "SecretMissing", f"Secret {tenant.namespace}/{ref.name} ({field}) {what}"
            )
        return value

    def read_secrets(self, tenant: Tenant) -> TenantSecrets | Problem:
        """Everything secret a reconcile needs, or the Problem that stops it before any write."""
        database_ref = tenant.spec.database.secret
        url = self._referenced_value(tenant, database_ref, "spec.database.secretRef")
        if isinstance(url, Problem):
            return url
        try:
            database = parse_database_url(url)
        except ValueError as error:
            return Problem(
                "SecretInvalid",
                f"Secret {tenant.namespace}/{database_ref.name} key {database_ref.key!r}: "
                f"the database URL {error} (expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME)",
            )
        redis_password: str | None = None
        external_digest = ""
        external = tenant.spec.redis.external_secret
        if external is not None:
            redis_url = self._referenced_value(tenant, external, "spec.redis.external.secretRef")
            if isinstance(redis_url, Problem):
                return redis_url
            if not redis_url.startswith(("redis://", "rediss://")):
                return Problem(
                    "SecretInvalid",
                    f"Secret {tenant.namespace}/{external.name} key {external.key!r}: the Redis URL "
                    "must start with redis:// or rediss://",
                )
            external_digest = secret_digest(redis_url)
        else:
            redis_password = self._owned_values(tenant, "redis", ("password",))["password"]
        smtp_digest = ""
        smtp = tenant.spec.mail.smtp_secret
        if smtp is not None:
            # Read, like the external Redis URL, so that a missing Secret stops the reconcile
            # with a status naming it (not workers stuck in CreateContainerConfigError) and a
            # rotated URL rolls the workers. The value itself reaches them via secretKeyRef.
            smtp_url = self._referenced_value(tenant, smtp, "spec.mail.smtpSecretRef")
            if isinstance(smtp_url, Problem):
                return smtp_url
            if not smtp_url.startswith(("smtp://", "smtps://")):
                return Problem(
                    "SecretInvalid",
                    f"Secret {tenant.namespace}/{smtp.name} key {smtp.key!r}: the SMTP URL "
                    "must start with smtp:// or smtps://",
                )
            smtp_digest = secret_digest(smtp_url)
        return TenantSecrets(
            internal=self._owned_values(tenant, "internal", INTERNAL_KEYS),
            redis_password=redis_password,
            database=database,
            external_redis_digest=external_digest,
            smtp_url_digest=smtp_digest,
        )

    def internal_token(self, tenant: Tenant) -> str | None:
        live = self._kube.get_child(
            "v1", "Secret", tenant.namespace, child_name(tenant, "internal"), verify_absence=True
        )
        return _decoded(live).get(INTERNAL_TOKEN)

    def live_targets(self, tenant: Tenant) -> ScaleTargets | None:
        """Replicas the scaled components run with now (seeds the scalers after a restart)."""
        worker = self._kube.get_child(
            "apps/v1", "Deployment", tenant.namespace, child_name(tenant, "worker")
        )
        bridge = self._kube.get_child(
            "apps/v1", "StatefulSet", tenant.namespace, child_name(tenant, "bridge")
        )
        if worker is None or bridge is None:
            return None
        return ScaleTargets(
            workers=int((worker.get("spec") or {}).get("replicas", 1)),
            bridge=int((bridge.get("spec") or {}).get("replicas", 1)),
        )

    # -- the reconcile ------------------------------------------------------------------------

    def reconcile(
        self,
        tenant: Tenant,
        *,
        targets: ScaleTargets,
        scaling: ScalingState,
        previous_status: Mapping[str, Any],
    ) -> ReconcileResult:
        inputs = self.read_secrets(tenant)
        live_objects: dict[tuple[str, str, str], dict[str, Any] | None] = {}
        problem: Problem | None = inputs if isinstance(inputs, Problem) else None
        if isinstance(inputs, TenantSecrets):
            desired = [
                stamp(m)
                for m in desired_children(
                    tenant, secrets=inputs, targets=targets, images=self._images
                )
            ]
            try:
                self._converge(tenant, desired, live_objects)
            except KubeError as error:
                # Reported in the status and retried; the API server's message says what failed.
                problem = Problem("ApplyFailed", str(error))
        components: dict[str, ComponentState] = {}
        for status_name, (api_version, kind, component) in WORKLOADS.items():
            name = child_name(tenant, component)
            if (api_version, kind, name) not in live_objects:
                continue
            state = workload_state(live_objects[(api_version, kind, name)])
            if state is not None:
                components[status_name] = state
        status = build_status(
            generation=tenant.generation,
            profile=tenant.spec.profile.name,
            components=components,
            problem=problem,
            paused=tenant.paused,
            scaling=scaling,
            previous=previous_status,
            now=self._clock(),
        )
        patch = status_patch(previous_status, status)
        if patch is not None:
            self._kube.patch_tenant_status(tenant.namespace, tenant.name, patch)
            if problem is not None and _ready_reason(previous_status) != problem.reason:
                self.post_event(
                    tenant, reason=problem.reason, message=problem.message, warning=True
                )
        worker = live_objects.get(("apps/v1", "Deployment", child_name(tenant, "worker")))
        bridge = live_objects.get(("apps/v1", "StatefulSet", child_name(tenant, "bridge")))
        live_targets = None
        if worker is not None and bridge is not None:
            live_targets = ScaleTargets(
                workers=int(worker["spec"].get("replicas", 1)),
                bridge=int(bridge["spec"].get("replicas", 1)),
            )
        outcome = (
            "paused"
            if tenant.paused
            else problem.reason
            if problem is not None
            else "ready"
            if status["conditions"][0]["status"] == "True"
            else "progressing"
        )
        return ReconcileResult(outcome=outcome, status=status, live_targets=live_targets)

    def _converge(
        self,
        tenant: Tenant,
        desired: list[dict[str, Any]],
        live_objects: dict[tuple[str, str, str], dict[str, Any] | None],
    ) -> None:
        """Apply what differs and delete optional children the spec no longer wants."""
        for manifest in desired:
            key = key_of(manifest)
            live = self._kube.get_child(key.api_version, key.kind, tenant.namespace, key.name)
            if not tenant.paused and needs_apply(manifest, live):
                log.info("%s/%s: applying %s %s", tenant.namespace, tenant.name, key.kind, key.name)
                live = self._kube.apply(manifest)
            live_objects[(key.api_version, key.kind, key.name)] = live
        wanted = {key_of(m) for m in desired}
        for key in possible_children(tenant):
            if key in wanted:
                continue
            live = self._kube.get_child(key.api_version, key.kind, tenant.namespace, key.name)
            if live is not None and not tenant.paused and self._owned_by(live, tenant):
                log.info("%s/%s: deleting %s %s", tenant.namespace, tenant.name, key.kind, key.name)
                self._kube.delete(key.api_version, key.kind, tenant.namespace, key.name)

    @staticmethod
    def _owned_by(live: Mapping[str, Any], tenant: Tenant) -> bool:
        references = (live.get("metadata") or {}).get("ownerReferences") or []
        return any(reference.get("uid") == tenant.uid for reference in references)

    def post_event(
        self, tenant: Tenant, *, reason: str, message: str, warning: bool = False
    ) -> None:
        now = self._clock()
        self._kube.post_event(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "generateName": f"{tenant.name}.",
                    "namespace": tenant.namespace,
                },
                "involvedObject": {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": tenant.name,
                    "namespace": tenant.namespace,
                    "uid": tenant.uid,
                },
                "reason": reason,
                "message": message[:1024],
                "type": "Warning" if warning else "Normal",
                "source": {"component": MANAGER},
                "reportingComponent": MANAGER,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
        )


def _ready_reason(status: Mapping[str, Any]) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("reason"))
    return None
