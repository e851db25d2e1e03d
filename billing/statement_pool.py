"""asyncpg's own pool for statements that are each a transaction of their own.

An authorisation's hold (``reserve_budget_holds``) is one statement on a connection of its
own, nothing else. Through SQLAlchemy's pool its checkout and return cost more CPU than
anything else around the statement (a greenlet switch, the connection record and proxy, the
checkout event, the reset on return: about 80 us a hold, measured in process); through
asyncpg's pool about 13 us. asyncpg's pool resets every connection it gets back: a
transaction left open is rolled back (asyncpg always does that), then by default a round
trip more (``RESET ALL``, ``UNLISTEN *``, advisory locks, cursors). The statements run here
set no session state, listen to nothing and take no session lock, so that second part is
left out (``reset``).

The rest is asyncpg's: a connection the server closed is replaced at checkout, one whose
statement was cancelled is cleaned up (or closed) before it is reused, a checkout beyond
``max_size`` waits up to the timeout and then raises :class:`TimeoutError` (a database
fault: ``UNAVAILABLE``, as when SQLAlchemy's pool runs dry). The pool is opened on first
use (the engine is built outside the event loop) and closed with its engine
(``AsyncEngine.dispose()``, :func:`attach`): whatever disposes the engine closes it too, and
the engine, still usable after a dispose, goes back to its own pool for these statements.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only


async def _no_session_state(connection: Any) -> None:
    """asyncpg's reset beyond the rollback of an open transaction: nothing to undo here."""


class StatementPool:
    """An asyncpg pool of at most ``max_size`` connections, opened on first use."""

    def __init__(
        self, dsn: str, connect_args: Mapping[str, Any], *, max_size: int, timeout: float
    ) -> None:
        self._dsn = dsn
        self._connect_args = dict(connect_args)
        self._max_size = max_size
        self.timeout = timeout
        self._pool: Any = None
        self._opening = asyncio.Lock()

    @property
    def pool(self) -> Any:
        """asyncpg's pool; None before the first checkout."""
        return self._pool

    async def acquire(self) -> Any:
        """An open asyncpg connection outside any transaction; give it back with
        :meth:`release`."""
        pool = self._pool
        if pool is None:
            pool = await self._open()
        return await pool.acquire(timeout=self.timeout)

    async def release(self, connection: Any) -> None:
        await self._pool.release(connection)

    async def _open(self) -> Any:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._max_size,
                    reset=_no_session_state,
                    **self._connect_args,
                )
            return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def terminate(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()


#: The statement pool of each engine that has one (:func:`attach`).
_POOLS: weakref.WeakKeyDictionary[AsyncEngine, StatementPool] = weakref.WeakKeyDictionary()


def attach(engine: AsyncEngine, pool: StatementPool) -> None:
    """Make ``pool`` the statement pool of ``engine``, closed when the engine is disposed.

    ``AsyncEngine.dispose()`` runs the engine's ``engine_disposed`` event in SQLAlchemy's
    greenlet, where the pool is closed politely; a dispose outside one (a synchronous
    caller) terminates its connections instead.
    """
    _POOLS[engine] = pool

    def closed(_: Any) -> None:
        _POOLS.pop(engine, None)  # a disposed engine is still usable: through its own pool
        closing = pool.close()
        try:
            await_only(closing)
        except MissingGreenlet:
            closing.close()
            pool.terminate()

    event.listen(engine.sync_engine, "engine_disposed", closed)


def pool_of(engine: AsyncEngine) -> StatementPool | None:
    """The engine's statement pool; None for an engine without one (it uses its own pool)."""
    return _POOLS.get(engine)
