"""Usage over a range against usage over ``compareTo``: the same grouping, filters and
currency in both periods, rows matched by group, currency and bucket offset (the range's
``i``-th bucket against the comparison range's ``i``-th). A group of one period only has zero
figures in the other; its bucket is the range's bucket at that offset.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing.comparisons import FiguresChange, require_compare_range
from costgraph.billing.directory import OrgContext
from costgraph.billing.pnl_measures import Figures, Totals
from costgraph.billing.pnl_ranges import (
    ReportLimits,
    TimeBucket,
    following,
    require_range,
    truncate,
)
from costgraph.billing.usage_analytics import UsageDimension, UsageFilter, UsageRow, usage
from costgraph.kernel.errors import ValidationFailed


@dataclass(frozen=True, slots=True)
class UsageChange:
    row: UsageRow
    change: FiguresChange


def _offsets(start: datetime, bucket: TimeBucket | None, count: int) -> list[datetime]:
    if bucket is None:
        return []
    result, at = [], truncate(start, bucket)
    for _ in range(count):
        result.append(at)
        at = following(at, bucket)
    return result


def _slot(row: UsageRow, index: dict[datetime, int]) -> tuple[Any, ...]:
    offset = 0 if row.bucket is None else index[row.bucket]
    key = tuple("" if v is None else str(v) for v in row.key.values())
    return (key, offset, row.figures.currency, row.missing)


async def usage_compared(
    session: AsyncSession,
    org: OrgContext,
    start: datetime,
    end: datetime,
    compare: tuple[datetime, datetime],
    group_by: list[UsageDimension],
    bucket: TimeBucket | None,
    filter: UsageFilter | None,
    currency: str | None,
    limits: ReportLimits,
) -> list[UsageChange]:
    start, end = require_range(start, end, limits)
    before_start, before_end = require_compare_range(compare[0], compare[1], limits)
    now = await usage(session, org, start, end, group_by, bucket, filter, currency, limits)
    then = await usage(
        session, org, before_start, before_end, group_by, bucket, filter, currency, limits
    )
    count = 0
    if bucket is not None:
        count = max(_span(start, end, bucket), _span(before_start, before_end, bucket))
    starts = _offsets(start, bucket, count)
    index_now = {at: i for i, at in enumerate(starts)}
    index_then = {at: i for i, at in enumerate(_offsets(before_start, bucket, count))}
    current = {_slot(row, index_now): row for row in now}
    previous = {_slot(row, index_then): row for row in then}
    result = []
    for slot in sorted(current.keys() | previous.keys(), key=lambda s: (s[1], s[0], s[3], s[2])):
        this, that = current.get(slot), previous.get(slot)
        if this is None:
            assert that is not None
            empty = Figures.of(Totals(), that.figures.currency)
            this = replace(that, bucket=starts[slot[1]] if starts else None, figures=empty)
        base = that.figures if that is not None else Figures.of(Totals(), this.figures.currency)
        result.append(UsageChange(this, FiguresChange.of(this.figures, base)))
    if len(result) > limits.max_usage_rows:
        raise ValidationFailed(
            f"the grouping makes {len(result)} rows over both periods; at most "
            f"{limits.max_usage_rows} are returned",
            "groupBy",
        )
    return result


def _span(start: datetime, end: datetime, bucket: TimeBucket) -> int:
    count, at = 0, truncate(start, bucket)
    while at < end:
        count += 1
        at = following(at, bucket)
    return count
