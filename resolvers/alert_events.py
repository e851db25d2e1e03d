"""After a commit that raised alerts: announce them on ``alertRaised`` and wake the local
delivery worker. Never raises (the write has committed; deliveries are in the outbox anyway)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from costgraph.alerts.records import AlertRecord
from costgraph.alerts.rules import FORECAST_STAGE
from costgraph.alerts.worker import Wakeup
from costgraph.subscriptions import publish
from costgraph.subscriptions.events import AlertNotice

logger = logging.getLogger("costgraph.alerts")


def notice_of(alert: AlertRecord) -> AlertNotice:
    """What ``alertRaised`` subscribers get on the bus for a raised alert."""
    return AlertNotice(
        organization_id=alert.organization_id,
        id=alert.id,
        code=alert.kind.code,
        stage=None if alert.stage == FORECAST_STAGE else alert.stage,
        message=alert.message,
        raised_at=alert.raised_at,
        budget_id=alert.budget_id,
        scope_kind=alert.scope_kind,
        scope_id=alert.scope_id,
        period_start=alert.period_start,
        period_end=alert.period_end,
        spent=alert.spent,
        limit=alert.limit,
        currency=alert.currency,
    )


def announce(bus: publish.Publisher, wakeup: Wakeup, raised: Sequence[AlertRecord]) -> None:
    try:
        for alert in raised:
            publish.alert_raised(bus, notice_of(alert))
        wakeup.set()
    except Exception:  # a notification must never fail a committed write
        logger.exception("could not announce raised alerts")
