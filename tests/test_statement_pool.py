"""The statement pool behind an authorisation's hold (billing/statement_pool.py, asyncpg's own
pool with a reset that sends nothing): its connections carry the engine's session settings,
are reused, come back out of any transaction and past a cancelled statement, are replaced
when the server ends them; a checkout beyond the bound is a database fault in time; the pool
ends with its engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from costgraph.app.database import connect_arguments, create_engine
from costgraph.app.settings import Settings
from costgraph.billing import statement_pool
from costgraph.billing.raw_connection import pooled
from costgraph.billing.statement_pool import StatementPool
from costgraph.kernel.database_url import plain_url
from costgraph.kernel.retry import Fault, classify
from tests.conftest import raw_connection

ACTIVE = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
BACKEND = "SELECT pg_backend_pid()"


@pytest.fixture
async def engine(database_url: str, settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The app's engine, its statement pool bounded to one connection."""
    made = create_engine(database_url, settings.model_copy(update={"db_pool_size": 1}))
    try:
        yield made
    finally:
        await made.dispose()


def pool_of(engine: AsyncEngine) -> StatementPool:
    pool = statement_pool.pool_of(engine)
    assert pool is not None, "the app's engine has a statement pool"
    return pool


async def backend(engine: AsyncEngine) -> int:
    async with pooled(engine) as connection:
        found: int = await connection.fetchval(BACKEND)
        return found


async def test_its_connection_is_reused_and_carries_the_session_settings(
    engine: AsyncEngine, settings: Settings
) -> None:
    first = await backend(engine)
    assert await backend(engine) == first
    async with pooled(engine) as connection:
        assert await connection.fetchval("SHOW statement_timeout") == (
            f"{settings.statement_timeout_ms}ms"
            if settings.statement_timeout_ms % 1000
            else f"{settings.statement_timeout_ms // 1000}s"
        )
        assert await connection.fetchval("SHOW TimeZone") == "UTC"
        assert await connection.fetchval("SHOW application_name") == "costgraph"
    assert pool_of(engine).pool.get_size() == 1


async def test_a_connection_given_back_inside_a_transaction_comes_back_out_of_it(
    engine: AsyncEngine,
) -> None:
    async with pooled(engine) as connection:
        await connection.execute("BEGIN")
        left = await connection.fetchval(BACKEND)
    async with pooled(engine) as connection:
        assert await connection.fetchval(BACKEND) == left  # the same one, reset
        assert not connection.is_in_transaction()


async def test_a_server_error_keeps_the_connection(engine: AsyncEngine) -> None:
    first = await backend(engine)
    with pytest.raises(asyncpg.PostgresError):
        async with pooled(engine) as connection:
            await connection.execute("SELECT 1 / 0")
    assert await backend(engine) == first


async def test_a_cancelled_statement_leaves_the_pool_usable(
    engine: AsyncEngine, database_url: str
) -> None:
    started = asyncio.Event()

    async def sleeper() -> None:
        async with pooled(engine) as connection:
            started.set()
            await connection.execute("SELECT pg_sleep(30)")

    task = asyncio.create_task(sleeper())
    await started.wait()
    await asyncio.sleep(0.1)  # the statement is at the server
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(10):  # not after the 30 s sleep: it was cancelled
        async with pooled(engine) as connection:
            assert await connection.fetchval("SELECT 1") == 1
            assert not connection.is_in_transaction()
            pid = await connection.fetchval(BACKEND)
    async with raw_connection(database_url) as admin:
        state = await admin.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
        assert state == "idle"


async def test_a_connection_the_server_ended_is_replaced(
    engine: AsyncEngine, database_url: str
) -> None:
    ended = await backend(engine)
    async with raw_connection(database_url) as admin:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", ended)
        for _ in range(500):
            if not await admin.fetchval(ACTIVE, ended):
                break
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the event loop reads the server's goodbye
    replacement = await backend(engine)
    assert replacement != ended


async def test_no_connection_in_time_is_a_database_fault(
    database_url: str, settings: Settings
) -> None:
    pool = StatementPool(
        plain_url(database_url), connect_arguments(settings), max_size=1, timeout=0.05
    )
    held: Any = await pool.acquire()
    try:
        with pytest.raises(TimeoutError) as raised:
            await pool.acquire()
        assert classify(raised.value) is Fault.UNAVAILABLE
    finally:
        await pool.release(held)
        await pool.close()


async def test_the_pool_closes_with_its_engine(database_url: str, settings: Settings) -> None:
    engine = create_engine(database_url, settings)
    pool = pool_of(engine)
    ended = await backend(engine)
    await engine.dispose()
    assert pool.pool is None and statement_pool.pool_of(engine) is None
    async with raw_connection(database_url) as admin:  # its backend ends (soon after)
        for _ in range(500):
            if not await admin.fetchval(ACTIVE, ended):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the pool's backend outlived the disposed engine")
    # A disposed engine is still usable: these statements go through its own pool again.
    try:
        async with pooled(engine) as connection:
            assert await connection.fetchval("SELECT 1") == 1
    finally:
        await engine.dispose()
