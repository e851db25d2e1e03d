"""What the app holds right now, read at scrape time: the database pool, websockets, the bus."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from costgraph.app.observability.metrics import counter, gauge
from costgraph.app.state import AppState


def state_gauges(current: Callable[[], AppState | None]) -> Callable[[], Iterator[Metric]]:
    """A scrape source for the app whose state ``current()`` returns (None before startup)."""

    def collect() -> Iterator[Metric]:
        state = current()
        if state is None:
            return
        yield from _pool(state)
        live = state.live
        yield gauge(
            "websocket_connections_open",
            "Open graphql-transport-ws connections.",
            len(live.connections),
        )
        yield gauge(
            "live_subscribers", "Subscriptions running on this instance.", live.stats.subscribers
        )
        yield gauge(
            "live_shared_streams",
            "Distinct shared subscription streams (one execution each).",
            live.hub.shared_streams,
        )
        yield counter(
            "live_slow_consumers",
            "Subscribers disconnected for being too slow.",
            live.stats.slow_consumers,
        )
        bus = CounterMetricFamily(
            "costgraph_bus_messages", "Live-update bus messages by event.", labels=["event"]
        )
        for event, value in state.bus.stats.as_dict().items():
            bus.add_metric([event], value)
        yield bus

    return collect


def _pool(state: AppState) -> Iterator[Metric]:
    pool = state.engine.sync_engine.pool
    readings = (
        ("db_pool_size", "Connections the pool keeps.", "size"),
        ("db_pool_checked_out", "Connections in use now.", "checkedout"),
        ("db_pool_checked_in", "Idle connections in the pool.", "checkedin"),
        (
            "db_pool_overflow",
            "Connections open beyond the pool size (negative: not yet opened).",
            "overflow",
        ),
    )
    for name, documentation, method in readings:
        read = getattr(pool, method, None)
        if callable(read):
            yield gauge(name, documentation, float(read()))
