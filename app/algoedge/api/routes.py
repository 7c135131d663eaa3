"""The route table: each API module declares each of its routes once, as a :class:`Route`.

From those records the router registers the routes (:func:`add_routes`), the auth and rate-limit
middlewares read each request's policy (:func:`declared_route`), and
:func:`algoedge.api.openapi.build_document` writes the OpenAPI document, so a route's path,
method, policy and contract are never stated twice.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Who may call a route: a signed-in user (a bearer access token, resolved by the identity
#: middleware), anyone, or the platform (a bearer ``ALGOEDGE_INTERNAL_TOKEN``, checked by the
#: same middleware).
Auth = Literal["user", "public", "internal"]
#: Which budgets a request spends: "default" (per user and per client address), "auth" (login
#: and register: strict, per client address), "socket" (socket.io: each new connection, per
#: client address); None for routes never limited (probes, metrics, internal, this document).
RateClass = Literal["default", "auth", "socket"]

#: Which listener serves a route: the public port (``ALGOEDGE_HTTP_PORT``: the HTTP API and
#: socket.io), the metrics port (``ALGOEDGE_METRICS_PORT``: /metrics and /internal/v1/*, which the
#: tenant's NetworkPolicy opens only to the operator and monitoring), or both (the probes). On the
#: other listener a route does not exist: the router answers 404 as for an unknown path.
Listener = Literal["public", "metrics", "both"]

#: A response body in the document: the name of a schema in ``components.schemas``, an inline
#: JSON schema, or None for no body.
BodySchema = str | dict[str, Any] | None

_PATH_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class Route:
    """One operation: where it is, who may call it, and what it takes and answers."""

    method: str
    path: str
    handler: Handler
    _: KW_ONLY
    #: The operation's one-line summary in the document.
    summary: str
    #: The answers the handler itself gives, by status: (description, body schema). The errors
    #: that follow from the fields below (401, 404, 413, 422, 429, 400) are added by the document.
    responses: Mapping[int, tuple[str, BodySchema]]
    auth: Auth = "user"
    rate: RateClass | None = "default"
    #: The model the handler reads the query string with (documented as query parameters).
    query: type[BaseModel] | None = None
    #: The model the handler reads the JSON body with (a schema in ``components.schemas``).
    body: type[BaseModel] | None = None
    body_required: bool = True
    #: Answers 404 for a query value naming a row that is not the caller's (a path id always may).
    not_found: bool = False
    #: The media type of the handler's successful answers.
    media: str = "application/json"
    #: The successful answers carry a Location header.
    location: bool = False
    #: False for routes that are not the HTTP API's to describe (socket.io's engine.io endpoint).
    documented: bool = True
    #: A GET route answers HEAD as well (aiohttp runs the handler and drops the body).
    head: bool = True
    #: The listener that serves it.
    listener: Listener = "public"

    @property
    def path_parameters(self) -> tuple[str, ...]:
        """The names of the path's ``{parameters}``, in order (each a row id)."""
        return tuple(_PATH_PARAMETER.findall(self.path))


_DECLARED: web.AppKey[dict[tuple[str, str], Route]] = web.AppKey("declared_routes")


def arrived_on(request: web.Request, *, metrics_port: int) -> Literal["public", "metrics"]:
    """The listener ``request`` came in on, told by the local port of its connection (inside a
    pod the connection ends at the container port; 0 means there is no metrics listener)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    port = sockname[1] if isinstance(sockname, tuple) and len(sockname) > 1 else None
    return "metrics" if metrics_port and port == metrics_port else "public"


def _admits(listener: Listener, request: web.Request, metrics_port: int) -> bool:
    return listener == "both" or arrived_on(request, metrics_port=metrics_port) == listener


class _OnListener:
    """A route's resource that exists only on its listener; elsewhere the router looks further.
    Mixed into aiohttp's resource classes (before them, so its ``resolve`` runs first)."""

    def __init__(self, path: str, *, listener: Listener, metrics_port: int) -> None:
        super().__init__(path)  # type: ignore[call-arg]
        self._listener: Listener = listener
        self._metrics_port = metrics_port

    async def resolve(self, request: web.Request) -> Any:
        if not _admits(self._listener, request, self._metrics_port):
            return None, set()
        return await super().resolve(request)  # type: ignore[misc]


class _PlainOnListener(_OnListener, web.PlainResource):
    """A fixed path that exists only on its listener."""


class _DynamicOnListener(_OnListener, web.DynamicResource):
    """A path with {parameters} that exists only on its listener."""


def add_routes(app: web.Application, routes: Iterable[Route], *, metrics_port: int) -> None:
    """Register ``routes`` on ``app``'s router, each on its listener (``metrics_port`` tells the
    metrics listener's requests apart), and remember each one's declaration."""
    if _DECLARED not in app:
        app[_DECLARED] = {}
    declared = app[_DECLARED]
    resources: dict[str, tuple[web.Resource, Listener]] = {}
    for route in routes:
        if route.path not in resources:
            # aiohttp's own test for a path with parameters (``add_resource``).
            dynamic = "{" in route.path or "}" in route.path
            kind = _DynamicOnListener if dynamic else _PlainOnListener
            created = kind(route.path, listener=route.listener, metrics_port=metrics_port)
            app.router.register_resource(created)
            resources[route.path] = (created, route.listener)
        resource, listener = resources[route.path]
        if listener != route.listener:
            raise ValueError(f"{route.path}: every method of a path must be on one listener")
        if route.method == "GET" and route.head:
            resource.add_route("HEAD", route.handler)
        resource.add_route(route.method, route.handler)
        declared[(route.method, resource.canonical)] = route


def declared_route(request: web.Request) -> Route | None:
    """The declaration of the route ``request`` matched, if it was added by :func:`add_routes`."""
    matched = request.match_info.route
    if request.match_info.http_exception is not None or matched.resource is None:
        return None
    declared = request.app.get(_DECLARED, {})
    method = "GET" if matched.method == "HEAD" else matched.method
    return declared.get((method, matched.resource.canonical))
