"""The models and the migrations describe the same database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from costgraph.kernel.database_url import asyncpg_url
from costgraph.models import Base


async def test_models_match_migrations(database_url: str) -> None:
    engine = create_async_engine(asyncpg_url(database_url))
    try:
        async with engine.connect() as connection:

            def diff(sync_connection: object) -> list[object]:
                context = MigrationContext.configure(
                    sync_connection,  # type: ignore[arg-type]
                    opts={"compare_type": True, "compare_server_default": True},
                )
                return list(compare_metadata(context, Base.metadata))

            differences = await connection.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == [], f"models and migrations differ: {differences}"
