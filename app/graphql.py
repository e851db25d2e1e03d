"""``/graphql``: the bearer-token gate, the strawberry view and the error contract.

Errors leave in one shape: a domain failure keeps its code and message; a malformed query or
bad variable is ``VALIDATION_FAILED``; anything unexpected reaches the client only as
``INTERNAL`` with a generic message — never a stack trace or SQL. Formatting logs nothing:
each error is logged once, when strawberry processes it (app/error_log.py).
"""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from costgraph.app.observability import context as observability
from costgraph.app.rate_limit import rate_limited
from costgraph.app.state import AppState
from costgraph.auth.principal import Principal
from costgraph.auth.verify import InvalidToken
from costgraph.kernel.errors import DomainError, ErrorCode, Unavailable
from costgraph.kernel.retry import unavailable as db_fault
from costgraph.resolvers.context import Context
from costgraph.subscriptions import handshake
from costgraph.subscriptions.context import ConnectionContext
from costgraph.subscriptions.live import Live
from costgraph.subscriptions.transport import LiveTransportHandler

logger = logging.getLogger("costgraph.graphql")

PRINCIPAL_KEY = "costgraph.principal"


def format_error(error: GraphQLError) -> dict[str, Any]:
    original = error.original_error
    fault = None if isinstance(original, DomainError) or original is None else db_fault(original)
    if fault is not None:  # the database away or busy: a retryable UNAVAILABLE, not INTERNAL
        original = fault
    formatted = error.formatted
    extensions = dict(formatted.get("extensions") or {})
    if isinstance(original, DomainError):
        formatted["message"] = original.message
        extensions["code"] = original.code.value
        if isinstance(original, Unavailable):
            extensions["retryAfter"] = original.retry_after_seconds
        field = getattr(original, "field", None)
        if field:
            extensions["field"] = field
    elif "code" in extensions:
        pass  # set deliberately, e.g. by a permission
    elif error.path is None:
        extensions["code"] = ErrorCode.VALIDATION_FAILED.value
    else:  # a bug: logged with its traceback by app/error_log.py, never shown
        formatted["message"] = "Internal server error"
        formatted.pop("locations", None)
        extensions = {"code": ErrorCode.INTERNAL.value}
    formatted["extensions"] = extensions
    return dict(formatted)


def _posts_json(scope: Scope) -> bool:
    """CSRF-safe bodies only: a browser sends JSON cross-site only after a CORS preflight,
    unlike text/plain and form posts (refused here with 415)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            mime: bytes = value.split(b";", 1)[0].strip().lower()
            return mime == b"application/json"
    return False


def unsupported_media_type() -> Response:
    message = "POST /graphql takes a JSON body (Content-Type: application/json)"
    return JSONResponse(
        {
            "errors": [
                {"message": message, "extensions": {"code": ErrorCode.VALIDATION_FAILED.value}}
            ]
        },
        status_code=415,
        headers={"Accept": "application/json"},
    )


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def unauthorized(error: str, description: str) -> Response:
    return JSONResponse(
        {
            "errors": [
                {"message": description, "extensions": {"code": ErrorCode.UNAUTHENTICATED.value}}
            ]
        },
        status_code=401,
        headers={
            "WWW-Authenticate": f'Bearer realm="costgraph", error="{error}", '
            f'error_description="{description}"'
        },
    )


async def bearer_principal(
    state: AppState, header: str | None, log: logging.Logger
) -> Principal | Response:
    """The verified caller of an ``Authorization: Bearer`` header, or the 401 refusing it
    (the reason logged to ``log``). Shared by ``/graphql`` and the plain HTTP routes."""
    token = _bearer(header)
    if token is None:
        return unauthorized("invalid_request", "a bearer access token is required")
    try:
        return await state.verifier.verify_async(token)
    except InvalidToken as exc:
        log.info("token refused: %s", exc)
        return unauthorized("invalid_token", "the access token is not valid")


async def over_budget(
    state: AppState, principal: Principal, log: logging.Logger
) -> Response | None:
    """The 429 refusal when ``principal`` has spent its request budget (app/rate_limit.py)."""
    limiter = state.rate_limiter
    if limiter is None or (refusal := await limiter.check(principal)) is None:
        return None
    log.info("rate limited: %s budget of %s", refusal.budget, principal.subject)
    return rate_limited(refusal)


class GraphQLApp(GraphQL[Context, None]):
    # Subscriptions: graphql-transport-ws only (see subscriptions/transport.py).
    graphql_transport_ws_handler_class = LiveTransportHandler

    def __init__(self, state: AppState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state

    @property
    def live(self) -> Live:
        return self.state.live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not _posts_json(scope):
            await unsupported_media_type()(scope, receive, send)
            return
        if scope["type"] == "http" and self._needs_token(scope):
            request = Request(scope, receive)
            principal = await bearer_principal(
                self.state, request.headers.get("authorization"), logger
            )
            if isinstance(principal, Response):
                await principal(scope, receive, send)
                return
            scope.setdefault("state", {})[PRINCIPAL_KEY] = principal
            observability.bind_principal(principal)  # who, on every later log line
            if (refused := await over_budget(self.state, principal, logger)) is not None:
                await refused(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _needs_token(self, scope: Scope) -> bool:
        """Every operation needs a token; only the IDE's HTML page (GET, no query) does not."""
        if scope["method"] != "GET":
            return True
        return b"query=" in scope.get("query_string", b"")

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None
    ) -> Context:
        if isinstance(request, WebSocket):  # the principal comes with connection_init
            return ConnectionContext(
                request=request, response=response, app=self.state, principal=None
            )
        principal: Principal | None = request.scope.get("state", {}).get(PRINCIPAL_KEY)
        return Context(request=request, response=response, app=self.state, principal=principal)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """``connection_init``: verify its token and count the connection, or refuse (4403)."""
        assert isinstance(context, ConnectionContext)
        try:
            await handshake.accept(context, self.state.verifier, self.state.live.connections)
        except ConnectionRejectionError:
            self.state.metrics.websocket_connections.labels("refused").inc()
            raise
        self.state.metrics.websocket_connections.labels("accepted").inc()
        if context.principal is not None:
            observability.bind_principal(context.principal)
            logger.info("websocket connected")
        unset: UnsetType = UNSET
        return unset

    async def process_result(
        self, request: Request | WebSocket, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            data["errors"] = [format_error(error) for error in result.errors]
        if result.extensions:
            data["extensions"] = result.extensions
        return data
