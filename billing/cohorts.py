"""Payer cohorts: the retention triangle.

A payer is a customer (as in the KPIs, :mod:`costgraph.billing.payers`). Its cohort is the UTC
month of its first payment (basis ``PAYMENT``: the first month whose subscriptions, top-ups
and postpaid billed overage sum above zero) or of its first usage (basis ``USAGE``: the first
month with a usage event), over its whole history, in any currency. The report shows the
cohorts whose month the range touches; for each, every month from its own up to the range's
last (``month_index`` 0, 1, …), each clipped to the range:

- **active**: the cohort's payers who paid that month (``PAYMENT``) or had usage (``USAGE``);
- **revenue** (money received), **AI cost**, **margin** (revenue - AI cost - platform fees)
  of the cohort's payers that month, and **ARPU** = revenue / active (None when none).

Money is converted entry-time-exact into the report's currency; a currency without a rate is
left out of the figures (and of "active", which is read from the converted money like the
KPIs' payers) and named in ``missing``; ``by_currency`` has the triangle of each entry
currency in its own money (the same cohorts: membership does not depend on rates).
"""

from __future__ import annotations

import enum
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import pnl_conversion as conversion
from costgraph.billing import pnl_repository as repo
from costgraph.billing.cost_formula import EXACT
from costgraph.billing.directory import OrgContext
from costgraph.billing.fx import CurrencyPair
from costgraph.billing.ledger_repository import driver_connection
from costgraph.billing.pnl import require_report_currency
from costgraph.billing.pnl_measures import HUNDRED, PERCENT_QUANTUM, Figures, Totals
from costgraph.billing.pnl_ranges import ReportLimits, TimeBucket, buckets, require_range
from costgraph.kernel.clock import EARLIEST_EVENT
from costgraph.kernel.money import QUANTUM


class CohortBasis(enum.StrEnum):
    PAYMENT = "PAYMENT"
    USAGE = "USAGE"


@dataclass(frozen=True, slots=True)
class CohortCell:
    month_index: int
    start: datetime
    end: datetime
    active: int
    #: active / cohort size x 100, 4 places.
    retention: Decimal
    figures: Figures
    arpu: Decimal | None


@dataclass(frozen=True, slots=True)
class Cohort:
    month: datetime
    size: int
    customers: tuple[uuid.UUID, ...]
    cells: tuple[CohortCell, ...]


@dataclass(frozen=True, slots=True)
class CohortReport:
    currency: str
    basis: CohortBasis
    start: datetime
    end: datetime
    cohorts: tuple[Cohort, ...]
    by_currency: tuple[CohortReport, ...] = ()
    missing: tuple[CurrencyPair, ...] = ()


def _paid(totals: Totals) -> bool:
    return totals.subscriptions + totals.top_ups + totals.postpaid_usage > 0


def _active(totals: Totals, basis: CohortBasis) -> bool:
    return _paid(totals) if basis is CohortBasis.PAYMENT else totals.events > 0


async def first_months(
    session: AsyncSession, org: OrgContext, end: datetime, basis: CohortBasis
) -> dict[uuid.UUID, datetime]:
    """Each customer's cohort month: its first paying (or using) month before ``end``."""
    connection = await driver_connection(session)
    query = repo.MeasureQuery(
        (org.id,), EARLIEST_EVENT, end, group_by=("customer",), bucket=TimeBucket.MONTH.value
    )
    per_month: dict[tuple[uuid.UUID, datetime], Totals] = defaultdict(Totals)
    for row in await repo.measure(connection, query):
        customer = row.key[0]
        if customer is not None and row.bucket is not None:
            per_month[customer, row.bucket].add_row(row.values)
    first: dict[uuid.UUID, datetime] = {}
    for (customer, month), totals in per_month.items():
        if _active(totals, basis) and (customer not in first or month < first[customer]):
            first[customer] = month
    return first


def _per_head(amount: Decimal, heads: int) -> Decimal | None:
    if heads == 0:
        return None
    return EXACT.divide(amount, Decimal(heads)).quantize(
        QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT
    )


def _retention(active: int, size: int) -> Decimal:
    ratio = EXACT.divide(Decimal(active) * HUNDRED, Decimal(size))
    return ratio.quantize(PERCENT_QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT)


def triangle(
    rows: list[conversion.Converted],
    currency: str,
    members: dict[datetime, list[uuid.UUID]],
    months: list[tuple[datetime, datetime]],
    basis: CohortBasis,
) -> tuple[Cohort, ...]:
    """The cohorts' cells from per (customer, month) sums in ``currency``."""
    per: dict[tuple[uuid.UUID, datetime], Totals] = defaultdict(Totals)
    for row in rows:
        customer = row.key[0]
        if customer is not None and row.bucket is not None:
            per[customer, row.bucket].add(row.totals)
    cohorts = []
    for index, (month, _) in enumerate(months):
        customers = members.get(month, [])
        if not customers:
            continue
        cells = []
        for offset, (lower, upper) in enumerate(months[index:]):
            total, active = Totals(), 0
            for customer in customers:
                found = per.get((customer, lower))
                if found is None:
                    continue
                total.add(found)
                active += _active(found, basis)
            cells.append(
                CohortCell(
                    month_index=offset,
                    start=lower,
                    end=upper,
                    active=active,
                    retention=_retention(active, len(customers)),
                    figures=Figures.of(total, currency),
                    arpu=_per_head(total.revenue, active),
                )
            )
        cohorts.append(Cohort(month, len(customers), tuple(customers), tuple(cells)))
    return tuple(cohorts)


async def cohorts(
    session: AsyncSession,
    org: OrgContext,
    start: datetime,
    end: datetime,
    basis: CohortBasis,
    currency: str | None,
    limits: ReportLimits,
) -> CohortReport:
    start, end = require_range(start, end, limits)
    target = require_report_currency(currency, org.reporting_currency, "currency")
    first = await first_months(session, org, end, basis)
    grouped = buckets(start, end, TimeBucket.MONTH)
    months = [(max(lower, start), min(upper, end)) for lower, upper in grouped]
    starts = {lower: clipped for (lower, _), (clipped, _) in zip(grouped, months, strict=True)}
    members: dict[datetime, list[uuid.UUID]] = defaultdict(list)
    for customer, month in sorted(first.items(), key=lambda item: (item[1], str(item[0]))):
        if month in starts:
            members[starts[month]].append(customer)
    query = repo.MeasureQuery(
        (org.id,), start, end, group_by=("customer",), bucket=TimeBucket.MONTH.value
    )
    connection = await driver_connection(session)
    converted = await conversion.convert_one(session, connection, org.id, query, target)
    rows = [_clipped(row, starts) for row in converted.rows]
    report = CohortReport(target, basis, start, end, triangle(rows, target, members, months, basis))
    panels = tuple(
        replace(
            report,
            currency=own,
            cohorts=triangle([_clipped(r, starts) for r in found], own, members, months, basis),
        )
        for own, found in sorted(converted.by_currency.items())
    )
    return replace(report, by_currency=panels, missing=converted.missing)


def _clipped(row: conversion.Converted, starts: dict[datetime, datetime]) -> conversion.Converted:
    """The row's month as the report names it (its start clipped to the range)."""
    assert row.bucket is not None
    return replace(row, bucket=starts[row.bucket])
