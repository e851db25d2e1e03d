"""RFC 3339 timestamps, always handled in UTC, and the accepted range of event times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from costgraph.billing.errors import ValidationFailed

_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)

#: Events older than this are refused as typos rather than history.
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
#: Clock skew tolerated for events stamped in the future.
FUTURE_TOLERANCE = timedelta(days=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with a zone (``Z`` or an offset); return it in UTC."""
    if not _RFC3339_RE.fullmatch(text):
        raise ValueError(
            f"{text[:40]!r} is not an RFC 3339 timestamp with a time zone, "
            "e.g. 2026-01-31T12:00:00Z"
        )
    normalised = text.replace("z", "Z").replace("t", "T")
    fraction = re.search(r"\.(\d+)", normalised)
    if fraction and len(fraction.group(1)) > 6:  # Python keeps microseconds
        normalised = normalised.replace(fraction.group(0), "." + fraction.group(1)[:6])
    try:
        value = datetime.fromisoformat(normalised)
    except ValueError as exc:
        raise ValueError(f"{text[:40]!r} is not a valid date and time") from exc
    return value.astimezone(UTC)


def format_rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def require_event_time(value: datetime, field: str, now: datetime | None = None) -> datetime:
    if value.tzinfo is None:
        raise ValidationFailed("timestamp must carry a time zone", field)
    now = now or utcnow()
    if value < EARLIEST_EVENT or value > now + FUTURE_TOLERANCE:
        raise ValidationFailed(
            f"timestamp must lie between {format_rfc3339(EARLIEST_EVENT)} and one day from now",
            field,
        )
    return value.astimezone(UTC)
