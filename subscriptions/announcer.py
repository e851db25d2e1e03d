"""After commit: the typed events of a unit of work, announced on the bus.

Registered on the app's :class:`~costgraph.kernel.unit_of_work.Units` when it is wired. One
committed unit publishes at most one notice per channel and organisation (chunked when
large): its usage in one :class:`UsageNotice`, its money entries and allowance changes in one
:class:`AccountNotice`, its budgets in one :class:`BudgetNotice`, and each alert it raised.
Never raises: the write has committed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from costgraph.alerts.events import AlertsRaised
from costgraph.alerts.records import AlertRecord
from costgraph.alerts.rules import FORECAST_STAGE
from costgraph.billing import events
from costgraph.billing.entries import Entry
from costgraph.kernel.unit_of_work import DomainEvent
from costgraph.subscriptions import publish
from costgraph.subscriptions.events import AlertNotice

logger = logging.getLogger("costgraph.bus")


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
        scope_name=alert.scope_name,
        requested_amount=alert.requested_amount,
    )


class BusAnnouncer:
    """The after-commit hook that publishes a unit's events on the bus."""

    def __init__(self, bus: publish.Publisher) -> None:
        self.bus = bus

    def __call__(self, committed: Sequence[DomainEvent]) -> None:
        try:
            self._announce(committed)
        except Exception:  # a notification must never fail a committed write
            logger.exception("could not announce a committed unit of work")

    def _announce(self, committed: Sequence[DomainEvent]) -> None:
        usage: list[Entry] = []
        accounts: dict[uuid.UUID, dict[uuid.UUID, None]] = {}
        budgets: dict[uuid.UUID, dict[uuid.UUID, None]] = {}
        alerts: list[AlertRecord] = []
        for event in committed:
            if isinstance(event, events.UsageRecorded):
                usage.extend(event.entries)
            elif isinstance(event, events.BalancesChanged | events.AllowanceChanged):
                accounts.setdefault(event.organization_id, {}).update(
                    dict.fromkeys(event.account_ids)
                )
            elif isinstance(event, events.BudgetsChanged):
                budgets.setdefault(event.organization_id, {}).update(
                    dict.fromkeys(event.budget_ids)
                )
            elif isinstance(event, AlertsRaised):
                alerts.extend(event.alerts)
        if usage:
            publish.usage_recorded(self.bus, usage)
        for organization_id, ids in accounts.items():
            publish.accounts_changed(self.bus, organization_id, ids)
        for organization_id, ids in budgets.items():
            publish.budgets_changed(self.bus, organization_id, ids)
        for alert in alerts:
            publish.alert_raised(self.bus, notice_of(alert))
