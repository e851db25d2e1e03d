"""SQL of closed months: the per-(organisation, month) advisory lock that orders a late
writer against the month's close, and the lookup of closes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def month_lock_key(organization_id: uuid.UUID, month: datetime) -> str:
    """The advisory lock of one organisation's month: writers dated in it take it shared, the
    close takes it exclusive (``hashtextextended(key, 0)``)."""
    return f"month-close:{organization_id}:{month.isoformat()}"


async def lock_months_shared(
    connection: Any, organization_id: uuid.UUID, months: Sequence[datetime]
) -> None:
    """Take the months' locks shared, until the transaction ends (waiting while a close of
    one of them runs). A statement of its own: the lookup that follows must take its
    snapshot after the wait, to see a close that committed meanwhile."""
    await connection.execute(
        "SELECT pg_advisory_xact_lock_shared(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k",
        [month_lock_key(organization_id, month) for month in months],
    )


async def closed_among(
    connection: Any, organization_id: uuid.UUID, months: Sequence[datetime]
) -> list[datetime]:
    """Which of ``months`` the organisation has closed, oldest first."""
    rows = await connection.fetch(
        "SELECT month FROM pnl_month_closes WHERE organization_id = $1 "
        "AND month = ANY($2::timestamptz[]) AND scope_kind = 'ORGANIZATION' ORDER BY month",
        organization_id,
        list(months),
    )
    return [row["month"] for row in rows]


async def refused_among(
    connection: Any, organization_id: uuid.UUID, months: Sequence[datetime]
) -> list[datetime]:
    """Which of ``months`` no entry may be dated in any more, oldest first: the closed ones,
    and any month of the books (from ``books_start``; all, without one) before the latest
    closed month — a month left open behind a closed one (billing/month_close.py closes it
    on its next run). Months of history before the books start are neither."""
    rows = await connection.fetch(
        "SELECT m FROM unnest($2::timestamptz[]) AS m "
        "WHERE EXISTS (SELECT 1 FROM pnl_month_closes c WHERE c.organization_id = $1 "
        "AND c.month = m AND c.scope_kind = 'ORGANIZATION') "
        "OR (m < (SELECT max(c.month) FROM pnl_month_closes c WHERE c.organization_id = $1 "
        "AND c.scope_kind = 'ORGANIZATION') "
        "AND m >= coalesce((SELECT date_trunc('month', o.books_start, 'UTC') "
        "FROM organizations o WHERE o.id = $1), '-infinity')) "
        "ORDER BY m",
        organization_id,
        list(months),
    )
    return [row["m"] for row in rows]
