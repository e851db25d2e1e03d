"""A connection given back to the pool inside a transaction nobody will end is not handed out
again (app/stray_transactions.py).

Found under random GraphQL load: ``{ organizationPnl(range: …) { … } budgetStatus(budgetId:
"<unknown>") { … } }`` — budgetStatus's NOT_FOUND reaches the (non-null) root, graphql-core
cancels organizationPnl while ``driver_connection`` waits for its BEGIN, asyncpg keeps that
transaction registered and the server inside it, and the connection's later users failed: the
rollup job with "nested transaction has a different isolation level", requests with "current
transaction is aborted" (INTERNAL).

Each test interrupts a BEGIN the way a cancellation does — the task cancelled while the
BEGIN's answer is awaited — on an engine whose pool holds a single connection, so that the
next checkout gets whatever the pool kept of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.settings import Settings
from costgraph.billing.raw_connection import driver_connection


@pytest.fixture
async def engine(settings: Settings, database_url: str) -> AsyncIterator[AsyncEngine]:
    one = settings.model_copy(update={"db_pool_size": 1, "db_pool_overflow": 0})
    engine = create_engine(database_url, one)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        await connection.rollback()
    return int(pid)


async def _cancel_during_begin(driver: Any, begin: Callable[[], Awaitable[object]]) -> None:
    """Run ``begin`` and cancel it once asyncpg has registered its transaction, i.e. while the
    BEGIN's answer is awaited (asyncpg registers it just before sending BEGIN)."""
    task = asyncio.ensure_future(begin())
    for _ in range(10_000):
        if driver._top_xact is not None or task.done():
            break
        await asyncio.sleep(0)
    assert not task.done(), "the BEGIN finished before it could be interrupted"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _assert_clean_next_checkout(engine: AsyncEngine, pid: int) -> None:
    """What the rollup job does with the pool's next connection works, on a connection in no
    transaction — a new one: the server ended the stray transaction with the old one."""
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver._top_xact is None
        assert not driver.is_in_transaction()
        async with driver.transaction(isolation="repeatable_read"):
            assert await driver.fetchval("SHOW transaction_isolation") == "repeatable read"
            assert await driver.fetchval("SELECT pg_backend_pid()") != pid
        # And the adapter's own BEGIN is a BEGIN again, not a savepoint in a stray transaction.
        assert await connection.scalar(text("SELECT 1")) == 1
        await connection.rollback()
    async with engine.connect() as connection:
        states = await connection.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
        await connection.rollback()
    assert states == 0, "the connection with the stray transaction is still open"


async def test_a_cancelled_driver_connection_begin_is_not_handed_out_again(
    engine: AsyncEngine,
) -> None:
    sessions: async_sessionmaker[AsyncSession] = create_sessionmaker(engine)
    pid = await _backend_pid(engine)
    session = sessions()
    try:
        raw = await (await session.connection()).get_raw_connection()
        await _cancel_during_begin(raw.driver_connection, lambda: driver_connection(session))
    finally:
        await session.close()
    await _assert_clean_next_checkout(engine, pid)


async def test_a_cancelled_raw_transaction_begin_is_not_handed_out_again(
    engine: AsyncEngine,
) -> None:
    pid = await _backend_pid(engine)

    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection

        async def raw_transaction() -> None:
            async with driver.transaction():
                await driver.execute("SELECT 1")

        await _cancel_during_begin(driver, raw_transaction)
    await _assert_clean_next_checkout(engine, pid)


async def test_connections_given_back_cleanly_are_kept(engine: AsyncEngine) -> None:
    """The check discards nothing else: committed and rolled-back raw and ORM work, and a
    raw transaction left by an error, all give back the same connection."""
    sessions = create_sessionmaker(engine)
    pid = await _backend_pid(engine)
    async with sessions() as session, session.begin():
        driver = await driver_connection(session)
        await driver.execute("SELECT 1")
    async with sessions() as session:
        await driver_connection(session)  # begun, then rolled back by the close
        await session.execute(text("SELECT 1"))
    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        with pytest.raises(ZeroDivisionError):
            async with driver.transaction(isolation="repeatable_read"):
                await driver.execute("SELECT 1")
                raise ZeroDivisionError
        await connection.execute(text("SELECT 1"))  # left open: the pool's reset ends it
    assert await _backend_pid(engine) == pid


async def test_the_private_attributes_read_mean_what_the_check_assumes(engine: AsyncEngine) -> None:
    """asyncpg's ``_top_xact`` and the adapter's ``_transaction`` are the same transaction
    while the adapter's is open, and both are cleared when SQLAlchemy ends it."""
    async with create_sessionmaker(engine)() as session:
        raw = await (await session.connection()).get_raw_connection()
        adapted = raw.dbapi_connection
        assert adapted._transaction is None
        assert raw.driver_connection._top_xact is None
        driver = await driver_connection(session)
        assert adapted._transaction is not None
        assert driver._top_xact is adapted._transaction
        await session.rollback()
        assert adapted._transaction is None
        assert driver._top_xact is None
