"""``/graphql``: the bearer-token gate, the strawberry view and the error contract.

Errors leave in one shape: a domain failure keeps its code and message; a malformed query or
bad variable is ``VALIDATION_FAILED``; anything unexpected reaches the client only as
``INTERNAL`` with a generic message — never a stack trace or SQL. Formatting logs nothing:
each error is logged once, when strawberry processes it (app/error_log.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from costgraph.app import graphql_http
from costgraph.app import ws_handshake as handshake
from costgraph.app.fast_json import OrjsonView
from costgraph.app.ide import query_page
from costgraph.app.observability import context as observability
from costgraph.app.persisted_queries import PersistedQueries, Refusal
from costgraph.app.query_caches import cache_of
from costgraph.app.rate_limit import rate_limited, refusal_error
from costgraph.app.state import AppState
from costgraph.app.ws_context import ConnectionContext
from costgraph.app.ws_text import TextFramesAdapter
from costgraph.app.ws_transport import LiveTransportHandler
from costgraph.auth.principal import Principal
from costgraph.auth.verify import InvalidToken
from costgraph.kernel.errors import DomainError, ErrorCode, Unavailable
from costgraph.kernel.retry import unavailable as db_fault
from costgraph.schema.context import Context
from costgraph.subscriptions.live import Live

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


MEDIA_KEY = "costgraph.media_type"
#: What each method may run: mutations only over POST (GET answers 405), subscriptions over
#: websockets only (over HTTP: a request error).
_ALLOWED = {
    "GET": frozenset({OperationType.QUERY}),
    "POST": frozenset({OperationType.QUERY, OperationType.MUTATION}),
}


def subprotocol_refused() -> Response:
    """The handshake of a client that does not offer graphql-transport-ws, refused before it
    is accepted: an HTTP answer, which websocket clients report as a refused handshake."""
    return graphql_http.error_response(
        400,
        f"this endpoint speaks the {GRAPHQL_TRANSPORT_WS_PROTOCOL} websocket subprotocol only",
        headers={"Sec-WebSocket-Version": "13"},
    )


class GraphQLApp(OrjsonView, GraphQL[Context, None]):
    # Subscriptions: graphql-transport-ws only (see app/ws_transport.py).
    graphql_transport_ws_handler_class = LiveTransportHandler
    websocket_adapter_class = TextFramesAdapter  # protocol messages as text frames

    def __init__(
        self, state: AppState, persisted: PersistedQueries | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.state = state
        #: Apollo's automatic persisted queries; known hashes are the document cache's.
        self.persisted = persisted or PersistedQueries(cache_of(self.schema))

    @property
    def live(self) -> Live:
        return self.state.live

    async def render_graphql_ide(self, request: Request) -> Response:
        """Our own query page, served from the package: it works offline (strawberry's
        GraphiQL page loads its code from a CDN) and sends nothing before a token is pasted."""
        return HTMLResponse(query_page(), headers={"Cache-Control": "no-cache"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if GRAPHQL_TRANSPORT_WS_PROTOCOL not in scope.get("subprotocols", ()):
                await _deny(WebSocket(scope, receive, send))
                return
            await super().__call__(scope, receive, send)
            return
        if scope["method"] == "POST" and not _posts_json(scope):
            await unsupported_media_type()(scope, receive, send)
            return
        request = Request(scope, receive)
        if self._needs_token(scope):
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
        media_type = graphql_http.negotiate(graphql_http.accept_of(scope))
        scope.setdefault("state", {})[MEDIA_KEY] = media_type
        try:
            response = await self.run(request)
        except _MethodNotAllowed as exc:
            response = graphql_http.error_response(
                405, exc.reason, media_type, headers={"Allow": "POST"}
            )
        except HTTPException as exc:
            code = ErrorCode.NOT_FOUND if exc.status_code == 404 else ErrorCode.VALIDATION_FAILED
            response = graphql_http.error_response(
                exc.status_code, exc.reason, media_type, code=code
            )
        await response(scope, receive, send)

    # --- JSON: orjson; a body whose only fault is a lone surrogate is read anyway, so that
    # the answer names the field that holds it (app/query_text.py) ---

    def decode_json(self, data: str | bytes) -> object:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            if "surrogate" not in str(exc):
                raise
            try:
                return json.loads(data)
            except (ValueError, RecursionError):
                raise exc from None

    def encode_json(self, data: object) -> bytes:
        try:
            return orjson.dumps(data)
        except TypeError:  # text stored before lone surrogates were refused, huge integers
            return json.dumps(data).encode()

    # --- the request: its parameters, which operations each method may run ---

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData) and not isinstance(data.operation_name, str | None):
            raise HTTPException(400, "operationName must be a string or null")
        return data

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        method = request_adapter.method
        query = self.persisted.document(request_data.query, request_data.extensions)
        if isinstance(query, Refusal):
            return _request_error(query.message, query.code)
        try:
            return await self.schema.execute(
                query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=_ALLOWED.get(method, _ALLOWED["GET"]),
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError as exc:
            if exc.operation_type is OperationType.MUTATION:
                raise _MethodNotAllowed("mutations are sent with POST") from exc
            return _request_error(
                "subscriptions are served over websockets (graphql-transport-ws), not over HTTP"
            )
        except CannotGetOperationTypeError as exc:
            return _request_error(exc.as_http_error_reason())
        except MissingQueryError as exc:
            raise HTTPException(400, "no GraphQL query found in the request") from exc

    # --- the response: media type and status from Accept; no data on a request error ---

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        media_type = request.scope.get("state", {}).get(MEDIA_KEY, graphql_http.JSON)
        sub_response.media_type = media_type
        return sub_response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        media_type = sub_response.media_type or graphql_http.JSON
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = media_type
        if (
            isinstance(response_data, dict)
            and "data" not in response_data
            and not sub_response.status_code
        ):
            response.status_code = graphql_http.request_error_status(media_type)
        return response

    def _needs_token(self, scope: Scope) -> bool:
        """Every operation needs a token; only the IDE's HTML page (GET, no query, no
        persisted query) does not."""
        if scope["method"] != "GET":
            return True
        query_string: bytes = scope.get("query_string", b"")
        return b"query=" in query_string or b"extensions=" in query_string

    def should_render_graphql_ide(self, request: Any) -> bool:
        """Not for a GET naming a persisted query (by hash, with no ``query``)."""
        if "extensions" in request.query_params:
            return False
        return bool(super().should_render_graphql_ide(request))

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None
    ) -> Context:
        if isinstance(request, WebSocket):  # the principal comes with connection_init
            return ConnectionContext(
                request=request, response=response, app=self.state, principal=None
            )
        principal: Principal | None = request.scope.get("state", {}).get(PRINCIPAL_KEY)
        return Context(request=request, response=response, app=self.state, principal=principal)

    async def operation_refusal(self, principal: Principal) -> dict[str, Any] | None:
        """One operation over a websocket draws on the same request budgets as an HTTP
        request (app/ws_transport.py asks before each ``subscribe``)."""
        limiter = self.state.rate_limiter
        if limiter is None or (refusal := await limiter.check(principal)) is None:
            return None
        logger.info(
            "rate limited over websocket: %s budget of %s", refusal.budget, principal.subject
        )
        return refusal_error(refusal)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """``connection_init``: verify its token and count the connection, or refuse (4403 for
        the token, 1008 for one connection too many: app/ws_transport.py)."""
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
        data: GraphQLHTTPResponse = {}
        if not graphql_http.is_request_error(result.data, result.errors):
            data["data"] = result.data
        if result.errors:
            data["errors"] = [format_error(error) for error in result.errors]
        if result.extensions:
            data["extensions"] = result.extensions
        return data


class _MethodNotAllowed(HTTPException):
    def __init__(self, reason: str) -> None:
        super().__init__(405, reason)


def _request_error(message: str, code: str = ErrorCode.VALIDATION_FAILED.value) -> ExecutionResult:
    """A request error found before execution, answered like a validation error."""
    error = GraphQLError(message, extensions={"code": code})
    return ExecutionResult(data=None, errors=[error])


async def _deny(websocket: WebSocket) -> None:
    """Refuse a handshake before accepting it: an HTTP answer where the server can send one
    (uvicorn can), else a close before accept (HTTP 403)."""
    logger.info("websocket refused: no %s subprotocol offered", GRAPHQL_TRANSPORT_WS_PROTOCOL)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(subprotocol_refused())
    else:
        await websocket.close(code=1002)
