"""Raw asyncpg on a session's own connection and transaction (the write path's hot SQL)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's current transaction, that transaction begun.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement: a raw
    statement sent before any ORM one would otherwise run (and commit) on its own.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    adapted: Any = raw.dbapi_connection
    if getattr(adapted, "_transaction", False) is None:
        start = getattr(adapted, "_start_transaction", None)
        if start is not None and getattr(adapted, "isolation_level", None) != "autocommit":
            await start()
        else:  # another SQLAlchemy version: let it begin the way it does
            await connection.exec_driver_sql("SELECT 1")
    return raw.driver_connection


def plain_uuid(value: Any) -> Any:
    """asyncpg's own UUID subclass as a plain :class:`uuid.UUID` (what the ORM hands out;
    orjson, for one, does not know the subclass)."""
    return None if value is None else uuid.UUID(bytes=value.bytes)
