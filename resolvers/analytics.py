"""Payer cohorts and feature ROI (comparisons and segments ride on the P&L queries)."""

from __future__ import annotations

import strawberry

from costgraph.auth.permissions import Right
from costgraph.billing import cohorts as cohort_reports
from costgraph.billing import feature_roi as roi
from costgraph.billing.cohorts import CohortBasis
from costgraph.resolvers.access import needs
from costgraph.schema import analytics
from costgraph.schema.inputs import DateRange
from costgraph.schema.pnl import report_limits
from costgraph.schema.scalars import CurrencyCode
from costgraph.schema.types import Info


@strawberry.type
class AnalyticsQuery:
    @strawberry.field(
        description="Payers (customers) grouped by the month of their first payment (PAYMENT) "
        "or first usage (USAGE): per cohort and month since, active payers, revenue, AI cost, "
        "margin and ARPU — the retention triangle.",
        extensions=[needs(Right.READ_LEDGER)],
    )
    async def cohorts(
        self,
        info: Info,
        range: DateRange,
        basis: CohortBasis = CohortBasis.PAYMENT,
        currency: CurrencyCode | None = None,
    ) -> analytics.Cohorts:
        org = await info.context.org()
        async with info.context.reading() as session:
            report = await cohort_reports.cohorts(
                session, org, range.start, range.end, basis, currency, report_limits(info)
            )
        return analytics.Cohorts.of(report)

    @strawberry.field(
        description="Per feature: AI cost, billed usage, revenue attributed, margin, active "
        "users, requests per user and cost per active user; with `compareTo`, against it.",
        extensions=[needs(Right.READ_LEDGER)],
    )
    async def feature_roi(
        self,
        info: Info,
        range: DateRange,
        compare_to: DateRange | None = None,
        currency: CurrencyCode | None = None,
    ) -> analytics.FeatureRoiReportType:
        org = await info.context.org()
        compare = None if compare_to is None else (compare_to.start, compare_to.end)
        async with info.context.reading() as session:
            report = await roi.feature_roi(
                session, org, range.start, range.end, compare, currency, report_limits(info)
            )
        return analytics.FeatureRoiReportType.of(report)
