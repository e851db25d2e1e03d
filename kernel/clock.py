"""The business clock and RFC 3339 timestamps (always UTC).

Every business decision that depends on "now" (the period a budget is in, the cycle of an
allowance, whether an event is late, when a hold expires, the default ``occurredAt``) reads
:func:`utcnow`, which asks the installed :class:`Clock`. Production installs nothing and gets
the system clock; tests install a :class:`ShiftedClock` to run the whole suite at another
instant (``COSTGRAPH_TEST_NOW``, see tests/conftest.py). Security time (token expiry, rate
limit windows, delivery leases) stays on the wall clock: it protects, it does not bill.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)

#: The earliest date anything in CostGraph is dated (a price version, the start of a report
#: "since the beginning"). Which ``occurredAt`` a write may carry is the late-arrival policy
#: (billing/event_time.py).
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ShiftedClock:
    """A clock that reads ``start`` when created and then ticks at the wall clock's pace."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a clock's start needs a time zone")
        self._start = start.astimezone(UTC)
        self._origin = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._origin)


_installed: Clock = SystemClock()


def install(clock: Clock) -> Clock:
    """Make ``clock`` the business clock of this process; return the one it replaces."""
    global _installed
    previous, _installed = _installed, clock
    return previous


def installed() -> Clock:
    """The business clock of this process."""
    return _installed


def utcnow() -> datetime:
    """Now, by the installed business clock."""
    return _installed.now()


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
