"""A P&L against the same P&L over another range (``compareTo``), its breakdowns by model
matched key by key, and the timeline with the previous period's buckets beside its own.

See :mod:`costgraph.billing.comparisons` for what a change is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import pnl
from costgraph.billing.comparisons import FiguresChange, require_compare_range, union_missing
from costgraph.billing.fx import CurrencyPair
from costgraph.billing.pnl_measures import Figures, RevenueBasis, Totals
from costgraph.billing.pnl_ranges import ReportLimits, TimeBucket


@dataclass(frozen=True, slots=True)
class PnLComparison:
    report: pnl.Report
    previous_report: pnl.Report
    previous: pnl.Totaled
    change: FiguresChange
    #: Each entry currency of either period, in its own money, both periods.
    by_currency: tuple[FiguresChange, ...]
    #: Pairs without a rate in either period.
    missing: tuple[CurrencyPair, ...]


def previous_report(
    report: pnl.Report, start: datetime, end: datetime, limits: ReportLimits
) -> pnl.Report:
    """The same report (scope, filters, currency) over ``[start, end)``."""
    start, end = require_compare_range(start, end, limits)
    return replace(report, start=start, end=end)


def _empty(currency: str, basis: RevenueBasis) -> Figures:
    return Figures.of(Totals(), currency, basis)


def panels(
    current: tuple[Figures, ...], previous: tuple[Figures, ...], basis: RevenueBasis
) -> tuple[FiguresChange, ...]:
    now = {f.currency: f for f in current}
    before = {f.currency: f for f in previous}
    return tuple(
        FiguresChange.of(now.get(c) or _empty(c, basis), before.get(c) or _empty(c, basis))
        for c in sorted(now.keys() | before.keys())
    )


async def compare(
    session: AsyncSession,
    report: pnl.Report,
    current: pnl.Totaled,
    start: datetime,
    end: datetime,
    limits: ReportLimits,
) -> PnLComparison:
    """``report`` (already summed: ``current``) against the same report over ``[start, end)``."""
    before = previous_report(report, start, end, limits)
    previous = await pnl.summarize(session, before)
    return PnLComparison(
        report,
        before,
        previous,
        FiguresChange.of(current.figures, previous.figures),
        panels(current.by_currency, previous.by_currency, report.basis),
        union_missing(current.missing, previous.missing),
    )


@dataclass(frozen=True, slots=True)
class BreakdownChange:
    key: dict[str, Any]
    change: FiguresChange


async def breakdown_changes(
    session: AsyncSession, comparison: PnLComparison, dimensions: tuple[str, ...]
) -> list[BreakdownChange]:
    """Both periods split by ``dimensions``, matched by key (a key of one period only has
    zero figures in the other); largest revenue attributed first, then margin."""
    order = pnl.Order.COST
    now = await pnl.breakdown(session, comparison.report, dimensions, order)
    before = await pnl.breakdown(session, comparison.previous_report, dimensions, order)
    currency = comparison.report.currency
    empty = _empty(currency, RevenueBasis.ATTRIBUTED)

    def label(key: dict[str, Any]) -> tuple[str, ...]:
        return tuple("" if key[d] is None else str(key[d]) for d in dimensions)

    current = {label(row.key): row for row in now}
    previous = {label(row.key): row for row in before}
    rows = []
    for name in current.keys() | previous.keys():
        found = current.get(name) or previous[name]
        this = current[name].figures if name in current else empty
        that = previous[name].figures if name in previous else empty
        rows.append(BreakdownChange(found.key, FiguresChange.of(this, that)))
    rows.sort(
        key=lambda r: (
            -r.change.current.revenue,
            -r.change.current.margin,
            -r.change.previous.revenue,
            label(r.key),
        )
    )
    return rows


async def timeline_previous(
    session: AsyncSession,
    report: pnl.Report,
    bucket: TimeBucket,
    start: datetime,
    end: datetime,
    limits: ReportLimits,
) -> list[pnl.Point]:
    """The previous period's timeline: its buckets go beside the range's by offset."""
    return await pnl.timeline(session, previous_report(report, start, end, limits), bucket, limits)
