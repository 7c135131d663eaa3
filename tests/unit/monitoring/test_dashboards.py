"""The Grafana dashboards the chart ships: generated, well formed, every query scoped to the tenant."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devtools.monitoring import dashboards

SHIPPED = {path.name: path for path in dashboards.DASHBOARD_DIR.glob("*.json")}


def test_the_chart_ships_exactly_what_the_generator_writes() -> None:
    generated = dashboards.files()
    assert sorted(SHIPPED) == sorted(generated), (
        "regenerate: .venv/bin/python -m devtools.monitoring.dashboards"
    )
    for name, text in generated.items():
        assert SHIPPED[name].read_text() == text, (
            f"{name} differs from devtools/monitoring/dashboards.py; edit the generator and "
            "regenerate (.venv/bin/python -m devtools.monitoring.dashboards)"
        )


def load(name: str) -> dict[str, Any]:
    return dict(json.loads(SHIPPED[name].read_text()))


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_structure(name: str) -> None:
    board = load(name)
    for key in ("uid", "title", "panels", "templating", "schemaVersion", "time"):
        assert key in board, key
    assert board["uid"] == name.removesuffix(".json")
    assert len(board["uid"]) <= 40  # Grafana's limit on dashboard uids
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in ("namespace", "tenant"):
        assert variables[var]["type"] == "query"
        assert variables[var]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    # The tenant list depends on the namespace chosen.
    assert "$namespace" in variables["tenant"]["query"]["query"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    assert board["panels"], name
    titles = [panel["title"] for panel in board["panels"]]
    assert len(titles) == len(set(titles)), f"duplicate panel titles in {name}"
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["w"] > 0
        assert grid["h"] > 0
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def all_queries() -> list[tuple[str, str, str]]:
    return [
        (name, panel["title"], target["expr"])
        for name in sorted(SHIPPED)
        for panel in load(name)["panels"]
        for target in panel["targets"]
    ]


@pytest.mark.parametrize(("board", "title", "expr"), all_queries())
def test_every_query_selects_the_tenant_in_every_selector(
    board: str, title: str, expr: str
) -> None:
    selectors = re.findall(r"\{([^{}]*)\}", expr)
    # Legend templates are not selectors; every {...} in an expression is.
    assert selectors, f"{board} / {title}: no selector"
    for selector in selectors:
        assert '"$namespace"' in selector or '"$tenant' in selector, (board, title, selector)
        assert "$tenant" in selector, (board, title, selector)


def test_dashboards_cover_what_the_issue_lists() -> None:
    uids = {load(name)["uid"] for name in SHIPPED}
    assert uids == {
        "algoedge-tenant-overview",
        "algoedge-api",
        "algoedge-jobs",
        "algoedge-bridge",
        "algoedge-data",
    }
