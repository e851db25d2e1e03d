"""Request budgets per principal and per OAuth client, checked at the ``/graphql`` gate right
after the token, before anything is parsed: a refused request costs one counter update.

Counting uses the ``limits`` library's sliding-window counter (two counters per key, no list
of timestamps): in Redis when ``COSTGRAPH_RATE_LIMIT_URL`` (or else the broadcast URL) is
``redis://…``, so every instance draws on the same budget; in this process otherwise, which
is right for a single instance only (N instances would each allow the full budget).

Who pays:

- a person's token (no ``client_id`` claim): the principal budget, keyed by organisation and
  subject;
- a token issued to an OAuth client: the client budget, keyed by ``client_id`` and shared by
  all its tokens; when the token also names a different subject (a person acting through
  the client, from an external identity provider), that person's budget applies too.

Redis unreachable: requests pass (fail open) and a warning is logged at most every 30 s;
billing keeps answering while the limiter is blind.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import ConnectionPool
from starlette.responses import JSONResponse, Response

from costgraph.auth.principal import Principal
from costgraph.kernel.errors import ErrorCode

logger = logging.getLogger("costgraph.rate_limit")

#: How long the limiter waits for Redis before letting a request through.
REDIS_TIMEOUT_SECONDS = 0.5
_WARN_EVERY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request over budget: which budget, its size, and when to try again."""

    budget: str
    per_minute: int
    retry_after_seconds: int


def storage_url(settings: Any) -> str:
    """``COSTGRAPH_RATE_LIMIT_URL``, else the broadcast URL when it is Redis, else memory."""
    if settings.rate_limit_url:
        return str(settings.rate_limit_url)
    broadcast = str(settings.broadcast_url)
    if broadcast.startswith(("redis://", "rediss://")):
        return broadcast
    return "memory://"


class RateLimiter:
    def __init__(
        self,
        storage: Storage,
        *,
        principal_per_minute: int,
        client_per_minute: int,
        pool: ConnectionPool | None = None,
    ) -> None:
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self._principal = RateLimitItemPerMinute(principal_per_minute, namespace="principal")
        self._client = RateLimitItemPerMinute(client_per_minute, namespace="client")
        self._principal_on = principal_per_minute > 0
        self._client_on = client_per_minute > 0
        self._pool = pool
        self._last_warning = -math.inf
        self.shared = pool is not None

    @classmethod
    def from_settings(cls, settings: Any) -> RateLimiter | None:
        """None when both budgets are 0 (off)."""
        principal = int(settings.rate_limit_principal_per_minute)
        client = int(settings.rate_limit_client_per_minute)
        if principal == 0 and client == 0:
            return None
        url = storage_url(settings)
        if url.startswith("memory://"):
            return cls(MemoryStorage(), principal_per_minute=principal, client_per_minute=client)
        pool = ConnectionPool.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        options: dict[str, Any] = {"connection_pool": pool}
        storage = RedisStorage(
            f"async+{url}",
            implementation="redispy",
            key_prefix=settings.rate_limit_key_prefix,
            **options,
        )
        return cls(storage, principal_per_minute=principal, client_per_minute=client, pool=pool)

    def _budgets(
        self, principal: Principal
    ) -> Iterator[tuple[str, RateLimitItem, tuple[str, ...]]]:
        client = principal.client_id
        if client is not None and self._client_on:
            yield "client", self._client, (client,)
        if self._principal_on and (client is None or principal.subject != client):
            org = str(principal.organization_id) if principal.organization_id else "-"
            yield "principal", self._principal, (org, principal.subject)

    async def check(self, principal: Principal) -> Refusal | None:
        """Count one request; a refusal when a budget it draws on is spent."""
        try:
            for budget, item, identifiers in self._budgets(principal):
                if not await self._strategy.hit(item, *identifiers):
                    stats = await self._strategy.get_window_stats(item, *identifiers)
                    wait = math.ceil(stats.reset_time - time.time())
                    return Refusal(budget, item.amount, max(1, wait))
        except Exception as exc:  # the store is away: let requests through, say so
            now = time.monotonic()
            if now - self._last_warning >= _WARN_EVERY_SECONDS:
                self._last_warning = now
                logger.warning("rate limiting suspended, its store failed: %r", exc)
        return None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()


def refusal_error(refusal: Refusal) -> dict[str, Any]:
    """The GraphQL error of a refusal (also sent over websockets, as an ``error`` message)."""
    seconds = refusal.retry_after_seconds
    return {
        "message": f"rate limit of {refusal.per_minute} requests a minute per "
        f"{refusal.budget} reached; retry after {seconds} s",
        "extensions": {
            "code": ErrorCode.RATE_LIMITED.value,
            "retryAfter": seconds,
            "budget": refusal.budget,
        },
    }


def rate_limited(refusal: Refusal) -> Response:
    """429 with ``Retry-After``, and the GraphQL error shape clients already parse."""
    return JSONResponse(
        {"errors": [refusal_error(refusal)]},
        status_code=429,
        headers={"Retry-After": str(refusal.retry_after_seconds)},
    )
