"""The Starlette application: its lifespan owns the engine and the keys; routes are thin."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from costgraph.app.alerting import alerts_config, deliveries_running
from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.graphql import GraphQLApp, format_error
from costgraph.app.identity import build_oauth, build_verifier, revocations_kept_fresh
from costgraph.app.live import build_bus, build_live, live_running
from costgraph.app.oauth_routes import oauth_routes
from costgraph.app.rollup_runner import rollups_running
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.app.stripe_webhook import stripe_webhook_route
from costgraph.app.token_cache import CachedTokenVerifier
from costgraph.auth.keys import KeyStore
from costgraph.auth.revocation import RevocationList
from costgraph.schema.build import build_schema

logger = logging.getLogger("costgraph")


def create_app(settings: Settings, database_url: str) -> Starlette:
    """Build the app for a database that is already migrated."""
    keys = KeyStore(settings.key_dir, settings.signing_key_path)
    holder: dict[str, AppState] = {}
    revocations = RevocationList()
    oauth = build_oauth(settings, keys, revocations)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        keys.ensure()
        engine = create_engine(database_url, settings)
        state = AppState(
            settings=settings,
            engine=engine,
            sessions=create_sessionmaker(engine),
            keys=keys,
            # A client reuses its token: keep verified principals until exp, 60 s at most.
            verifier=CachedTokenVerifier(build_verifier(settings, keys, revocations)),
            limits=AppState.limits_of(settings),
            bus=build_bus(settings),
            live=build_live(settings, format_error),
            revocations=revocations,
            alerts=alerts_config(settings),
        )
        holder["state"] = state
        graphql.state = state
        try:
            async with (
                revocations_kept_fresh(
                    revocations, state.sessions, settings.revocation_refresh_seconds
                ),
                live_running(state.bus, state.live, settings.shutdown_timeout_seconds),
                deliveries_running(state.sessions, state.alerts, state.alert_wakeup),
                rollups_running(engine, settings),
            ):
                yield
        finally:
            await engine.dispose()

    graphql = GraphQLApp(
        state=None,  # type: ignore[arg-type]  # set by the lifespan before any request
        schema=build_schema(introspection=settings.introspection),
        graphql_ide="graphiql" if settings.graphql_ide else None,
        allow_queries_via_get=True,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),  # the legacy graphql-ws: 4406
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
        max_subscriptions_per_connection=settings.ws_max_subscriptions_per_connection,
        allowed_origins=settings.allowed_origins,
    )

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        try:
            async with holder["state"].engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # any failure means not ready; the reason goes to the log
            logger.warning("readiness check failed", exc_info=True)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(keys.jwks(), headers={"Cache-Control": "public, max-age=300"})

    middleware = []
    if settings.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.allowed_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/.well-known/jwks.json", jwks),
            *oauth_routes(oauth, lambda: holder["state"]),
            stripe_webhook_route(lambda: holder["state"]),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
