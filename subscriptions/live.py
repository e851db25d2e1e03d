"""Everything the websocket side holds for the app's lifetime (on ``AppState.live``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from costgraph.subscriptions.connections import Connections
from costgraph.subscriptions.fanout import FanoutHub


@dataclass(frozen=True, slots=True)
class LiveConfig:
    #: Updates waiting to be written to one subscriber's socket before it counts as slow.
    send_queue_size: int = 256
    #: How long closing a socket (slow consumer, expired token) may take.
    close_grace: float = 10.0


@dataclass(slots=True)
class LiveStats:
    slow_consumers: int = 0
    expired: int = 0
    #: Subscription operations running now (the /metrics gauge).
    subscribers: int = 0


@dataclass(slots=True)
class Live:
    config: LiveConfig
    connections: Connections
    hub: FanoutHub
    stats: LiveStats = field(default_factory=LiveStats)
