"""Return on each feature (the ``feature`` tag of usage) over a range, and against another.

Per feature (entries without a feature make one row of their own, ``feature`` None):

- **AI cost** and **billed usage** of its usage;
- **revenue**: the revenue attributed to its usage = usage charged beyond the plans'
  allowances (``charged_usage``, migration 0015; the ``ATTRIBUTED`` reading of
  :mod:`costgraph.billing.pnl_measures`): usage the allowance covered was paid by the fee,
  which stays with the payer;
- **margin** = revenue - AI cost (platform fees carry no feature);
- **active users**: distinct users with a usage event of the feature in the range;
- **requests**: its usage events; **requests per user** = requests / active users and
  **cost per active user** = AI cost / active users (None without active users). Both divide
  the feature's whole figure, events without a user included.

Money is converted entry-time-exact into the report's currency; a currency without a rate is
left out (its users too, as the KPIs leave out payers) and named in ``missing``;
``by_currency`` has each entry currency's features in its own money.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import pnl_conversion as conversion
from costgraph.billing import pnl_repository as repo
from costgraph.billing.comparisons import (
    Change,
    CountChange,
    OptionalChange,
    require_compare_range,
    union_missing,
)
from costgraph.billing.cost_formula import EXACT
from costgraph.billing.directory import OrgContext
from costgraph.billing.fx import CurrencyPair
from costgraph.billing.ledger_repository import driver_connection
from costgraph.billing.pnl import require_report_currency
from costgraph.billing.pnl_measures import RevenueBasis, Totals, reported
from costgraph.billing.pnl_ranges import ReportLimits, require_range
from costgraph.kernel.money import QUANTUM

ATTRIBUTED = RevenueBasis.ATTRIBUTED


@dataclass(frozen=True, slots=True)
class FeatureFigures:
    feature: str | None
    currency: str
    ai_cost: Decimal
    billed_usage: Decimal
    revenue: Decimal
    margin: Decimal
    requests: int
    active_users: int
    requests_per_user: Decimal | None
    cost_per_active_user: Decimal | None

    @classmethod
    def of(cls, feature: str | None, currency: str, totals: Totals, users: int) -> FeatureFigures:
        return cls(
            feature=feature,
            currency=currency,
            ai_cost=reported(totals.ai_cost),
            billed_usage=reported(totals.billed_usage),
            revenue=reported(totals.revenue_on(ATTRIBUTED)),
            margin=reported(totals.net_impact(ATTRIBUTED)),
            requests=totals.events,
            active_users=users,
            requests_per_user=_per_head(Decimal(totals.events), users),
            cost_per_active_user=_per_head(totals.ai_cost, users),
        )


@dataclass(frozen=True, slots=True)
class FeatureChange:
    ai_cost: Change
    billed_usage: Change
    revenue: Change
    margin: Change
    requests: CountChange
    active_users: CountChange
    requests_per_user: OptionalChange
    cost_per_active_user: OptionalChange

    @classmethod
    def of(cls, now: FeatureFigures, before: FeatureFigures) -> FeatureChange:
        return cls(
            Change.of(now.ai_cost, before.ai_cost),
            Change.of(now.billed_usage, before.billed_usage),
            Change.of(now.revenue, before.revenue),
            Change.of(now.margin, before.margin),
            CountChange.of(now.requests, before.requests),
            CountChange.of(now.active_users, before.active_users),
            OptionalChange.of(now.requests_per_user, before.requests_per_user),
            OptionalChange.of(now.cost_per_active_user, before.cost_per_active_user),
        )


@dataclass(frozen=True, slots=True)
class FeatureRow:
    figures: FeatureFigures
    previous: FeatureFigures | None = None
    change: FeatureChange | None = None


@dataclass(frozen=True, slots=True)
class FeatureRoiReport:
    currency: str
    start: datetime
    end: datetime
    features: tuple[FeatureRow, ...]
    compare_start: datetime | None = None
    compare_end: datetime | None = None
    by_currency: tuple[FeatureRoiReport, ...] = ()
    missing: tuple[CurrencyPair, ...] = field(default=())


def _per_head(amount: Decimal, heads: int) -> Decimal | None:
    if heads == 0:
        return None
    return EXACT.divide(amount, Decimal(heads)).quantize(
        QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT
    )


def _features(rows: list[conversion.Converted], currency: str) -> dict[str | None, FeatureFigures]:
    """Rows per (feature, user), summed per feature; users counted where they had events."""
    totals: dict[str | None, Totals] = defaultdict(Totals)
    users: dict[str | None, set[uuid.UUID]] = defaultdict(set)
    for row in rows:
        feature, user = row.key
        if not row.totals.has_usage():
            continue
        totals[feature].add(row.totals)
        if user is not None and row.totals.events > 0:
            users[feature].add(user)
    return {f: FeatureFigures.of(f, currency, t, len(users[f])) for f, t in totals.items()}


async def _read(
    session: AsyncSession, org: OrgContext, start: datetime, end: datetime, target: str
) -> conversion.Conversion:
    connection = await driver_connection(session)
    query = repo.MeasureQuery((org.id,), start, end, group_by=("feature", "user"))
    return await conversion.convert_one(session, connection, org.id, query, target)


def _order(row: FeatureRow) -> tuple[Decimal, Decimal, str]:
    return (-row.figures.ai_cost, -row.figures.revenue, row.figures.feature or "")


def _rows(
    currency: str,
    now: dict[str | None, FeatureFigures],
    before: dict[str | None, FeatureFigures] | None,
) -> tuple[FeatureRow, ...]:
    if before is None:
        return tuple(sorted((FeatureRow(f) for f in now.values()), key=_order))
    rows = []
    for feature in now.keys() | before.keys():
        this = now.get(feature) or FeatureFigures.of(feature, currency, Totals(), 0)
        that = before.get(feature) or FeatureFigures.of(feature, currency, Totals(), 0)
        rows.append(FeatureRow(this, that, FeatureChange.of(this, that)))
    return tuple(sorted(rows, key=_order))


async def feature_roi(
    session: AsyncSession,
    org: OrgContext,
    start: datetime,
    end: datetime,
    compare: tuple[datetime, datetime] | None,
    currency: str | None,
    limits: ReportLimits,
) -> FeatureRoiReport:
    start, end = require_range(start, end, limits)
    target = require_report_currency(currency, org.reporting_currency, "currency")
    previous = None
    if compare is not None:
        compare = require_compare_range(compare[0], compare[1], limits)
    current = await _read(session, org, start, end, target)
    if compare is not None:
        previous = await _read(session, org, compare[0], compare[1], target)
    panels = []
    currencies = set(current.by_currency) | set(previous.by_currency if previous else ())
    for own in sorted(currencies):
        mine = _features(current.by_currency.get(own, []), own)
        theirs = None if previous is None else _features(previous.by_currency.get(own, []), own)
        rows = _rows(own, mine, theirs)
        panels.append(FeatureRoiReport(own, start, end, rows, *(compare or (None, None))))
    before = None if previous is None else _features(previous.rows, target)
    return FeatureRoiReport(
        currency=target,
        start=start,
        end=end,
        features=_rows(target, _features(current.rows, target), before),
        compare_start=None if compare is None else compare[0],
        compare_end=None if compare is None else compare[1],
        by_currency=tuple(panels),
        missing=union_missing(current.missing, () if previous is None else previous.missing),
    )
