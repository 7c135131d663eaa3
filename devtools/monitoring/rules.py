"""Render one tenant's alerting rules (``builders.alerts.rule_groups``) as a Prometheus rules file.

The same groups the operator puts in the tenant's PrometheusRule, for ``promtool check rules``,
``promtool test rules`` and a local Prometheus: ``python -m devtools.monitoring.rules --tenant
demo --namespace default --out rules.yaml``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from algoedge_operator.builders.alerts import rule_groups

DEFAULT_TENANT = "demo"
DEFAULT_NAMESPACE = "default"


def render(*, tenant: str = DEFAULT_TENANT, namespace: str = DEFAULT_NAMESPACE) -> str:
    groups = rule_groups(tenant=tenant, namespace=namespace)
    return yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000)


def write(path: Path, *, tenant: str = DEFAULT_TENANT, namespace: str = DEFAULT_NAMESPACE) -> Path:
    path.write_text(render(tenant=tenant, namespace=namespace))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a tenant's Prometheus rules file.")
    parser.add_argument("--tenant", default=DEFAULT_TENANT)
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    write(args.out, tenant=args.tenant, namespace=args.namespace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
