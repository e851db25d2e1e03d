"""Counting the business outcomes from the resolvers' typed results (one call per mutation).

The results are read by shape, not type: a success has ``replayed`` (a bool, or a count on
a batch), a typed error has ``code``. The domain (``billing/``) stays free of metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the app owns the registry; resolvers only count into it
    from costgraph.app.observability.metrics import Metrics


def _code(result: Any) -> str | None:
    code = getattr(result, "code", None)
    value = getattr(code, "value", code)
    return value if isinstance(value, str) else None


def usage(metrics: Metrics, via: str, result: Any, events: int = 1) -> None:
    """recordUsage, recordUsageBatch, settleUsage: events written, replayed or refused."""
    code = _code(result)
    if code is not None:
        metrics.usage_rejected.labels(code).inc(events)
        return
    replayed = getattr(result, "replayed", None)
    if isinstance(replayed, bool):
        metrics.usage_ingested.labels(via).inc(0 if replayed else 1)
        metrics.usage_replayed.labels(via).inc(1 if replayed else 0)
    elif isinstance(replayed, int):
        recorded = getattr(result, "recorded", 0)
        metrics.usage_ingested.labels(via).inc(recorded)
        metrics.usage_replayed.labels(via).inc(replayed)


def authorization(metrics: Metrics, result: Any) -> None:
    """authorizeUsage: a new hold, or a refusal (a replay holds nothing new)."""
    if _code(result) is not None:
        metrics.reservations.labels("refused").inc()
    elif getattr(result, "replayed", True) is False:
        metrics.reservations.labels("authorized").inc()


def settlement(metrics: Metrics, result: Any) -> None:
    if _code(result) is None and getattr(result, "replayed", True) is False:
        metrics.reservations.labels("settled").inc()


def release(metrics: Metrics, state: str, *, closed_now: bool) -> None:
    """releaseReservation closed it: RELEASED, or EXPIRED when it had run out."""
    if closed_now and state in {"RELEASED", "EXPIRED"}:
        metrics.reservations.labels(state.lower()).inc()


def expired(metrics: Metrics, count: int) -> None:
    """Reservations swept as expired while serving another call."""
    if count:
        metrics.reservations.labels("expired").inc(count)


def alerts(metrics: Metrics, codes: Sequence[str]) -> None:
    for code in codes:
        metrics.alerts_raised.labels(code).inc()
