"""The alerting rules of one tenant: the ``spec.groups`` of its PrometheusRule ``<t>-alerts``.

Only the interface is here so far: the rules themselves (each with a runbook section in
docs/monitoring.md and a ``promtool test rules`` case) are filled in by issue 13's rules work,
which replaces the body of :func:`rule_groups`. Until then the PrometheusRule holds no group.
"""

from __future__ import annotations

from typing import Any


def rule_groups(*, tenant: str, namespace: str) -> list[dict[str, Any]]:
    """Prometheus rule groups (``name``, ``rules``) for the tenant ``tenant`` in ``namespace``.

    Pure. Every series the rules read carries the labels of the monitoring label contract
    (docs/architecture.md, "Monitoring labels"): ``namespace``, ``tenant`` (the AlgoEdgeTenant's
    name) and ``component`` (api, worker, beat, bridge, pgbouncer, redis); the rules select on
    ``namespace`` and ``tenant`` to stay within this tenant. Partial: issue 13's rules work fills
    this in; it returns no group until then.
    """
    del tenant, namespace  # used by the rules once they exist
    return []
