"""The monthly close: once a month has ended (and a grace period for late entries has passed),
its P&L per account, per customer and for the organisation is written to
``pnl_month_closes`` — in each entry currency, unconverted, so a close never waits on a rate.

A closed month is immutable: no entry can be dated in it afterwards (``PERIOD_CLOSED``, see
billing/closed_months.py), so its close always equals the live P&L of that month. The close
takes the month's advisory lock exclusive, the lock every writer dated in an ended month
takes shared: a close never runs beside such a writer (it tries again on the next run).

Months are closed oldest first and without a gap, from the start of the organisation's books
(``organizations.books_start``; an organisation from before that column: its first entry),
whether or not they hold entries — an empty month closes too, so a month can never be left
open behind a later closed one for a backfill to change. Months before the books start hold
history imported with backfillUsage and are never closed, so an import of many batches is
never cut off halfway. A month left open behind a closed one by the rule before this one
(closes started at the first entry) is closed first, on the next run. Each (organisation,
month) commits on its own, and a month already closed is never rewritten.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import pnl_repository as repo
from costgraph.billing.closed_months_repository import closed_among, month_lock_key
from costgraph.billing.pnl_measures import Totals
from costgraph.billing.pnl_ranges import TimeBucket, following, truncate
from costgraph.billing.raw_connection import driver_connection
from costgraph.kernel.unit_of_work import UnitOfWork, Units
from costgraph.models.rollups import MonthClose

_INSERT = """
INSERT INTO pnl_month_closes (organization_id, month, scope_kind, scope_id, currency, entries,
    events, tokens, ai_cost, billed_usage, postpaid_usage, subscriptions, top_ups, refunds,
    withdrawals, platform_fees, balance_adjustments)
SELECT $1, $2, k, i, c, n, ev, tk, ai, bu, pu, su, tu, rf, wd, pf, ba
FROM unnest($3::text[], $4::uuid[], $5::text[], $6::int8[], $7::int8[], $8::int8[],
    $9::numeric[], $10::numeric[], $11::numeric[], $12::numeric[], $13::numeric[],
    $14::numeric[], $15::numeric[], $16::numeric[], $17::numeric[])
    AS t(k, i, c, n, ev, tk, ai, bu, pu, su, tu, rf, wd, pf, ba)
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class Closed:
    organization_id: uuid.UUID
    month: datetime
    rows: int


def _columns(rows: list[tuple[str, uuid.UUID, str, Totals]]) -> list[list[Any]]:
    return [
        [kind for kind, _, _, _ in rows],
        [ident for _, ident, _, _ in rows],
        [currency for _, _, currency, _ in rows],
        [t.entries for *_, t in rows],
        [t.events for *_, t in rows],
        [t.tokens for *_, t in rows],
        [t.ai_cost for *_, t in rows],
        [t.billed_usage for *_, t in rows],
        [t.postpaid_usage for *_, t in rows],
        [t.subscriptions for *_, t in rows],
        [t.top_ups for *_, t in rows],
        [t.refunds for *_, t in rows],
        [t.withdrawals for *_, t in rows],
        [t.platform_fees for *_, t in rows],
        [t.balance_adjustments for *_, t in rows],
    ]


async def close_month(
    connection: Any, organization_id: uuid.UUID, reporting_currency: str, month: datetime
) -> int:
    """Close one month of one organisation (inside the caller's transaction)."""
    end = following(month, TimeBucket.MONTH)
    rows: list[tuple[str, uuid.UUID, str, Totals]] = []
    for kind, dimension in (("ACCOUNT", "account"), ("CUSTOMER", "customer")):
        query = repo.MeasureQuery((organization_id,), month, end, group_by=(dimension,))
        for row in await repo.measure(connection, query):
            if row.key[0] is not None:
                rows.append((kind, row.key[0], row.currency, Totals.of_row(row.values)))
    whole = await repo.measure(connection, repo.MeasureQuery((organization_id,), month, end))
    rows.extend(
        ("ORGANIZATION", organization_id, row.currency, Totals.of_row(row.values)) for row in whole
    )
    if not whole:  # the month is closed even when nothing happened in it
        rows.append(("ORGANIZATION", organization_id, reporting_currency, Totals()))
    await connection.execute(_INSERT, organization_id, month, *_columns(rows))
    return len(rows)


async def close_months(
    units: Units,
    now: datetime,
    grace: timedelta,
    max_months: int = 24,
    *,
    only: Sequence[uuid.UUID] | None = None,
) -> list[Closed]:
    """Close what is due, at most ``max_months`` (organisation, month) pairs per call
    (``only``: these organisations). Each (organisation, month) is a unit of work of its own
    (platform work: the job spans organisations)."""
    cutoff = now.astimezone(UTC) - grace
    organizations = await units.run(None, lambda unit: _due(unit, only), platform=True)
    done: list[Closed] = []
    for org in organizations:
        month = await _first_open(units, org)
        if month is None:
            continue
        while following(month, TimeBucket.MONTH) <= cutoff and len(done) < max_months:
            locked, closed = await units.run(
                None,
                functools.partial(
                    _close_one,
                    organization_id=org["id"],
                    reporting_currency=org["reporting_currency"].strip(),
                    month=month,
                ),
                platform=True,
            )
            if closed is not None:
                done.append(closed)
            if not locked:
                break
            month = following(month, TimeBucket.MONTH)
    return done


async def _due(unit: UnitOfWork, only: Sequence[uuid.UUID] | None) -> list[Any]:
    """Every organisation (or ``only`` these) with the start of its books (or, without one,
    its first entry), its last closed month and how many months it has closed since then."""
    connection = await driver_connection(unit.session)
    rows: list[Any] = await connection.fetch(
        """SELECT o.id, o.reporting_currency, s.start,
                  (SELECT max(c.month) FROM pnl_month_closes c
                   WHERE c.organization_id = o.id AND c.scope_kind = 'ORGANIZATION') AS closed,
                  (SELECT count(DISTINCT c.month) FROM pnl_month_closes c
                   WHERE c.organization_id = o.id AND c.scope_kind = 'ORGANIZATION'
                     AND c.month >= date_trunc('month', s.start, 'UTC')) AS closes
           FROM organizations o
           CROSS JOIN LATERAL (SELECT coalesce(o.books_start,
               (SELECT min(e.occurred_at) FROM ledger_entries e
                WHERE e.organization_id = o.id)) AS start) s
           WHERE $1::uuid[] IS NULL OR o.id = ANY($1::uuid[])
           ORDER BY o.id""",
        None if only is None else list(only),
    )
    return rows


def _months(first: datetime, last: datetime) -> int:
    """How many months from ``first`` to ``last``, both included."""
    return (last.year - first.year) * 12 + last.month - first.month + 1


async def _first_open(units: Units, org: Any) -> datetime | None:
    """The first month of the organisation's books not closed yet (None: no books yet)."""
    if org["start"] is None:
        return None
    start = truncate(org["start"], TimeBucket.MONTH)
    closed: datetime | None = org["closed"]
    if closed is None or closed < start:
        return start
    if org["closes"] == _months(start, closed):  # every month up to the last close: no gap
        return following(closed, TimeBucket.MONTH)
    # A month left open behind a closed one (closes once started at the first entry).
    done = set(
        await units.run(None, lambda unit: _closed_since(unit, org["id"], start), platform=True)
    )
    month = start
    while month in done:
        month = following(month, TimeBucket.MONTH)
    return month


async def _closed_since(
    unit: UnitOfWork, organization_id: uuid.UUID, start: datetime
) -> list[datetime]:
    connection = await driver_connection(unit.session)
    rows = await connection.fetch(
        "SELECT month FROM pnl_month_closes WHERE organization_id = $1 "
        "AND scope_kind = 'ORGANIZATION' AND month >= $2",
        organization_id,
        start,
    )
    return [row["month"] for row in rows]


async def _close_one(
    unit: UnitOfWork, *, organization_id: uuid.UUID, reporting_currency: str, month: datetime
) -> tuple[bool, Closed | None]:
    """Close one month of one organisation in the unit's transaction; ``(locked, closed)``."""
    connection = await driver_connection(unit.session)
    # Taken while no writer dated in the month holds it (shared); else the month is left for
    # the next run — never skipped, months close in order.
    locked = bool(
        await connection.fetchval(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
            month_lock_key(organization_id, month),
        )
    )
    if not locked or await _is_closed(connection, organization_id, month):
        return locked, None
    count = await close_month(connection, organization_id, reporting_currency, month)
    return True, Closed(organization_id, month, count)


async def _is_closed(connection: Any, organization_id: uuid.UUID, month: datetime) -> bool:
    """Closed by a concurrent run since this one looked (asked under the month's lock)."""
    return bool(await closed_among(connection, organization_id, [month]))


async def closes(session: AsyncSession, month: datetime) -> list[MonthClose]:
    """The caller's closed figures of one month (the tenant filter confines them)."""
    start = truncate(month, TimeBucket.MONTH)
    rows = await session.scalars(
        select(MonthClose)
        .where(MonthClose.month == start)
        .order_by(MonthClose.scope_kind, MonthClose.scope_id, MonthClose.currency)
    )
    return list(rows)
