"""Pricing: the model catalog, exchange rates, markup, plans, subscriptions and reprice.

Catalog and rate writes go to the caller's tenant (its override), or — from a platform
admin's token that names no organisation — to the platform catalog every tenant sees.
Reads from a token without an organisation see the platform rows only.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.auth.permissions import Right, has_right
from costgraph.billing import catalog, fx, markup, plans, reprice, subscription_billing
from costgraph.kernel.errors import Forbidden
from costgraph.resolvers.access import needs
from costgraph.resolvers.errors import result_of
from costgraph.resolvers.ids import decode_id, decode_optional
from costgraph.schema import pricing as types
from costgraph.schema.context import Context
from costgraph.schema.types import Info

T = TypeVar("T")


def _catalog_version(input: types.ModelPriceInput) -> catalog.NewPriceVersion:
    return catalog.NewPriceVersion(
        provider=input.provider,
        model=input.model,
        currency=input.currency,
        effective_from=input.effective_from,
        effective_to=input.effective_to,
        input_per_million=input.input_per_million,
        output_per_million=input.output_per_million,
        cached_input_per_million=input.cached_input_per_million,
        cache_write_per_million=input.cache_write_per_million,
        reasoning_per_million=input.reasoning_per_million,
        long_context_threshold=input.long_context_threshold,
        input_per_million_above_threshold=input.input_per_million_above_threshold,
        output_per_million_above_threshold=input.output_per_million_above_threshold,
        unit_prices=tuple((u.kind.value, u.price) for u in input.unit_prices or ()),
        aliases=tuple(input.aliases or ()),
        source_url=input.source_url,
    )


def _platform_caller(context: Context) -> bool:
    """A token without an organisation: it acts on the platform rows, if it may."""
    principal = context.require_principal()
    if principal.organization_id is not None:
        return False
    if not has_right(principal, Right.PLATFORM):
        raise Forbidden("the platform catalog needs the platform right")
    return True


@asynccontextmanager
async def _owner_reading(context: Context) -> AsyncIterator[tuple[AsyncSession, uuid.UUID | None]]:
    if _platform_caller(context):
        async with context.app.sessions() as session:
            yield session, None
    else:
        org = await context.org()
        async with context.reading() as session:
            yield session, org.id


async def _owner_write(
    context: Context, action: Callable[[AsyncSession, uuid.UUID | None], Awaitable[T]]
) -> T:
    """``action(session, owner)`` as a unit of work: for the caller's organisation, or for the
    platform (owner None) from a platform admin's token without one."""
    if _platform_caller(context):
        return await context.write_untenanted(lambda uow: action(uow.session, None))
    return await context.write(lambda uow: action(uow.session, uow.org.id))


@strawberry.type
class PricingQuery:
    @strawberry.field(
        description="Price versions the caller sees (the platform catalog and its own "
        "overrides). With `at`: the one version per model that prices an event at that "
        "instant; without: the whole history. `model` also matches an alias when `provider` "
        "is given.",
        extensions=[needs(Right.READ_DIRECTORY)],
    )
    async def model_prices(
        self,
        info: Info,
        provider: str | None = None,
        model: str | None = None,
        at: dt.datetime | None = None,
    ) -> list[types.ModelPrice]:
        async with _owner_reading(info.context) as (session, owner):
            versions = await catalog.model_prices(session, owner, provider, model, at)
        return [types.ModelPrice.of(v) for v in versions]

    @strawberry.field(
        description="Rates in force at `at` (default: now), one per pair; the organisation's "
        "own rate wins over the platform's.",
        extensions=[needs(Right.READ_DIRECTORY)],
    )
    async def exchange_rates(
        self, info: Info, at: dt.datetime | None = None
    ) -> list[types.ExchangeRate]:
        async with _owner_reading(info.context) as (session, owner):
            rates = await fx.exchange_rates(session, owner, at)
        return [types.ExchangeRate.of(r) for r in rates]

    @strawberry.field(extensions=[needs(Right.READ_DIRECTORY)])
    async def markup_rules(self, info: Info) -> list[types.MarkupRule]:
        async with info.context.reading() as session:
            rules = await markup.markup_rules(session)
        return [types.MarkupRule.of(m) for m in rules]

    @strawberry.field(extensions=[needs(Right.READ_DIRECTORY)])
    async def plans(self, info: Info) -> list[types.Plan]:
        async with info.context.reading() as session:
            rows = await plans.plans(session)
        return [types.Plan.of(row) for row in rows]


@strawberry.type
class PricingMutation:
    @strawberry.mutation(
        description="Add a price version: to the caller's organisation (its override), or to "
        "the platform catalog from a platform admin's token without an organisation.",
        extensions=[needs(Right.MANAGE_ORGANIZATION)],
    )
    async def set_model_price(self, info: Info, input: types.ModelPriceInput) -> types.ModelPrice:
        version = _catalog_version(input)
        actor = info.context.require_principal().subject
        saved = await _owner_write(
            info.context,
            lambda session, owner: catalog.set_model_price(session, owner, version, actor),
        )
        return types.ModelPrice.of(saved)

    @strawberry.mutation(
        description="Add a dated exchange rate (rates are never replaced).",
        extensions=[needs(Right.MANAGE_ORGANIZATION)],
    )
    async def set_exchange_rate(
        self, info: Info, input: types.ExchangeRateInput
    ) -> types.ExchangeRate:
        actor = info.context.require_principal().subject
        rate = await _owner_write(
            info.context,
            lambda session, owner: fx.set_exchange_rate(
                session, owner, input.base, input.quote, input.rate, input.effective_from, actor
            ),
        )
        return types.ExchangeRate.of(rate)

    @strawberry.mutation(extensions=[needs(Right.MANAGE_ORGANIZATION)])
    async def set_markup(self, info: Info, input: types.MarkupInput) -> types.MarkupRule:
        customer_id = decode_optional(input.customer_id, "customer", "input.customerId")
        rule = await info.context.write(
            lambda uow: markup.set_markup(
                uow.session, uow.org, input.percent, customer_id, input.provider, input.model
            )
        )
        return types.MarkupRule.of(rule)

    @strawberry.mutation(extensions=[needs(Right.MANAGE_ORGANIZATION)])
    async def set_plan(self, info: Info, input: types.PlanInput) -> types.Plan:
        spec = plans.PlanSpec(
            code=input.code,
            name=input.name,
            monthly_fee=input.monthly_fee,
            currency=input.currency,
            included_tokens=input.included_tokens,
            annual_fee=input.annual_fee,
            seats=input.seats,
            max_accounts_per_customer=input.max_accounts_per_customer,
            priority_class=plans.PriorityClass(input.priority_class.value),
            pooled=input.pooled,
            seat_fee=input.seat_fee,
        )
        row = await info.context.write(lambda uow: plans.set_plan(uow.session, uow.org, spec))
        return types.Plan.of(row)

    @strawberry.mutation(extensions=[needs(Right.WRITE_BILLING)])
    async def subscribe_account(
        self, info: Info, input: types.AccountSubscriptionInput
    ) -> types.AccountSubscription:
        account_id = decode_id(input.account_id, "account", "input.accountId")
        cycle = plans.BillingCycle(input.billing.value)
        row = await info.context.write(
            lambda uow: subscription_billing.billed(
                uow.session,
                uow.org,
                plans.subscribe_account(
                    uow.session,
                    uow.org,
                    account_id,
                    input.plan_code,
                    cycle,
                    input.starts_at,
                    input.seats,
                ),
            )
        )
        return types.AccountSubscription.of(row)

    @strawberry.mutation(
        description="Reprice catalog-priced usage of a range with today's catalog and rates: "
        "each difference becomes an ADJUSTMENT entry; the run is kept for audit.",
        extensions=[needs(Right.WRITE_BILLING)],
    )
    async def reprice_usage(self, info: Info, input: types.RepriceInput) -> types.RepriceResult:
        context = info.context

        async def run() -> types.RepriceCompleted:
            request = reprice.RepriceRequest(
                start=input.range.start,
                end=input.range.end,
                account_id=decode_optional(input.account_id, "account", "input.accountId"),
                provider=None
                if input.provider is None
                else catalog.lookup_provider(input.provider),
                model=input.model,
                reason=input.reason,
            )
            actor = context.require_principal().subject
            outcome = await context.write(
                lambda uow: reprice.reprice(
                    uow.session, uow.org, request, actor, context.app.limits.zone
                )
            )
            return types.RepriceCompleted.of(outcome)

        return await result_of(run)
