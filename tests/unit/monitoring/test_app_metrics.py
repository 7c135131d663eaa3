"""The API's 5xx counters exist at 0 for every route before any request (docs/monitoring.md)."""

from __future__ import annotations

from algoedge.api.app import API_ROUTES, create_app
from algoedge.config import ApiSettings, load_settings
from prometheus_client import REGISTRY

from devtools.app import api_environment


def test_every_route_has_its_error_counter_before_any_request() -> None:
    env = api_environment("postgresql://u:p@127.0.0.1:1/db", "redis://127.0.0.1:1/0")
    app = create_app(load_settings(ApiSettings, env))  # builds only; connects nothing
    routes = {r.path for r in API_ROUTES} | {"unmatched"}
    assert {r.canonical for r in app.router.resources()} >= routes - {"unmatched"}
    for route in routes:
        value = REGISTRY.get_sample_value("algoedge_http_errors_total", {"route": route})
        assert value is not None, route
