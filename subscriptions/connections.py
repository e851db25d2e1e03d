"""Open websocket connections: at most N per principal, and all of them closable at shutdown.

The count is per process (per API instance): with several instances behind a load balancer, a
principal may hold N connections on each. A cluster-wide cap needs a shared counter (Redis);
the per-instance cap already bounds what one principal can cost one process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from costgraph.auth.principal import Principal

PrincipalKey = tuple[uuid.UUID | None, str]
Closer = Callable[[int, str], Awaitable[None]]


class TooManyConnections(Exception):
    pass


@dataclass(eq=False, slots=True)
class Lease:
    """One accepted connection, counted against its principal until released."""

    registry: Connections
    key: PrincipalKey
    close: Closer
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.registry._release(self)


@dataclass(slots=True)
class Connections:
    max_per_principal: int
    _by_principal: dict[PrincipalKey, int] = field(default_factory=dict)
    _open: set[Lease] = field(default_factory=set)

    def acquire(self, principal: Principal, close: Closer) -> Lease:
        key = (principal.organization_id, principal.subject)
        held = self._by_principal.get(key, 0)
        if held >= self.max_per_principal:
            raise TooManyConnections(
                f"{principal.subject} already holds {held} live connections on this instance"
            )
        self._by_principal[key] = held + 1
        lease = Lease(self, key, close)
        self._open.add(lease)
        return lease

    def _release(self, lease: Lease) -> None:
        self._open.discard(lease)
        left = self._by_principal.get(lease.key, 0) - 1
        if left > 0:
            self._by_principal[lease.key] = left
        else:
            self._by_principal.pop(lease.key, None)

    def __len__(self) -> int:
        return len(self._open)

    async def close_all(self, code: int, reason: str, grace: float) -> None:
        """Close every open connection (shutdown), waiting at most ``grace`` seconds."""
        closing = [asyncio.ensure_future(lease.close(code, reason)) for lease in list(self._open)]
        if closing:
            await asyncio.wait(closing, timeout=grace)
