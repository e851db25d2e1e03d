"""A bounded queue for one subscriber: when it is full, the subscriber is slow, not the system.

broadcaster gives every subscriber an unbounded ``asyncio.Queue``: one reader that stops
reading grows memory without limit. An :class:`Inbox` holds at most ``capacity`` items and,
when an item arrives at a full inbox, applies one of two policies:

- **fail** (no ``gap`` marker): the items are dropped, the inbox is marked overflowed, and its
  reader gets :class:`SlowConsumer` — the subscriber is told and disconnected;
- **reset** (a ``gap`` marker is given): the items are dropped and replaced by the marker, so
  the reader learns that it missed something and re-reads the state it maintains (the usage
  feeds re-read their totals: coalesced totals, never a growing backlog).

Offering never blocks and never raises, so a publisher can never be slowed by a subscriber.
One task reads an inbox; any number of callers offer to it, all on one event loop.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SlowConsumer(Exception):
    """The reader did not keep up: its inbox filled and was dropped."""


class InboxClosed(Exception):
    """The inbox was closed (the bus is shutting down) and every item was read."""


class _State(enum.Enum):
    OPEN = "open"
    OVERFLOWED = "overflowed"
    CLOSED = "closed"


class Inbox(Generic[T]):
    __slots__ = ("_gap", "_items", "_on_overflow", "_state", "_waiter", "capacity", "high_water")

    def __init__(
        self,
        capacity: int,
        *,
        gap: T | None = None,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("an inbox holds at least one item")
        self.capacity = capacity
        #: The most items ever held at once (never above ``capacity``).
        self.high_water = 0
        self._gap = gap
        self._on_overflow = on_overflow
        self._items: deque[T] = deque()
        self._state = _State.OPEN
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def overflowed(self) -> bool:
        return self._state is _State.OVERFLOWED

    @property
    def closed(self) -> bool:
        return self._state is not _State.OPEN

    def offer(self, item: T) -> bool:
        """Add ``item``; False when it was not kept (closed, overflowed, or just reset)."""
        if self._state is not _State.OPEN:
            return False
        if len(self._items) >= self.capacity:
            self._items.clear()
            if self._gap is None:
                self._state = _State.OVERFLOWED
            else:
                self._items.append(self._gap)
            self._wake()
            if self._on_overflow is not None:
                self._on_overflow()
            return False
        self._items.append(item)
        if len(self._items) > self.high_water:
            self.high_water = len(self._items)
        self._wake()
        return True

    def close(self) -> None:
        """No more items; the reader gets what is queued, then :class:`InboxClosed`."""
        if self._state is _State.OPEN:
            self._state = _State.CLOSED
            self._wake()

    async def drain(self) -> list[T]:
        """Every queued item (at least one), oldest first; waits while there is none."""
        while not self._items:
            if self._state is _State.OVERFLOWED:
                raise SlowConsumer(f"more than {self.capacity} items were waiting")
            if self._state is _State.CLOSED:
                raise InboxClosed
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._state is _State.OVERFLOWED:
            raise SlowConsumer(f"more than {self.capacity} items were waiting")
        items = list(self._items)
        self._items.clear()
        return items

    async def ready(self) -> None:
        """Wait until :meth:`drain` would not wait (an item is queued, or the inbox is no
        longer open). Takes nothing, so it may be cancelled at any point without a loss."""
        while not self._items and self._state is _State.OPEN:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
