"""Profit and loss of an account, a customer, the organisation (optionally one agent's part of
it) and the whole platform, over a range, in a reporting currency; and the same bucketed.

Figures are defined in :mod:`costgraph.billing.pnl_measures`, summed exactly by
:mod:`costgraph.billing.pnl_repository` (rollups + raw edges + the not-yet-rolled-up tail) and
converted entry-time-exact by :mod:`costgraph.billing.pnl_conversion`. Another tenant's
account or customer answers exactly as an unknown one: ``NOT_FOUND``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import pnl_conversion as conversion
from costgraph.billing import pnl_repository as repo
from costgraph.billing.directory import OrgContext
from costgraph.billing.ledger_repository import driver_connection
from costgraph.billing.pnl_measures import Figures, Totals
from costgraph.billing.pnl_ranges import (
    ReportLimits,
    TimeBucket,
    buckets,
    require_points,
    require_range,
)
from costgraph.billing.validation import TAG_MAX
from costgraph.kernel.errors import NotFound, ValidationFailed
from costgraph.kernel.money import require_currency
from costgraph.models import Organization


class ScopeKind(enum.StrEnum):
    ORGANIZATION = "ORGANIZATION"
    CUSTOMER = "CUSTOMER"
    ACCOUNT = "ACCOUNT"


@dataclass(frozen=True, slots=True)
class Scope:
    kind: ScopeKind
    id: uuid.UUID | None = None
    #: Only entries carrying this agent (any scope kind).
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """A validated request: whose entries, which range, which currency."""

    organization: OrgContext
    scope: Scope
    start: datetime
    end: datetime
    currency: str
    filters: tuple[tuple[str, Any], ...]
    #: The scope's account or customer, checked (and a customer's accounts looked up) by
    #: the read itself, in its first round trip.
    verify: tuple[str, uuid.UUID, str] | None = None

    def query(self, **changes: Any) -> repo.MeasureQuery:
        base = repo.MeasureQuery(
            organizations=(self.organization.id,),
            start=self.start,
            end=self.end,
            filters=self.filters,
            verify=self.verify,
        )
        return replace(base, **changes)


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    key: dict[str, Any]
    figures: Figures


@dataclass(frozen=True, slots=True)
class Point:
    start: datetime
    end: datetime
    figures: Figures


@dataclass(frozen=True, slots=True)
class OrganizationFigures:
    organization: OrgContext
    figures: Figures


@dataclass(frozen=True, slots=True)
class PlatformReport:
    currency: str
    totals: Figures
    organizations: list[OrganizationFigures]


async def scope_filters(
    session: AsyncSession, organization_id: uuid.UUID, scope: Scope, field: str
) -> tuple[tuple[tuple[str, Any], ...], tuple[uuid.UUID, ...]]:
    """The scope as filters; its account or customer must be this organisation's."""
    connection = await driver_connection(session)
    filters: list[tuple[str, Any]] = []
    accounts: tuple[uuid.UUID, ...] = ()
    if scope.kind is not ScopeKind.ORGANIZATION:
        kind = scope.kind.value.lower()
        if scope.id is None or not await repo.owned(connection, kind, organization_id, scope.id):
            raise NotFound(kind, scope.id, field)
        filters.append((kind, scope.id))
        if scope.kind is ScopeKind.CUSTOMER:
            accounts = await repo.accounts_of(connection, organization_id, scope.id)
    if scope.agent is not None:
        if not 0 < len(scope.agent) <= TAG_MAX:
            raise ValidationFailed(f"agent must be 1 to {TAG_MAX} characters", "agent")
        filters.append(("agent", scope.agent))
    return tuple(filters), accounts


def require_report_currency(currency: str | None, default: str, field: str) -> str:
    return default if currency is None else require_currency(currency, field)


async def open_report(
    session: AsyncSession,
    org: OrgContext,
    scope: Scope,
    start: datetime,
    end: datetime,
    currency: str | None,
    limits: ReportLimits,
    *,
    scope_field: str = "scope",
) -> Report:
    """A validated request. The scope's account or customer is checked by each read in its
    first round trip (an unknown one, or another tenant's, is ``NOT_FOUND``), so a report
    costs no extra query; ``session`` is kept for reads that need it."""
    start, end = require_range(start, end, limits)
    target = require_report_currency(currency, org.reporting_currency, "currency")
    filters: list[tuple[str, Any]] = []
    verify = None
    if scope.kind is not ScopeKind.ORGANIZATION:
        kind = scope.kind.value.lower()
        if scope.id is None:
            raise NotFound(kind, None, scope_field)
        filters.append((kind, scope.id))
        verify = (kind, scope.id, scope_field)
    if scope.agent is not None:
        if not 0 < len(scope.agent) <= TAG_MAX:
            raise ValidationFailed(f"agent must be 1 to {TAG_MAX} characters", "agent")
        filters.append(("agent", scope.agent))
    return Report(org, scope, start, end, target, tuple(filters), verify)


async def _converted(session: AsyncSession, report: Report, query: repo.MeasureQuery) -> list[Any]:
    connection = await driver_connection(session)
    return await conversion.convert_one(
        session, connection, report.organization.id, query, report.currency
    )


async def totals(session: AsyncSession, report: Report) -> Figures:
    total = Totals()
    for row in await _converted(session, report, report.query()):
        total.add(row.totals)
    return Figures.of(total, report.currency)


class Order(enum.Enum):
    COST = "cost"  # AI cost, then billed usage, descending
    IMPACT = "impact"  # |net impact| descending


def _sort_key(order: Order) -> Callable[[BreakdownRow], tuple[Any, ...]]:
    def key(row: BreakdownRow) -> tuple[Any, ...]:
        figures = row.figures
        label = tuple("" if v is None else str(v) for v in row.key.values())
        if order is Order.IMPACT:
            return (-abs(figures.net_impact), -figures.billed_usage, label)
        return (-figures.ai_cost, -figures.billed_usage, label)

    return key


async def breakdown(
    session: AsyncSession,
    report: Report,
    dimensions: tuple[str, ...],
    order: Order,
    limit: int | None = None,
) -> list[BreakdownRow]:
    """The report split by ``dimensions`` (entries carrying none of them are left out)."""
    rows = await _converted(session, report, report.query(group_by=dimensions))
    result = [
        BreakdownRow(
            dict(zip(dimensions, row.key, strict=True)), Figures.of(row.totals, report.currency)
        )
        for row in rows
        if any(value is not None for value in row.key)
    ]
    result.sort(key=_sort_key(order))
    return result if limit is None else result[: max(limit, 0)]


async def timeline(
    session: AsyncSession, report: Report, bucket: TimeBucket, limits: ReportLimits
) -> list[Point]:
    """Every bucket the range touches, empty ones included, clipped to the range."""
    require_points(report.start, report.end, bucket, limits, "bucket")
    rows = await _converted(session, report, report.query(bucket=bucket.value))
    by_bucket: dict[datetime, Totals] = {}
    for row in rows:
        assert row.bucket is not None
        by_bucket.setdefault(row.bucket, Totals()).add(row.totals)
    return [
        Point(
            max(lower, report.start),
            min(upper, report.end),
            Figures.of(by_bucket.get(lower, Totals()), report.currency),
        )
        for lower, upper in buckets(report.start, report.end, bucket)
    ]


async def platform(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    currency: str,
    limits: ReportLimits,
) -> PlatformReport:
    """Every organisation (a platform session), each converted with its own rates."""
    start, end = require_range(start, end, limits)
    require_currency(currency, "currency")
    orgs = [OrgContext.of(o) for o in await session.scalars(select(Organization))]
    if not orgs:
        empty = Figures.of(Totals(), currency)
        return PlatformReport(currency, empty, [])
    query = repo.MeasureQuery(organizations=tuple(o.id for o in orgs), start=start, end=end)
    connection = await driver_connection(session)
    converted = await conversion.convert_many(session, connection, query, currency)
    per_org: dict[uuid.UUID, Totals] = {}
    for row in converted:
        assert row.organization_id is not None
        per_org.setdefault(row.organization_id, Totals()).add(row.totals)
    grand = Totals()
    for value in per_org.values():
        grand.add(value)
    rows = [
        OrganizationFigures(org, Figures.of(per_org.get(org.id, Totals()), currency))
        for org in orgs
    ]
    rows.sort(key=lambda r: (-r.figures.revenue, r.organization.slug))
    return PlatformReport(currency, Figures.of(grand, currency), rows)


def require_limit(limit: int, limits: ReportLimits, field: str = "limit") -> int:
    if limit < 0 or limit > limits.max_rows:
        raise ValidationFailed(f"limit must be 0 to {limits.max_rows}", field)
    return limit
