"""Analytics types: period comparisons (changes), payer segments, cohorts and feature ROI."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import strawberry

from costgraph.billing import comparisons as model
from costgraph.billing import pnl_compare
from costgraph.billing.cohorts import Cohort as CohortModel
from costgraph.billing.cohorts import CohortBasis, CohortReport
from costgraph.billing.feature_roi import FeatureFigures, FeatureRoiReport
from costgraph.billing.feature_roi import FeatureRow as FeatureRowModel
from costgraph.billing.payers import Kpis
from costgraph.billing.pnl import require_limit
from costgraph.billing.segments import PayerSegment, Segment
from costgraph.billing.usage_compare import UsageChange
from costgraph.schema.currencies import CurrencyPair, pairs
from costgraph.schema.pnl import PayerKpis, PnL, PnLTotals, figures_fields, report_limits
from costgraph.schema.scalars import CurrencyCode
from costgraph.schema.types import Info

strawberry.enum(
    CohortBasis,
    name="CohortBasis",
    description="PAYMENT: a payer's cohort is the month of its first payment; USAGE: of its "
    "first usage.",
)

_RELATIVE = (
    "(current - previous) / |previous| x 100, 4 decimal places: positive when the figure grew; "
    "null when previous is 0."
)


@strawberry.type(description="A figure in the range (`current`) and in `compareTo` (`previous`).")
class Change:
    current: decimal.Decimal
    previous: decimal.Decimal
    absolute: decimal.Decimal = strawberry.field(description="current - previous.")
    relative: decimal.Decimal | None = strawberry.field(description=_RELATIVE)

    @classmethod
    def of(cls, c: model.Change) -> Change:
        return cls(current=c.current, previous=c.previous, absolute=c.absolute, relative=c.relative)


@strawberry.type(description="A count in the range and in `compareTo`.")
class CountChange:
    current: int
    previous: int
    absolute: int = strawberry.field(description="current - previous.")
    relative: decimal.Decimal | None = strawberry.field(description=_RELATIVE)

    @classmethod
    def of(cls, c: model.CountChange) -> CountChange:
        return cls(current=c.current, previous=c.previous, absolute=c.absolute, relative=c.relative)


@strawberry.type(
    description="A figure that may be undefined in a period (a ratio over no payers, a margin "
    "% over no revenue): `absolute` and `relative` are null unless both periods have it."
)
class OptionalChange:
    current: decimal.Decimal | None
    previous: decimal.Decimal | None
    absolute: decimal.Decimal | None
    relative: decimal.Decimal | None = strawberry.field(description=_RELATIVE)

    @classmethod
    def of(cls, c: model.OptionalChange) -> OptionalChange:
        return cls(current=c.current, previous=c.previous, absolute=c.absolute, relative=c.relative)


@strawberry.interface(description="The change of each P&L figure between two periods.")
class FigureChanges:
    currency: CurrencyCode
    revenue: Change
    ai_cost: Change
    billed_usage: Change
    markup_earned: Change
    platform_fees: Change
    margin: Change
    margin_percent: OptionalChange
    event_count: CountChange
    tokens: CountChange


def _changes(c: model.FiguresChange) -> dict[str, object]:
    return {
        "currency": CurrencyCode(c.current.currency),
        "revenue": Change.of(c.money["revenue"]),
        "ai_cost": Change.of(c.money["ai_cost"]),
        "billed_usage": Change.of(c.money["billed_usage"]),
        "markup_earned": Change.of(c.money["markup"]),
        "platform_fees": Change.of(c.money["platform_fees"]),
        "margin": Change.of(c.money["margin"]),
        "margin_percent": OptionalChange.of(c.margin_percent),
        "event_count": CountChange.of(c.counts["events"]),
        "tokens": CountChange.of(c.counts["tokens"]),
    }


@strawberry.type(description="One entry currency's P&L in its own money, in both periods.")
class FiguresComparison(FigureChanges):
    previous: PnLTotals

    @classmethod
    def of(cls, c: model.FiguresChange) -> FiguresComparison:
        return cls(previous=PnLTotals(**figures_fields(c.previous)), **_changes(c))  # type: ignore[arg-type]


@strawberry.type(description="One model (or other key) in both periods.")
class BreakdownComparison(FigureChanges):
    key: str
    provider: str | None
    model: str | None

    @classmethod
    def of(cls, row: pnl_compare.BreakdownChange) -> BreakdownComparison:
        key = row.key
        return cls(
            key="/".join(str(key[d]) for d in key if key[d] is not None),
            provider=key.get("provider"),
            model=key.get("model"),
            **_changes(row.change),  # type: ignore[arg-type]
        )


@strawberry.type(description="A P&L against the same P&L over `compareTo`.")
class PnLComparison(FigureChanges):
    start: dt.datetime = strawberry.field(description="The comparison range's start.")
    end: dt.datetime
    previous: PnL = strawberry.field(description="The same P&L over the comparison range.")
    found: strawberry.Private[pnl_compare.PnLComparison]

    @strawberry.field(
        description="Each entry currency of either period, in its own money, both periods."
    )
    def by_currency(self) -> list[FiguresComparison]:
        return [FiguresComparison.of(c) for c in self.found.by_currency]

    @strawberry.field(
        description="Pairs without a rate in either period: entries in those `base` "
        "currencies are left out of the period in which they have none (see `byCurrency`)."
    )
    def missing_rates(self) -> list[CurrencyPair]:
        return pairs(self.found.missing)

    @strawberry.field(
        description="By provider and model, matched across the periods (a model of one period "
        "only has zeros in the other); largest revenue attributed first, then margin."
    )
    async def by_model(self, info: Info, limit: int | None = None) -> list[BreakdownComparison]:
        if limit is not None:
            require_limit(limit, report_limits(info))
        async with info.context.reading() as session:
            rows = await pnl_compare.breakdown_changes(session, self.found, ("provider", "model"))
        return [BreakdownComparison.of(r) for r in (rows if limit is None else rows[:limit])]

    @classmethod
    def of(cls, found: pnl_compare.PnLComparison) -> PnLComparison:
        before = found.previous_report
        return cls(
            start=before.start,
            end=before.end,
            previous=PnL.of(before, found.previous),
            found=found,
            **_changes(found.change),  # type: ignore[arg-type]
        )


@strawberry.type(description="Usage figures of a group over the comparison range.")
class UsageFigures:
    currency: CurrencyCode
    events: int
    tokens: int
    ai_cost: decimal.Decimal
    billed_usage: decimal.Decimal


@strawberry.type(description="A usage row against the same group over `compareTo`.")
class UsageComparison:
    previous: UsageFigures
    events: CountChange
    tokens: CountChange
    ai_cost: Change
    billed_usage: Change

    @classmethod
    def of(cls, found: UsageChange) -> UsageComparison:
        c = found.change
        before = c.previous
        return cls(
            previous=UsageFigures(
                currency=CurrencyCode(before.currency),
                events=before.events,
                tokens=before.tokens,
                ai_cost=before.ai_cost,
                billed_usage=before.billed_usage,
            ),
            events=CountChange.of(c.counts["events"]),
            tokens=CountChange.of(c.counts["tokens"]),
            ai_cost=Change.of(c.money["ai_cost"]),
            billed_usage=Change.of(c.money["billed_usage"]),
        )


@strawberry.type(description="Payer KPIs against the same KPIs over `compareTo`.")
class PayerKpisComparison:
    start: dt.datetime
    end: dt.datetime
    previous: PayerKpis
    active_payers: CountChange
    new_payers: CountChange
    customers_served: CountChange
    revenue: Change
    ai_cost: Change
    arpu: OptionalChange
    average_cost_to_serve: OptionalChange

    @classmethod
    def of(
        cls, now: Kpis, before: Kpis, start: dt.datetime, end: dt.datetime
    ) -> PayerKpisComparison:
        return cls(
            start=start,
            end=end,
            previous=PayerKpis.of(before),
            active_payers=CountChange.of(
                model.CountChange.of(now.active_payers, before.active_payers)
            ),
            new_payers=CountChange.of(model.CountChange.of(now.new_payers, before.new_payers)),
            customers_served=CountChange.of(
                model.CountChange.of(now.customers_served, before.customers_served)
            ),
            revenue=Change.of(model.Change.of(now.revenue, before.revenue)),
            ai_cost=Change.of(model.Change.of(now.ai_cost, before.ai_cost)),
            arpu=OptionalChange.of(model.OptionalChange.of(now.arpu, before.arpu)),
            average_cost_to_serve=OptionalChange.of(
                model.OptionalChange.of(now.average_cost_to_serve, before.average_cost_to_serve)
            ),
        )


@strawberry.input(
    description="A segment of payers: one kind of payer, and/or a balance band "
    "[balanceAtLeast, balanceBelow) in the view's currency (either bound optional; a payer "
    "whose balance is unknown is in no band)."
)
class SegmentInput:
    payers: PayerSegment | None = None
    balance_at_least: decimal.Decimal | None = None
    balance_below: decimal.Decimal | None = None

    def to_model(self) -> Segment:
        return Segment(self.payers, self.balance_at_least, self.balance_below)


@strawberry.type(description="One month of a cohort, clipped to the range.")
class CohortCell:
    month_index: int = strawberry.field(description="Months since the cohort's month (0 = it).")
    start: dt.datetime
    end: dt.datetime
    active_payers: int = strawberry.field(
        description="The cohort's payers who paid (PAYMENT) or used (USAGE) that month."
    )
    retention: decimal.Decimal = strawberry.field(
        description="activePayers / the cohort's size x 100, 4 decimal places."
    )
    revenue: decimal.Decimal = strawberry.field(description="Money received from the cohort.")
    ai_cost: decimal.Decimal
    platform_fees: decimal.Decimal
    margin: decimal.Decimal = strawberry.field(description="revenue - aiCost - platformFees.")
    arpu: decimal.Decimal | None = strawberry.field(description="revenue / activePayers.")


@strawberry.type(description="The payers whose first payment (or usage) fell in one month.")
class Cohort:
    month: dt.datetime = strawberry.field(description="The cohort's month, clipped to the range.")
    size: int
    customer_ids: list[strawberry.ID]
    cells: list[CohortCell]

    @classmethod
    def of(cls, c: CohortModel) -> Cohort:
        return cls(
            month=c.month,
            size=c.size,
            customer_ids=[strawberry.ID(str(i)) for i in c.customers],
            cells=[
                CohortCell(
                    month_index=cell.month_index,
                    start=cell.start,
                    end=cell.end,
                    active_payers=cell.active,
                    retention=cell.retention,
                    revenue=cell.figures.revenue,
                    ai_cost=cell.figures.ai_cost,
                    platform_fees=cell.figures.platform_fees,
                    margin=cell.figures.margin,
                    arpu=cell.arpu,
                )
                for cell in c.cells
            ],
        )


@strawberry.type(description="The retention triangle: payer cohorts by month.")
class Cohorts:
    currency: CurrencyCode
    basis: CohortBasis
    start: dt.datetime
    end: dt.datetime
    cohorts: list[Cohort]
    by_currency: list[Cohorts] = strawberry.field(
        description="The same cohorts with each entry currency's money alone, in that currency."
    )
    missing_rates: list[CurrencyPair] = strawberry.field(
        description="Pairs without a rate: money in those currencies is not in the figures "
        "above (nor does it make a payer active); see `byCurrency`."
    )

    @classmethod
    def of(cls, r: CohortReport) -> Cohorts:
        return cls(
            currency=CurrencyCode(r.currency),
            basis=r.basis,
            start=r.start,
            end=r.end,
            cohorts=[Cohort.of(c) for c in r.cohorts],
            by_currency=[Cohorts.of(panel) for panel in r.by_currency],
            missing_rates=pairs(r.missing),
        )


def _feature_fields(f: FeatureFigures) -> dict[str, Any]:
    """The figures of :class:`FeatureFiguresType`, which :class:`FeatureRoi` extends."""
    return {
        "currency": CurrencyCode(f.currency),
        "ai_cost": f.ai_cost,
        "billed_usage": f.billed_usage,
        "revenue": f.revenue,
        "margin": f.margin,
        "requests": f.requests,
        "active_users": f.active_users,
        "requests_per_user": f.requests_per_user,
        "cost_per_active_user": f.cost_per_active_user,
    }


@strawberry.type(name="FeatureFigures", description="A feature's return over a range.")
class FeatureFiguresType:
    currency: CurrencyCode
    ai_cost: decimal.Decimal
    billed_usage: decimal.Decimal
    revenue: decimal.Decimal = strawberry.field(
        description="Revenue attributed: its usage charged beyond the plans' allowances."
    )
    margin: decimal.Decimal = strawberry.field(description="revenue - aiCost.")
    requests: int = strawberry.field(description="Usage events.")
    active_users: int = strawberry.field(description="Distinct users with a usage event.")
    requests_per_user: decimal.Decimal | None = strawberry.field(
        description="requests / activeUsers; null without active users."
    )
    cost_per_active_user: decimal.Decimal | None = strawberry.field(
        description="aiCost / activeUsers; null without active users."
    )

    @classmethod
    def of(cls, f: FeatureFigures) -> FeatureFiguresType:
        return cls(**_feature_fields(f))


@strawberry.type(description="A feature's changes against `compareTo`.")
class FeatureChange:
    ai_cost: Change
    billed_usage: Change
    revenue: Change
    margin: Change
    requests: CountChange
    active_users: CountChange
    requests_per_user: OptionalChange
    cost_per_active_user: OptionalChange


@strawberry.type(description="One feature (null: usage without a feature tag).")
class FeatureRoi(FeatureFiguresType):
    feature: str | None
    previous: FeatureFiguresType | None = strawberry.field(
        description="Over `compareTo` (null without it)."
    )
    change: FeatureChange | None

    @classmethod
    def of_row(cls, row: FeatureRowModel) -> FeatureRoi:
        f = row.figures
        change = None
        if row.change is not None:
            c = row.change
            change = FeatureChange(
                ai_cost=Change.of(c.ai_cost),
                billed_usage=Change.of(c.billed_usage),
                revenue=Change.of(c.revenue),
                margin=Change.of(c.margin),
                requests=CountChange.of(c.requests),
                active_users=CountChange.of(c.active_users),
                requests_per_user=OptionalChange.of(c.requests_per_user),
                cost_per_active_user=OptionalChange.of(c.cost_per_active_user),
            )
        return cls(
            feature=f.feature,
            previous=None if row.previous is None else FeatureFiguresType.of(row.previous),
            change=change,
            **_feature_fields(f),
        )


@strawberry.type(
    name="FeatureRoiReport", description="Return on each feature: largest AI cost first."
)
class FeatureRoiReportType:
    currency: CurrencyCode
    start: dt.datetime
    end: dt.datetime
    compare_start: dt.datetime | None
    compare_end: dt.datetime | None
    features: list[FeatureRoi]
    by_currency: list[FeatureRoiReportType] = strawberry.field(
        description="Each entry currency's features in its own money."
    )
    missing_rates: list[CurrencyPair] = strawberry.field(
        description="Pairs without a rate in either period: money (and users) in those "
        "currencies is not in the figures above; see `byCurrency`."
    )

    @classmethod
    def of(cls, r: FeatureRoiReport) -> FeatureRoiReportType:
        return cls(
            currency=CurrencyCode(r.currency),
            start=r.start,
            end=r.end,
            compare_start=r.compare_start,
            compare_end=r.compare_end,
            features=[FeatureRoi.of_row(row) for row in r.features],
            by_currency=[FeatureRoiReportType.of(p) for p in r.by_currency],
            missing_rates=pairs(r.missing),
        )
