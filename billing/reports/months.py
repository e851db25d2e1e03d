"""Report months: ``YYYY-MM`` in UTC, as half-open ``[first day, first day of next month)``.

Organisations carry no time zone, so months (and the schedule's "first of the month") are
UTC, like P&L ``MONTH`` buckets.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from costgraph.kernel.errors import ValidationFailed

_MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_month(text: str, field: str = "month") -> date:
    found = _MONTH_RE.fullmatch(text.strip())
    if found is None:
        raise ValidationFailed("month must be written YYYY-MM, e.g. 2026-01", field)
    year = int(found.group(1))
    if year < 2000:
        raise ValidationFailed("month must be 2000-01 or later", field)
    return date(year, int(found.group(2)), 1)


def format_month(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def previous_month(month: date) -> date:
    return date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)


def month_range(month: date) -> tuple[datetime, datetime]:
    """The month as UTC instants ``[start, end)``."""
    after = next_month(month)
    return (
        datetime(month.year, month.month, 1, tzinfo=UTC),
        datetime(after.year, after.month, 1, tzinfo=UTC),
    )


def month_of(at: datetime) -> date:
    at = at.astimezone(UTC)
    return date(at.year, at.month, 1)
