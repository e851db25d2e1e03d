"""The pool discards a connection given back inside a transaction that nobody will end.

SQLAlchemy's reset on return rolls back the transaction *its asyncpg adapter* began, and
nothing else. asyncpg keeps a transaction of its own on the connection (``_top_xact``, what
``Connection.transaction()`` nests into), set before its BEGIN is sent. When the BEGIN is
interrupted — a task cancelled while it waits for the answer, as graphql-core cancels the
sibling fields of a field whose error reaches a non-null parent — asyncpg leaves that
transaction registered (failed) and the server inside it, and SQLAlchemy's adapter, whose
``_start_transaction`` only handles ``Exception``, does not record it. Two paths begin that
way outside SQLAlchemy's own statement handling (which invalidates a connection whose
statement was cancelled): ``billing/raw_connection.py``'s ``driver_connection`` (every raw
read and write path) and ``async with driver.transaction()`` on a pooled connection (the
rollup job, exports, holds). Given back as it was, the connection poisons its next users:
``transaction(isolation=...)`` refuses to nest ("nested transaction has a different isolation
level"), the adapter's next BEGIN becomes a SAVEPOINT in the stray transaction, and the
first error in it leaves every later statement "current transaction is aborted".

So every return is checked here, whichever path checked the connection out (sessions,
``engine.connect()``, ``engine.raw_connection()``): a connection whose asyncpg transaction is
not the adapter's, or whose server is inside a transaction the adapter did not begin, is
invalidated — closed (the server rolls the transaction back) and replaced by a new
connection at the pool's next checkout. It happens only after an interrupted BEGIN (or a
caller that left its own transaction open), so its cost is a reconnect then; the check on
every return reads three attributes.

Both attributes read are private (asyncpg's ``Connection._top_xact`` and the adapter's
``_transaction``); tests/test_stray_transactions.py checks they still mean this.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

logger = logging.getLogger("costgraph.database")


def install(engine: AsyncEngine) -> None:
    """Check every connection ``engine``'s pool gets back (see the module's docstring)."""
    event.listen(engine.sync_engine, "reset", _discard_stray_transaction)


def stray_transaction(adapted: Any, driver: Any) -> bool:
    """Whether the asyncpg connection ``driver`` (under SQLAlchemy's adapter ``adapted``) is
    inside a transaction the adapter will not end: asyncpg's registered one is another, or
    the adapter has none while the server reports one."""
    owned = adapted._transaction
    registered = driver._top_xact
    if registered is not None:
        return registered is not owned
    return owned is None and bool(driver.is_in_transaction())


def _discard_stray_transaction(
    dbapi_connection: Any, record: ConnectionPoolEntry, state: PoolResetState
) -> None:
    # A connection being discarded anyway (detached, or garbage collected outside the event
    # loop) is not given back: nothing to check, nor anything that could be done.
    if state.terminate_only or not state.asyncio_safe:
        return
    if stray_transaction(dbapi_connection, record.driver_connection):
        logger.info(
            "a pooled connection came back inside a transaction nobody will end (an "
            "interrupted BEGIN); closed, the pool opens another"
        )
        # Closed now, not at the next checkout: the server ends the transaction with the
        # connection. The pool's reset that follows finds the adapter with nothing to roll
        # back, and the record, given back empty, connects afresh when next checked out.
        record.invalidate()
