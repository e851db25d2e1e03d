"""Closed months are immutable: an entry dated in a month whose books are closed is refused
with ``PERIOD_CLOSED``, whoever writes it (usage, backfill, settlement, payments, adjustments,
fees, refunds, reprice corrections). So is an entry dated in any month of the books before the
latest closed month: months close in order from the books' start (billing/month_close.py),
so such a month is closed too, or was left open by the rule before that one and closes next;
either way later months' closes stand on it. History before the books start stays open.

A close and a late writer never race: the writer takes the month's advisory lock shared and
then looks for the close, in its own transaction; the close takes the same lock exclusive
(billing/month_close.py). Either the close commits first and the writer sees it, or the writer
holds the lock and the close waits for a later run, which then counts the writer's entries.

Only months that have ended need the check (a month is closed once it is over, plus the
late-arrival window and the grace), so a write dated in the current month costs nothing.
``CLOCK_MARGIN`` extends the check to a month ending that soon, for instances whose clocks
differ by up to that much.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import closed_months_repository as repo
from costgraph.billing.pnl_ranges import TimeBucket, truncate
from costgraph.billing.raw_connection import driver_connection
from costgraph.kernel.clock import format_rfc3339, utcnow
from costgraph.kernel.errors import PeriodClosed, join_path

CLOCK_MARGIN = timedelta(minutes=5)


def ended_months(
    dated: Iterable[tuple[datetime, str]], now: datetime, suffix: str | None = None
) -> dict[datetime, str]:
    """The (UTC) months of ``dated`` (an entry's time and its input path) that may be closed,
    each with the field of its first entry (its path joined with ``suffix``)."""
    first_open = truncate(now + CLOCK_MARGIN, TimeBucket.MONTH)
    months: dict[datetime, str] = {}
    for at, path in dated:
        if at >= first_open:  # the hot path: one comparison per entry of the current month
            continue
        month = truncate(at, TimeBucket.MONTH)
        if month not in months:
            months[month] = join_path(path, suffix)
    return months


async def require_open(
    session: AsyncSession,
    organization_id: uuid.UUID,
    dated: Iterable[tuple[datetime, str]],
    *,
    suffix: str | None = None,
    now: datetime | None = None,
) -> None:
    """Refuse (``PERIOD_CLOSED`` naming the entry's field: its path joined with ``suffix``) if
    any of ``dated`` (an entry's ``occurred_at`` and its input path) lies in a closed month;
    else hold those months open until the caller's transaction ends."""
    months = ended_months(dated, now or utcnow(), suffix)
    if not months:
        return
    connection = await driver_connection(session)
    ordered = sorted(months)
    await repo.lock_months_shared(connection, organization_id, ordered)
    closed = await repo.refused_among(connection, organization_id, ordered)
    if closed:
        raise PeriodClosed(format_rfc3339(closed[0]), months[closed[0]])
