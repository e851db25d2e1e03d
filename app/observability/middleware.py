"""The outermost ASGI layer: a request id, one access line and the HTTP metrics per request.

The access line also carries the request's GraphQL operation (type, name, outcome, error
codes; see :mod:`.operations`), so one request is one line.

Pure ASGI (no ``BaseHTTPMiddleware``: it would cost a task and a queue per request). The
request id comes from a well-formed ``X-Request-ID`` or is made here, is echoed on the
response, and is in the context of every line logged while the request is served. A
websocket connection gets the same: one context for its whole life, and a line when it ends.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from costgraph.app.observability.context import (
    RequestContext,
    current_request,
    request_id_from,
)
from costgraph.app.observability.metrics import Metrics

logger = logging.getLogger("costgraph.http")
ws_logger = logging.getLogger("costgraph.ws")

REQUEST_ID_HEADER = b"x-request-id"
#: Probes and scrapes: logged at DEBUG, so a healthy instance's log is not all probes.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def route_of(scope: Scope) -> str:
    """The matched route's template (``/graphql``), never the raw path: bounded labels."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = RequestContext(request_id_from(_header(scope, REQUEST_ID_HEADER)))
        echoed = (REQUEST_ID_HEADER, request.request_id.encode("ascii"))
        status = 500  # unless a response starts: an exception, or a client gone

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        reset = current_request.set(request)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = route_of(scope)
            method: str = scope["method"]
            self.metrics.observe_http(route, method, status, elapsed)
            if self.access_log:
                level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
                if logger.isEnabledFor(level):
                    fields = _access_fields(scope, route, status, elapsed)
                    if len(request.operations) == 1:
                        fields.update(request.operations[0])
                    elif request.operations:  # a batch
                        fields["operations"] = request.operations
                    logger.log(level, "%s %s %d", method, scope["path"], status, extra=fields)
            current_request.reset(reset)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = request_id_from(_header(scope, REQUEST_ID_HEADER))
        request = RequestContext(request_id, kind="websocket")
        reset = current_request.set(request)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            if request.subject is not None:  # an accepted connection (refusals log themselves)
                ws_logger.info(
                    "websocket closed",
                    extra={"duration_ms": round((time.perf_counter() - started) * 1000, 1)},
                )
            current_request.reset(reset)


def _access_fields(scope: Scope, route: str, status: int, elapsed: float) -> dict[str, Any]:
    client = scope.get("client")
    return {
        "method": scope["method"],
        "path": scope["path"],  # never the query string: it can carry signed links
        "route": route,
        "status": status,
        "duration_ms": round(elapsed * 1000, 2),
        "client": None if client is None else client[0],
    }
