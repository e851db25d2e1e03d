"""The bus: broadcaster underneath, with what it lacks for production around it.

broadcaster (``memory://`` in one process, ``redis://`` across instances, the latter through
:mod:`.redis_backend`) gives pub/sub and nothing else: unbounded queues, no reconnect, errors
that surface only at disconnect. Here:

- **Bounded subscribers.** Each local subscriber has an :class:`~.inbox.Inbox`. broadcaster's
  own queue is one per channel per process, drained at once by a pump task into those inboxes,
  so it never grows either.
- **Publishing never holds up a write.** :meth:`Bus.publish` is synchronous: it appends to a
  bounded outbox and returns. One task drains it, with a timeout per message to a broker; a
  full outbox, a broker that is down, or a failed publish drops the message and counts it —
  the write it describes has already committed and stays committed.
- **Publishing to nobody costs nothing.** In memory (one process) the only possible
  listeners are this bus's own subscribers: a message for a channel none of them follows is
  neither queued nor encoded (:meth:`Bus.listening`, asked by the callers before they build
  a notice). With a broker every message goes out: other processes may be listening.
- **Failure detection and reconnect.** With Redis, the bus publishes a heartbeat on its own
  channel and listens for it. A heartbeat that does not come back, a failed publish or a dead
  pump means the connection is gone: subscribers get :attr:`BusSignal.INTERRUPTED`, the
  broadcaster is thrown away, and a new one is connected (with backoff) and re-subscribed to
  every channel that still has subscribers. Subscribers then get :attr:`BusSignal.RESUMED`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from broadcaster import Broadcast, BroadcastBackend

from costgraph.subscriptions.inbox import Inbox
from costgraph.subscriptions.redis_backend import RedisPubSubBackend
from costgraph.subscriptions.signals import BusItem, BusSignal
from costgraph.subscriptions.stats import BusStats, ThrottledLog

logger = logging.getLogger("costgraph.bus")


@dataclass(frozen=True, slots=True)
class BusConfig:
    url: str = "memory://"
    #: Items a subscriber may have waiting before the slow-consumer policy applies.
    queue_size: int = 1_000
    #: Messages waiting to be published; beyond it, new ones are dropped (and counted).
    outbox_size: int = 10_000
    publish_timeout: float = 0.5
    connect_timeout: float = 2.0
    heartbeat_interval: float = 0.5
    #: Heartbeats missed in a row before the connection is declared lost.
    heartbeat_misses: int = 3
    reconnect_min: float = 0.1
    reconnect_max: float = 2.0

    @property
    def distributed(self) -> bool:
        """Redis: our own backend, with heartbeats and reconnects."""
        return urlsplit(self.url).scheme in {"redis", "rediss"}

    @property
    def in_memory(self) -> bool:
        """One process: every listener is one of this bus's subscribers. Any other backend
        (Redis, broadcaster's PostgreSQL LISTEN/NOTIFY) reaches other processes."""
        return urlsplit(self.url).scheme == "memory"


@dataclass(slots=True)
class _Pump:
    task: asyncio.Task[None]
    ready: asyncio.Event


class Bus:
    def __init__(self, config: BusConfig) -> None:
        self.config = config
        self._in_memory = config.in_memory
        self.stats = BusStats()
        self._channels: dict[str, set[Inbox[BusItem]]] = {}
        self._pumps: dict[str, _Pump] = {}
        self._broadcast: Broadcast | None = None
        #: The backend under ``_broadcast`` when the bus made it (Redis), to disconnect it
        #: even when broadcaster's own disconnect fails first (it re-raises a dead listener's
        #: error before it reaches the backend).
        self._backend: BroadcastBackend | None = None
        self._up = False
        self._interrupted = False
        #: Some subscriber was told INTERRUPTED and is owed a RESUMED.
        self._owe_resume = False
        self._closing = False
        self._outbox: deque[tuple[str, str]] = deque()
        self._outbox_ready = asyncio.Event()
        #: Set while nothing is waiting to be published.
        self._idle = asyncio.Event()
        self._idle.set()
        self._failure = asyncio.Event()
        self._connected = asyncio.Event()
        self._heartbeat_channel = f"costgraph.bus.heartbeat.{uuid.uuid4().hex}"
        self._heartbeat_seen = 0.0
        self._heartbeat_echo = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._log = ThrottledLog(logger)

    # --- lifecycle ---

    async def start(self) -> None:
        """Connect; if the broker is down, keep trying in the background (writes go on)."""
        self._tasks = [
            asyncio.create_task(self._supervise(), name="costgraph-bus-supervisor"),
            asyncio.create_task(self._publish_loop(), name="costgraph-bus-publisher"),
        ]
        try:
            await asyncio.wait_for(self._connected.wait(), self.config.connect_timeout)
        except TimeoutError:
            logger.warning("the bus is not connected yet (%s); retrying in the background", self)

    async def close(self, grace: float = 5.0) -> None:
        """Publish what is waiting (within ``grace`` seconds), end every subscriber, disconnect."""
        if self._closing:
            return
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        if self._up:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
        for inboxes in self._channels.values():
            for inbox in inboxes:
                inbox.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=max(0.1, deadline - loop.time()))
        self._up = False
        self._connected.clear()
        await self._teardown()

    @property
    def up(self) -> bool:
        return self._up

    def __repr__(self) -> str:
        return f"Bus({urlsplit(self.config.url).scheme}://…, up={self._up})"

    # --- publishing ---

    def listening(self, channel: str) -> bool:
        """Whether a message for ``channel`` may reach anyone: always through a broker (other
        processes subscribe there), only when this process subscribes to it in memory."""
        return not self._in_memory or channel in self._channels

    def publish(self, channel: str, message: str) -> bool:
        """Queue ``message`` for ``channel``; never blocks, never raises. False: dropped."""
        if self._closing or len(self._outbox) >= self.config.outbox_size:
            self.stats.publish_dropped += 1
            self._log.warning("outbox", "bus outbox full or closing: message dropped")
            return False
        if self._in_memory and channel not in self._channels:
            return True  # in memory, nobody follows the channel: there is nobody to tell
        self._outbox.append((channel, message))
        self._idle.clear()
        self._outbox_ready.set()
        return True

    async def _publish_loop(self) -> None:
        """Drain the outbox whenever it fills. In memory a publish is a put on broadcaster's
        unbounded queue that never waits, so only a broker's publish gets a timeout (a
        cancel scope, not a task per message as ``wait_for`` would make)."""
        outbox = self._outbox
        timeout = self.config.publish_timeout
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while outbox:
                channel, message = outbox.popleft()
                broadcast = self._broadcast
                if not self._up or broadcast is None:
                    self.stats.publish_dropped += 1
                    self._log.warning("down", "bus is down: message for %s dropped", channel)
                    continue
                try:
                    if not self._in_memory:
                        async with asyncio.timeout(timeout):
                            await broadcast.publish(channel, message)
                    else:
                        await broadcast.publish(channel, message)
                except Exception as exc:  # any broker failure: count, log, reconnect
                    self.stats.publish_failed += 1
                    self._log.warning("publish", "bus publish failed: %r", exc)
                    self._failure.set()
                else:
                    self.stats.published += 1
            self._idle.set()

    # --- subscribing ---

    @contextlib.asynccontextmanager
    async def subscribe(
        self, channel: str, *, coalesce: bool = False
    ) -> AsyncIterator[Inbox[BusItem]]:
        """An inbox of ``channel``'s messages for as long as the block runs.

        ``coalesce=True``: an overflow resets the inbox to :attr:`BusSignal.GAP` (for readers
        that can re-read their state); otherwise the reader gets ``SlowConsumer``.
        """
        inbox: Inbox[BusItem] = Inbox(
            self.config.queue_size,
            gap=BusSignal.GAP if coalesce else None,
            on_overflow=self._overflowed,
        )
        if self._closing:
            inbox.close()
        members = self._channels.setdefault(channel, set())
        members.add(inbox)
        try:
            if self._up:
                await self._ensure_pump(channel)
            elif not self._closing:
                inbox.offer(BusSignal.INTERRUPTED)
                self._owe_resume = True
            yield inbox
        finally:
            members.discard(inbox)
            if not members and self._channels.get(channel) is members:
                del self._channels[channel]
                pump = self._pumps.pop(channel, None)
                if pump is not None:
                    pump.task.cancel()
            inbox.close()

    def subscribers(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    def _overflowed(self) -> None:
        self.stats.overflows += 1
        self._log.warning(
            "overflow", "a bus subscriber fell behind (queue of %d full)", self.config.queue_size
        )

    def _deliver(self, channel: str, message: str) -> None:
        if channel == self._heartbeat_channel:
            self._heartbeat_seen = asyncio.get_running_loop().time()
            self._heartbeat_echo.set()
            return
        inboxes = self._channels.get(channel)
        if not inboxes:
            return
        for inbox in tuple(inboxes):
            inbox.offer(message)
        self.stats.delivered += len(inboxes)

    def _signal(self, signal: BusSignal) -> None:
        for inboxes in self._channels.values():
            for inbox in tuple(inboxes):
                inbox.offer(signal)

    # --- the connection ---

    async def _supervise(self) -> None:
        delay = self.config.reconnect_min
        while True:
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker unreachable or misbehaving: back off, retry
                self._log.warning("connect", "bus cannot connect (%r); retrying", exc)
                await self._teardown()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.reconnect_max)
                continue
            delay = self.config.reconnect_min
            self._mark_up()
            await self._watch()
            self._mark_down()
            await self._teardown()

    async def _connect(self) -> None:
        self._failure.clear()
        broadcast, self._backend = self._new_broadcast()
        self._broadcast = broadcast
        await asyncio.wait_for(broadcast.connect(), self.config.connect_timeout)
        if self.config.distributed:
            await self._start_pump(self._heartbeat_channel)
            await self._confirm_heartbeat(broadcast)
        for channel in list(self._channels):
            await self._start_pump(channel)

    def _new_broadcast(self) -> tuple[Broadcast, BroadcastBackend | None]:
        if not self.config.distributed:
            return Broadcast(self.config.url), None  # memory: nothing to release, never fails
        backend = RedisPubSubBackend(
            self.config.url,
            connect_timeout=self.config.connect_timeout,
            on_failure=self._failure.set,
        )
        return Broadcast(backend=backend), backend

    async def _confirm_heartbeat(self, broadcast: Broadcast) -> None:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        deadline = sent + self.config.connect_timeout
        self._heartbeat_echo.clear()
        await asyncio.wait_for(
            broadcast.publish(self._heartbeat_channel, "connect"), self.config.publish_timeout
        )
        await asyncio.wait_for(self._heartbeat_echo.wait(), max(0.0, deadline - loop.time()))

    async def _watch(self) -> None:
        """Return when the connection is lost."""
        if not self.config.distributed:
            await self._failure.wait()
            return
        loop = asyncio.get_running_loop()
        interval = self.config.heartbeat_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._failure.wait(), interval)
                self._log.warning("lost", "bus connection lost (a publish or a listener failed)")
                return
            if loop.time() - self._heartbeat_seen > interval * self.config.heartbeat_misses:
                self._log.warning("lost", "bus connection lost (heartbeat missed)")
                return
            broadcast = self._broadcast
            if broadcast is None:
                return
            try:
                await asyncio.wait_for(
                    broadcast.publish(self._heartbeat_channel, "beat"), self.config.publish_timeout
                )
            except Exception as exc:  # the broker is gone
                self._log.warning("lost", "bus connection lost (%r)", exc)
                return

    def _mark_up(self) -> None:
        self._up = True
        self._connected.set()
        # Channels first subscribed while connecting have no pump yet.
        for channel in list(self._channels):
            if channel not in self._pumps:
                self._spawn(self._start_pump(channel, strict=False))
        if self._interrupted:
            self._interrupted = False
            self.stats.reconnects += 1
            logger.info("bus reconnected; resuming %d channels", len(self._channels))
        if self._owe_resume:
            self._owe_resume = False
            self._signal(BusSignal.RESUMED)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _mark_down(self) -> None:
        self._up = False
        self._connected.clear()
        if not self._closing:
            self._interrupted = True
            self._owe_resume = True
            self.stats.interruptions += 1
            self._signal(BusSignal.INTERRUPTED)

    async def _ensure_pump(self, channel: str) -> None:
        pump = self._pumps.get(channel)
        if pump is None:
            await self._start_pump(channel, strict=False)
            return
        try:
            await asyncio.wait_for(pump.ready.wait(), self.config.connect_timeout)
        except TimeoutError:
            self._failure.set()

    async def _start_pump(self, channel: str, *, strict: bool = True) -> None:
        broadcast = self._broadcast
        if broadcast is None:
            raise ConnectionError("the bus is not connected")
        ready = asyncio.Event()
        task = asyncio.create_task(self._pump(broadcast, channel, ready), name=f"bus:{channel}")
        pump = _Pump(task, ready)
        self._pumps[channel] = pump
        task.add_done_callback(lambda done: self._pump_ended(channel, pump, done))
        try:
            await asyncio.wait_for(asyncio.shield(ready.wait()), self.config.connect_timeout)
        except TimeoutError:
            if strict:
                raise
            self._failure.set()

    async def _pump(self, broadcast: Broadcast, channel: str, ready: asyncio.Event) -> None:
        async with broadcast.subscribe(channel) as subscriber:
            ready.set()
            while True:
                event = await subscriber.get()
                self._deliver(channel, event.message)

    def _pump_ended(self, channel: str, pump: _Pump, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if self._pumps.get(channel) is pump:
            self._log.warning("pump", "bus listener for %s ended: %r", channel, error)
            self._failure.set()

    async def _teardown(self) -> None:
        pumps, self._pumps = list(self._pumps.values()), {}
        for pump in pumps:
            pump.task.cancel()
        if pumps:
            await asyncio.wait([p.task for p in pumps], timeout=1.0)
        broadcast, self._broadcast = self._broadcast, None
        backend, self._backend = self._backend, None
        if broadcast is None:
            return
        try:
            await asyncio.wait_for(broadcast.disconnect(), 1.0)
        except Exception:  # already broken; what matters is that nothing is left running
            if backend is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(backend.disconnect(), 1.0)
