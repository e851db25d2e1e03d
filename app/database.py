"""The engine and its sessions: one per request, one per DataLoader batch, one per event."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from costgraph.app import stray_transactions
from costgraph.app.settings import Settings
from costgraph.kernel.database_url import asyncpg_url
from costgraph.models.scoping import TenantSession


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        asyncpg_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_overflow,
        # No pre-ping (with asyncpg it costs three round trips per checkout): a connection
        # the server closed is noticed at checkout for free (below), and a disconnect during
        # a statement invalidates the whole pool; either way the next checkouts connect
        # afresh, so the service recovers from a database restart without restarting.
        pool_pre_ping=False,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_args={
            "timeout": settings.db_connect_timeout_seconds,
            # A client-side bound too, for a connection whose server vanished without
            # closing it (the server's statement_timeout cannot fire then).
            "command_timeout": settings.statement_timeout_ms / 1000 + COMMAND_TIMEOUT_MARGIN,
            # Startup parameters: every connection of the pool gets them, from its first query.
            "server_settings": {
                "timezone": "UTC",
                "statement_timeout": str(settings.statement_timeout_ms),
                "lock_timeout": str(settings.lock_timeout_ms),
                "idle_in_transaction_session_timeout": str(settings.idle_in_transaction_timeout_ms),
                "application_name": "costgraph",
            },
        },
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    stray_transactions.install(engine)
    return engine


#: Seconds a statement may run on the client's clock beyond the server's statement_timeout.
COMMAND_TIMEOUT_MARGIN = 5.0


def _refuse_closed_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Checkout: a pooled connection the server has closed (restart, crash, terminated
    backend, idle timeout) is replaced — and so is every connection pooled before it."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise sa_exc.InvalidatePoolError("the database closed this pooled connection")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        engine, expire_on_commit=False, autoflush=False, sync_session_class=TenantSession
    )
