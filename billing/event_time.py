"""The late-arrival policy: which ``occurredAt`` a write may carry.

A plain write (``recordUsage``, ``recordUsageBatch``, ``settleUsage``, payments, adjustments,
fees, liability estimates, the Stripe webhook) takes an event from ``now - window`` to
``now + skew`` (``Limits.late_arrival_window_seconds``, ``Limits.future_skew_seconds``):
late enough for a client's retry queue or Stripe's retries to drain, never so late that it
lands in a month being closed (a close waits for the window, see month_close.py). Older usage
is history: it enters only through ``backfillUsage``, an org_admin's explicit request, which
reaches back ``Limits.backfill_max_age_days`` and is otherwise held to every rule a plain write
is (closed months, past allowance cycles, the hard caps of the period it lands in).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from costgraph.billing.commands import Limits
from costgraph.kernel.clock import format_rfc3339
from costgraph.kernel.errors import ValidationFailed

#: What a refused late usage event is told to do.
USAGE_HINT = (
    "record usage this old with backfillUsage (an org_admin's explicit backfill), "
    "which keeps closed months, past allowance cycles and hard caps intact"
)
#: What a refused late payment, adjustment or fee is told to do.
PAYMENT_HINT = "record it dated now and name the date it belongs to in its metadata"


def _span(seconds: float) -> str:
    if seconds % 86_400 == 0:
        return f"{int(seconds // 86_400)} days"
    if seconds % 3_600 == 0:
        return f"{int(seconds // 3_600)} hours"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} minutes"
    return f"{seconds:g} seconds"


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise ValidationFailed("timestamp must carry a time zone", field)
    return value.astimezone(UTC)


def _not_ahead(value: datetime, field: str, limits: Limits, now: datetime) -> None:
    skew = limits.future_skew_seconds
    if value > now + timedelta(seconds=skew):
        raise ValidationFailed(
            f"occurredAt {format_rfc3339(value)} is in the future: at most {_span(skew)} "
            "of clock skew is tolerated",
            field,
        )


def require_live(
    value: datetime, field: str, limits: Limits, now: datetime, hint: str = USAGE_HINT
) -> datetime:
    """``value`` in UTC if a plain write may carry it, else ``VALIDATION_FAILED`` on ``field``
    saying how older history is recorded (``hint``)."""
    value = _aware(value, field)
    _not_ahead(value, field, limits, now)
    window = limits.late_arrival_window_seconds
    if value < now - timedelta(seconds=window):
        raise ValidationFailed(
            f"occurredAt {format_rfc3339(value)} is older than the late-arrival window "
            f"({_span(window)} before now): {hint}",
            field,
        )
    return value


def require_backfill(value: datetime, field: str, limits: Limits, now: datetime) -> datetime:
    """``value`` in UTC if a backfill may carry it: from ``backfill_max_age_days`` ago to now
    (plus the skew)."""
    value = _aware(value, field)
    _not_ahead(value, field, limits, now)
    days = limits.backfill_max_age_days
    if value < now - timedelta(days=days):
        raise ValidationFailed(
            f"occurredAt {format_rfc3339(value)} is older than a backfill may reach ({days} days)",
            field,
        )
    return value
