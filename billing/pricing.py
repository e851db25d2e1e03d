"""What usage events cost the provider, and what they are billed at — a batch at a time.

For a batch, the catalog versions, exchange rates and markup rules it needs are loaded in a
fixed handful of queries (aliases, versions, rates, markup rules), never per event. Then per
event:

1. provider cost: the caller's own ``providerCost`` (flagged ``caller_priced``), else the
   catalog formula (:mod:`costgraph.billing.cost_formula`) under the version in force at
   ``occurredAt`` — the organisation's own version winning over the platform's. No version,
   or a used component the version does not price, is ``PRICE_MISSING``: an event is never
   recorded unpriced (a caller routing to a model the catalog lacks passes ``providerCost``);
2. AI cost: converted to the account's currency at the rate in force at ``occurredAt``
   (:mod:`costgraph.billing.fx`); no rate is ``RATE_MISSING`` naming the pair;
3. billed usage: AI cost with the markup that applies (:mod:`costgraph.billing.markup`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import catalog, fx, markup
from costgraph.billing.clock import format_rfc3339
from costgraph.billing.commands import UsageEvent
from costgraph.billing.cost_formula import (
    Metered,
    MissingComponent,
    convert,
    provider_cost,
    with_markup,
)
from costgraph.billing.errors import PriceMissing, ValidationFailed, join_path
from costgraph.billing.money import INTEGER_DIGITS, quantize_stored

#: The largest amount a NUMERIC(38, 12) column holds.
LARGEST = Decimal(10) ** INTEGER_DIGITS


@dataclass(frozen=True, slots=True)
class PricedUsage:
    provider_cost: Decimal
    provider_currency: str
    fx_rate: Decimal
    ai_cost: Decimal
    billed: Decimal
    markup_percent: Decimal
    caller_priced: bool
    price_version_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class PricingRequest:
    event: UsageEvent
    account_currency: str
    customer_id: uuid.UUID | None
    path: str = "input"
    #: Use this markup instead of the rules (a reprice keeps the entry's own).
    markup_percent: Decimal | None = None


class ComponentPriceMissing(PriceMissing):
    def __init__(self, provider: str, model: str, at: str, component: str, field: str) -> None:
        super().__init__(provider, model, at, field)
        self.message = f"the price in force for {provider}/{model} at {at} has no {component} price"
        self.args = (self.message,)


def metered(event: UsageEvent) -> Metered:
    return Metered(
        input_tokens=event.input_tokens,
        output_tokens=event.output_tokens,
        cached_input_tokens=event.cached_input_tokens,
        cache_write_tokens=event.cache_write_tokens,
        reasoning_tokens=event.reasoning_tokens,
        units=tuple((u.kind, u.quantity) for u in event.units),
    )


@dataclass(frozen=True, slots=True)
class _Cost:
    amount: Decimal
    currency: str
    version_id: uuid.UUID | None
    canonical: str


def _provider_cost(request: PricingRequest, view: catalog.CatalogView) -> _Cost:
    event = request.event
    provider = catalog.lookup_provider(event.provider)
    canonical = view.model_of(provider, event.model)
    if event.provider_cost is not None and event.provider_currency is not None:
        return _Cost(quantize_stored(event.provider_cost), event.provider_currency, None, canonical)
    at = event.occurred_at
    version = view.version_at(provider, event.model, at)
    if version is None:
        raise PriceMissing(
            event.provider, event.model, format_rfc3339(at), join_path(request.path, "model")
        )
    try:
        amount = provider_cost(version.sheet, metered(event))
    except MissingComponent as missing:
        raise ComponentPriceMissing(
            event.provider,
            event.model,
            format_rfc3339(at),
            missing.component,
            join_path(
                request.path, missing.component if "Tokens" in missing.component else "units"
            ),
        ) from None
    return _Cost(amount, version.currency, version.id, canonical)


async def price_events(
    session: AsyncSession, organization_id: uuid.UUID, requests: Sequence[PricingRequest]
) -> list[PricedUsage]:
    """Price every request of a batch, in order. Raises on the first one that cannot be."""
    if not requests:
        return []
    times = [r.event.occurred_at for r in requests]
    start, end = min(times), max(times)
    keys = {(catalog.lookup_provider(r.event.provider), r.event.model) for r in requests}
    view = await catalog.load_view(session, organization_id, keys, start, end)
    costs = [_provider_cost(request, view) for request in requests]
    pairs = {
        (cost.currency, request.account_currency)
        for cost, request in zip(costs, requests, strict=True)
        if cost.currency != request.account_currency
    }
    rates = (
        await fx.load_book(session, organization_id, pairs, start, end) if pairs else fx.RateBook()
    )
    needs_rules = any(request.markup_percent is None for request in requests)
    book = await markup.load_book(session) if needs_rules else markup.MarkupBook([])
    priced: list[PricedUsage] = []
    for cost, request in zip(costs, requests, strict=True):
        event = request.event
        rate = rates.rate_at(cost.currency, request.account_currency, event.occurred_at)
        ai_cost = convert(cost.amount, rate)
        percent = request.markup_percent
        if percent is None:
            provider = catalog.lookup_provider(event.provider)
            percent = book.percent_for(request.customer_id, provider, (cost.canonical, event.model))
        billed = with_markup(ai_cost, percent)
        if max(cost.amount, ai_cost, billed) >= LARGEST:
            raise ValidationFailed("this event's cost is too large to record", request.path)
        priced.append(
            PricedUsage(
                provider_cost=cost.amount,
                provider_currency=cost.currency,
                fx_rate=quantize_stored(rate),
                ai_cost=ai_cost,
                billed=billed,
                markup_percent=quantize_stored(percent),
                caller_priced=cost.version_id is None,
                price_version_id=cost.version_id,
            )
        )
    return priced


async def price_one(
    session: AsyncSession,
    organization_id: uuid.UUID,
    event: UsageEvent,
    account_currency: str,
    customer_id: uuid.UUID | None,
    path: str = "input",
) -> PricedUsage:
    """One event, exactly as a batch would price it (e.g. an estimate before a call)."""
    request = PricingRequest(event, account_currency, customer_id, path)
    return (await price_events(session, organization_id, [request]))[0]
