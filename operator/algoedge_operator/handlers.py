"""kopf registrations: thin wrappers over the controller (all kopf settings live in ``configure``)."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from algoedge_operator import metrics
from algoedge_operator.controller import Runtime
from algoedge_operator.model import GROUP, PLURAL, VERSION
from algoedge_operator.settings import SettingsError, load_operator_settings

log = logging.getLogger(__name__)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    try:
        operator_settings = load_operator_settings(os.environ)
    except SettingsError as error:
        # Stops the operator with the one line a person needs.
        raise kopf.PermanentError(f"configuration error: {error}") from None

    # One operator replica (Deployment strategy Recreate); no peering CRDs to install or watch.
    settings.peering.standalone = True
    # Watched namespaces: no cluster-wide reads of Namespaces and CRDs, which the namespaced
    # Roles do not grant (kopf then takes the CRD as it is at start: install it first).
    settings.scanning.disabled = bool(operator_settings.namespaces)
    # kopf's own state goes to annotations, never into the tenant's structural status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="kopf.algoedge.io"
    )
    # Same for the diff base; only change handlers would use it, and there are none.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopf.algoedge.io", key="last-handled-configuration"
    )
    # The reconciler posts its own Events (scale decisions, SecretMissing); kopf's per-log-line
    # Events would duplicate them and cost a write each.
    settings.posting.enabled = False
    # Ask the API server to end watches every 5 min so a silently dead connection is replaced.
    settings.watching.server_timeout = 300
    # ... and give up on our side a little later if the server does not.
    settings.watching.client_timeout = 330
    # Fail fast on an unreachable API server instead of hanging a watch for minutes.
    settings.watching.connect_timeout = 10
    # kopf's own API calls (watch setup) should not wait longer than ours do.
    settings.networking.request_timeout = 60

    runtime = Runtime.connect(operator_settings)
    await runtime.start()
    memo.runtime = runtime
    if operator_settings.http_port:
        memo.http = await metrics.start_http_server(
            operator_settings.http_host, operator_settings.http_port
        )
    log.info(
        "algoedge-operator: resync %gs, scale %gs, capacity %s, children %s, namespaces %s",
        operator_settings.resync_interval,
        operator_settings.scale_interval,
        operator_settings.capacity_url,
        "watched" if operator_settings.watch_children else "polled",
        ",".join(operator_settings.namespaces) or "all",
    )


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # The service account in a pod, else $KUBECONFIG as it is now (kopf's default login goes
    # through the client library, which fixed $KUBECONFIG when it was first imported).
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def shut_down(memo: kopf.Memo, **_: Any) -> None:
    runtime = getattr(memo, "runtime", None)
    if runtime is not None:
        await runtime.stop()
    http = getattr(memo, "http", None)
    if http is not None:
        await http.cleanup()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def tenant_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is not None:
        runtime.observe(event.get("type"), event["object"])
