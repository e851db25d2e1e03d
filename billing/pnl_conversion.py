"""Sums in a reporting currency: each entry converted at the rate in force at its own time.

First the sums per entry currency. If every currency is the target, that is the answer.
Otherwise the rates of the pairs involved are loaded for the range; when none changes inside
it, one rate per currency converts the sums. When some do, the query runs again split at
every change (:attr:`MeasureQuery.instants`), and each segment converts at its own rate —
exactly what converting entry by entry gives, since a rate is constant between changes.
A missing rate is ``RATE_MISSING`` naming the pair and the time, never a silent 1.0.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import fx_repository
from costgraph.billing import pnl_repository as repo
from costgraph.billing.fx import RateBook
from costgraph.billing.pnl_measures import ONE, Totals


@dataclass(slots=True)
class Converted:
    organization_id: uuid.UUID | None
    key: tuple[Any, ...]
    bucket: datetime | None
    totals: Totals


async def _rates(
    session: AsyncSession,
    organization_id: uuid.UUID,
    currencies: set[str],
    target: str,
    start: datetime,
    end: datetime,
) -> tuple[RateBook, tuple[datetime, ...]]:
    pairs = {(c, target) for c in currencies} | {(target, c) for c in currencies}
    rows = await fx_repository.rates_between(session, organization_id, pairs, start, end)
    instants = tuple(sorted({row[3] for row in rows if start < row[3] < end}))
    return RateBook.of(rows), instants


def _merge(
    rows: Sequence[repo.MeasureRow],
    target: str,
    book: RateBook | None,
    query: repo.MeasureQuery,
    into: dict[tuple[Any, ...], Converted],
) -> None:
    for row in rows:
        rate = ONE
        if row.currency != target:
            assert book is not None
            at = query.start if row.segment == 0 else query.instants[row.segment - 1]
            rate = book.rate_at(row.currency, target, at)
        slot = (row.organization_id, row.key, row.bucket)
        found = into.get(slot)
        if found is None:
            into[slot] = Converted(row.organization_id, row.key, row.bucket, Totals())
            found = into[slot]
        found.totals.add_row(row.values, rate)


async def convert_one(
    session: AsyncSession,
    connection: Any,
    organization_id: uuid.UUID,
    query: repo.MeasureQuery,
    target: str,
    rows: Sequence[repo.MeasureRow] | None = None,
) -> list[Converted]:
    """One organisation's sums in ``target`` (``rows``: its first pass, if already run)."""
    if rows is None:
        rows = await repo.measure(connection, query)
    result: dict[tuple[Any, ...], Converted] = {}
    foreign = {row.currency for row in rows if row.currency != target}
    if not foreign:
        _merge(rows, target, None, query, result)
        return list(result.values())
    book, instants = await _rates(session, organization_id, foreign, target, query.start, query.end)
    if instants:
        query = replace(query, instants=instants)
        rows = await repo.measure(connection, query)
    _merge(rows, target, book, query, result)
    return list(result.values())


async def convert_many(
    session: AsyncSession,
    connection: Any,
    query: repo.MeasureQuery,
    target: str,
) -> list[Converted]:
    """Several organisations at once (grouped by organisation), each with its own rates."""
    query = replace(query, by_organization=True)
    rows = await repo.measure(connection, query)
    by_org: dict[uuid.UUID, list[repo.MeasureRow]] = {}
    for row in rows:
        assert row.organization_id is not None
        by_org.setdefault(row.organization_id, []).append(row)
    result: list[Converted] = []
    for organization_id, own in by_org.items():
        single = replace(query, organizations=(organization_id,))
        converted = await convert_one(session, connection, organization_id, single, target, own)
        for item in converted:
            item.organization_id = organization_id
        result.extend(converted)
    return result
