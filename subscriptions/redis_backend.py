"""A Redis pub/sub backend for broadcaster that fails loudly.

broadcaster 0.3.1's own Redis backend starts its reader before the first SUBSCRIBE has been
recorded by redis-py 8; the reader sees "not subscribed", stops, and never reads again, so no
message is ever delivered. It also swallows connection errors in a task nobody awaits. This
backend reads with ``get_message`` in a loop that waits for subscriptions instead of stopping,
and turns any read failure into an exception of ``next_published`` and a call of
``on_failure`` — so :class:`~.bus.Bus` reconnects at once. redis-py's own retries are off: a
connection that dropped, even briefly, is reported (and its subscribers re-read their state)
rather than silently resumed with a gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from broadcaster import BroadcastBackend, Event
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

_READ_WAIT = 1.0


class RedisPubSubBackend(BroadcastBackend):
    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 2.0,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self._client: Redis = Redis.from_url(
            url, socket_connect_timeout=connect_timeout, retry=Retry(NoBackoff(), 0)
        )
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._events: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self._on_failure = on_failure
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        # Through Any: redis-py types these on some releases and not others (8.2 typed aclose).
        pubsub: Any = self._pubsub
        await pubsub.connect()
        self._reader = asyncio.create_task(self._read(), name="costgraph-redis-reader")

    async def disconnect(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        try:
            pubsub: Any = self._pubsub
            await pubsub.aclose()
        finally:
            await self._client.aclose()

    async def subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self._pubsub.unsubscribe(channel)

    async def publish(self, channel: str, message: Any) -> None:
        await self._client.publish(channel, message)

    async def next_published(self) -> Event:
        item = await self._events.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def _read(self) -> None:
        try:
            while True:  # reading before any SUBSCRIBE just waits (never stops, unlike 0.3.1)
                message = await self._pubsub.get_message(timeout=_READ_WAIT)
                if message is not None and message.get("type") == "message":
                    self._events.put_nowait(
                        Event(channel=_text(message["channel"]), message=_text(message["data"]))
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection is gone: say so, to both listeners
            self._events.put_nowait(exc)
            if self._on_failure is not None:
                self._on_failure()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
