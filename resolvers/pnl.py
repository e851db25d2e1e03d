"""P&L at every level, its timeline, usage analytics, the users view and KPIs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.auth.permissions import Right
from costgraph.billing import (
    liabilities,
    month_close,
    payers,
    pnl,
    pnl_compare,
    usage_analytics,
    usage_compare,
)
from costgraph.billing.comparisons import pair_by_offset, require_compare_range
from costgraph.billing.directory import OrgContext
from costgraph.billing.pnl import Scope, ScopeKind
from costgraph.billing.pnl_ranges import TimeBucket, require_range
from costgraph.billing.segments import Segment
from costgraph.billing.usage_analytics import UsageDimension
from costgraph.kernel.errors import ValidationFailed
from costgraph.models.scoping import bind_platform
from costgraph.resolvers.access import needs
from costgraph.resolvers.errors import result_of
from costgraph.resolvers.ids import decode_id, decode_optional
from costgraph.schema import analytics
from costgraph.schema import pnl as types
from costgraph.schema.inputs import DateRange
from costgraph.schema.scalars import CurrencyCode
from costgraph.schema.types import Info


async def _pnl(
    info: Info,
    scope: Scope,
    range: DateRange,
    currency: str | None,
    field: str = "scope",
    compare_to: DateRange | None = None,
) -> types.PnL:
    org = await info.context.org()
    limits = types.report_limits(info)
    async with info.context.reading() as session:
        report = await pnl.open_report(
            session, org, scope, range.start, range.end, currency, limits, scope_field=field
        )
        totaled = await pnl.summarize(session, report)
        compared = None
        if compare_to is not None:
            compared = await pnl_compare.compare(
                session, report, totaled, compare_to.start, compare_to.end, limits
            )
    result = types.PnL.of(report, totaled)
    if compared is not None:
        result.comparison = analytics.PnLComparison.of(compared)
    return result


_COMPARE_TO = strawberry.argument(
    description="Another range (e.g. the previous period): the answer's `comparison` has the "
    "figures over it and their absolute and relative changes."
)


def _scope(value: types.PnLScopeInput) -> Scope:
    if value.kind is ScopeKind.ORGANIZATION:
        if value.id is not None:
            raise ValidationFailed("an ORGANIZATION scope takes no id", "scope.id")
        return Scope(ScopeKind.ORGANIZATION, agent=value.agent)
    if value.id is None:
        raise ValidationFailed(f"a {value.kind.value} scope needs its id", "scope.id")
    return Scope(value.kind, decode_id(value.id, value.kind.value.lower(), "scope.id"), value.agent)


async def _report_currency(info: Info, currency: str | None) -> str:
    return currency or (await info.context.org()).reporting_currency


_Row = TypeVar("_Row")
_PayerView = Callable[
    [AsyncSession, OrgContext, dt.datetime, dt.datetime, str, int, Segment | None],
    Awaitable[list[_Row]],
]


async def _payer_view(
    info: Info,
    view: _PayerView[_Row],
    range: DateRange,
    currency: CurrencyCode | None,
    limit: int,
    segment: analytics.SegmentInput | None = None,
) -> list[_Row]:
    """``usersView``/``customersView``: the range and limit checked, then ``view`` read."""
    org = await info.context.org()
    limits = types.report_limits(info)
    start, end = require_range(range.start, range.end, limits)
    pnl.require_limit(limit, limits)
    target = await _report_currency(info, currency)
    wanted = None if segment is None else segment.to_model()
    async with info.context.reading() as session:
        return await view(session, org, start, end, target, limit, wanted)


@strawberry.type
class PnLQuery:
    @strawberry.field(
        description="An account's P&L over a range.", extensions=[needs(Right.READ_LEDGER)]
    )
    async def account_pnl(
        self,
        info: Info,
        account_id: strawberry.ID,
        range: DateRange,
        currency: CurrencyCode | None = None,
        compare_to: Annotated[DateRange | None, _COMPARE_TO] = None,
    ) -> types.PnL:
        ident = decode_id(account_id, "account", "accountId")
        scope = Scope(ScopeKind.ACCOUNT, ident)
        return await _pnl(info, scope, range, currency, "accountId", compare_to)

    @strawberry.field(
        description="A customer's P&L (all its accounts) over a range.",
        extensions=[needs(Right.READ_LEDGER)],
    )
    async def customer_pnl(
        self,
        info: Info,
        customer_id: strawberry.ID,
        range: DateRange,
        currency: CurrencyCode | None = None,
        compare_to: Annotated[DateRange | None, _COMPARE_TO] = None,
    ) -> types.PnL:
        ident = decode_id(customer_id, "customer", "customerId")
        scope = Scope(ScopeKind.CUSTOMER, ident)
        return await _pnl(info, scope, range, currency, "customerId", compare_to)

    @strawberry.field(
        description="The organisation's P&L; with `agent`, that agent's entries only.",
        extensions=[needs(Right.READ_LEDGER)],
    )
    async def organization_pnl(
        self,
        info: Info,
        range: DateRange,
        currency: CurrencyCode | None = None,
        agent: str | None = None,
        compare_to: Annotated[DateRange | None, _COMPARE_TO] = None,
    ) -> types.PnL:
        scope = Scope(ScopeKind.ORGANIZATION, agent=agent)
        return await _pnl(info, scope, range, currency, "scope", compare_to)

    @strawberry.field(
        description="Every organisation's P&L and the total (platform_admin).",
        extensions=[needs(Right.PLATFORM)],
    )
    async def platform_pnl(
        self, info: Info, range: DateRange, currency: CurrencyCode | None = None
    ) -> types.PlatformPnL:
        target = currency or info.context.app.settings.platform_currency
        async with info.context.app.sessions() as session:
            bind_platform(session.sync_session)
            report = await pnl.platform(
                session, range.start, range.end, target, types.report_limits(info)
            )
        start, end = require_range(range.start, range.end, types.report_limits(info))
        return types.PlatformPnL.of(report, start, end)

    @strawberry.field(
        description="The P&L figures per UTC bucket, every bucket of the range included.",
        extensions=[needs(Right.READ_LEDGER)],
    )
    async def pnl_timeline(
        self,
        info: Info,
        scope: types.PnLScopeInput,
        range: DateRange,
        bucket: TimeBucket,
        currency: CurrencyCode | None = None,
        compare_to: Annotated[
            DateRange | None,
            strawberry.argument(
                description="The previous period (or any range): each point's `previous` is "
                "its bucket at the same offset."
            ),
        ] = None,
    ) -> list[types.PnLPoint]:
        org = await info.context.org()
        limits = types.report_limits(info)
        async with info.context.reading() as session:
            report = await pnl.open_report(
                session,
                org,
                _scope(scope),
                range.start,
                range.end,
                currency,
                limits,
                scope_field="scope.id",
            )
            points = await pnl.timeline(session, report, bucket, limits)
            if compare_to is None:
                return [types.PnLPoint.of(point) for point in points]
            previous = await pnl_compare.timeline_previous(
                session, report, bucket, compare_to.start, compare_to.end, limits
            )
        return [
            types.PnLPoint.of(point, before)
            for point, before in pair_by_offset(points, previous)
            if point is not None
        ]

    @strawberry.field(
        description="Tokens, events, AI cost and billed usage per group (and UTC bucket).",
        extensions=[needs(Right.READ_USAGE)],
    )
    async def usage(
        self,
        info: Info,
        range: DateRange,
        group_by: list[UsageDimension],
        bucket: TimeBucket | None = None,
        filter: types.UsageFilter | None = None,
        currency: CurrencyCode | None = None,
        compare_to: Annotated[
            DateRange | None,
            strawberry.argument(
                description="Another range: each row's `comparison` has the same group over it "
                "(bucketed rows matched by bucket offset); groups of that range only come as "
                "rows with zero figures."
            ),
        ] = None,
    ) -> list[types.UsageRow]:
        org = await info.context.org()
        wanted = None if filter is None else _usage_filter(filter)
        if compare_to is not None:
            async with info.context.reading() as session:
                changes = await usage_compare.usage_compared(
                    session,
                    org,
                    range.start,
                    range.end,
                    (compare_to.start, compare_to.end),
                    group_by,
                    bucket,
                    wanted,
                    currency,
                    types.report_limits(info),
                )
            result = []
            for found in changes:
                row = types.UsageRow.of(found.row)
                row.comparison = analytics.UsageComparison.of(found)
                result.append(row)
            return result
        async with info.context.reading() as session:
            rows = await usage_analytics.usage(
                session,
                org,
                range.start,
                range.end,
                group_by,
                bucket,
                wanted,
                currency,
                types.report_limits(info),
            )
        return [types.UsageRow.of(row) for row in rows]

    @strawberry.field(
        description="Users by spend over a range: spend, last activity, status.",
        extensions=[needs(Right.READ_LEDGER)],
    )
    async def users_view(
        self,
        info: Info,
        range: DateRange,
        currency: CurrencyCode | None = None,
        limit: int = 50,
        segment: analytics.SegmentInput | None = None,
    ) -> list[types.UserActivity]:
        rows = await _payer_view(info, payers.users_view, range, currency, limit, segment)
        return [types.UserActivity.of(row) for row in rows]

    @strawberry.field(
        description="Customers by spend over a range: revenue, balances, last activity, status.",
        extensions=[needs(Right.READ_LEDGER)],
    )
    async def customers_view(
        self,
        info: Info,
        range: DateRange,
        currency: CurrencyCode | None = None,
        limit: int = 50,
        segment: analytics.SegmentInput | None = None,
    ) -> list[types.CustomerActivity]:
        rows = await _payer_view(info, payers.customers_view, range, currency, limit, segment)
        return [types.CustomerActivity.of(row) for row in rows]

    @strawberry.field(
        description="Active and new payers, ARPU and average cost to serve over a range.",
        extensions=[needs(Right.READ_LEDGER)],
    )
    async def payer_kpis(
        self,
        info: Info,
        range: DateRange,
        currency: CurrencyCode | None = None,
        compare_to: Annotated[DateRange | None, _COMPARE_TO] = None,
        segment: analytics.SegmentInput | None = None,
    ) -> types.PayerKpis:
        org = await info.context.org()
        limits = types.report_limits(info)
        start, end = require_range(range.start, range.end, limits)
        before = None
        if compare_to is not None:
            before = require_compare_range(compare_to.start, compare_to.end, limits)
        target = await _report_currency(info, currency)
        wanted = None if segment is None else segment.to_model()
        async with info.context.reading() as session:
            kpis = await payers.kpis(session, org, start, end, target, wanted)
            previous = None
            if before is not None:
                previous = await payers.kpis(session, org, *before, target, wanted)
        result = types.PayerKpis.of(kpis)
        if before is not None and previous is not None:
            result.comparison = analytics.PayerKpisComparison.of(kpis, previous, *before)
        return result

    @strawberry.field(
        description="The closed P&L of a month (any instant in it), per scope and currency.",
        extensions=[needs(Right.READ_LEDGER)],
    )
    async def monthly_closes(self, info: Info, month: dt.datetime) -> list[types.MonthClose]:
        async with info.context.reading() as session:
            rows = await month_close.closes(session, month)
        return [types.MonthClose.of(row) for row in rows]


def _usage_filter(value: types.UsageFilter) -> usage_analytics.UsageFilter:
    return usage_analytics.UsageFilter(
        account_id=decode_optional(value.account_id, "account", "filter.accountId"),
        customer_id=decode_optional(value.customer_id, "customer", "filter.customerId"),
        department_id=decode_optional(value.department_id, "department", "filter.departmentId"),
        user_id=decode_optional(value.user_id, "user", "filter.userId"),
        provider=value.provider,
        model=value.model,
        feature=value.feature,
        agent=value.agent,
    )


@strawberry.type
class PnLMutation:
    @strawberry.mutation(
        description="Record an agent's liability estimate (reported beside the P&L).",
        extensions=[needs(Right.WRITE_BILLING)],
    )
    async def record_liability_estimate(
        self, info: Info, input: types.LiabilityEstimateInput
    ) -> types.LiabilityEstimateResult:
        context = info.context

        async def run() -> types.LiabilityEstimateRecorded:
            estimate = liabilities.NewEstimate(
                idempotency_key=input.idempotency_key,
                agent=input.agent,
                amount=input.amount,
                currency=input.currency,
                occurred_at=input.occurred_at,
                description=input.description,
            )
            row, replayed = await context.write(
                lambda uow: liabilities.record(uow.session, uow.org, estimate, context.app.limits)
            )
            return types.LiabilityEstimateRecorded(
                estimate=types.LiabilityEstimate.of(row), replayed=replayed
            )

        return await result_of(run)
