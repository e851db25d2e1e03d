"""Authentication for plain HTTP routes (exports, report files): the bearer access token
``/graphql`` takes, checked by the same verifier, or a signed download link; the tenant from
the token only; errors in GraphQL's error shape."""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from costgraph.app import graphql
from costgraph.app.state import AppState
from costgraph.auth.permissions import Right, has_right
from costgraph.auth.principal import Principal
from costgraph.billing.directory import OrgContext
from costgraph.billing.exports import links
from costgraph.kernel.errors import DomainError, ErrorCode, Forbidden, Unauthenticated
from costgraph.schema.context import organization

logger = logging.getLogger("costgraph.routes")

_STATUS = {
    ErrorCode.VALIDATION_FAILED: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.UNAUTHENTICATED: 401,
}


def error_response(exc: DomainError) -> JSONResponse:
    """A refusal as GraphQL shapes it: ``errors[0].extensions.code`` (and ``field``)."""
    extensions: dict[str, str] = {"code": exc.code.value}
    field = getattr(exc, "field", None)
    if field:
        extensions["field"] = field
    return JSONResponse(
        {"errors": [{"message": exc.message, "extensions": extensions}]},
        status_code=_STATUS.get(exc.code, 400),
    )


def _forbidden(message: str) -> JSONResponse:
    return error_response(Forbidden(message))


async def authenticate(request: Request, state: AppState, right: Right) -> Principal | Response:
    """The caller of a bearer-token request with ``right``, or the response refusing it."""
    principal = await graphql.bearer_principal(state, request.headers.get("authorization"), logger)
    if isinstance(principal, Response):
        return principal
    if (refused := await over_budget(state, principal)) is not None:
        return refused
    if not has_right(principal, right):
        return _forbidden(f"this operation needs the {right.value} right")
    return principal


async def over_budget(state: AppState, principal: Principal) -> Response | None:
    """The 429 refusal when ``principal`` has spent its request budget (app/rate_limit.py):
    the same budgets, and the same counts, as ``/graphql``. A signed link draws on the budget
    of the principal who made it."""
    return await graphql.over_budget(state, principal, logger)


def verify_link(state: AppState, token: str, report: str) -> links.LinkClaims:
    """A signed link's claims; ``Unauthenticated`` saying why it is refused (expired, not
    valid for this report, tampered, or revoked with its access token)."""
    settings = state.settings

    def public_key(kid: str) -> RSAPublicKey | None:
        key = state.keys.get(kid)
        return None if key is None else key.public

    try:
        claims = links.verify(
            token,
            public_key=public_key,
            issuer=settings.issuer,
            audience=settings.audience,
            report=report,
            leeway=settings.jwt_leeway_seconds,
        )
    except links.LinkRefused as exc:
        raise Unauthenticated(str(exc)) from None
    if state.revocations.is_revoked(claims.principal):
        raise Unauthenticated("the download link was revoked with its access token")
    return claims


async def organization_of(state: AppState, principal: Principal, right: Right) -> OrgContext:
    """The principal's organisation, once it holds ``right`` (else ``Forbidden``)."""
    if not has_right(principal, right):
        raise Forbidden(f"this operation needs the {right.value} right")
    return await organization(state, principal)
