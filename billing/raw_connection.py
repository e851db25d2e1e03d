"""Raw asyncpg on a session's own connection and transaction (the write path's hot SQL)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's current transaction, that transaction begun.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement: a raw
    statement sent before any ORM one would otherwise run (and commit) on its own.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    if not driver.is_in_transaction():
        await _begin(connection, raw.dbapi_connection)
    return driver


async def _begin(connection: AsyncConnection, adapted: Any) -> None:
    """BEGIN the way SQLAlchemy's asyncpg adapter does before its first statement, so that
    SQLAlchemy commits or rolls back the transaction as its own.

    ``_start_transaction`` is the adapter's private method; SQLAlchemy has no public way to
    begin without a statement. The public one (``exec_driver_sql("SELECT 1")``) costs a round
    trip more: measured in process, a single ``recordUsage`` took about 10% more CPU and
    15-25% more time with it. So SQLAlchemy's range is pinned (pyproject.toml), and
    tests/test_third_party_assumptions.py checks that the method is there and behaves as used
    here; were it gone, the public way would still begin.
    """
    start = getattr(adapted, "_start_transaction", None)
    if start is None:
        await connection.exec_driver_sql("SELECT 1")
    else:
        await start()


class pooled:  # lower case: used like a function, ``async with pooled(engine) as c``
    """An asyncpg connection of the engine's pool, outside any session, for statements that
    are each a transaction of their own (nothing here sends BEGIN).

    Cheaper than a session's connection: one greenlet for the checkout (which a new
    connection needs), none for the return. The return is SQLAlchemy's reset, a rollback of
    the adapter's transaction, which sends nothing (none was begun through it) and so never
    awaits; the pool's checkout hook (app/database.py) sees it like any other.

    A class rather than an ``asynccontextmanager``: on the authorisation's hot path the
    generator machinery cost about a fifth of the checkout (measured: ~44 -> ~36 us).
    """

    __slots__ = ("_engine", "_proxied")

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._proxied: Any = None

    async def __aenter__(self) -> Any:
        self._proxied = await self._engine.raw_connection()
        return self._proxied.driver_connection

    async def __aexit__(self, *exc_info: object) -> None:
        self._proxied.close()


def plain_uuid(value: Any) -> Any:
    """asyncpg's own UUID subclass as a plain :class:`uuid.UUID` (what the ORM hands out;
    orjson, for one, does not know the subclass)."""
    return None if value is None else uuid.UUID(bytes=value.bytes)
