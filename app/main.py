"""The Starlette application: its lifespan owns the engine and the keys; routes are thin."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from costgraph.alerts.worker import Wakeup
from costgraph.app.alerting import alerts_config, deliveries_running
from costgraph.app.body_limit import BodySizeLimit
from costgraph.app.business_clock import install_configured_clock
from costgraph.app.console import console_routes
from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.document_stream import watch_graphql_posts
from costgraph.app.exports_route import exports_route
from costgraph.app.forecast_alerts import forecast_alerts_running
from costgraph.app.graphql import GraphQLApp, format_error
from costgraph.app.graphql_schema import build_schema
from costgraph.app.heap import tune_garbage_collector
from costgraph.app.identity import build_oauth, build_verifier, revocations_kept_fresh
from costgraph.app.live import build_bus, build_live, live_running
from costgraph.app.oauth_routes import oauth_routes
from costgraph.app.observability.wiring import Observability
from costgraph.app.persisted_queries import PersistedQueries
from costgraph.app.query_caches import cache_of
from costgraph.app.query_limits import QueryLimits
from costgraph.app.rate_limit import RateLimiter
from costgraph.app.report_scheduler import reports_scheduled
from costgraph.app.reports_route import reports_routes
from costgraph.app.rollup_runner import rollups_running
from costgraph.app.settings import Settings
from costgraph.app.shutdown import AnswerCancelledRequests
from costgraph.app.state import AppState
from costgraph.app.stripe_webhook import stripe_webhook_route
from costgraph.app.subscription_biller import subscription_biller_running
from costgraph.app.token_cache import CachedTokenVerifier
from costgraph.app.units import build_units
from costgraph.auth.keys import KeyStore
from costgraph.auth.revocation import RevocationList
from costgraph.billing import tenant_cache

logger = logging.getLogger("costgraph")


def create_app(settings: Settings, database_url: str, *, tracer_provider: Any = None) -> Starlette:
    """Build the app for a database that is already migrated.

    ``tracer_provider`` (an OpenTelemetry SDK provider) turns tracing on with it (tests);
    otherwise ``COSTGRAPH_OTEL_ENABLED`` builds one from the ``OTEL_*`` variables.
    """
    install_configured_clock(settings)
    observability = Observability(settings, tracer_provider)
    keys = KeyStore(settings.key_dir, settings.signing_key_path)
    holder: dict[str, AppState] = {}
    revocations = RevocationList()
    oauth = build_oauth(settings, keys, revocations)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        keys.ensure()
        tenant_cache.configure(settings.tenant_cache_ttl_seconds)
        engine = create_engine(database_url, settings)
        sessions = create_sessionmaker(engine)
        bus = build_bus(settings)
        wakeup = Wakeup()
        state = AppState(
            settings=settings,
            engine=engine,
            sessions=sessions,
            keys=keys,
            # A client reuses its token: keep verified principals until exp, 60 s at most.
            verifier=CachedTokenVerifier(build_verifier(settings, keys, revocations)),
            limits=AppState.limits_of(settings),
            bus=bus,
            live=build_live(settings, format_error),
            units=build_units(sessions, bus=bus, metrics=observability.metrics, wakeup=wakeup),
            revocations=revocations,
            alerts=alerts_config(settings),
            alert_wakeup=wakeup,
            metrics=observability.metrics,
            rate_limiter=RateLimiter.from_settings(settings),
        )
        holder["state"] = state
        graphql.state = state
        try:
            async with (
                observability.running(state),
                revocations_kept_fresh(
                    revocations, state.sessions, settings.revocation_refresh_seconds
                ),
                live_running(state.bus, state.live, settings.shutdown_timeout_seconds),
                deliveries_running(
                    state.units,
                    state.alerts,
                    state.alert_wakeup,
                    on_outcome=state.metrics.delivery_outcome,
                ),
                rollups_running(engine, settings, state.units),
                subscription_biller_running(
                    state.sessions,
                    state.units,
                    interval=settings.subscription_billing_interval_seconds,
                ),
                forecast_alerts_running(
                    state.sessions,
                    state.units,
                    state.limits,
                    interval=settings.forecast_alert_interval_seconds,
                    history_days=settings.forecast_history_days,
                ),
                reports_scheduled(
                    state.units,
                    settings,
                    keys,
                    state.alerts,
                    max_page_size=state.limits.max_page_size,
                    zone_name=state.limits.budget_timezone,
                ),
            ):
                tune_garbage_collector()  # startup heap frozen, fewer young collections
                yield
        finally:
            if state.rate_limiter is not None:
                await state.rate_limiter.close()
            await engine.dispose()

    schema = build_schema(
        introspection=settings.introspection,
        extra_extensions=observability.schema_extensions(),
        limits=QueryLimits.of(settings),
    )
    graphql = GraphQLApp(
        state=None,  # type: ignore[arg-type]  # set by the lifespan before any request
        persisted=PersistedQueries.of(settings, cache_of(schema)),
        schema=schema,
        graphql_ide="graphiql" if settings.graphql_ide else None,
        allow_queries_via_get=True,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),  # others: refused, HTTP 400
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
            return JSONResponse(
                {"status": "unavailable"}, status_code=503, headers={"Retry-After": "2"}
            )
        return JSONResponse({"status": "ready"})

    async def home(request: Request) -> Response:
        """``GET /``: the admin console (app/console.py), which links to the query page."""
        return RedirectResponse("/console/", status_code=307)

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(keys.jwks(), headers={"Cache-Control": "public, max-age=300"})

    middleware = observability.middleware()  # outermost: request ids, access log, metrics
    # A request that shutdown cut off is answered 503 UNAVAILABLE, not 500 (app/shutdown.py).
    middleware.append(Middleware(AnswerCancelledRequests))
    if settings.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.allowed_origins,
                allow_methods=["GET", "POST"],
                # W3C trace context and the request id a browser may send with a request,
                # and the request id it may read from the answer (app/observability/).
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "traceparent",
                    "tracestate",
                    "X-Request-ID",
                ],
                expose_headers=["X-Request-ID"],
            )
        )
    # Bodies over COSTGRAPH_MAX_REQUEST_BYTES: 413 PAYLOAD_TOO_LARGE (app/body_limit.py).
    # Innermost, so the refusal is still counted and logged, and carries the CORS headers a
    # browser needs to read it.
    # A POST /graphql body whose document is over its limit: refused as it arrives, the rest
    # unread (app/document_stream.py).
    middleware.append(
        Middleware(
            BodySizeLimit,
            max_bytes=settings.request_body_limit,
            watch=watch_graphql_posts(settings.graphql_max_document_bytes),
        )
    )
    return Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            *console_routes(),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/.well-known/jwks.json", jwks),
            *oauth_routes(oauth, lambda: holder["state"]),
            *reports_routes(lambda: holder["state"]),
            stripe_webhook_route(lambda: holder["state"]),
            exports_route(lambda: holder["state"]),
            *observability.routes(),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
