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
from costgraph.billing import statement_pool
from costgraph.kernel.database_url import asyncpg_url, plain_url
from costgraph.models.scoping import TenantSession


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    """The engine, with a statement pool of its own for the statements that are each a
    transaction of their own (an authorisation's hold: ``billing/statement_pool.py``),
    closed when the engine is disposed."""
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
        connect_args=connect_arguments(settings),
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    stray_transactions.install(engine)
    statement_pool.attach(
        engine,
        statement_pool.StatementPool(
            plain_url(url),
            connect_arguments(settings),
            max_size=statement_pool_size(settings),
            timeout=settings.db_pool_timeout_seconds,
        ),
    )
    return engine


def connect_arguments(settings: Settings) -> dict[str, Any]:
    """``asyncpg.connect``'s arguments besides the address, for every pooled connection."""
    return {
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
    }


def statement_pool_size(settings: Settings) -> int:
    """Connections the statement pool may open: half the engine's pool (one at least).

    Each hold keeps its connection for one statement, a few milliseconds, so a few
    connections carry every authorisation a process can compute; a hold beyond them waits
    for one in the process rather than for the hot budget's row lock in the database.
    Measured at c=16 (bench.authorize, pool of 20): with 5, the most CPU saved but a p99
    2.9-3.3x the trivial query's (holds queued in the process); with 20, a p99 2.4-2.6x but
    more CPU a hold (more backends contending for the row); with 10, the p99 2.3-2.6x and
    the CPU of 5. These connections come on top of the engine's: size max_connections for
    both.
    """
    return max(1, settings.db_pool_size // 2)


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
