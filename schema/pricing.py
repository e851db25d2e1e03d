"""Types and inputs of pricing: the model catalog, exchange rates, markup, plans, reprice."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
from typing import TYPE_CHECKING, Annotated

import strawberry

from costgraph.billing.plans import PriorityClass as PriorityClassValue
from costgraph.billing.plans import annual_discount_percent
from costgraph.schema.inputs import DateRange, UnitKind
from costgraph.schema.priority import PriorityClass
from costgraph.schema.results import (
    NotFound,
    PeriodClosed,
    PriceMissing,
    RateMissing,
    ValidationFailed,
)
from costgraph.schema.scalars import CurrencyCode
from costgraph.schema.types import LedgerEntry

if TYPE_CHECKING:
    from costgraph.billing.catalog import PriceVersion
    from costgraph.billing.fx import Rate
    from costgraph.billing.markup import Markup
    from costgraph.billing.reprice import RepriceOutcome
    from costgraph.models.pricing import AccountSubscription as SubscriptionRow
    from costgraph.models.pricing import Plan as PlanRow


def _id(value: object) -> strawberry.ID | None:
    return None if value is None else strawberry.ID(str(value))


@strawberry.enum(description="Who a catalog row or rate belongs to.")
class PriceScope(enum.Enum):
    PLATFORM = "PLATFORM"
    ORGANIZATION = "ORGANIZATION"


@strawberry.enum
class BillingCycle(enum.Enum):
    MONTHLY = "MONTHLY"
    ANNUAL = "ANNUAL"


# --- outputs ---


@strawberry.type
class UnitPrice:
    kind: UnitKind
    price: decimal.Decimal


@strawberry.type(
    description="One version of a model's prices, in force over [effectiveFrom, effectiveTo)."
)
class ModelPrice:
    id: strawberry.ID
    scope: PriceScope = strawberry.field(
        description="PLATFORM: the catalog every organisation sees; ORGANIZATION: the caller's "
        "own override, which wins over the platform's while in force."
    )
    provider: str
    model: str
    currency: CurrencyCode
    effective_from: dt.datetime
    effective_to: dt.datetime | None
    input_per_million: decimal.Decimal | None
    output_per_million: decimal.Decimal | None
    cached_input_per_million: decimal.Decimal | None
    cache_write_per_million: decimal.Decimal | None
    reasoning_per_million: decimal.Decimal | None
    unit_prices: list[UnitPrice]
    long_context_threshold: int | None
    input_per_million_above_threshold: decimal.Decimal | None
    output_per_million_above_threshold: decimal.Decimal | None
    aliases: list[str]
    source_url: str | None
    created_at: dt.datetime | None

    @classmethod
    def of(cls, v: PriceVersion) -> ModelPrice:
        s = v.sheet
        return cls(
            id=strawberry.ID(str(v.id)),
            scope=PriceScope.PLATFORM if v.organization_id is None else PriceScope.ORGANIZATION,
            provider=v.provider,
            model=v.model,
            currency=CurrencyCode(v.currency),
            effective_from=v.effective_from,
            effective_to=v.effective_to,
            input_per_million=s.input_per_million,
            output_per_million=s.output_per_million,
            cached_input_per_million=s.cached_input_per_million,
            cache_write_per_million=s.cache_write_per_million,
            reasoning_per_million=s.reasoning_per_million,
            unit_prices=[UnitPrice(kind=UnitKind(k), price=p) for k, p in s.unit_prices.items()],
            long_context_threshold=s.long_context_threshold,
            input_per_million_above_threshold=s.input_per_million_above_threshold,
            output_per_million_above_threshold=s.output_per_million_above_threshold,
            aliases=list(v.aliases),
            source_url=v.source_url,
            created_at=v.created_at,
        )


@strawberry.type(description="1 base = rate quote, in force from effectiveFrom.")
class ExchangeRate:
    id: strawberry.ID
    scope: PriceScope
    base: CurrencyCode
    quote: CurrencyCode
    rate: decimal.Decimal
    effective_from: dt.datetime
    source: str | None = strawberry.field(
        description="Where the rate comes from: the platform rates CostGraph ships name the "
        "published reference rates and their date; null for rates set without one."
    )

    @classmethod
    def of(cls, r: Rate) -> ExchangeRate:
        return cls(
            source=r.source,
            id=strawberry.ID(str(r.id)),
            scope=PriceScope.PLATFORM if r.organization_id is None else PriceScope.ORGANIZATION,
            base=CurrencyCode(r.base),
            quote=CurrencyCode(r.quote),
            rate=r.rate,
            effective_from=r.effective_from,
        )


@strawberry.type(description="A markup over AI cost; the most specific matching rule applies.")
class MarkupRule:
    id: strawberry.ID
    percent: decimal.Decimal
    customer_id: strawberry.ID | None
    provider: str | None
    model: str | None
    updated_at: dt.datetime | None

    @classmethod
    def of(cls, m: Markup) -> MarkupRule:
        return cls(
            id=strawberry.ID(str(m.id)),
            percent=m.percent,
            customer_id=_id(m.customer_id),
            provider=m.provider,
            model=m.model,
            updated_at=m.updated_at,
        )


@strawberry.type
class Plan:
    id: strawberry.ID
    code: str
    name: str
    monthly_fee: decimal.Decimal
    annual_fee: decimal.Decimal | None
    annual_discount_percent: decimal.Decimal | None = strawberry.field(
        description="How much cheaper a year is than twelve monthly fees, in percent."
    )
    currency: CurrencyCode
    included_tokens: int = strawberry.field(
        description="Tokens included per monthly cycle (per seat on a pooled plan)."
    )
    seats: int | None = strawberry.field(
        description="The most seats a subscription may have (null: no limit)."
    )
    max_accounts_per_customer: int | None = strawberry.field(
        description="The most accounts a customer on this plan may have (null: unlimited); "
        "beyond it, PLAN_LIMIT."
    )
    priority_class: PriorityClass
    pooled: bool = strawberry.field(
        description="A team plan: a customer's accounts on it share one allowance of "
        "includedTokens x the seats of all their subscriptions."
    )
    seat_fee: decimal.Decimal | None = strawberry.field(
        description="Per seat and monthly cycle (pooled plans)."
    )

    @classmethod
    def of(cls, row: PlanRow) -> Plan:
        return cls(
            id=strawberry.ID(str(row.id)),
            code=row.code,
            name=row.name,
            monthly_fee=row.monthly_fee,
            annual_fee=row.annual_fee,
            annual_discount_percent=annual_discount_percent(row.monthly_fee, row.annual_fee),
            currency=CurrencyCode(row.currency),
            included_tokens=row.included_tokens,
            seats=row.seats,
            max_accounts_per_customer=row.max_accounts_per_customer,
            priority_class=PriorityClassValue(row.priority_class),
            pooled=row.pooled,
            seat_fee=row.seat_fee,
        )


@strawberry.type
class AccountSubscription:
    id: strawberry.ID
    account_id: strawberry.ID
    plan_code: str
    billing: BillingCycle
    fee: decimal.Decimal = strawberry.field(description="Per billing cycle, fixed when subscribed.")
    currency: CurrencyCode
    included_tokens: int
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    seats: int
    priority_class: PriorityClass
    pool_id: strawberry.ID | None = strawberry.field(
        description="The team subscription whose pooled allowance the account draws on "
        "(itself for the team's own); null: an allowance of its own."
    )
    cancelled_at: dt.datetime | None = strawberry.field(
        default=None,
        description="When cancelSubscription was asked; endsAt is then the period's end.",
    )

    @classmethod
    def of(cls, row: SubscriptionRow) -> AccountSubscription:
        return cls(
            id=strawberry.ID(str(row.id)),
            account_id=strawberry.ID(str(row.account_id)),
            plan_code=row.plan_code,
            billing=BillingCycle(row.billing),
            fee=row.fee,
            currency=CurrencyCode(row.currency),
            included_tokens=row.included_tokens,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            seats=row.seats,
            priority_class=PriorityClassValue(row.priority_class),
            pool_id=_id(row.pool_id),
            cancelled_at=row.cancelled_at,
        )


@strawberry.type(description="A reprice run: its audit record and the corrections it wrote.")
class RepriceCompleted:
    run_id: strawberry.ID
    examined: int = strawberry.field(description="Catalog-priced usage entries looked at.")
    adjusted: int = strawberry.field(description="ADJUSTMENT entries written.")
    adjustments: list[LedgerEntry]
    created_at: dt.datetime | None

    @classmethod
    def of(cls, outcome: RepriceOutcome) -> RepriceCompleted:
        return cls(
            run_id=strawberry.ID(str(outcome.run_id)),
            examined=outcome.examined,
            adjusted=len(outcome.adjustments),
            adjustments=[LedgerEntry.of(e) for e in outcome.adjustments],
            created_at=outcome.created_at,
        )


RepriceResult = Annotated[
    RepriceCompleted | ValidationFailed | NotFound | PriceMissing | RateMissing | PeriodClosed,
    strawberry.union("RepriceResult"),
]


# --- inputs ---


@strawberry.input
class UnitPriceInput:
    kind: UnitKind
    price: decimal.Decimal


@strawberry.input(
    description="A price version. Without effectiveTo it is appended: the open version "
    "before it closes at effectiveFrom. Overlapping an existing version is VALIDATION_FAILED."
)
class ModelPriceInput:
    provider: str
    model: str
    currency: CurrencyCode
    effective_from: dt.datetime
    input_per_million: decimal.Decimal | None = None
    output_per_million: decimal.Decimal | None = None
    cached_input_per_million: decimal.Decimal | None = None
    cache_write_per_million: decimal.Decimal | None = None
    reasoning_per_million: decimal.Decimal | None = strawberry.field(
        default=None, description="Unset: reasoning tokens are priced as output."
    )
    unit_prices: list[UnitPriceInput] | None = None
    long_context_threshold: int | None = strawberry.field(
        default=None,
        description="Above this many prompt tokens (input + cached + cache-write), the "
        "*AboveThreshold prices apply to the whole request.",
    )
    input_per_million_above_threshold: decimal.Decimal | None = None
    output_per_million_above_threshold: decimal.Decimal | None = None
    aliases: list[str] | None = None
    effective_to: dt.datetime | None = strawberry.field(
        default=None, description="Set only to fill a gap in the past."
    )
    source_url: str | None = None


@strawberry.input(description="1 base = rate quote.")
class ExchangeRateInput:
    base: CurrencyCode
    quote: CurrencyCode
    rate: decimal.Decimal
    effective_from: dt.datetime


@strawberry.input(description="No customer, provider or model: the organisation default.")
class MarkupInput:
    percent: decimal.Decimal
    customer_id: strawberry.ID | None = None
    provider: str | None = None
    model: str | None = None


@strawberry.input
class PlanInput:
    code: str
    name: str
    monthly_fee: decimal.Decimal
    currency: CurrencyCode
    included_tokens: int
    annual_fee: decimal.Decimal | None = None
    seats: int | None = None
    max_accounts_per_customer: int | None = None
    priority_class: PriorityClass = PriorityClassValue.STANDARD
    pooled: bool = False
    seat_fee: decimal.Decimal | None = None


@strawberry.input
class AccountSubscriptionInput:
    account_id: strawberry.ID
    plan_code: str
    billing: BillingCycle
    starts_at: dt.datetime | None = None
    seats: int | None = strawberry.field(
        default=None,
        description="Seats (default 1; more only on pooled plans): on a pooled plan each "
        "seat adds includedTokens to the team's pool and costs seatFee.",
    )


@strawberry.input(description="Reprice catalog-priced usage in a range with today's catalog.")
class RepriceInput:
    range: DateRange
    account_id: strawberry.ID | None = None
    provider: str | None = None
    model: str | None = None
    reason: str | None = None
