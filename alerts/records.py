"""Alerts and channels as plain data, the way the rest of the code sees them."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from costgraph.alerts.rules import AlertKind
from costgraph.models.alerts import Alert, NotificationChannel


class AlertState(enum.StrEnum):
    OPEN = "OPEN"
    ACKNOWLEDGED = "ACKNOWLEDGED"


class ChannelKind(enum.StrEnum):
    WEBHOOK = "WEBHOOK"
    EMAIL = "EMAIL"
    SLACK = "SLACK"
    TEAMS = "TEAMS"
    PAGERDUTY = "PAGERDUTY"
    SMS = "SMS"


class DeliveryState(enum.StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    DEAD = "DEAD"


@dataclass(frozen=True, slots=True)
class AlertRecord:
    organization_id: uuid.UUID
    id: uuid.UUID
    #: None: not a budget's alert (a PAYMENT_CONFLICT), see ``subject``.
    budget_id: uuid.UUID | None
    stage: int
    period_start: datetime
    period_end: datetime
    scope_kind: str
    scope_id: uuid.UUID
    spent: Decimal
    limit: Decimal
    currency: str
    message: str
    raised_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    #: The scope's name when raised (a user's ``Name <email>``, a department's name).
    scope_name: str | None = None
    kind: AlertKind = AlertKind.THRESHOLD
    #: The version of the budget's terms it was raised under.
    terms_version: int = 1
    #: What an alert without a budget is about (a Stripe payment's key and refused body).
    subject: str | None = None
    #: TOP_UP_REQUESTED: the top-up asked for (``spent`` the balance, ``limit`` the threshold).
    requested_amount: Decimal | None = None

    @property
    def state(self) -> AlertState:
        return AlertState.OPEN if self.acknowledged_at is None else AlertState.ACKNOWLEDGED

    @classmethod
    def of(cls, row: Alert) -> AlertRecord:
        return cls(
            organization_id=row.organization_id,
            id=row.id,
            budget_id=row.budget_id,
            stage=row.stage,
            period_start=row.period_start,
            period_end=row.period_end,
            scope_kind=row.scope_kind,
            scope_id=row.scope_id,
            spent=row.spent,
            limit=row.limit_amount,
            currency=row.currency,
            message=row.message,
            raised_at=row.raised_at,
            acknowledged_at=row.acknowledged_at,
            acknowledged_by=row.acknowledged_by,
            scope_name=row.scope_name,
            kind=AlertKind(row.kind),
            terms_version=row.terms_version,
            subject=row.subject,
            requested_amount=row.requested_amount,
        )


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    id: uuid.UUID
    kind: ChannelKind
    target: str
    scope_kind: str | None
    scope_id: uuid.UUID | None
    budget_id: uuid.UUID | None
    enabled: bool
    created_at: datetime
    secret_count: int
    #: Set only right after creation or rotation: the secret, shown once.
    new_secret: str | None = None

    @classmethod
    def of(cls, row: NotificationChannel, new_secret: str | None = None) -> ChannelRecord:
        return cls(
            id=row.id,
            kind=ChannelKind(row.kind),
            target=row.target,
            scope_kind=row.scope_kind,
            scope_id=row.scope_id,
            budget_id=row.budget_id,
            enabled=row.enabled,
            created_at=row.created_at,
            secret_count=len(row.secrets),
            new_secret=new_secret,
        )


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    attempt: int
    started_at: datetime
    duration_ms: int
    outcome: str
    status_code: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: uuid.UUID
    alert_id: uuid.UUID
    channel_id: uuid.UUID
    channel_kind: ChannelKind
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None
    history: tuple[AttemptRecord, ...]


@dataclass(frozen=True, slots=True)
class AlertFilter:
    scope_kind: str | None = None
    scope_id: uuid.UUID | None = None
    budget_id: uuid.UUID | None = None
    stage: int | None = None
    kind: AlertKind | None = None
    state: AlertState | None = None
    start: datetime | None = None
    end: datetime | None = None
