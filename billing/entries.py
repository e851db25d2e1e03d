"""A ledger entry as the domain hands it around (not an ORM object: the hot path is Core)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from costgraph.models.ledger import EntryType


@dataclass(frozen=True, slots=True)
class Entry:
    organization_id: uuid.UUID
    id: uuid.UUID
    type: EntryType
    account_id: uuid.UUID | None
    customer_id: uuid.UUID | None
    occurred_at: datetime
    currency: str
    amount: Decimal
    idempotency_key: str
    request_hash: bytes
    balance_delta: Decimal = Decimal(0)
    ai_cost: Decimal = Decimal(0)
    provider_cost: Decimal | None = None
    provider_currency: str | None = None
    fx_rate: Decimal | None = None
    price_version_id: uuid.UUID | None = None
    caller_priced: bool = False
    provider: str | None = None
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    markup_percent: Decimal | None = None
    #: Usage: the multiplier on its tokens and the budgeted tokens it consumes of an
    #: allowance (billing/weights.py); None on older entries (weight 1, budgeted = tokens).
    allowance_weight: Decimal | None = None
    budgeted_tokens: int | None = None
    units: list[dict[str, str]] | None = None
    user_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    feature: str | None = None
    agent: str | None = None
    request_id: str | None = None
    related_entry_id: uuid.UUID | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None
    recorded_at: datetime | None = None
    replayed: bool = field(default=False, compare=False)

    def as_replay(self) -> Entry:
        return replace(self, replayed=True)
