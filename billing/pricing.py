"""What a usage event cost the provider, and what it is billed at.

Until the model catalog lands, an event is priced only by the caller's own ``providerCost``
(flagged ``caller_priced``); an event without one is ``PRICE_MISSING``. Conversion between
currencies needs a dated rate, which arrives with the catalog: until then a provider currency
other than the account's is ``RATE_MISSING`` — never a silent 1.0.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from costgraph.billing.clock import format_rfc3339
from costgraph.billing.commands import UsageEvent
from costgraph.billing.errors import PriceMissing, RateMissing, join_path
from costgraph.billing.money import quantize_stored


@dataclass(frozen=True, slots=True)
class PricedUsage:
    provider_cost: Decimal
    provider_currency: str
    fx_rate: Decimal
    ai_cost: Decimal
    billed: Decimal
    caller_priced: bool
    price_version_id: uuid.UUID | None = None


def price_usage(event: UsageEvent, account_currency: str, path: str) -> PricedUsage:
    if event.provider_cost is None or event.provider_currency is None:
        raise PriceMissing(
            event.provider, event.model, format_rfc3339(event.occurred_at), join_path(path, "model")
        )
    if event.provider_currency != account_currency:
        raise RateMissing(
            event.provider_currency, account_currency, format_rfc3339(event.occurred_at)
        )
    ai_cost = quantize_stored(event.provider_cost)
    return PricedUsage(
        provider_cost=ai_cost,
        provider_currency=event.provider_currency,
        fx_rate=Decimal(1),
        ai_cost=ai_cost,
        billed=ai_cost,
        caller_priced=True,
    )
