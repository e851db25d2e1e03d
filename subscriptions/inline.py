"""Run a coroutine's first step inline, and only make a task of it if it has to wait.

A send to a healthy websocket never waits (uvicorn writes to the transport at once), so a
fan-out loop can send to a thousand sockets without waking a thousand tasks — as a bare loop
of ``await websocket.send_text(...)`` does. But one socket whose buffer is full must not hold
up the loop: :func:`start` steps the send once; if it finished, that is all; if it is waiting,
it is handed over as :class:`Suspended`, to be finished by a task of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Suspended(Generic[T]):
    """A coroutine that stopped to wait for ``waiting`` (a future, or None for a bare yield)."""

    __slots__ = ("coro", "waiting")

    def __init__(self, coro: Coroutine[Any, Any, T], waiting: object) -> None:
        self.coro = coro
        self.waiting = waiting

    async def finish(self) -> T:
        """Drive it to the end in the calling task (its result, or its exception)."""
        waiting = self.waiting
        try:
            while True:
                if isinstance(waiting, asyncio.Future):
                    await asyncio.wait([waiting])  # done either way; the coroutine sees how
                else:
                    await asyncio.sleep(0)
                try:
                    waiting = self.coro.send(None)
                except StopIteration as done:
                    result: T = done.value
                    return result
        except asyncio.CancelledError:
            self.coro.close()
            raise


def start(coro: Coroutine[Any, Any, T]) -> T | Suspended[T]:
    """Step ``coro`` now: its result if it finished without waiting, else :class:`Suspended`.
    An exception it raises on that first step propagates."""
    try:
        waiting = coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    return Suspended(coro, waiting)
