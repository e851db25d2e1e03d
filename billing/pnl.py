"""Profit and loss of an account, a customer, the organisation (optionally one agent's part of
it) and the whole platform, over a range, in a reporting currency; and the same bucketed.

Figures are defined in :mod:`costgraph.billing.pnl_measures`, summed exactly by
:mod:`costgraph.billing.pnl_repository` (rollups + raw edges + the not-yet-rolled-up tail) and
converted entry-time-exact by :mod:`costgraph.billing.pnl_conversion`. Another tenant's
account or customer answers exactly as an unknown one: ``NOT_FOUND``.

A currency without a rate to the report's currency never fails the report: its entries are
left out of the figures, the pair is named in ``missing``, and its figures stand in their own
money in ``by_currency`` (one panel per entry currency, always given).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import liabilities
from costgraph.billing import pnl_conversion as conversion
from costgraph.billing import pnl_repository as repo
from costgraph.billing.directory import OrgContext
from costgraph.billing.fx import CurrencyPair
from costgraph.billing.ledger_repository import driver_connection
from costgraph.billing.pnl_measures import Figures, RevenueBasis, Totals, reported
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

ZERO_LIABILITY = reported(Decimal(0))


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
    #: A per-currency panel: only the entries in ``currency``, in their own money.
    panel: bool = False

    @property
    def basis(self) -> RevenueBasis:
        """An agent's part of a P&L is a slice of usage: revenue attributed to it; a payer's
        (organisation, customer, account) is money received."""
        return RevenueBasis.RECEIVED if self.scope.agent is None else RevenueBasis.ATTRIBUTED

    def query(self, **changes: Any) -> repo.MeasureQuery:
        base = repo.MeasureQuery(
            organizations=(self.organization.id,),
            start=self.start,
            end=self.end,
            filters=self.filters,
            verify=self.verify,
            currency=self.currency if self.panel else None,
        )
        return replace(base, **changes)

    def panel_of(self, currency: str) -> Report:
        """The same report over the entries in ``currency`` only, in that currency."""
        return replace(self, currency=currency, panel=True)


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    key: dict[str, Any]
    figures: Figures


@dataclass(frozen=True, slots=True)
class Totaled:
    """A report's figures in its currency (every currency with a rate), each entry
    currency's figures in its own money, and the pairs without a rate."""

    figures: Figures
    by_currency: tuple[Figures, ...] = ()
    missing: tuple[CurrencyPair, ...] = ()

    @classmethod
    def of(
        cls, converted: conversion.Conversion, basis: RevenueBasis = RevenueBasis.RECEIVED
    ) -> Totaled:
        return cls(
            Figures.of(converted.total(), converted.target, basis),
            tuple(Figures.of(t, c, basis) for c, t in converted.currency_totals().items()),
            converted.missing,
        )


@dataclass(frozen=True, slots=True)
class Point:
    start: datetime
    end: datetime
    figures: Figures
    #: This bucket's figures per entry currency, in its own money.
    by_currency: tuple[Figures, ...] = ()
    #: The report's pairs without a rate (the same on every point).
    missing: tuple[CurrencyPair, ...] = ()
    #: Liability estimates recorded in the bucket (beside net impact, never in it); None
    #: for accounts and customers, whose estimates are not attributed.
    liability: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrganizationFigures:
    organization: OrgContext
    figures: Figures
    by_currency: tuple[Figures, ...] = ()
    missing: tuple[CurrencyPair, ...] = ()


@dataclass(frozen=True, slots=True)
class PlatformReport:
    currency: str
    totals: Figures
    organizations: list[OrganizationFigures]
    by_currency: tuple[Figures, ...] = ()
    missing: tuple[CurrencyPair, ...] = ()


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


async def _converted(
    session: AsyncSession, report: Report, query: repo.MeasureQuery
) -> conversion.Conversion:
    connection = await driver_connection(session)
    return await conversion.convert_one(
        session, connection, report.organization.id, query, report.currency
    )


async def summarize(session: AsyncSession, report: Report) -> Totaled:
    """The report's figures, its per-currency panels and the pairs without a rate."""
    return Totaled.of(await _converted(session, report, report.query()), report.basis)


async def totals(session: AsyncSession, report: Report) -> Figures:
    """The report's figures (every currency with a rate; see :func:`summarize`)."""
    return (await summarize(session, report)).figures


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
    """The report split by ``dimensions`` (entries carrying none of them are left out): slices
    of usage, so their revenue is what their usage was charged (``ATTRIBUTED``)."""
    rows = (await _converted(session, report, report.query(group_by=dimensions))).rows
    attributed = RevenueBasis.ATTRIBUTED
    result = [
        BreakdownRow(
            dict(zip(dimensions, row.key, strict=True)),
            Figures.of(row.totals, report.currency, attributed),
        )
        for row in rows
        if any(value is not None for value in row.key)
    ]
    result.sort(key=_sort_key(order))
    return result if limit is None else result[: max(limit, 0)]


async def timeline(
    session: AsyncSession, report: Report, bucket: TimeBucket, limits: ReportLimits
) -> list[Point]:
    """Every bucket the range touches, empty ones included, clipped to the range; each with
    its net impact (in its figures) and the liability estimates recorded in it."""
    require_points(report.start, report.end, bucket, limits, "bucket")
    converted = await _converted(session, report, report.query(bucket=bucket.value))
    liability: dict[datetime, Decimal] | None = None
    if report.scope.kind is ScopeKind.ORGANIZATION:
        liability = await liabilities.per_bucket(
            session,
            report.organization,
            report.start,
            report.end,
            report.currency,
            bucket,
            report.scope.agent,
        )
    by_bucket: dict[datetime, Totals] = {}
    for row in converted.rows:
        assert row.bucket is not None
        by_bucket.setdefault(row.bucket, Totals()).add(row.totals)
    panels: dict[datetime, dict[str, Totals]] = {}
    for currency in sorted(converted.by_currency):
        for row in converted.by_currency[currency]:
            assert row.bucket is not None
            panel = panels.setdefault(row.bucket, {}).setdefault(currency, Totals())
            panel.add(row.totals)
    return [
        Point(
            max(lower, report.start),
            min(upper, report.end),
            Figures.of(by_bucket.get(lower, Totals()), report.currency, report.basis),
            tuple(Figures.of(t, c, report.basis) for c, t in panels.get(lower, {}).items()),
            converted.missing,
            None if liability is None else liability.get(lower, ZERO_LIABILITY),
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
    """Every organisation (a platform session), all converted with the platform's rates;
    an organisation's currency without a platform rate is left out of the totals (and named)
    for that organisation only."""
    start, end = require_range(start, end, limits)
    require_currency(currency, "currency")
    orgs = [OrgContext.of(o) for o in await session.scalars(select(Organization))]
    if not orgs:
        empty = Figures.of(Totals(), currency)
        return PlatformReport(currency, empty, [])
    query = repo.MeasureQuery(organizations=tuple(o.id for o in orgs), start=start, end=end)
    connection = await driver_connection(session)
    per_org = await conversion.convert_many(session, connection, query, currency)
    whole = conversion.Conversion(currency)
    rows = []
    for org in orgs:
        found = per_org.get(org.id) or conversion.Conversion(currency)
        whole.add(found)
        own = Totaled.of(found)
        rows.append(OrganizationFigures(org, own.figures, own.by_currency, own.missing))
    rows.sort(key=lambda r: (-r.figures.revenue, r.organization.slug))
    grand = Totaled.of(whole)
    return PlatformReport(currency, grand.figures, rows, grand.by_currency, grand.missing)


def require_limit(limit: int, limits: ReportLimits, field: str = "limit") -> int:
    if limit < 0 or limit > limits.max_rows:
        raise ValidationFailed(f"limit must be 0 to {limits.max_rows}", field)
    return limit
