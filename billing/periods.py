"""Budget periods: calendar windows in a configured time zone, as half-open UTC intervals."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


class Period(enum.StrEnum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    QUARTER = "QUARTER"
    CUSTOM = "CUSTOM"


def _month_start(year: int, month: int, zone: ZoneInfo) -> datetime:
    while month > 12:
        year, month = year + 1, month - 12
    return datetime(year, month, 1, tzinfo=zone)


def window(
    period: Period,
    at: datetime,
    zone: ZoneInfo,
    custom: tuple[datetime, datetime] | None = None,
) -> tuple[datetime, datetime]:
    """The ``[start, end)`` of the period containing ``at``, both in UTC.

    Weeks start on Monday (ISO 8601). Boundaries are local midnights, so a DST change makes a
    day 23 or 25 hours long rather than moving the reset.
    """
    if period is Period.CUSTOM:
        if custom is None:
            raise ValueError("a custom period needs its window")
        return custom
    local = at.astimezone(zone)
    if period is Period.DAY:
        start = datetime(local.year, local.month, local.day, tzinfo=zone)
        end = datetime.combine(start.date() + timedelta(days=1), start.timetz())
    elif period is Period.WEEK:
        monday = local.date() - timedelta(days=local.weekday())
        start = datetime(monday.year, monday.month, monday.day, tzinfo=zone)
        end = datetime.combine(monday + timedelta(days=7), start.timetz())
    elif period is Period.MONTH:
        start = _month_start(local.year, local.month, zone)
        end = _month_start(local.year, local.month + 1, zone)
    else:
        first_month = 3 * ((local.month - 1) // 3) + 1
        start = _month_start(local.year, first_month, zone)
        end = _month_start(local.year, first_month + 3, zone)
    return start.astimezone(UTC), end.astimezone(UTC)
