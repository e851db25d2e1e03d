"""What the client writes: usage events and their idempotency keys."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


def new_key(prefix: str = "cg") -> str:
    """A fresh idempotency key; the client makes one per call and keeps it across retries."""
    return f"{prefix}-{uuid.uuid4().hex}"


def rfc3339(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One AI call's usage. Without ``idempotency_key`` the client makes one; without
    ``occurred_at``, the client's clock at the call."""

    account_id: str
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    occurred_at: dt.datetime | None = None
    idempotency_key: str | None = None
    user_id: str | None = None
    feature: str | None = None
    agent: str | None = None
    request_id: str | None = None
    metadata: dict[str, Any] | None = None
    provider_cost: Decimal | str | None = None
    provider_currency: str | None = None

    def to_input(self, key: str, now: dt.datetime) -> dict[str, Any]:
        """The ``UsageEventInput`` (with ``key`` and ``now`` filling what is missing)."""
        value: dict[str, Any] = {
            "idempotencyKey": self.idempotency_key or key,
            "accountId": str(self.account_id),
            "occurredAt": rfc3339(self.occurred_at or now),
            "provider": self.provider,
            "model": self.model,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "cachedInputTokens": self.cached_input_tokens,
            "cacheWriteTokens": self.cache_write_tokens,
            "reasoningTokens": self.reasoning_tokens,
        }
        optional = {
            "userId": self.user_id,
            "feature": self.feature,
            "agent": self.agent,
            "requestId": self.request_id,
            "metadata": self.metadata,
            "providerCost": None if self.provider_cost is None else str(self.provider_cost),
            "providerCurrency": self.provider_currency,
        }
        value.update({k: v for k, v in optional.items() if v is not None})
        return value
