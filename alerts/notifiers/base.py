"""What every notifier gets and how it reports a failure."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from costgraph.alerts.records import AlertRecord, ChannelKind
from costgraph.alerts.rules import AlertKind, scope_text
from costgraph.kernel.clock import format_rfc3339
from costgraph.kernel.money import format_money


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One delivery attempt of one alert to one channel."""

    #: The delivery's id: the message id, the same on every retry.
    delivery_id: uuid.UUID
    attempt: int
    alert: AlertRecord
    organization_name: str
    kind: ChannelKind
    target: str
    #: Active signing secrets, newest first (for PagerDuty: the routing key).
    secrets: tuple[str, ...]

    @property
    def title(self) -> str:
        alert = self.alert
        where = f"{self.organization_name}: " if self.organization_name else ""
        if alert.kind is AlertKind.PAYMENT_CONFLICT:
            return f"{where}a Stripe payment was not recorded (key conflict)"
        if alert.kind is AlertKind.TOP_UP_REQUESTED:
            return f"{where}auto-top-up requested"
        if alert.stage == 0:
            return f"{where}budget forecast over its limit"
        return f"{where}budget at {alert.stage}%"


class DeliveryFailed(Exception):
    """An attempt that did not deliver; ``outcome`` says how (HTTP_STATUS, TIMEOUT, …)."""

    def __init__(
        self,
        outcome: str,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after


class Notifier(Protocol):
    async def send(self, message: Outgoing) -> None:
        """Deliver, or raise DeliveryFailed (or TargetRefused). Bounded by the caller's timeout."""


def facts(alert: AlertRecord) -> dict[str, Any]:
    """The alert as JSON-ready data (money as exact decimal strings)."""
    return {
        "alertId": str(alert.id),
        "organizationId": str(alert.organization_id),
        "budgetId": None if alert.budget_id is None else str(alert.budget_id),
        "kind": alert.kind.value,
        "stage": None if alert.stage == 0 else alert.stage,
        "scope": {"kind": alert.scope_kind, "id": str(alert.scope_id), "name": alert.scope_name},
        "periodStart": format_rfc3339(alert.period_start),
        "periodEnd": format_rfc3339(alert.period_end),
        "spent": format(alert.spent, "f"),
        "limit": format(alert.limit, "f"),
        "currency": alert.currency,
        "message": alert.message,
        "raisedAt": format_rfc3339(alert.raised_at),
        **(
            {}
            if alert.requested_amount is None
            else {"requestedAmount": format(alert.requested_amount, "f")}
        ),
    }


def scope_line(alert: AlertRecord) -> str:
    """``user Ada <ada@example.com> (id)``: the scope's name beside its id."""
    return scope_text(alert.scope_kind, alert.scope_id, alert.scope_name)


def money(alert: AlertRecord, amount: Decimal) -> str:
    return format_money(amount, alert.currency)
