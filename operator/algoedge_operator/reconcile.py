"""Reconcile one tenant against the cluster: read inputs, write each child that differs, prune, report status.

This layer owns all I/O decisions (the builders are pure) and the two sources of variation the
builders must not see: randomness (secrets are generated here, once, and then read back
forever) and the clock. It is synchronous; the tenant loops run it in worker threads.

Every child is converged on its own: one the API server refuses is reported (status condition,
Warning Event, ``algoedge_operator_child_failures_total``, with the API server's message) and
retried by the tenant's loop with backoff, while every other child is still written in the same
pass. Drift that server-side apply cannot undo is repaired in :meth:`TenantReconciler._write`
(docs/operator.md, "Drift repair").
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import logging
import secrets as random_source
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from algoedge.urls import POSTGRES_FORM, REDIS_FORM, REDIS_SCHEMES, check_redis_url, split_url

from algoedge_operator import metrics
from algoedge_operator.builders import (
    CHILDREN,
    BuildInputs,
    Child,
    Images,
    ScaleTargets,
    TenantSecrets,
    prunable_children,
    wanted_children,
)
from algoedge_operator.builders.common import MANAGER, Manifest, child_name, secret_digest
from algoedge_operator.builders.config import (
    CREDENTIALS_KEY,
    INTERNAL_KEYS,
    INTERNAL_TOKEN,
    credentials_key_fingerprint,
)
from algoedge_operator.builders.monitors import MONITORING_API_VERSION
from algoedge_operator.builders.pgbouncer import STATS_PASSWORD_KEY
from algoedge_operator.diff import needs_apply, stamp, take_back
from algoedge_operator.glance import Capacity, PriceSheet, monthly_cost
from algoedge_operator.informer import ChildCache, ChildStore
from algoedge_operator.kube import KubeError, ObjectRef, Propagation, ServedKinds, Transport
from algoedge_operator.model import (
    API_VERSION,
    KIND,
    DatabaseTarget,
    SecretKeyRef,
    Tenant,
    TenantSpec,
    check_metaapi_token,
    check_read_replica,
    parse_database_url,
)
from algoedge_operator.settings import OperatorSettings, image_allowed, variable
from algoedge_operator.status import (
    KEY_FINGERPRINT,
    ComponentState,
    Condition,
    Problem,
    ScalingState,
    build_status,
    monitoring_condition,
    status_patch,
    workload_state,
)

log = logging.getLogger(__name__)

#: Ready/Degraded reason while some child could not be written.
APPLY_FAILED = "ApplyFailed"
#: Condition (and Warning Event when it turns True): sockets above CAPACITY_LOW_PERCENT of what
#: the ready API pods can serve.
CAPACITY_LOW = "CapacityLow"
#: Degraded while no MetaAPI token is referenced: everything else runs, the bridge does not.
METAAPI_TOKEN_NOT_SET = Problem(
    "MetaApiTokenNotSet",
    "spec.bridge.metaapi.tokenSecretRef is not set: the bridge runs no pods and linked accounts "
    "are not connected to MetaAPI",
)
#: Annotation on an existing object that lets the named tenant take it over (its value is the
#: tenant's name); without it an object of a child's name this tenant does not control is left
#: alone (NameConflict).
ADOPT_ANNOTATION = "algoedge.io/adopt"
#: Label every Secret a tenant references must carry, valued with the tenant's name: whoever
#: may write a tenant can name any Secret of its namespace, and its values reach the tenant's
#: pods.
TENANT_LABEL = "algoedge.io/tenant"
#: Degraded while an object of a child's name exists that is not this tenant's.
NAME_CONFLICT = "NameConflict"
#: A StatefulSet retention policy under which its controller puts no owner reference on the
#: volume claims, so deleting the StatefulSet cannot take them along.
RELEASED_CLAIMS = {"whenDeleted": "Retain", "whenScaled": "Retain"}


def credentials_key_missing(tenant: Tenant, fingerprint: str) -> Problem:
    """The key that encrypted the tenant's MT5 passwords is gone from ``<t>-internal``: a new one
    would make every stored password undecryptable, so none is generated."""
    secret = f"{tenant.namespace}/{child_name(tenant, 'internal')}"
    return Problem(
        "CredentialsKeyMissing",
        f"Secret {secret} has no {CREDENTIALS_KEY}, but this tenant's MT5 passwords are "
        f"encrypted with the key of fingerprint {fingerprint} (status.{KEY_FINGERPRINT}); no "
        "new key is generated, since the stored passwords could not be decrypted with it. "
        "Put that key back into the Secret, or see docs/security.md to start over with a new one",
    )


def name_conflict(tenant: Tenant, refs: list[ObjectRef]) -> Problem:
    """Objects of the children's names that exist without this tenant controlling them."""
    named = ", ".join(f"{ref.kind} {ref.name}" for ref in refs)
    return Problem(
        NAME_CONFLICT,
        f"{named} already exist(s) in namespace {tenant.namespace} without this tenant's "
        "controller ownerReference and are left untouched; rename or delete them, or annotate "
        f"them {ADOPT_ANNOTATION}={tenant.name} to let this tenant take them over",
    )


def image_not_allowed(spec: TenantSpec, prefixes: tuple[str, ...]) -> Problem | None:
    """ImageNotAllowed naming each of the tenant's images outside the operator's allowlist."""
    refused = [
        f"{field} {image}"
        for field, image in (("spec.image", spec.image), ("spec.bridgeImage", spec.bridge_image))
        if not image_allowed(image, prefixes)
    ]
    if not refused:
        return None
    return Problem(
        "ImageNotAllowed",
        f"{', '.join(refused)}: not under any prefix this operator allows "
        f"({variable('image_allowlist')}: {', '.join(prefixes)}); nothing is rolled out until "
        "the tenant names an image from an allowed registry/repository",
    )


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


def _terminating(live: Mapping[str, Any] | None) -> bool:
    return live is not None and bool((live.get("metadata") or {}).get("deletionTimestamp"))


def _ref(tenant: Tenant, child: Child) -> ObjectRef:
    return ObjectRef(
        child.api_version, child.kind, tenant.namespace, child_name(tenant, child.component)
    )


def _observed(live: Mapping[str, Any]) -> bool:
    """Its controller has acted on its latest spec."""
    observed = int((live.get("status") or {}).get("observedGeneration") or 0)
    return observed >= int((live.get("metadata") or {}).get("generation") or 0)


def _owned_by(live: Mapping[str, Any], tenant: Tenant) -> bool:
    """This tenant is the object's controller (as every child's ownerReference says)."""
    references = (live.get("metadata") or {}).get("ownerReferences") or []
    return any(
        reference.get("uid") == tenant.uid and reference.get("controller") is True
        for reference in references
    )


def _may_write(live: Mapping[str, Any] | None, tenant: Tenant) -> bool:
    """Whether this tenant may apply over ``live``: absent, its own, or annotated for adoption
    by it."""
    if live is None or _owned_by(live, tenant):
        return True
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    return annotations.get(ADOPT_ANNOTATION) == tenant.name


def targets_within(spec: TenantSpec, running: ScaleTargets | None) -> ScaleTargets:
    """The replicas to run: ``running`` within the spec's bounds (a changed min/max applies at
    once), the minimums when nothing runs yet."""
    workers, bridge = spec.workers.replicas, spec.bridge.replicas
    if running is None:
        return ScaleTargets(workers=workers.minimum, bridge=bridge.minimum)
    return ScaleTargets(workers=workers.clamp(running.workers), bridge=bridge.clamp(running.bridge))


def scale_targets_of(read: Callable[[Child], Mapping[str, Any] | None]) -> ScaleTargets | None:
    """Replicas of the scaled workloads as ``read`` finds them; None until all exist."""
    replicas: dict[str, int] = {}
    for child in CHILDREN:
        if child.scaled_by is None:
            continue
        live = read(child)
        if live is None:
            return None
        replicas[child.scaled_by] = int((live.get("spec") or {}).get("replicas", 1))
    return ScaleTargets(**replicas)


@dataclass(frozen=True)
class ChildFailure:
    """A child the API server refused to write in this pass."""

    ref: ObjectRef
    error: KubeError

    @property
    def line(self) -> str:
        return f"{self.ref.kind} {self.ref.name}: {self.error.summary}"


@dataclass
class _Pass:
    """What one reconcile of ``tenant`` saw and did to its children."""

    tenant: Tenant
    live: dict[ObjectRef, dict[str, Any] | None] = dataclasses.field(default_factory=dict)
    failures: list[ChildFailure] = dataclasses.field(default_factory=list)
    #: Children in the middle of a recreate: claims being released, or the old object still
    #: being deleted.
    waiting: list[ObjectRef] = dataclasses.field(default_factory=list)
    #: Objects of a child's name that are not this tenant's: left alone (NameConflict).
    conflicts: list[ObjectRef] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class ReconcileResult:
    outcome: str
    #: The status as it now stands (written if it differed).
    status: dict[str, Any]
    #: Replicas the scaled workloads run with after this pass (None while they do not exist):
    #: what the scalers start from.
    live_targets: ScaleTargets | None
    #: A child failed or waits for its old object to go: reconcile again soon.
    retry: bool = False


class TenantReconciler:
    def __init__(
        self,
        api: Transport,
        settings: OperatorSettings,
        *,
        store: ChildStore | None = None,
        new_secret_value: Callable[[str], str] = generate_secret_value,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        """``store``: the informers' memory of children; without it every child read is a GET."""
        self._api = api
        self._children = ChildCache(api, store)
        self._image_allowlist = settings.image_allowlist
        exporters = {
            "pgbouncer_exporter": settings.pgbouncer_exporter_image,
            "redis_exporter": settings.redis_exporter_image,
        }
        #: Exporter images the allowlist refuses, as the MonitoringReady condition names them.
        self._refused_exporters = [
            f"{variable(field + '_image')} {image}"
            for field, image in exporters.items()
            if not image_allowed(image, settings.image_allowlist)
        ]
        allowed = {
            field: image if image_allowed(image, settings.image_allowlist) else None
            for field, image in exporters.items()
        }
        self._images = Images(
            redis=settings.redis_image, pgbouncer=settings.pgbouncer_image, **allowed
        )
        self._served = ServedKinds(api)
        self._users_per_api_pod = settings.api_users_per_pod
        self._prices = PriceSheet(
            cpu_core_month=Decimal(str(settings.price_cpu_core_month)),
            memory_gib_month=Decimal(str(settings.price_memory_gib_month)),
            storage_gib_month=Decimal(str(settings.price_storage_gib_month)),
            metaapi_account_month=Decimal(str(settings.price_metaapi_account_month)),
            currency=settings.cost_currency,
        )
        self._new_secret_value = new_secret_value
        self._clock = clock

    # -- inputs -----------------------------------------------------------------------------

    def _owned_values(self, tenant: Tenant, component: str) -> dict[str, str] | Problem:
        """The values of an operator-generated Secret as they are now, or NameConflict when a
        Secret of that name is not this tenant's (its values must not reach the tenant's pods)."""
        # A miss is confirmed with a GET: generating values for a Secret that exists unlabelled
        # would rotate them.
        own = ObjectRef("v1", "Secret", tenant.namespace, child_name(tenant, component))
        live = self._children.get(own, verify_absence=True)
        if not _may_write(live, tenant):
            return name_conflict(tenant, [own])
        return _decoded(live)

    def _completed(self, values: Mapping[str, str], keys: tuple[str, ...]) -> dict[str, str]:
        """``values`` with each missing key generated (once: they are applied, and read back
        from then on)."""
        return {key: values.get(key) or self._new_secret_value(key) for key in keys}

    def _referenced_value(
        self, tenant: Tenant, secret_ref: SecretKeyRef, field: str
    ) -> str | Problem:
        """A key of a Secret the tenant references (``field`` names the reference), or the
        Problem naming it: SecretMissing, or SecretNotLabelled when the Secret is not labelled
        for this tenant (checked before its keys, which are not looked at then)."""
        secret = self._api.get(ObjectRef("v1", "Secret", tenant.namespace, secret_ref.name))
        labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
        if secret is not None and labels.get(TENANT_LABEL) != tenant.name:
            where = f"{tenant.namespace}/{secret_ref.name}"
            return Problem(
                "SecretNotLabelled",
                f"Secret {where} ({field}) is not labelled {TENANT_LABEL}={tenant.name}, "
                "which marks it as meant for this tenant; nothing is deployed until it is: "
                f"kubectl -n {tenant.namespace} label secret {secret_ref.name} "
                f"{TENANT_LABEL}={tenant.name}",
            )
        value = _decoded(secret).get(secret_ref.key)
        if value is None:
            what = "does not exist" if secret is None else f"has no key {secret_ref.key!r}"
            return Problem(
                "SecretMissing", f"Secret {tenant.namespace}/{secret_ref.name} ({field}) {what}"
            )
        return value

    def read_secrets(
        self, tenant: Tenant, *, key_fingerprint: str | None = None
    ) -> TenantSecrets | Problem:
        """Everything secret a reconcile needs, or the Problem that stops it before any write.
        ``key_fingerprint``: the credentials key's as the status records it (None: not yet)."""
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
                f"the database URL {error} (expected {POSTGRES_FORM})",
            )
        replica = self._read_replica(tenant, database)
        if isinstance(replica, Problem):
            return replica
        redis_password: str | None = None
        external_digest = ""
        external_port: int | None = None
        external = tenant.spec.redis.external_secret
        if external is not None:
            redis_url = self._referenced_value(tenant, external, "spec.redis.external.secretRef")
            if isinstance(redis_url, Problem):
                return redis_url
            try:
                check_redis_url(redis_url)
            except ValueError as error:
                return Problem(
                    "SecretInvalid",
                    f"Secret {tenant.namespace}/{external.name} key {external.key!r}: "
                    f"the Redis URL {error} (expected {REDIS_FORM})",
                )
            external_digest = secret_digest(redis_url)
            # Redis' own default port when the URL names none, as the app's client assumes.
            external_port = split_url(redis_url, schemes=REDIS_SCHEMES).port or 6379
        else:
            redis_values = self._owned_values(tenant, "redis")
            if isinstance(redis_values, Problem):
                return redis_values
            redis_password = self._completed(redis_values, ("password",))["password"]
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
        token_digest = ""
        token_ref = tenant.spec.bridge.metaapi.token_secret
        if token_ref is not None:
            # Read like the SMTP URL: a missing Secret is SecretMissing in the status (not bridge
            # pods stuck in CreateContainerConfigError), a token the bridge would refuse is
            # SecretInvalid (not pods crash-looping), and a rotated one rolls the bridge.
            token = self._referenced_value(tenant, token_ref, "spec.bridge.metaapi.tokenSecretRef")
            if isinstance(token, Problem):
                return token
            try:
                check_metaapi_token(token)
            except ValueError as error:
                return Problem(
                    "SecretInvalid",
                    f"Secret {tenant.namespace}/{token_ref.name} key {token_ref.key!r}: "
                    f"the MetaAPI token {error}",
                )
            token_digest = secret_digest(token)
        internal = self._owned_values(tenant, "internal")
        if isinstance(internal, Problem):
            return internal
        if key_fingerprint is not None and not internal.get(CREDENTIALS_KEY):
            return credentials_key_missing(tenant, key_fingerprint)
        stats_password: str | None = None
        if tenant.spec.monitoring.enabled:
            # Generated once, then read back from <t>-pgbouncer, where the exporter's URL is.
            pgbouncer = self._owned_values(tenant, "pgbouncer")
            if isinstance(pgbouncer, Problem):
                return pgbouncer
            stats_password = self._completed(pgbouncer, (STATS_PASSWORD_KEY,))[STATS_PASSWORD_KEY]
        return TenantSecrets(
            pgbouncer_stats_password=stats_password,
            internal=self._completed(internal, INTERNAL_KEYS),
            redis_password=redis_password,
            database=database,
            read_replica=replica,
            external_redis_digest=external_digest,
            smtp_url_digest=smtp_digest,
            metaapi_token_digest=token_digest,
            external_redis_port=external_port,
        )

    def _read_replica(
        self, tenant: Tenant, database: DatabaseTarget
    ) -> DatabaseTarget | Problem | None:
        """The read replicas' target (None without ``spec.database.readReplicas``). Read like
        the primary's: a missing Secret is SecretMissing, so no pgBouncer is configured with an
        alias that leads nowhere and the app is not told to read from it; a URL pgBouncer cannot
        serve beside the primary's is SecretInvalid; a changed one rolls pgBouncer."""
        replicas = tenant.spec.database.read_replicas
        if replicas is None:
            return None
        ref = replicas.secret
        url = self._referenced_value(tenant, ref, "spec.database.readReplicas.secretRef")
        if isinstance(url, Problem):
            return url
        try:
            replica = parse_database_url(url)
            check_read_replica(database, replica)
        except ValueError as error:
            return Problem(
                "SecretInvalid",
                f"Secret {tenant.namespace}/{ref.name} key {ref.key!r}: the read replica URL "
                f"{error} (expected {POSTGRES_FORM} of a streaming replica)",
            )
        return replica

    def _optional_kinds(self) -> tuple[set[tuple[str, str]], str | None]:
        """(apiVersion, kind) of the optional children's kinds the API server serves, by
        discovery (cached briefly), and the discovery error if it failed."""
        served: set[tuple[str, str]] = set()
        error: str | None = None
        for api_version in sorted({c.api_version for c in CHILDREN if c.optional_api}):
            try:
                served |= {(api_version, kind) for kind in self._served(api_version)}
            except KubeError as failure:
                log.warning("discovery of %s failed: %s", api_version, failure)
                error = failure.summary
        return served, error

    def internal_token(self, tenant: Tenant) -> str | None:
        internal = self._owned_values(tenant, "internal")
        return None if isinstance(internal, Problem) else internal.get(INTERNAL_TOKEN)

    def _read(self, tenant: Tenant, child: Child) -> dict[str, Any] | None:
        return self._children.get(_ref(tenant, child))

    # -- the reconcile ------------------------------------------------------------------------

    def reconcile(
        self,
        tenant: Tenant,
        *,
        targets: ScaleTargets | None,
        scaling: ScalingState,
        previous_status: Mapping[str, Any],
    ) -> ReconcileResult:
        """One pass over every child. ``targets``: the scalers' replicas, None to keep (within
        the spec's bounds) what the workloads run with now, as after an operator restart."""
        recorded = previous_status.get(KEY_FINGERPRINT)
        # An image outside the allowlist stops the pass before any read or write, like a
        # missing Secret: nothing of the tenant is rolled out with it.
        inputs = image_not_allowed(tenant.spec, self._image_allowlist) or self.read_secrets(
            tenant, key_fingerprint=str(recorded) if recorded is not None else None
        )
        seen = _Pass(tenant)
        problem: Problem | None = inputs if isinstance(inputs, Problem) else None
        served, discovery_error = self._optional_kinds()

        def available(child: Child) -> bool:
            # A kind the API server does not serve can neither be written nor exist.
            return not child.optional_api or (child.api_version, child.kind) in served

        if isinstance(inputs, TenantSecrets):
            running = targets or scale_targets_of(lambda child: self._read(tenant, child))
            build = BuildInputs(
                secrets=inputs,
                targets=targets_within(tenant.spec, running),
                images=self._images,
                users_per_api_pod=self._users_per_api_pod,
            )
            for child in wanted_children(tenant):
                if available(child):
                    self._converge(tenant, child, build, seen)
            for child in prunable_children(tenant):
                if available(child):
                    self._prune(tenant, child, seen)
            if seen.conflicts:
                problem = name_conflict(tenant, seen.conflicts)
            elif seen.failures:
                problem = Problem(APPLY_FAILED, "; ".join(f.line for f in seen.failures))
        components: dict[str, ComponentState] = {}
        for child in wanted_children(tenant):
            state = workload_state(seen.live.get(_ref(tenant, child))) if child.workload else None
            if state is not None:
                components[child.component] = state
        live_targets = scale_targets_of(lambda child: seen.live.get(_ref(tenant, child)))
        if live_targets is not None:
            scaling = dataclasses.replace(
                scaling, bridge_replicas=live_targets.bridge, worker_replicas=live_targets.workers
            )
        notice = METAAPI_TOKEN_NOT_SET if tenant.spec.bridge.metaapi.token_secret is None else None
        monitors = [child for child in wanted_children(tenant) if child.optional_api]
        monitoring = monitoring_condition(
            enabled=tenant.spec.monitoring.enabled,
            missing_kinds=sorted({c.kind for c in monitors if not available(c)}),
            discovery_error=discovery_error,
            refused_exporters=self._refused_exporters,
            failures=[f.line for f in seen.failures if f.ref.api_version == MONITORING_API_VERSION],
            created=[f"{c.kind} {child_name(tenant, c.component)}" for c in monitors],
            pending=[
                f"{c.kind} {child_name(tenant, c.component)}"
                for c in monitors
                if available(c) and seen.live.get(_ref(tenant, c)) is None
            ],
        )
        api = components.get("api")
        capacity = Capacity(
            users_per_api_pod=self._users_per_api_pod,
            ready_api_pods=api.ready_replicas if api is not None else 0,
            connected_sockets=scaling.connected_sockets,
        )
        low, low_reason, low_message = capacity.condition()
        workloads = {
            child.component: live
            for child in wanted_children(tenant)
            if child.workload and (live := seen.live.get(_ref(tenant, child))) is not None
        }
        status = build_status(
            generation=tenant.generation,
            profile=tenant.spec.profile.name,
            components=components,
            problem=problem,
            notice=notice,
            paused=tenant.paused,
            scaling=scaling,
            previous=previous_status,
            now=self._clock(),
            credentials_key_fingerprint=(
                credentials_key_fingerprint(inputs.internal[CREDENTIALS_KEY])
                if isinstance(inputs, TenantSecrets)
                else None
            ),
            more_conditions=[monitoring, Condition(CAPACITY_LOW, low, low_reason, low_message)],
            more_fields={
                "capacity": capacity.as_status(),
                "cost": monthly_cost(
                    workloads, linked_accounts=scaling.linked_accounts or 0, prices=self._prices
                ),
            },
        )
        patch = status_patch(previous_status, status)
        if patch is not None:
            self._api.patch_tenant_status(tenant.namespace, tenant.name, patch)
        metrics.record_tenant(
            tenant.namespace,
            tenant.name,
            users=capacity.users,
            monthly_cost=float(status["cost"]["monthlyTotal"]),
            currency=status["cost"]["currency"],
        )
        self._report(tenant, problem or notice, seen.failures, previous_status, status)
        if low and _condition(previous_status, CAPACITY_LOW).get("status") != "True":
            self.post_event(tenant, reason=CAPACITY_LOW, message=low_message, warning=True)
        outcome = (
            "paused"
            if tenant.paused
            else problem.reason
            if problem is not None
            else "ready"
            if status["conditions"][0]["status"] == "True"
            else "progressing"
        )
        return ReconcileResult(
            outcome=outcome,
            status=status,
            live_targets=live_targets,
            retry=bool(seen.failures or seen.waiting),
        )

    def _report(
        self,
        tenant: Tenant,
        problem: Problem | None,
        failures: list[ChildFailure],
        previous_status: Mapping[str, Any],
        status: Mapping[str, Any],
    ) -> None:
        """A Warning Event for each problem the previous status did not already show (one per
        failing child), so a problem that persists across retries is announced once. A notice
        (no MetaAPI token) is announced when it becomes the Degraded reason."""
        if problem is None:
            return
        before = _condition(previous_status, "Degraded")
        if failures:
            for failure in failures:
                if before.get("reason") != APPLY_FAILED or failure.line not in str(
                    before.get("message", "")
                ):
                    self.post_event(tenant, reason=APPLY_FAILED, message=failure.line, warning=True)
            if problem.reason == APPLY_FAILED:
                return
        shown = _condition(status, "Degraded").get("reason")
        if shown == problem.reason and before.get("reason") != shown:
            self.post_event(tenant, reason=problem.reason, message=problem.message, warning=True)

    def _converge(self, tenant: Tenant, child: Child, build: BuildInputs, seen: _Pass) -> None:
        """Write ``child`` if it differs from what is wanted; a refusal is recorded, not raised."""
        ref = _ref(tenant, child)
        live = None
        try:
            # A miss is confirmed with a GET: the informers only see labelled objects, and an
            # unlabelled one of this name may be another's, which the apply would take over.
            live = self._children.get(ref, verify_absence=True)
            if not _may_write(live, tenant):
                log.warning("%s exists and is not this tenant's; leaving it alone", ref)
                seen.conflicts.append(ref)
                seen.live[ref] = None  # not this tenant's component: not reported as one
                return
            manifest = stamp(child.build(tenant, build))
            if not tenant.paused and not _terminating(live) and needs_apply(manifest, live):
                log.info("applying %s", ref)
                live = self._write(child, ref, manifest, live, seen)
        except KubeError as error:
            self._failed(ref, error, seen)
        if _terminating(live) and not tenant.paused and ref not in seen.waiting:
            seen.waiting.append(ref)
        seen.live[ref] = live

    @staticmethod
    def _failed(ref: ObjectRef, error: KubeError, seen: _Pass) -> None:
        metrics.CHILD_FAILURES.labels(kind=ref.kind).inc()
        log.warning("%s: %s", ref, error)
        seen.failures.append(ChildFailure(ref, error))

    def _write(
        self,
        child: Child,
        ref: ObjectRef,
        manifest: Manifest,
        live: Mapping[str, Any] | None,
        seen: _Pass,
    ) -> dict[str, Any]:
        """Server-side apply; when the API server refuses the merged result (422), take the
        differing fields back with a JSON patch of the desired values; when an immutable field
        differs, delete the child and create it anew."""
        try:
            return self._children.apply(manifest)
        except KubeError as error:
            if error.status != 422 or live is None:
                raise
            refused = error
        if not refused.immutable:
            log.warning("%s: apply refused (%s); patching the desired values back", ref, refused)
            operations = take_back(manifest, live)
            if not operations:
                raise refused  # nothing of the operator's differs: not drift it can repair
            try:
                patched = self._children.json_patch(ref, operations)
            except KubeError as error:
                if not error.immutable:
                    raise
                refused = error
            else:
                metrics.DRIFT_REPAIRS.labels(kind=ref.kind, action="patch").inc()
                fields = ", ".join(op["path"] for op in operations)
                self._repaired(seen, ref, f"apply refused ({refused.summary}); took back {fields}")
                return patched
        return self._recreate(child, ref, manifest, refused, live, seen)

    def _recreate(
        self,
        child: Child,
        ref: ObjectRef,
        manifest: Manifest,
        refused: KubeError,
        live: Mapping[str, Any],
        seen: _Pass,
    ) -> dict[str, Any]:
        """Delete and create anew: the only way to change an immutable field.

        A child that keeps volumes (the Redis StatefulSet) goes in three passes, so its data
        survives: first its claims are released (retention policy Retain, which makes the
        StatefulSet controller take its owner reference off them); once that controller has
        observed the change, the object is deleted with Orphan propagation (pods and claims
        stay); once it is gone, the new one is created and adopts both.
        """
        if child.keeps_volumes:
            spec = live.get("spec") or {}
            if spec.get("persistentVolumeClaimRetentionPolicy") != RELEASED_CLAIMS:
                log.warning("%s: %s; releasing its volume claims to recreate it", ref, refused)
                release = {
                    "op": "add",
                    "path": "/spec/persistentVolumeClaimRetentionPolicy",
                    "value": RELEASED_CLAIMS,
                }
                released = self._children.json_patch(ref, [release])
                self._repaired(
                    seen,
                    ref,
                    f"{refused.summary}; releasing its volume claims (retention Retain) to "
                    "recreate it without them",
                )
                seen.waiting.append(ref)
                return released
            if not _observed(live):
                seen.waiting.append(ref)  # its controller has not released the claims yet
                return dict(live)
        propagation: Propagation = "Orphan" if child.keeps_volumes else "Background"
        log.warning("%s: %s; recreating it (propagation %s)", ref, refused, propagation)
        remaining = self._children.delete(ref, propagation=propagation)
        metrics.DRIFT_REPAIRS.labels(kind=ref.kind, action="recreate").inc()
        self._repaired(
            seen, ref, f"{refused.summary}; deleted (propagation {propagation}) to be created anew"
        )
        if remaining is not None:
            seen.waiting.append(ref)  # created by a later pass, once the old object is gone
            return remaining
        return self._children.apply(manifest)

    def _repaired(self, seen: _Pass, ref: ObjectRef, what: str) -> None:
        """A Normal Event on the tenant saying what a drift repair did to one of its children."""
        self.post_event(
            seen.tenant, reason="DriftRepaired", message=f"{ref.kind} {ref.name}: {what}"
        )

    def _prune(self, tenant: Tenant, child: Child, seen: _Pass) -> None:
        """Delete a child the tenant no longer wants, if it is this tenant's."""
        ref = _ref(tenant, child)
        try:
            live = self._children.get(ref)
            if live is None or tenant.paused or _terminating(live) or not _owned_by(live, tenant):
                return
            log.info("deleting %s", ref)
            self._children.delete(ref)
        except KubeError as error:
            self._failed(ref, error, seen)

    def post_event(
        self, tenant: Tenant, *, reason: str, message: str, warning: bool = False
    ) -> None:
        now = self._clock()
        self._api.post_event(
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


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return {}
