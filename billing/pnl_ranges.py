"""Report ranges and time buckets: half-open ``[start, end)`` in UTC, bounded by the operator."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from costgraph.kernel.errors import ValidationFailed


class TimeBucket(enum.StrEnum):
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"  # ISO weeks, from Monday 00:00 UTC
    MONTH = "MONTH"


@dataclass(frozen=True, slots=True)
class ReportLimits:
    """Operator-set bounds on one report (``COSTGRAPH_PNL_*`` settings)."""

    max_range_days: int = 400
    max_points: int = 2_000
    #: Rows of a breakdown or a users view.
    max_rows: int = 200
    #: Rows one ``usage`` answer may hold (groups x buckets).
    max_usage_rows: int = 10_000


def require_range(
    start: datetime, end: datetime, limits: ReportLimits, field: str = "range"
) -> tuple[datetime, datetime]:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed("range bounds must carry a time zone", field)
    if end <= start:
        raise ValidationFailed("range end must be after its start", field)
    if end - start > timedelta(days=limits.max_range_days):
        raise ValidationFailed(
            f"a range covers at most {limits.max_range_days} days", f"{field}.end"
        )
    return start.astimezone(UTC), end.astimezone(UTC)


def truncate(at: datetime, bucket: TimeBucket) -> datetime:
    at = at.astimezone(UTC)
    hour = at.replace(minute=0, second=0, microsecond=0)
    if bucket is TimeBucket.HOUR:
        return hour
    day = hour.replace(hour=0)
    if bucket is TimeBucket.DAY:
        return day
    if bucket is TimeBucket.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def following(at: datetime, bucket: TimeBucket) -> datetime:
    """The start of the bucket after the one starting at ``at``."""
    if bucket is TimeBucket.HOUR:
        return at + timedelta(hours=1)
    if bucket is TimeBucket.DAY:
        return at + timedelta(days=1)
    if bucket is TimeBucket.WEEK:
        return at + timedelta(days=7)
    return (at.replace(day=28) + timedelta(days=4)).replace(day=1)


def count_points(start: datetime, end: datetime, bucket: TimeBucket) -> int:
    first = truncate(start, bucket)
    last = truncate(end - timedelta(microseconds=1), bucket)
    if bucket is TimeBucket.MONTH:
        return (last.year - first.year) * 12 + last.month - first.month + 1
    step = {
        TimeBucket.HOUR: timedelta(hours=1),
        TimeBucket.DAY: timedelta(days=1),
        TimeBucket.WEEK: timedelta(days=7),
    }[bucket]
    return (last - first) // step + 1


def require_points(
    start: datetime, end: datetime, bucket: TimeBucket, limits: ReportLimits, field: str
) -> int:
    points = count_points(start, end, bucket)
    if points > limits.max_points:
        raise ValidationFailed(
            f"{bucket.value.lower()} buckets over this range make {points} points; "
            f"at most {limits.max_points} are allowed: use a larger bucket or a shorter range",
            field,
        )
    return points


def buckets(start: datetime, end: datetime, bucket: TimeBucket) -> list[tuple[datetime, datetime]]:
    """Every bucket the range touches, as ``(bucket start, bucket end)`` (UTC)."""
    result = []
    at = truncate(start, bucket)
    while at < end:
        after = following(at, bucket)
        result.append((at, after))
        at = after
    return result
