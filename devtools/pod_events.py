"""What `make dev REAL_NODE=1` says about the dev tenant as it runs: one line per change a person
cares about (a pod scheduled, initialising, Running, Ready or not, restarted, gone; a Warning
event; the tenant's Ready condition; the API Service's address), never one per poll.

Pure: :class:`NamespaceWatch` is fed the namespace's objects as the API lists them (JSON dicts)
and answers with the lines to print; the caller does the listing and the printing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

JsonObject = Mapping[str, Any]


def _container_statuses(status: JsonObject) -> list[JsonObject]:
    return [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]


def _condition(obj: JsonObject, kind: str) -> JsonObject | None:
    conditions = obj.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c.get("type") == kind), None)


def pod_state(pod: JsonObject) -> str:
    """A pod's state in a few words, e.g. ``Pending: ContainerCreating``, ``init: migrate``,
    ``Running, not ready``, ``Running, ready, 2 restarts``, ``terminating``."""
    if pod["metadata"].get("deletionTimestamp"):
        return "terminating"
    status = pod.get("status", {})
    phase = status.get("phase", "Pending")
    containers = _container_statuses(status)
    restarts = sum(int(c.get("restartCount", 0)) for c in containers)
    waiting = [
        c["state"]["waiting"].get("reason", "waiting")
        for c in containers
        if "waiting" in c.get("state", {})
    ]
    # A crash loop or an image that is not there matters more than anything else.
    trouble = [
        reason for reason in waiting if reason not in ("ContainerCreating", "PodInitializing")
    ]
    if phase == "Pending":
        if not pod.get("spec", {}).get("nodeName"):
            scheduled = _condition(pod, "PodScheduled")
            reason = scheduled.get("message") if scheduled else None
            return f"Pending: not scheduled ({reason})" if reason else "Pending: not scheduled"
        running_init = [
            c["name"]
            for c in status.get("initContainerStatuses", [])
            if "running" in c.get("state", {})
        ]
        if trouble:
            state = f"Pending: {', '.join(trouble)}"
        elif running_init:
            state = f"init: {', '.join(running_init)}"
        else:
            state = f"Pending: {waiting[0]}" if waiting else "Pending"
    elif phase == "Running":
        ready = _condition(pod, "Ready")
        state = (
            "Running, ready" if ready and ready.get("status") == "True" else "Running, not ready"
        )
        if trouble:
            state += f": {', '.join(trouble)}"
    else:
        reason = status.get("reason")
        state = f"{phase}: {reason}" if reason else phase
    if restarts:
        state += f", {restarts} restart{'s' if restarts > 1 else ''}"
    return state


def tenant_state(tenant: JsonObject) -> str:
    """``Ready``, or ``not Ready (<reason>: <message>)`` from the tenant's Ready condition."""
    ready = _condition(tenant, "Ready")
    if ready is None:
        return "not Ready yet (no status)"
    if ready.get("status") == "True":
        return "Ready"
    reason = ready.get("reason", "")
    message = ready.get("message", "")
    return f"not Ready ({reason}: {message})" if message else f"not Ready ({reason})"


class NamespaceWatch:
    """Remembers what it last reported of one namespace and reports only what changed."""

    def __init__(self, *, api_service: str) -> None:
        #: The Service whose ClusterIP is the tenant's API address, printed once it exists.
        self.api_service = api_service
        self.pods: dict[str, str] = {}
        self.tenants: dict[str, str] = {}
        self.events: set[str] = set()
        self.api_address: str | None = None

    def changes(
        self,
        *,
        pods: Sequence[JsonObject],
        events: Sequence[JsonObject],
        tenants: Sequence[JsonObject],
        services: Sequence[JsonObject],
    ) -> list[str]:
        """The lines to print for these lists, given what was reported before."""
        lines: list[str] = []
        for tenant in tenants:
            name = tenant["metadata"]["name"]
            state = tenant_state(tenant)
            if self.tenants.get(name) != state:
                self.tenants[name] = state
                lines.append(f"tenant {name}: {state}")
        seen = set()
        for pod in pods:
            name = pod["metadata"]["name"]
            seen.add(name)
            state = pod_state(pod)
            if self.pods.get(name) != state:
                self.pods[name] = state
                lines.append(f"pod {name}: {state}")
        for name in sorted(self.pods.keys() - seen):
            del self.pods[name]
            lines.append(f"pod {name}: gone")
        for event in events:
            # Once per event: its repetitions (a probe failing every period, the HPA finding no
            # metrics server every sync) would be a line per poll; the pod's state says the rest.
            uid = event["metadata"]["uid"]
            if event.get("type") != "Warning" or uid in self.events:
                continue
            self.events.add(uid)
            involved = event.get("involvedObject", {})
            what = f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"
            message = str(event.get("message", "")).strip()
            lines.append(f"warning {what}: {event.get('reason', '')}: {message}")
        for service in services:
            if service["metadata"]["name"] != self.api_service:
                continue
            spec = service.get("spec", {})
            ports = [p["port"] for p in spec.get("ports", []) if p.get("name") == "http"]
            address = spec.get("clusterIP")
            if address and address != "None" and ports:
                url = f"http://{address}:{ports[0]}"
                if url != self.api_address:
                    self.api_address = url
                    lines.append(
                        f"tenant API (pods, Service {self.api_service}): {url}  "
                        f"(from this host through kube-proxy; try {url}/readyz)"
                    )
        return lines
