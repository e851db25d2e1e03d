"""The bare Starlette app the HTTP ceilings are measured on.

Each route answers the very request bytes CostGraph gets (a GraphQL POST body), so the
transport work is identical, and skips everything GraphQL and the domain add:

- ``POST /bare/me`` — the same token check as ``/graphql`` (the app's own verifier, built the
  same way), then ``{"data": {"me": {"subject": …}}}``;
- ``POST /bare/usage`` — reads ``variables.input`` of a ``recordUsage`` body and inserts the
  same row CostGraph writes, into ``ledger_ceiling``, with one asyncpg statement from a pool
  of CostGraph's size (10 + 10 overflow);
- ``POST /bare/authorize`` — reads ``variables.input`` of an ``authorizeUsage`` body and does one
  primary-key lookup of the account with asyncpg (the same pool), then answers a
  ``UsageAuthorized``-shaped JSON.

It runs under the same uvicorn configuration as CostGraph itself (:mod:`bench.server`).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.ceiling import ROW_SQL, RowBuilder
from costgraph.app.settings import Settings
from costgraph.auth.keys import KeyStore
from costgraph.auth.principal import Principal
from costgraph.auth.verify import InvalidToken, LocalKeys, TokenVerifier
from costgraph.kernel.database_url import plain_url

BARE_ME_PATH = "/bare/me"
BARE_USAGE_PATH = "/bare/usage"
BARE_AUTHORIZE_PATH = "/bare/authorize"
#: The ceiling of ``authorizeUsage``: one primary-key lookup.
ACCOUNT_BY_KEY_SQL = (
    "SELECT id, customer_id, currency FROM accounts WHERE organization_id = $1 AND id = $2"
)


async def _healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def app_verifier(settings: Settings) -> TokenVerifier:
    """The verifier the app builds for these settings (the same class and configuration)."""
    keys = KeyStore(settings.key_dir, settings.signing_key_path)
    keys.ensure()
    try:
        from costgraph.app.identity import build_verifier
        from costgraph.auth.revocation import RevocationList
    except ImportError:  # before the identity module existed
        return TokenVerifier(
            LocalKeys(keys),
            issuer=settings.issuer,
            audience=settings.audience,
            leeway_seconds=settings.jwt_leeway_seconds,
        )
    return build_verifier(settings, keys, RevocationList())


def me_route(verifier: TokenVerifier) -> Route:
    # The call /graphql makes: verify_async where it exists (it may refetch a remote JWKS).
    check: Callable[[str], Awaitable[Principal]] | None = getattr(verifier, "verify_async", None)

    async def me(request: Request) -> JSONResponse:
        await request.body()
        token = _bearer(request)
        if token is None:
            return JSONResponse({"error": "unauthenticated"}, status_code=401)
        try:
            principal = await check(token) if check is not None else verifier.verify(token)
        except InvalidToken:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"data": {"me": {"subject": principal.subject}}})

    return Route(BARE_ME_PATH, me, methods=["POST"])


def usage_route(holder: dict[str, Any]) -> Route:
    async def usage(request: Request) -> JSONResponse:
        event = json.loads(await request.body())["variables"]["input"]
        builder: RowBuilder = holder["builder"]
        row = builder.row(
            event["idempotencyKey"],
            uuid.UUID(event["accountId"]),
            datetime.fromisoformat(event["occurredAt"]),
            event["provider"],
            event["model"],
            event.get("inputTokens", 0),
            event.get("outputTokens", 0),
            event.get("cachedInputTokens", 0),
            None if event.get("userId") is None else uuid.UUID(event["userId"]),
            event.get("feature"),
            event.get("agent"),
            event.get("requestId"),
            event.get("metadata"),
            Decimal(event["providerCost"]),
        )
        async with holder["pool"].acquire() as connection:
            entry_id = await connection.fetchval(ROW_SQL, *row)
        return JSONResponse(
            {
                "data": {
                    "recordUsage": {
                        "__typename": "UsageRecorded",
                        "replayed": entry_id is None,
                        "entry": {"id": None if entry_id is None else str(entry_id)},
                    }
                }
            }
        )

    return Route(BARE_USAGE_PATH, usage, methods=["POST"])


def authorize_route(holder: dict[str, Any], organization_id: uuid.UUID) -> Route:
    async def authorize(request: Request) -> JSONResponse:
        estimate = json.loads(await request.body())["variables"]["input"]
        async with holder["pool"].acquire() as connection:
            account = await connection.fetchrow(
                ACCOUNT_BY_KEY_SQL, organization_id, uuid.UUID(estimate["accountId"])
            )
        if account is None:
            return JSONResponse(
                {"data": {"authorizeUsage": {"__typename": "NotFound", "code": "NOT_FOUND"}}}
            )
        return JSONResponse(
            {
                "data": {
                    "authorizeUsage": {
                        "__typename": "UsageAuthorized",
                        "replayed": False,
                        "reservation": {
                            "id": str(uuid.uuid4()),
                            "state": "HELD",
                            "aiCost": estimate.get("estimatedCost"),
                            "currency": account["currency"],
                        },
                    }
                }
            }
        )

    return Route(BARE_AUTHORIZE_PATH, authorize, methods=["POST"])


def bare_app(
    settings: Settings, database_url: str, organization_id: uuid.UUID, currency: str
) -> Starlette:
    holder: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            plain_url(database_url),
            min_size=10,
            max_size=20,
            server_settings={"timezone": "UTC", "application_name": "costgraph-bench-ceiling"},
        )
        async with pool.acquire() as connection:
            holder["builder"] = await RowBuilder.load(connection, organization_id, currency)
        holder["pool"] = pool
        try:
            yield
        finally:
            await pool.close()

    return Starlette(
        routes=[
            me_route(app_verifier(settings)),
            usage_route(holder),
            authorize_route(holder, organization_id),
            Route("/healthz", _healthz),
        ],
        lifespan=lifespan,
    )
