"""The engine and its sessions: one per request, one per DataLoader batch, one per event."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from costgraph.app.settings import Settings
from costgraph.models.scoping import TenantSession


def asyncpg_url(url: str) -> str:
    """Normalise any postgres URL to SQLAlchemy's asyncpg dialect."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def plain_url(url: str) -> str:
    """The same URL as libpq and ``asyncpg.connect()`` understand it."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        asyncpg_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        connect_args={
            "server_settings": {
                "timezone": "UTC",
                "statement_timeout": str(settings.statement_timeout_ms),
                "lock_timeout": str(settings.lock_timeout_ms),
                "application_name": "costgraph",
            }
        },
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        engine, expire_on_commit=False, autoflush=False, sync_session_class=TenantSession
    )
