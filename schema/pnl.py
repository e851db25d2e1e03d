"""P&L, usage analytics, the users view, KPIs, liability estimates and monthly closes."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from costgraph.billing import deferred_revenue, ledger_repository, liabilities, pnl
from costgraph.billing.commands import LedgerFilter
from costgraph.billing.liabilities import LiabilitySummary as SummaryModel
from costgraph.billing.payers import ActivityStatus, Kpis
from costgraph.billing.payers import CustomerActivity as CustomerActivityModel
from costgraph.billing.payers import UserActivity as UserActivityModel
from costgraph.billing.pnl import BreakdownRow, Order, Report, ScopeKind
from costgraph.billing.pnl_measures import Figures, RevenueBasis
from costgraph.billing.pnl_ranges import ReportLimits, TimeBucket
from costgraph.billing.segments import PayerSegment
from costgraph.billing.usage_analytics import UsageDimension
from costgraph.billing.usage_analytics import UsageRow as UsageRowModel
from costgraph.kernel.pagination import page_size
from costgraph.models.rollups import LiabilityEstimate as LiabilityRow
from costgraph.models.rollups import MonthClose as MonthCloseRow
from costgraph.schema.currencies import CurrencyPair, pairs
from costgraph.schema.results import IdempotencyConflict, ValidationFailed
from costgraph.schema.scalars import CurrencyCode
from costgraph.schema.types import (
    Connection,
    Customer,
    Info,
    LedgerEntry,
    Organization,
    User,
    connection,
    entry_cursor,
)

if TYPE_CHECKING:
    from costgraph.schema.analytics import PayerKpisComparison, PnLComparison, UsageComparison

_ANALYTICS = "costgraph.schema.analytics"

strawberry.enum(TimeBucket, name="TimeBucket", description="UTC buckets; weeks start on Monday.")
strawberry.enum(UsageDimension, name="UsageDimension")
strawberry.enum(ScopeKind, name="PnLScopeKind")
strawberry.enum(
    RevenueBasis,
    name="RevenueBasis",
    description="RECEIVED: money received from payers; ATTRIBUTED: attributed to usage.",
)
strawberry.enum(
    PayerSegment,
    name="PayerSegment",
    description="NEW: paid in the range and never before; RETURNING: paid in the range and "
    "before it. A customer pays money received (subscriptions, top-ups, postpaid overage); a "
    "user pays through their accounts (usage charged beyond the allowances).",
)
strawberry.enum(
    ActivityStatus,
    name="ActivityStatus",
    description="ACTIVE: entries in the range; IDLE: earlier entries only; NEVER: none.",
)


def report_limits(info: Info) -> ReportLimits:
    settings = info.context.app.settings
    return ReportLimits(
        max_range_days=settings.pnl_max_range_days,
        max_points=settings.pnl_max_points,
        max_rows=info.context.app.limits.max_page_size,
        max_usage_rows=settings.pnl_max_usage_rows,
    )


def _id(value: uuid.UUID | None) -> strawberry.ID | None:
    return None if value is None else strawberry.ID(str(value))


@strawberry.input(description="Whose P&L: the organisation (no id), a customer or an account.")
class PnLScopeInput:
    kind: ScopeKind
    id: strawberry.ID | None = None
    agent: str | None = strawberry.field(default=None, description="Only this agent's entries.")


@strawberry.input
class UsageFilter:
    account_id: strawberry.ID | None = None
    customer_id: strawberry.ID | None = None
    department_id: strawberry.ID | None = None
    user_id: strawberry.ID | None = None
    provider: str | None = None
    model: str | None = None
    feature: str | None = None
    agent: str | None = None


@strawberry.type(description="Revenue by where it came from (refunds and withdrawals subtract).")
class RevenueBySource:
    subscriptions: decimal.Decimal
    top_ups: decimal.Decimal
    billed_usage: decimal.Decimal = strawberry.field(
        description="Usage charged beyond the plans' allowances: for a payer (RECEIVED), the "
        "billed overage of postpaid accounts (prepaid usage was paid by its top-up); for a "
        "slice of usage (ATTRIBUTED), all its charged usage. Usage the allowance covered is "
        "paid by the subscription fee and never counted again."
    )
    refunds: decimal.Decimal
    withdrawals: decimal.Decimal


@strawberry.type
class TokenTotals:
    input: int
    output: int
    cached_input: int
    cache_write: int
    reasoning: int
    total: int


@strawberry.interface(
    description="Figures of a P&L in `currency`, exact (12 decimal places). revenue "
    "(revenueBasis RECEIVED: the organisation, a customer, an account) = subscriptions + "
    "top-ups + postpaid billed overage - refunds - withdrawals; revenue (ATTRIBUTED: an "
    "agent, a model, a user) = its usage charged beyond the allowances. margin = netImpact = "
    "revenue - aiCost - platformFees."
)
class PnLFigures:
    currency: CurrencyCode
    revenue: decimal.Decimal
    revenue_basis: RevenueBasis = strawberry.field(
        description="RECEIVED: money a payer paid; ATTRIBUTED: that money attributed to the "
        "usage that earned it."
    )
    revenue_by_source: RevenueBySource
    ai_cost: decimal.Decimal = strawberry.field(
        description="Provider cost of usage, reprice corrections included."
    )
    billed_usage: decimal.Decimal = strawberry.field(
        description="Customer-facing price of usage (AI cost with markup)."
    )
    markup_earned: decimal.Decimal = strawberry.field(description="billedUsage - aiCost.")
    allowance_usage: decimal.Decimal = strawberry.field(
        description="Billed usage the plans' allowances covered: paid by the subscription "
        "fee, not revenue a second time."
    )
    platform_fees: decimal.Decimal
    balance_adjustments: decimal.Decimal = strawberry.field(
        description="Manual balance corrections: neither revenue nor cost."
    )
    margin: decimal.Decimal
    margin_percent: decimal.Decimal | None = strawberry.field(
        description="margin / |revenue| x 100, 4 decimal places: negative on a loss; null "
        "when revenue is 0."
    )
    net_impact: decimal.Decimal = strawberry.field(
        description="revenue attributed - cost attributed (aiCost + platformFees): the same "
        "figure as margin, named as the AI P&L names it. Liability estimates are reported "
        "beside it, never in it. Top agents and users rank by its size."
    )
    event_count: int
    tokens: TokenTotals


def figures_fields(f: Figures) -> dict[str, Any]:
    return {
        "currency": CurrencyCode(f.currency),
        "revenue": f.revenue,
        "revenue_basis": f.basis,
        "revenue_by_source": RevenueBySource(
            subscriptions=f.subscriptions,
            top_ups=f.top_ups,
            billed_usage=f.usage_revenue,
            refunds=f.refunds,
            withdrawals=f.withdrawals,
        ),
        "ai_cost": f.ai_cost,
        "billed_usage": f.billed_usage,
        "markup_earned": f.markup,
        "allowance_usage": f.covered_usage,
        "platform_fees": f.platform_fees,
        "balance_adjustments": f.balance_adjustments,
        "margin": f.margin,
        "margin_percent": f.margin_percent,
        "net_impact": f.net_impact,
        "event_count": f.events,
        "tokens": TokenTotals(
            input=f.input_tokens,
            output=f.output_tokens,
            cached_input=f.cached_input_tokens,
            cache_write=f.cache_write_tokens,
            reasoning=f.reasoning_tokens,
            total=f.tokens,
        ),
    }


@strawberry.type(description="A P&L split by model, provider, agent or user.")
class PnLBreakdown(PnLFigures):
    key: str = strawberry.field(description="provider/model, provider, agent or user id.")
    provider: str | None
    model: str | None
    agent: str | None
    user_id: strawberry.ID | None

    @strawberry.field
    async def user(self, info: Info) -> User | None:
        if self.user_id is None:
            return None
        row = await info.context.loaders.user.load(uuid.UUID(self.user_id))
        return None if row is None else User.of(row)

    @classmethod
    def of(cls, row: BreakdownRow) -> PnLBreakdown:
        key = row.key
        user_id = key.get("user")
        label = "/".join(str(key[d]) for d in key if key[d] is not None)
        return cls(
            key=label,
            provider=key.get("provider"),
            model=key.get("model"),
            agent=key.get("agent"),
            user_id=_id(user_id),
            **figures_fields(row.figures),
        )


@strawberry.type
class AgentLiability:
    agent: str
    amount: decimal.Decimal
    estimates: int


@strawberry.type(description="Expected exposure of agents' decisions: beside the P&L, not in it.")
class LiabilitySummary:
    currency: CurrencyCode
    total: decimal.Decimal
    by_agent: list[AgentLiability]
    missing_rates: list[CurrencyPair] = strawberry.field(
        description="Pairs without a rate: estimates in those currencies are not summed."
    )

    @classmethod
    def of(cls, s: SummaryModel) -> LiabilitySummary:
        return cls(
            missing_rates=pairs(s.missing),
            currency=CurrencyCode(s.currency),
            total=s.total,
            by_agent=[
                AgentLiability(agent=a.agent, amount=a.amount, estimates=a.estimates)
                for a in s.by_agent
            ],
        )


async def _breakdown(
    info: Info, report: Report, dimensions: tuple[str, ...], order: Order, limit: int | None
) -> list[PnLBreakdown]:
    if limit is not None:
        pnl.require_limit(limit, report_limits(info))
    async with info.context.reading() as session:
        rows = await pnl.breakdown(session, report, dimensions, order, limit)
    return [PnLBreakdown.of(row) for row in rows]


_MISSING_RATES = (
    "Currency pairs without a rate in the range: entries in these `base` currencies are not "
    "in the figures above (never converted at a made-up rate); `byCurrency` has them in their "
    "own money. Empty when every currency converted."
)


@strawberry.type(description="Profit and loss over a range, in one currency.")
class PnL(PnLFigures):
    start: dt.datetime
    end: dt.datetime
    report: strawberry.Private[Report]
    totaled: strawberry.Private[pnl.Totaled]
    comparison: Annotated[PnLComparison, strawberry.lazy(_ANALYTICS)] | None = strawberry.field(
        default=None,
        description="With `compareTo`: the same P&L over that range and the absolute and "
        "relative change of each figure; null without it.",
    )

    @strawberry.field(
        description="The same P&L per entry currency, each in its own money (unconverted), "
        "whether or not a rate exists: the panels a currency without a rate is read from."
    )
    def by_currency(self) -> list[PnL]:
        if self.report.panel:
            return [self]
        return [
            PnL.of(self.report.panel_of(f.currency), pnl.Totaled(f, (f,)))
            for f in self.totaled.by_currency
        ]

    @strawberry.field(description=_MISSING_RATES)
    def missing_rates(self) -> list[CurrencyPair]:
        return pairs(self.totaled.missing)

    @strawberry.field(description="By provider and model, largest AI cost first.")
    async def by_model(self, info: Info) -> list[PnLBreakdown]:
        return await _breakdown(info, self.report, ("provider", "model"), Order.COST, None)

    @strawberry.field(description="By provider, largest AI cost first.")
    async def by_provider(self, info: Info) -> list[PnLBreakdown]:
        return await _breakdown(info, self.report, ("provider",), Order.COST, None)

    @strawberry.field(description="The agents with the largest net impact (either sign).")
    async def top_agents(self, info: Info, limit: int | None = 5) -> list[PnLBreakdown]:
        return await _breakdown(info, self.report, ("agent",), Order.IMPACT, limit)

    @strawberry.field(description="The users with the largest net impact (either sign).")
    async def top_users(self, info: Info, limit: int | None = 5) -> list[PnLBreakdown]:
        return await _breakdown(info, self.report, ("user",), Order.IMPACT, limit)

    @strawberry.field(
        description="Liability estimates recorded for the organisation's agents in the range "
        "(the agent's only, for an agent P&L); null for accounts and customers, whose "
        "estimates are not attributed. Never part of margin."
    )
    async def liability_estimates(self, info: Info) -> LiabilitySummary | None:
        report = self.report
        if report.scope.kind is not ScopeKind.ORGANIZATION:
            return None
        async with info.context.reading() as session:
            summary = await liabilities.summary(
                session,
                report.organization,
                report.start,
                report.end,
                report.currency,
                report.scope.agent,
            )
        return LiabilitySummary.of(summary)

    @strawberry.field(
        description="Subscription fees billed and not yet earned at the range's end (an "
        "annual prepay's months to come): a balance beside the P&L, never part of revenue "
        "or margin; converted at the rate in force at the end. Null for an agent's P&L."
    )
    async def deferred_revenue(self, info: Info) -> decimal.Decimal | None:
        async with info.context.reading() as session:
            return await deferred_revenue.deferred_at_end(session, self.report)

    @classmethod
    def of(cls, report: Report, totaled: pnl.Totaled) -> PnL:
        return cls(
            start=report.start,
            end=report.end,
            report=report,
            totaled=totaled,
            **figures_fields(totaled.figures),
        )


@strawberry.type
class PnLTotals(PnLFigures):
    pass


def _panels(found: tuple[Figures, ...]) -> list[PnLTotals]:
    return [PnLTotals(**figures_fields(f)) for f in found]


@strawberry.type
class OrganizationPnL(PnLFigures):
    organization: Organization
    by_currency: list[PnLTotals] = strawberry.field(
        description="This organisation's figures per entry currency, each in its own money."
    )
    missing_rates: list[CurrencyPair] = strawberry.field(
        description="Pairs without a platform rate: this organisation's entries in those "
        "currencies are not in its figures nor in the platform totals."
    )


@strawberry.type(
    description="The whole platform: totals and one row per organisation, every organisation "
    "converted with the platform's rates (one rate per pair and instant)."
)
class PlatformPnL:
    currency: CurrencyCode
    start: dt.datetime
    end: dt.datetime
    totals: PnLTotals
    organizations: list[OrganizationPnL]
    by_currency: list[PnLTotals] = strawberry.field(
        description="The platform's figures per entry currency, each in its own money."
    )
    missing_rates: list[CurrencyPair] = strawberry.field(
        description="Pairs without a platform rate, over every organisation (see each "
        "organisation's own `missingRates`)."
    )

    @classmethod
    def of(cls, report: pnl.PlatformReport, start: dt.datetime, end: dt.datetime) -> PlatformPnL:
        return cls(
            currency=CurrencyCode(report.currency),
            start=start,
            end=end,
            totals=PnLTotals(**figures_fields(report.totals)),
            organizations=[
                OrganizationPnL(
                    organization=Organization.of(row.organization),
                    by_currency=_panels(row.by_currency),
                    missing_rates=pairs(row.missing),
                    **figures_fields(row.figures),
                )
                for row in report.organizations
            ],
            by_currency=_panels(report.by_currency),
            missing_rates=pairs(report.missing),
        )


@strawberry.type(description="One bucket of a P&L timeline, clipped to the range.")
class PnLPoint(PnLFigures):
    start: dt.datetime
    end: dt.datetime
    by_currency: list[PnLTotals] = strawberry.field(
        description="This bucket per entry currency, each in its own money."
    )
    missing_rates: list[CurrencyPair] = strawberry.field(description=_MISSING_RATES)
    liability: decimal.Decimal | None = strawberry.field(
        description="Liability estimates recorded in the bucket (the agent's, for an agent "
        "scope), beside netImpact and never in it; null for accounts and customers."
    )
    previous: PnLPoint | None = strawberry.field(
        default=None,
        description="With `compareTo`: the comparison range's bucket at the same offset (its "
        "first beside this range's first, …), the previous period overlaid; null without "
        "`compareTo` or beyond the comparison range's last bucket.",
    )

    @classmethod
    def of(cls, point: pnl.Point, previous: pnl.Point | None = None) -> PnLPoint:
        return cls(
            start=point.start,
            end=point.end,
            previous=None if previous is None else PnLPoint.of(previous),
            liability=point.liability,
            by_currency=_panels(point.by_currency),
            missing_rates=pairs(point.missing),
            **figures_fields(point.figures),
        )


@strawberry.type(description="Usage of one group (and bucket), in `currency`.")
class UsageRow:
    bucket: dt.datetime | None = strawberry.field(description="Start of the UTC bucket.")
    model: str | None
    provider: str | None
    customer_id: strawberry.ID | None
    account_id: strawberry.ID | None
    department_id: strawberry.ID | None
    user_id: strawberry.ID | None
    feature: str | None
    agent: str | None
    currency: CurrencyCode
    events: int
    tokens: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    ai_cost: decimal.Decimal
    billed_usage: decimal.Decimal
    missing_rates: list[CurrencyPair] = strawberry.field(
        description="Empty for a row in the requested currency. A row whose currency has no "
        "rate to it stays in its own `currency` and names that pair here; it is a group of "
        "its own, beside the converted rows."
    )
    comparison: Annotated[UsageComparison, strawberry.lazy(_ANALYTICS)] | None = strawberry.field(
        default=None,
        description="With `compareTo`: the same group over that range (its bucket at the "
        "same offset) and the changes; null without it.",
    )

    @classmethod
    def of(cls, row: UsageRowModel) -> UsageRow:
        key, f = row.key, row.figures
        return cls(
            missing_rates=pairs(row.missing),
            bucket=row.bucket,
            model=key.get("model"),
            provider=key.get("provider"),
            customer_id=_id(key.get("customer")),
            account_id=_id(key.get("account")),
            department_id=_id(key.get("department")),
            user_id=_id(key.get("user")),
            feature=key.get("feature"),
            agent=key.get("agent"),
            currency=CurrencyCode(f.currency),
            events=f.events,
            tokens=f.tokens,
            input_tokens=f.input_tokens,
            output_tokens=f.output_tokens,
            cached_input_tokens=f.cached_input_tokens,
            cache_write_tokens=f.cache_write_tokens,
            reasoning_tokens=f.reasoning_tokens,
            ai_cost=f.ai_cost,
            billed_usage=f.billed_usage,
        )


async def _ledger_page(
    info: Info, filters: LedgerFilter, first: int | None, after: str | None
) -> Connection[LedgerEntry]:
    size = page_size(first, 50, info.context.app.limits.max_page_size)
    async with info.context.reading() as session:
        entries, more = await ledger_repository.list_entries(session, filters, size, after)
    return connection(entries, more, entry_cursor, LedgerEntry.of)


@strawberry.type(description="One user in the users view.")
class UserActivity:
    user: User
    currency: CurrencyCode
    spend: decimal.Decimal = strawberry.field(description="Billed usage in the range.")
    ai_cost: decimal.Decimal
    event_count: int
    tokens: int
    last_activity_at: dt.datetime | None = strawberry.field(
        description="The user's latest entry before the range's end."
    )
    status: ActivityStatus
    payer_segment: PayerSegment | None = strawberry.field(
        default=None, description="null: no usage charged to the user in the range."
    )
    balance: decimal.Decimal | None = strawberry.field(
        default=None,
        description="The prepaid balances now of the accounts the user spends through (the "
        "accounts their usage was charged to), summed in `currency` at today's rates; null "
        "when the user spent through no account or a currency has no rate. An account several "
        "users spend through counts for each (see `accounts.shared`).",
    )
    accounts: list[UserAccountBalance] = strawberry.field(
        default_factory=list, description="The accounts the user spends through, balances now."
    )
    integration_access: IntegrationAccess = strawberry.field(
        description="The user's integration clients (OAuth clients acting for them)."
    )

    @strawberry.field(description="The user's ledger, newest first (drill-down).")
    async def ledger(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[LedgerEntry]:
        return await _ledger_page(info, LedgerFilter(user_id=uuid.UUID(self.user.id)), first, after)

    @classmethod
    def of(cls, row: UserActivityModel) -> UserActivity:
        f = row.figures
        return cls(
            user=User.of(row.user),
            currency=CurrencyCode(f.currency),
            spend=f.billed_usage,
            ai_cost=f.ai_cost,
            event_count=f.events,
            tokens=f.tokens,
            last_activity_at=row.last_activity_at,
            status=row.status,
            payer_segment=row.payer,
            balance=row.balance,
            accounts=[
                UserAccountBalance(
                    account_id=strawberry.ID(str(a.account_id)),
                    currency=CurrencyCode(a.currency),
                    balance=a.amount,
                    shared=a.shared,
                )
                for a in row.accounts
            ],
            integration_access=IntegrationAccess(
                active=row.integration.active,
                clients=row.integration.clients,
                active_clients=row.integration.active_clients,
            ),
        )


@strawberry.type(description="An account a user spends through, and its balance now.")
class UserAccountBalance:
    account_id: strawberry.ID
    currency: CurrencyCode
    balance: decimal.Decimal
    shared: bool = strawberry.field(description="Other users spend through it too.")


@strawberry.type(description="Whether a user's integration access is active.")
class IntegrationAccess:
    active: bool = strawberry.field(
        description="An OAuth client acting for the user is not revoked: its tokens work."
    )
    clients: int
    active_clients: int


@strawberry.type
class MoneyAmount:
    currency: CurrencyCode
    amount: decimal.Decimal


@strawberry.type(description="One customer in the users view.")
class CustomerActivity:
    customer: Customer
    currency: CurrencyCode
    revenue: decimal.Decimal
    spend: decimal.Decimal = strawberry.field(description="Billed usage in the range.")
    ai_cost: decimal.Decimal
    margin: decimal.Decimal
    event_count: int
    balances: list[MoneyAmount] = strawberry.field(
        description="Prepaid balances of the customer's accounts now, one per currency."
    )
    last_activity_at: dt.datetime | None
    status: ActivityStatus
    payer_segment: PayerSegment | None = strawberry.field(
        default=None, description="null: the customer paid nothing in the range."
    )
    balance: decimal.Decimal | None = strawberry.field(
        default=None,
        description="`balances` summed in `currency` at today's rates; null when a currency "
        "has no rate.",
    )

    @strawberry.field(description="The customer's ledger, newest first (drill-down).")
    async def ledger(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[LedgerEntry]:
        customer = uuid.UUID(self.customer.id)
        return await _ledger_page(info, LedgerFilter(customer_id=customer), first, after)

    @classmethod
    def of(cls, row: CustomerActivityModel) -> CustomerActivity:
        f = row.figures
        return cls(
            customer=Customer.of(row.customer),
            currency=CurrencyCode(f.currency),
            revenue=f.revenue,
            spend=f.billed_usage,
            ai_cost=f.ai_cost,
            margin=f.margin,
            event_count=f.events,
            balances=[
                MoneyAmount(currency=CurrencyCode(b.currency), amount=b.amount)
                for b in row.balances
            ],
            last_activity_at=row.last_activity_at,
            status=row.status,
            payer_segment=row.payer,
            balance=row.balance,
        )


@strawberry.type(description="Payers and unit economics over a range.")
class PayerKpis:
    currency: CurrencyCode
    active_payers: int = strawberry.field(
        description="Customers who paid in the range (subscriptions, top-ups, postpaid usage "
        "beyond the allowance)."
    )
    new_payers: int = strawberry.field(description="Active payers who had never paid before.")
    customers_served: int = strawberry.field(description="Customers with usage in the range.")
    revenue: decimal.Decimal
    ai_cost: decimal.Decimal
    arpu: decimal.Decimal | None = strawberry.field(description="revenue / activePayers.")
    average_cost_to_serve: decimal.Decimal | None = strawberry.field(
        description="aiCost / customersServed."
    )
    by_currency: list[PayerKpis] = strawberry.field(
        description="The KPIs of each entry currency's money alone, in that currency."
    )
    missing_rates: list[CurrencyPair] = strawberry.field(
        description="Pairs without a rate: money in those currencies (and customers whose "
        "money is all in them) is not in the figures above; see `byCurrency`."
    )
    comparison: Annotated[PayerKpisComparison, strawberry.lazy(_ANALYTICS)] | None = (
        strawberry.field(
            default=None,
            description="With `compareTo`: the KPIs over that range and the changes; null "
            "without it.",
        )
    )

    @classmethod
    def of(cls, k: Kpis) -> PayerKpis:
        return cls(
            by_currency=[PayerKpis.of(panel) for panel in k.by_currency],
            missing_rates=pairs(k.missing),
            currency=CurrencyCode(k.currency),
            active_payers=k.active_payers,
            new_payers=k.new_payers,
            customers_served=k.customers_served,
            revenue=k.revenue,
            ai_cost=k.ai_cost,
            arpu=k.arpu,
            average_cost_to_serve=k.average_cost_to_serve,
        )


@strawberry.input(description="An agent's expected exposure from a decision.")
class LiabilityEstimateInput:
    idempotency_key: str
    agent: str
    amount: decimal.Decimal
    currency: CurrencyCode
    occurred_at: dt.datetime | None = None
    description: str | None = None


@strawberry.type
class LiabilityEstimate:
    id: strawberry.ID
    agent: str
    amount: decimal.Decimal
    currency: CurrencyCode
    occurred_at: dt.datetime
    description: str | None

    @classmethod
    def of(cls, row: LiabilityRow) -> LiabilityEstimate:
        return cls(
            id=strawberry.ID(str(row.id)),
            agent=row.agent,
            amount=row.amount,
            currency=CurrencyCode(row.currency.strip()),
            occurred_at=row.occurred_at,
            description=row.description,
        )


@strawberry.type
class LiabilityEstimateRecorded:
    estimate: LiabilityEstimate
    replayed: bool


LiabilityEstimateResult = Annotated[
    LiabilityEstimateRecorded | ValidationFailed | IdempotencyConflict,
    strawberry.union("LiabilityEstimateResult"),
]


@strawberry.type(description="A month's P&L per scope as the monthly close recorded it.")
class MonthClose:
    month: dt.datetime
    scope_kind: ScopeKind
    scope_id: strawberry.ID
    currency: CurrencyCode
    revenue: decimal.Decimal
    ai_cost: decimal.Decimal
    billed_usage: decimal.Decimal
    platform_fees: decimal.Decimal
    margin: decimal.Decimal
    event_count: int
    tokens: int
    closed_at: dt.datetime

    @classmethod
    def of(cls, row: MonthCloseRow) -> MonthClose:
        revenue = (
            row.subscriptions + row.top_ups + row.postpaid_usage - row.refunds - row.withdrawals
        )
        return cls(
            month=row.month,
            scope_kind=ScopeKind(row.scope_kind),
            scope_id=strawberry.ID(str(row.scope_id)),
            currency=CurrencyCode(row.currency.strip()),
            revenue=revenue,
            ai_cost=row.ai_cost,
            billed_usage=row.billed_usage,
            platform_fees=row.platform_fees,
            margin=revenue - row.ai_cost - row.platform_fees,
            event_count=row.events,
            tokens=row.tokens,
            closed_at=row.closed_at,
        )
