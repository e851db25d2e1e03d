"""Live subscriptions in the app's lifespan: the bus and the websocket side, from settings.

Order matters at both ends. At start the bus connects (or keeps trying in the background: a
broker that is down never stops the API from taking writes). At shutdown — after uvicorn has
stopped accepting and finished in-flight HTTP requests — every websocket is closed cleanly
(1001, going away), then the bus publishes what is still in its outbox and disconnects, all
within ``shutdown_timeout_seconds``; the engine is disposed after that.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from costgraph.app.settings import Settings
from costgraph.subscriptions.bus import Bus, BusConfig
from costgraph.subscriptions.connections import Connections
from costgraph.subscriptions.fanout import FanoutHub, FormatError
from costgraph.subscriptions.live import Live, LiveConfig

GOING_AWAY = (1001, "server shutting down")


def build_bus(settings: Settings) -> Bus:
    return Bus(
        BusConfig(
            url=settings.broadcast_url,
            queue_size=settings.broadcast_queue_size,
            outbox_size=settings.broadcast_outbox_size,
            publish_timeout=settings.broadcast_publish_timeout_ms / 1000,
            heartbeat_interval=settings.broadcast_heartbeat_ms / 1000,
        )
    )


def build_live(settings: Settings, format_error: FormatError) -> Live:
    return Live(
        config=LiveConfig(
            send_queue_size=settings.ws_send_queue_size,
            close_grace=settings.shutdown_timeout_seconds,
        ),
        connections=Connections(settings.ws_max_connections_per_principal),
        hub=FanoutHub(settings.ws_send_queue_size, format_error),
    )


@contextlib.asynccontextmanager
async def live_running(bus: Bus, live: Live, shutdown_timeout: float) -> AsyncIterator[None]:
    await bus.start()
    try:
        yield
    finally:
        await live.connections.close_all(*GOING_AWAY, grace=shutdown_timeout / 2)
        await bus.close(grace=shutdown_timeout / 2)
