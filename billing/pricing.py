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

from costgraph.billing import catalog, fx, markup, markup_repository
from costgraph.billing.commands import UsageEvent
from costgraph.billing.cost_formula import (
    Metered,
    MissingComponent,
    convert,
    markup_factor,
    provider_cost,
    with_factor,
)
from costgraph.kernel.clock import format_rfc3339
from costgraph.kernel.errors import PriceMissing, ValidationFailed, join_path
from costgraph.kernel.money import INTEGER_DIGITS, quantize_stored

#: The largest amount a NUMERIC(38, 12) column holds.
LARGEST = Decimal(10) ** INTEGER_DIGITS


@dataclass(frozen=True, slots=True)
class PricedUsage:
    """One event priced; every amount, rate and percent at the stored scale (12 places)."""

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


@dataclass(slots=True)
class PreparedPricing:
    """A batch's pricing with everything loaded and every provider cost known (so a missing
    price has been raised already); :meth:`priced` finishes any slice of it."""

    requests: Sequence[PricingRequest]
    costs: list[_Cost]
    rates: fx.RateBook
    book: markup.MarkupBook

    def priced(self, start: int = 0, stop: int | None = None) -> list[PricedUsage]:
        """The requests ``[start:stop]`` priced, in order; raises on the first that cannot be."""
        rates, book = self.rates, self.book
        priced: list[PricedUsage] = []
        # A batch has a handful of distinct markups, rates and percents: each rule lookup,
        # markup factor and stored-scale copy is computed once per distinct value.
        percents: dict[tuple[uuid.UUID | None, str, str, str], Decimal] = {}
        factors: dict[Decimal, Decimal | None] = {}
        stored: dict[Decimal, Decimal] = {}
        for cost, request in zip(self.costs[start:stop], self.requests[start:stop], strict=True):
            event = request.event
            rate = rates.rate_at(cost.currency, request.account_currency, event.occurred_at)
            # cost.amount is at the stored scale already: at rate one it is its own result.
            ai_cost = cost.amount if rate is fx.ONE else convert(cost.amount, rate)
            percent = request.markup_percent
            if percent is None:
                key = (request.customer_id, event.provider, cost.canonical, event.model)
                percent = percents.get(key)
                if percent is None:
                    provider = catalog.lookup_provider(event.provider)
                    models = (cost.canonical, event.model)
                    percent = book.percent_for(request.customer_id, provider, models)
                    percents[key] = percent
            if percent not in factors:
                factor = markup_factor(percent)
                factors[percent] = None if factor == 1 else factor  # None: billed = AI cost
            factor_or_none = factors[percent]
            billed = ai_cost if factor_or_none is None else with_factor(ai_cost, factor_or_none)
            if max(cost.amount, ai_cost, billed) >= LARGEST:
                raise ValidationFailed("this event's cost is too large to record", request.path)
            fx_rate = stored.get(rate)
            if fx_rate is None:
                fx_rate = stored[rate] = quantize_stored(rate)
            markup_percent = stored.get(percent)
            if markup_percent is None:
                markup_percent = stored[percent] = quantize_stored(percent)
            priced.append(
                PricedUsage(
                    provider_cost=cost.amount,
                    provider_currency=cost.currency,
                    fx_rate=fx_rate,
                    ai_cost=ai_cost,
                    billed=billed,
                    markup_percent=markup_percent,
                    caller_priced=cost.version_id is None,
                    price_version_id=cost.version_id,
                )
            )
        return priced


async def prepare_pricing(
    session: AsyncSession,
    organization_id: uuid.UUID,
    requests: Sequence[PricingRequest],
    *,
    fresh: bool = False,
) -> PreparedPricing:
    """Load what the batch needs (catalog, rates, markup: a fixed handful of queries, none
    when the caches hold them) and compute every provider cost.

    The catalog and markup rules come from this process's short-lived cache
    (:mod:`costgraph.billing.tenant_cache`); ``fresh`` reads the catalog from the database
    (a reprice must price with what is committed now, whichever instance wrote it).
    """
    if not requests:
        return PreparedPricing(requests, [], fx.RateBook(), markup.MarkupBook([]))
    times = [r.event.occurred_at for r in requests]
    start, end = min(times), max(times)
    keys = {(catalog.lookup_provider(r.event.provider), r.event.model) for r in requests}
    view = (
        await catalog.load_view(session, organization_id, keys, start, end)
        if fresh
        else await catalog.cached_view(session, organization_id, keys)
    )
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
    book = markup.MarkupBook(
        await markup_repository.rules_of(session, organization_id) if needs_rules else []
    )
    return PreparedPricing(requests, costs, rates, book)


async def price_events(
    session: AsyncSession,
    organization_id: uuid.UUID,
    requests: Sequence[PricingRequest],
    *,
    fresh: bool = False,
) -> list[PricedUsage]:
    """Price every request of a batch, in order. Raises on the first one that cannot be."""
    return (await prepare_pricing(session, organization_id, requests, fresh=fresh)).priced()


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
