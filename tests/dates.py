"""Test data dated relative to the business clock, never on a calendar date that time will pass.

Every helper counts from the test's *anchor*: the business clock's reading when the test
started (tests/conftest.py sets it before each test; at import time it is the session's
start). The anchor does not tick, so the dates one test computes agree with each other
however long it runs, while the app's clock (:func:`costgraph.kernel.clock.utcnow`) ticks on.
A test that must cross a boundary moves the clock with :func:`set_now`.

    usage(occurredAt=rfc(month(-1, day=3, hour=10)))   # 3rd of last month, 10:00 UTC
    {"start": rfc(month()), "end": rfc(month(1))}      # this month, half-open
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from costgraph.kernel import clock

_anchor: datetime = clock.utcnow()


def anchor(at: datetime | None = None) -> datetime:
    """Make ``at`` (default: the business clock now) the instant the helpers count from."""
    global _anchor
    _anchor = (at or clock.utcnow()).astimezone(UTC)
    return _anchor


def now() -> datetime:
    """The test's anchor: the business clock when the test started."""
    return _anchor


def ago(**delta: float) -> datetime:
    """``now()`` minus a ``timedelta(**delta)``, e.g. ``ago(days=3)``."""
    return _anchor - timedelta(**delta)


def later(**delta: float) -> datetime:
    """``now()`` plus a ``timedelta(**delta)``."""
    return _anchor + timedelta(**delta)


def day(days: int = 0, hour: int = 0, minute: int = 0) -> datetime:
    """Midnight UTC of the anchor's day moved by ``days``, plus ``hour``:``minute``."""
    midnight = _anchor.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + timedelta(days=days, hours=hour, minutes=minute)


def month(months: int = 0, day: int = 1, hour: int = 0, minute: int = 0) -> datetime:
    """``day`` (1..28 is safe in every month; a day the month lacks raises) of the month
    ``months`` away from the anchor's, at ``hour``:``minute`` UTC. ``month()`` is the start of
    the current month, ``month(1)`` of the next, ``month(-1)`` of the previous."""
    index = _anchor.year * 12 + _anchor.month - 1 + months
    return datetime(index // 12, index % 12 + 1, day, hour, minute, tzinfo=UTC)


def year(years: int = 0) -> datetime:
    """1 January 00:00 UTC of the anchor's year moved by ``years``."""
    return datetime(_anchor.year + years, 1, 1, tzinfo=UTC)


def month_key(months: int = 0) -> str:
    """``YYYY-MM`` of the month ``months`` away from the anchor's."""
    return month(months).strftime("%Y-%m")


def rfc(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, as the API returns timestamps."""
    return clock.format_rfc3339(value)


def set_now(at: datetime) -> datetime:
    """Run the business clock from ``at`` (ticking on) and anchor the helpers there; the
    clock is restarted for the next test (tests/conftest.py)."""
    clock.install(clock.ShiftedClock(at))
    return anchor(at)


def clock_environment() -> dict[str, str]:
    """What a server process started by a test needs to run on the test's business clock:
    ``COSTGRAPH_CLOCK_START`` at the clock's current reading, when the suite runs on a set
    clock (``COSTGRAPH_TEST_NOW``); nothing on the system clock."""
    if isinstance(clock.installed(), clock.SystemClock):
        return {}
    return {"COSTGRAPH_CLOCK_START": rfc(clock.utcnow())}
