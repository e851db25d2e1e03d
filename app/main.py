"""The Starlette application: its lifespan owns the engine and the keys; routes are thin."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.graphql import GraphQLApp
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.auth.keys import KeyStore
from costgraph.auth.verify import LocalKeys, TokenVerifier
from costgraph.schema.build import build_schema

logger = logging.getLogger("costgraph")


def create_app(settings: Settings, database_url: str) -> Starlette:
    """Build the app for a database that is already migrated."""
    keys = KeyStore(settings.key_dir, settings.signing_key_path)
    holder: dict[str, AppState] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        keys.ensure()
        engine = create_engine(database_url, settings)
        state = AppState(
            settings=settings,
            engine=engine,
            sessions=create_sessionmaker(engine),
            keys=keys,
            verifier=TokenVerifier(
                LocalKeys(keys),
                issuer=settings.issuer,
                audience=settings.audience,
                leeway_seconds=settings.jwt_leeway_seconds,
            ),
            limits=AppState.limits_of(settings),
        )
        holder["state"] = state
        graphql.state = state
        try:
            yield
        finally:
            await engine.dispose()

    graphql = GraphQLApp(
        state=None,  # type: ignore[arg-type]  # set by the lifespan before any request
        schema=build_schema(introspection=settings.introspection),
        graphql_ide="graphiql" if settings.graphql_ide else None,
        allow_queries_via_get=True,
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
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/.well-known/jwks.json", jwks),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
