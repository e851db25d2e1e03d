"""Sums in a reporting currency: each entry converted at the rate in force at its own time.

First the sums per entry currency. If every currency is the target, that is the answer.
Otherwise the rates of the pairs involved are loaded for the range; when none changes inside
it, one rate per currency converts the sums. When some do, the query runs again split at
every change (:attr:`MeasureQuery.instants`), and each segment converts at its own rate —
exactly what converting entry by entry gives, since a rate is constant between changes
(the rule of :mod:`costgraph.billing.fx`).

**Per currency, never for the whole answer.** A currency with no rate to the target for
some of its entries in the range is left out of the converted figures — wholly, never in
part — and named in :attr:`Conversion.missing` as the pair ``currency -> target``, never a
silent 1.0. Every currency's figures are also kept in its own money
(:attr:`Conversion.by_currency`), so the currency without a rate is still reported, in a
panel of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import fx
from costgraph.billing import pnl_repository as repo
from costgraph.billing.fx import CurrencyPair
from costgraph.billing.pnl_measures import ONE, Totals


@dataclass(slots=True)
class Converted:
    organization_id: uuid.UUID | None
    key: tuple[Any, ...]
    bucket: datetime | None
    totals: Totals


@dataclass(slots=True)
class Conversion:
    """One organisation's (or the platform's) sums, converted where a rate allows."""

    target: str
    #: Every currency with a rate for all of its entries, in ``target``.
    rows: list[Converted] = field(default_factory=list)
    #: Every entry currency, in its own money (unconverted), by currency.
    by_currency: dict[str, list[Converted]] = field(default_factory=dict)
    #: ``currency -> target`` pairs without a rate: those currencies are not in ``rows``.
    missing: tuple[CurrencyPair, ...] = ()

    def total(self) -> Totals:
        total = Totals()
        for row in self.rows:
            total.add(row.totals)
        return total

    def currency_totals(self) -> dict[str, Totals]:
        """Each entry currency's totals in its own money, by code (sorted)."""
        result: dict[str, Totals] = {}
        for currency in sorted(self.by_currency):
            total = Totals()
            for row in self.by_currency[currency]:
                total.add(row.totals)
            result[currency] = total
        return result

    def add(self, other: Conversion) -> None:
        """Another organisation's conversion into the same target (the platform's sum)."""
        self.rows.extend(other.rows)
        for currency, rows in other.by_currency.items():
            self.by_currency.setdefault(currency, []).extend(rows)
        self.missing = tuple(sorted(set(self.missing) | set(other.missing)))


def _merge(
    rows: Sequence[repo.MeasureRow],
    rate_of: dict[tuple[str, int], Any],
    into: dict[tuple[Any, ...], Converted],
) -> None:
    for row in rows:
        slot = (row.organization_id, row.key, row.bucket)
        found = into.get(slot)
        if found is None:
            found = into[slot] = Converted(row.organization_id, row.key, row.bucket, Totals())
        found.totals.add_row(row.values, rate_of.get((row.currency, row.segment), ONE))


def convert_rows(
    rows: Sequence[repo.MeasureRow], target: str, plan: fx.RatePlan | None
) -> Conversion:
    """Sums already split at ``plan``'s rate changes, converted per currency."""
    rates: dict[tuple[str, int], Any] = {}
    missing: set[str] = set()
    for row in rows:
        if row.currency == target or (row.currency, row.segment) in rates:
            continue
        rate = None if plan is None else plan.rate(row.currency, row.segment)
        if rate is None:
            missing.add(row.currency)
        else:
            rates[row.currency, row.segment] = rate
    result = Conversion(target, missing=tuple(CurrencyPair(c, target) for c in sorted(missing)))
    converted: dict[tuple[Any, ...], Converted] = {}
    _merge([r for r in rows if r.currency not in missing], rates, converted)
    result.rows = list(converted.values())
    if all(row.currency == target for row in rows):
        result.by_currency = {target: result.rows} if rows else {}
        return result
    per_currency: dict[str, dict[tuple[Any, ...], Converted]] = {}
    for row in rows:
        _merge([row], {}, per_currency.setdefault(row.currency, {}))
    result.by_currency = {c: list(found.values()) for c, found in per_currency.items()}
    return result


async def convert_one(
    session: AsyncSession,
    connection: Any,
    organization_id: uuid.UUID,
    query: repo.MeasureQuery,
    target: str,
    rows: Sequence[repo.MeasureRow] | None = None,
    *,
    platform_rates: bool = False,
) -> Conversion:
    """One organisation's sums in ``target`` (``rows``: its first pass, if already run), with
    its own rates and the platform's (``platform_rates``: the platform's only)."""
    if rows is None:
        rows = await repo.measure(connection, query)
    foreign = {row.currency for row in rows if row.currency != target}
    if not foreign:
        return convert_rows(rows, target, None)
    owner = None if platform_rates else organization_id
    plan = await fx.load_plan(session, owner, foreign, target, query.start, query.end)
    if plan.instants:
        query = replace(query, instants=plan.instants)
        rows = await repo.measure(connection, query)
    return convert_rows(rows, target, plan)


async def convert_many(
    session: AsyncSession,
    connection: Any,
    query: repo.MeasureQuery,
    target: str,
) -> dict[uuid.UUID, Conversion]:
    """Several organisations at once (grouped by organisation), each with the platform's
    rates — one rate per pair and instant for the whole platform."""
    query = replace(query, by_organization=True)
    rows = await repo.measure(connection, query)
    by_org: dict[uuid.UUID, list[repo.MeasureRow]] = {}
    for row in rows:
        assert row.organization_id is not None
        by_org.setdefault(row.organization_id, []).append(row)
    result: dict[uuid.UUID, Conversion] = {}
    for organization_id, own in by_org.items():
        single = replace(query, organizations=(organization_id,))
        result[organization_id] = await convert_one(
            session, connection, organization_id, single, target, own, platform_rates=True
        )
    return result
