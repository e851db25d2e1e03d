"""One read at a time per key, shared by every caller waiting for it.

Live feeds of the same scope (different documents, or different callers' rights, so not one
shared execution) are woken by the same burst of usage notices and would each re-read the
same totals. Here, per key (organisation, scope, period), at most one read runs and at most
one more waits: a caller arriving while none waits starts the waiting one, and callers
arriving before it starts join it. A read therefore always *starts after* the caller asked,
so it sees every write committed before the notice that woke the caller (writes publish
after commit): sharing never hands out totals older than a read of one's own would be.

The read runs in a task of its own: a caller that goes away (cancelled) neither cancels it
nor leaves the others without an answer; an error reaches everyone who joined that read.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _observe(future: asyncio.Future[Any]) -> None:
    """Mark the outcome retrieved (a read whose callers all left must not log it as lost)."""
    if not future.cancelled():
        future.exception()


@dataclass(slots=True)
class _Pending(Generic[T]):
    future: asyncio.Future[T]
    read: Callable[[], Awaitable[T]]


@dataclass(slots=True)
class _Flight(Generic[T]):
    running: asyncio.Task[None] | None = None
    waiting: _Pending[T] | None = None


@dataclass(slots=True)
class CoalescedReads(Generic[T]):
    #: Per event loop (flights hold futures and tasks of one loop), key -> flight.
    _loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _Flight[T]]] = (
        field(default_factory=weakref.WeakKeyDictionary)
    )

    async def read(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """``read()``'s result, or that of an identical read (same key) that starts after
        this call; ``read`` is this caller's way of reading, used if it starts the read."""
        loop = asyncio.get_running_loop()
        flights = self._loops.setdefault(loop, {})
        flight = flights.get(key)
        if flight is None:
            flight = flights[key] = _Flight()
        pending = flight.waiting
        if pending is None:
            future: asyncio.Future[T] = loop.create_future()
            future.add_done_callback(_observe)
            pending = flight.waiting = _Pending(future, read)
            if flight.running is None:
                self._launch(flights, key, flight)
        return await asyncio.shield(pending.future)

    def in_flight(self) -> int:
        """Keys with a read running or waiting, in the running loop."""
        return len(self._loops.get(asyncio.get_running_loop(), {}))

    def _launch(
        self, flights: dict[Hashable, _Flight[T]], key: Hashable, flight: _Flight[T]
    ) -> None:
        pending = flight.waiting
        assert pending is not None
        task = asyncio.get_running_loop().create_task(
            self._run(flights, key, flight, pending), name="costgraph-coalesced-read"
        )
        # Cancelled before it ran (the loop shutting down): its callers must not wait forever.
        task.add_done_callback(lambda _: pending.future.cancel())
        flight.running = task

    async def _run(
        self,
        flights: dict[Hashable, _Flight[T]],
        key: Hashable,
        flight: _Flight[T],
        pending: _Pending[T],
    ) -> None:
        # Callers join this read until here, where it starts; later ones wait for the next.
        flight.waiting = None
        try:
            result = await pending.read()
        except asyncio.CancelledError:
            pending.future.cancel()
            raise
        except Exception as exc:  # handed to every caller of this read
            pending.future.set_exception(exc)
        else:
            pending.future.set_result(result)
        finally:
            flight.running = None
            if flight.waiting is not None:
                self._launch(flights, key, flight)
            elif flights.get(key) is flight:
                del flights[key]
