"""Raw asyncpg on a session's own connection and transaction (the write path's hot SQL)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from costgraph.billing.statement_pool import StatementPool, pool_of


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
    """An asyncpg connection outside any session, for statements that are each a transaction
    of their own (nothing here sends BEGIN).

    From the engine's statement pool (``billing/statement_pool.py``: asyncpg's own pool,
    which resets nothing it need not) when it has one — the app's engine does
    (app/database.py).
    Otherwise from the engine's own pool: one greenlet for the checkout (which a new
    connection needs), none for the return, which is SQLAlchemy's reset, a rollback of the
    adapter's transaction that sends nothing (none was begun through it) and so never awaits.

    A class rather than an ``asynccontextmanager``: on the authorisation's hot path the
    generator machinery cost about a fifth of the checkout (measured: ~44 -> ~36 us).
    """

    __slots__ = ("_connection", "_engine", "_pool")

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pool: StatementPool | None = None
        self._connection: Any = None

    async def __aenter__(self) -> Any:
        pool = self._pool = pool_of(self._engine)
        if pool is not None:
            self._connection = await pool.acquire()
            return self._connection
        self._connection = await self._engine.raw_connection()
        return self._connection.driver_connection

    async def __aexit__(self, *exc_info: object) -> None:
        if self._pool is None:
            self._connection.close()
        else:
            await self._pool.release(self._connection)


def plain_uuid(value: Any) -> Any:
    """asyncpg's own UUID subclass as a plain :class:`uuid.UUID` (what the ORM hands out;
    orjson, for one, does not know the subclass)."""
    return None if value is None else uuid.UUID(bytes=value.bytes)
