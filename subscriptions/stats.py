"""Counters of the live path, and a warning that does not flood the log during an outage."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class BusStats:
    published: int = 0
    #: Not published: the outbox was full, or the broker was down (the write still committed).
    publish_dropped: int = 0
    #: A publish that raised or timed out.
    publish_failed: int = 0
    delivered: int = 0
    #: Subscriber inboxes that filled up (slow subscribers, or coalesced feeds that reset).
    overflows: int = 0
    interruptions: int = 0
    reconnects: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class ThrottledLog:
    """Logs a warning for a key at most once per ``every`` seconds, with how many were held."""

    logger: logging.Logger
    every: float = 10.0
    _last: dict[str, float] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict)

    def warning(self, key: str, message: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        suffix = f" ({held} similar suppressed)" if held else ""
        self.logger.warning(message + suffix, *args, exc_info=exc_info)
