"""Apply the alembic migrations shipped in ``costgraph.migrations``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import costgraph.migrations
from costgraph.kernel.database_url import asyncpg_url

#: Serialises concurrent `migrate` runs (several instances starting at once).
_MIGRATION_LOCK_KEY = 0x636F737467726170


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(costgraph.migrations.__file__).parent))
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def migrate(url: str, revision: str = "head") -> None:
    engine = create_async_engine(asyncpg_url(url))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()
