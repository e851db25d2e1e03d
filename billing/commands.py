"""What callers ask the ledger to record, as plain data (decoded from GraphQL by resolvers)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class UnitUsage:
    kind: str
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class UsageEvent:
    idempotency_key: str
    account_id: uuid.UUID
    occurred_at: datetime
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    units: tuple[UnitUsage, ...] = ()
    user_id: uuid.UUID | None = None
    feature: str | None = None
    agent: str | None = None
    request_id: str | None = None
    metadata: dict[str, Any] | None = None
    provider_cost: Decimal | None = None
    provider_currency: str | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    """A deposit (top-up), a subscription payment or an adjustment (signed)."""

    idempotency_key: str
    account_id: uuid.UUID
    amount: Decimal
    currency: str
    occurred_at: datetime | None = None
    metadata: dict[str, Any] | None = None
    plan_code: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Refund:
    idempotency_key: str
    entry_id: uuid.UUID
    amount: Decimal
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PlatformFee:
    idempotency_key: str
    amount: Decimal
    currency: str
    account_id: uuid.UUID | None = None
    description: str | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    start: datetime | None = None
    end: datetime | None = None
    types: tuple[str, ...] = ()
    account_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    model: str | None = None
    feature: str | None = None
    agent: str | None = None


@dataclass(slots=True)
class Limits:
    """Operator-set bounds on what one request may carry, and the policies of enforcement."""

    max_batch_events: int = 1_000
    max_page_size: int = 200
    max_metadata_bytes: int = 8_192
    max_idempotency_key_length: int = 255
    #: IANA zone in which budget periods reset (midnight, Monday, the 1st).
    budget_timezone: str = "UTC"
    #: How long an unsettled reservation holds budget before it expires.
    reservation_ttl_seconds: int = 900
    #: How far past a hard cap a settlement beyond its hold may take the period, in percent
    #: of the limit (``COSTGRAPH_SETTLE_OVERAGE_TOLERANCE_PERCENT``); beyond: OVERAGE_LIMIT.
    settle_overage_tolerance_percent: Decimal = Decimal(10)
    #: How late an event may arrive (``occurredAt`` before now) and still be recorded by a
    #: plain write; older history goes through ``backfillUsage`` (billing/event_time.py).
    late_arrival_window_seconds: int = 72 * 3600
    #: How far ahead of now an ``occurredAt`` may be: the clock skew tolerated.
    future_skew_seconds: int = 300
    #: How far back a backfill may reach.
    backfill_max_age_days: int = 731

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.budget_timezone)
