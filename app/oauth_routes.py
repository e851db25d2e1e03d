"""HTTP routes of the OAuth2 authorization server: token, revocation and metadata."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from costgraph.app.state import AppState
from costgraph.auth.oauth_server import (
    MAX_FORM_BYTES,
    REVOKE_PATH,
    TOKEN_PATH,
    HttpRequest,
    HttpResponse,
    OAuthService,
)

METADATA_PATH = "/.well-known/oauth-authorization-server"


async def _http_request(request: Request) -> HttpRequest:
    """The request with its body read up to one byte past the limit (which the form check
    then refuses), so a huge body is never buffered."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            break
    headers = {name.lower(): value for name, value in request.headers.items()}
    return HttpRequest(request.method, request.url.path, headers, bytes(body))


def _response(result: HttpResponse) -> Response:
    return JSONResponse(result.body, status_code=result.status, headers=dict(result.headers))


def oauth_routes(service: OAuthService, state: Callable[[], AppState]) -> list[Route]:
    """``state`` gives the running application's state (set by the lifespan)."""

    async def token(request: Request) -> Response:
        return _response(await service.token(await _http_request(request), state().sessions))

    async def revoke(request: Request) -> Response:
        return _response(await service.revoke(await _http_request(request), state().units))

    async def metadata(request: Request) -> Response:
        return JSONResponse(service.metadata(), headers={"Cache-Control": "public, max-age=3600"})

    return [
        Route(TOKEN_PATH, token, methods=["POST"]),
        Route(REVOKE_PATH, revoke, methods=["POST"]),
        Route(METADATA_PATH, metadata, methods=["GET"]),
    ]
