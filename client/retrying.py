"""When and how the client retries: network errors, 5xx and ``UNAVAILABLE`` only.

Built on tenacity (exponential backoff with jitter, bounded attempts). Typed refusals
(``BUDGET_LIMIT_REACHED``, ``VALIDATION_FAILED``, …) and ``RATE_LIMITED`` are never retried:
they are answers about the request. A retried write sends the same idempotency key, so a
write whose answer was lost replays instead of writing twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from .errors import Transient


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` in all (1: no retry); waits grow from ``initial`` seconds, doubling, up
    to ``maximum``, each plus up to ``jitter`` seconds at random."""

    attempts: int = 5
    initial: float = 0.2
    maximum: float = 10.0
    jitter: float = 0.5

    def retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception_type(Transient),
            stop=stop_after_attempt(max(1, self.attempts)),
            wait=wait_exponential(multiplier=self.initial, max=self.maximum)
            + wait_random(0, self.jitter),
            reraise=True,
        )

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row (for loops that never give up)."""
        base = min(self.maximum, self.initial * 2.0 ** max(0, failures - 1))
        return base + random.uniform(0, self.jitter)  # noqa: S311 - jitter, not a secret
