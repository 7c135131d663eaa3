"""One asyncio loop per tenant: reconcile on change and every resync, read capacity every scale interval.

kopf delivers the tenants' watch events (``@kopf.on.event``, which writes nothing to the
tenant); the informers (:mod:`algoedge_operator.informer`) deliver the children's. This module
turns both into level-based reconciles; when each happens is decided by the pure
:class:`algoedge_operator.schedule.Schedule`. kopf's own timers and daemons are not used
because kopf puts a finalizer on every resource that has one, and a tenant has nothing outside
the cluster to clean up: its children go by garbage collection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import aiohttp

from algoedge_operator import metrics
from algoedge_operator.builders import ScaleTargets
from algoedge_operator.builders.common import MANAGER
from algoedge_operator.capacity import CapacityError, CapacityReport, read_capacity
from algoedge_operator.informer import ChildStore, Informer, start_informers
from algoedge_operator.kube import Kube, KubeError, connect
from algoedge_operator.model import SpecError, Tenant, parse_tenant
from algoedge_operator.reconcile import ReconcileResult, TenantReconciler, utc_now
from algoedge_operator.scaling import Recommendation, ScalerPolicy, decide
from algoedge_operator.schedule import Schedule
from algoedge_operator.settings import OperatorSettings
from algoedge_operator.status import ScalingState

log = logging.getLogger(__name__)
T = TypeVar("T")


class Runtime:
    """Everything the operator process shares: settings, API access, threads, tenant loops."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: Kube,
        *,
        watch: tuple[Kube, ChildStore] | None = None,
    ) -> None:
        """``watch``: the API access for the informers (their own connections, since each holds
        one open) and the store the reconciler reads children from; None polls children instead."""
        self.settings = settings
        self.kube = kube
        self.reconciler = TenantReconciler(
            kube, settings, store=watch[1] if watch is not None else None
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.concurrency, thread_name_prefix="reconcile"
        )
        self._session: aiohttp.ClientSession | None = None
        self._loops: dict[str, TenantLoop] = {}
        self._watch = watch
        self._informers: list[Informer] = []

    @classmethod
    def connect(cls, settings: OperatorSettings) -> Runtime:
        """A runtime talking to the cluster of the pod or of $KUBECONFIG."""
        kube = Kube(connect(), field_manager=MANAGER)
        if not settings.watch_children:
            return cls(settings, kube)
        # The informers get their own connections: each holds a watch open.
        return cls(settings, kube, watch=(Kube(connect(), field_manager=MANAGER), ChildStore()))

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        if self._watch is not None:
            loop = asyncio.get_running_loop()

            def changed(namespace: str, name: str) -> None:  # called from informer threads
                with contextlib.suppress(RuntimeError):  # the loop closed: we are stopping
                    loop.call_soon_threadsafe(self.poke, namespace, name)

            self._informers = start_informers(
                *self._watch, changed, namespaces=self.settings.namespaces
            )

    async def stop(self) -> None:
        for informer in self._informers:
            informer.stop()
        loops = list(self._loops.values())
        self._loops.clear()
        for tenant_loop in loops:
            tenant_loop.cancel()
        await asyncio.gather(*(tenant_loop.wait() for tenant_loop in loops))
        if self._session is not None:
            await self._session.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
        for informer in self._informers:
            await asyncio.to_thread(informer.join, 5.0)
        metrics.TENANTS.set(0)

    def poke(self, namespace: str, name: str) -> None:
        """A child of this tenant changed: reconcile it now rather than at the next resync."""
        for tenant_loop in self._loops.values():
            if tenant_loop.namespace == namespace and tenant_loop.name == name:
                tenant_loop.poke()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Runtime.start() was not awaited")
        return self._session

    async def blocking(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking API call in the reconcile threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event for a tenant: start, poke or stop its loop."""
        metadata = body.get("metadata") or {}
        if not self.settings.serves(str(metadata.get("namespace"))):
            # kopf was started wider than ALGOEDGE_OPERATOR_NAMESPACES: not ours to touch.
            return
        uid = str(metadata.get("uid"))
        if event_type == "DELETED" or metadata.get("deletionTimestamp"):
            tenant_loop = self._loops.pop(uid, None)
            if tenant_loop is not None:
                tenant_loop.cancel()
            metrics.forget_tenant(str(metadata.get("namespace")), str(metadata.get("name")))
            metrics.TENANTS.set(len(self._loops))
            return
        tenant_loop = self._loops.get(uid)
        if tenant_loop is None:
            tenant_loop = self._loops[uid] = TenantLoop(self, copy.deepcopy(dict(body)))
            metrics.TENANTS.set(len(self._loops))
        else:
            tenant_loop.update(copy.deepcopy(dict(body)))


def _change_marker(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What, when it changes, needs a reconcile now (status-only updates do not)."""
    metadata = body.get("metadata") or {}
    return (
        metadata.get("generation"),
        tuple(sorted((metadata.get("annotations") or {}).items())),
        tuple(sorted((metadata.get("labels") or {}).items())),
    )


async def woken(event: asyncio.Event, *, within: float) -> None:
    """Wait until ``event`` is set or ``within`` seconds pass, and never lose a cancellation.

    Python 3.11's ``asyncio.wait_for`` returns the inner result when the inner wait finishes in
    the same loop iteration as a cancel of the caller: a tenant loop poked just as its tenant was
    deleted went on reconciling the deleted tenant (and re-exported its series) until the
    operator stopped. ``asyncio.timeout`` keeps the cancellation.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            await event.wait()


class TenantLoop:
    """Reconciles and scales one tenant until it is deleted or the operator stops."""

    def __init__(self, runtime: Runtime, body: dict[str, Any]) -> None:
        self._runtime = runtime
        self._body = body
        self._status: dict[str, Any] = dict(body.get("status") or {})
        self._schedule = Schedule(
            resync_interval=runtime.settings.resync_interval,
            scale_interval=runtime.settings.scale_interval,
        )
        self._wakeup = asyncio.Event()
        #: Replicas the scalers work from; None until a reconcile has seen the workloads.
        self._targets: ScaleTargets | None = None
        self._histories: dict[str, tuple[Recommendation, ...]] = {"bridge": (), "worker": ()}
        self._scaling = ScalingState()
        self._api_ready = False
        metadata = body.get("metadata") or {}
        self.namespace = str(metadata.get("namespace"))
        self.name = str(metadata.get("name"))
        self._label = f"{self.namespace}/{self.name}"
        self._task = asyncio.create_task(self._run(), name=f"tenant {self._label}")

    def update(self, body: dict[str, Any]) -> None:
        changed = _change_marker(body) != _change_marker(self._body)
        self._body = body
        if body.get("status") is not None:
            self._status = dict(body["status"])
        if changed:
            self.poke()

    def poke(self) -> None:
        self._schedule = self._schedule.changed()
        self._wakeup.set()

    def cancel(self) -> None:
        self._task.cancel()

    async def wait(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            await woken(self._wakeup, within=max(0.0, self._schedule.wake_at() - time.monotonic()))
            self._wakeup.clear()
            now = time.monotonic()
            try:
                tenant = parse_tenant(self._body)
            except (SpecError, KeyError, TypeError, ValueError) as error:
                log.error("%s: unusable spec, waiting for a change: %s", self._label, error)
                metrics.ERRORS.labels(stage="spec").inc()
                self._schedule = self._schedule.unusable(now)
                continue
            self._schedule, step = self._schedule.step(
                now,
                paused=tenant.paused,
                can_scale=self._api_ready and self._targets is not None,
            )
            due = step.reconcile
            if step.scale:
                due = await self._scale(tenant) or due
            if not due:
                continue
            try:
                result = await self._reconcile(tenant)
            except Exception as error:
                metrics.ERRORS.labels(stage="reconcile").inc()
                metrics.RECONCILES.labels(outcome="error").inc()
                metrics.TENANT_RECONCILE_ERRORS.labels(self.namespace, self.name).inc()
                if isinstance(error, KubeError):
                    log.warning("%s: reconcile failed, retrying: %s", self._label, error)
                else:
                    log.exception("%s: reconcile failed unexpectedly, retrying", self._label)
                self._schedule = self._schedule.reconciled(time.monotonic(), ok=False)
                continue
            self._schedule = self._schedule.reconciled(time.monotonic(), ok=not result.retry)

    async def _reconcile(self, tenant: Tenant) -> ReconcileResult:
        runtime = self._runtime
        started = time.perf_counter()
        result: ReconcileResult = await runtime.blocking(
            runtime.reconciler.reconcile,
            tenant,
            targets=self._targets,
            scaling=self._scaling,
            previous_status=self._status,
        )
        metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        metrics.RECONCILES.labels(outcome=result.outcome).inc()
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in result.status.get("conditions") or ()
        )
        metrics.TENANT_READY.labels(self.namespace, self.name).set(1 if ready else 0)
        self._status = result.status
        if result.live_targets is not None:
            # After a restart these seed the scalers; paused, they are what runs.
            self._targets = result.live_targets
        api = result.status.get("components", {}).get("api") or {}
        self._api_ready = int(api.get("readyReplicas") or 0) > 0
        return result

    async def _scale(self, tenant: Tenant) -> bool:
        """Read demand and decide replicas; True when something for the status changed."""
        runtime = self._runtime
        before = self._scaling
        url = runtime.settings.capacity_url_for(name=tenant.name, namespace=tenant.namespace)
        try:
            token = await runtime.blocking(runtime.reconciler.internal_token, tenant)
            if token is None:
                raise CapacityError("no internal token yet")
            report = await read_capacity(
                runtime.session,
                url,
                token=token,
                timeout_seconds=runtime.settings.capacity_timeout,
            )
        except (CapacityError, KubeError) as error:
            metrics.ERRORS.labels(stage="capacity").inc()
            if before.capacity_error != str(error):
                log.warning("%s: capacity unreadable at %s: %s", self._label, url, error)
            self._scaling = dataclasses.replace(before, capacity_error=str(error))
            return self._scaling != before
        await self._apply_decisions(tenant, report)
        return self._scaling != before

    async def _apply_decisions(self, tenant: Tenant, report: CapacityReport) -> None:
        assert self._targets is not None
        spec = tenant.spec
        now = time.monotonic()
        bridge = decide(
            demand=report.linked_accounts,
            current=self._targets.bridge,
            history=self._histories["bridge"],
            now=now,
            policy=ScalerPolicy(
                per_replica=spec.bridge.accounts_per_replica,
                replicas=spec.bridge.replicas,
                stabilization_seconds=spec.bridge.scale_down_stabilization_seconds,
            ),
        )
        workers = decide(
            demand=report.total_backlog,
            current=self._targets.workers,
            history=self._histories["worker"],
            now=now,
            policy=ScalerPolicy(
                per_replica=spec.workers.tasks_per_replica,
                replicas=spec.workers.replicas,
                stabilization_seconds=spec.workers.scale_down_stabilization_seconds,
            ),
        )
        self._histories = {"bridge": bridge.history, "worker": workers.history}
        scaled_at = self._scaling.last_scale_time
        for component, decision, current in (
            ("bridge", bridge, self._targets.bridge),
            ("worker", workers, self._targets.workers),
        ):
            if decision.replicas == current:
                continue
            scaled_at = utc_now()
            metrics.SCALE_DECISIONS.labels(component=component, direction=decision.direction).inc()
            message = f"{component} {current} -> {decision.replicas}: {decision.reason}"
            log.info("%s: %s", self._label, message)
            reason = f"{'Bridge' if component == 'bridge' else 'Workers'}Scaled{decision.direction.title()}"
            await self._runtime.blocking(
                self._runtime.reconciler.post_event, tenant, reason=reason, message=message
            )
        self._targets = ScaleTargets(workers=workers.replicas, bridge=bridge.replicas)
        self._scaling = dataclasses.replace(
            self._scaling,
            linked_accounts=report.linked_accounts,
            connected_accounts=report.connected_accounts,
            connected_sockets=report.connected_sockets,
            queue_backlog=report.total_backlog,
            bridge_replicas=bridge.replicas,
            worker_replicas=workers.replicas,
            last_scale_time=scaled_at,
            capacity_error=None,
        )
