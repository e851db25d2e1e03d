"""Alerts (the one ``Alert`` type, also what ``alertRaised`` streams), notification channels
and delivery history."""

from __future__ import annotations

import datetime as dt
import decimal

import strawberry

from costgraph.alerts.channels import masked_target
from costgraph.alerts.records import (
    AlertRecord,
    AlertState,
    AttemptRecord,
    ChannelKind,
    ChannelRecord,
    DeliveryRecord,
    DeliveryState,
)
from costgraph.alerts.rules import FORECAST_STAGE
from costgraph.alerts.rules import AlertKind as KindModel
from costgraph.schema.budgets import BudgetScope
from costgraph.schema.inputs import DateRange
from costgraph.schema.scalars import CurrencyCode
from costgraph.schema.scopes import BudgetScopeInput, BudgetScopeKind
from costgraph.subscriptions import events

strawberry.enum(AlertState, name="AlertState", description="OPEN until a person acknowledges it.")
strawberry.enum(
    KindModel,
    name="AlertKind",
    description="THRESHOLD: a stage (percent of the limit) reached; FORECAST: the period's "
    "projected total is over the limit; OVERAGE: a settlement beyond its hold took a "
    "hard-capped period over its limit; PAYMENT_CONFLICT: a Stripe payment was not recorded "
    "because another request holds its idempotency key (no budget; organisation-wide); "
    "TOP_UP_REQUESTED: an account's prepaid balance fell below its auto-top-up threshold "
    "(no budget; scope the account, spent its balance, limit the threshold, requestedAmount "
    "the top-up asked for).",
)
AlertKind = KindModel
strawberry.enum(ChannelKind, name="ChannelKind")
strawberry.enum(DeliveryState, name="DeliveryState")


def _id(value: object) -> strawberry.ID | None:
    return None if value is None else strawberry.ID(str(value))


def _scope(kind: str | None, ident: object, name: str | None = None) -> BudgetScope | None:
    if kind is None or ident is None:
        return None
    return BudgetScope(kind=BudgetScopeKind(kind), id=strawberry.ID(str(ident)), name=name)


@strawberry.type(
    description="A budget stage reached in a period: raised once per budget, kind, stage, "
    "period and version of the budget's terms (a change of terms re-arms the stages), "
    "acknowledged by a person."
)
class Alert:
    id: strawberry.ID
    code: str = strawberry.field(
        description="BUDGET_THRESHOLD, BUDGET_FORECAST, BUDGET_OVERAGE, or the kind's name."
    )
    kind: AlertKind
    stage: int | None = strawberry.field(
        description="The threshold reached, in percent (null for the other kinds)."
    )
    message: str
    raised_at: dt.datetime
    budget_id: strawberry.ID | None
    scope: BudgetScope | None = strawberry.field(description="The budget's scope.")
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    spent: decimal.Decimal | None = strawberry.field(
        description="The period's spend after the write that crossed the stage (the projected "
        "total for FORECAST), exact, in `currency`."
    )
    limit: decimal.Decimal | None
    currency: CurrencyCode | None
    state: AlertState
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None = strawberry.field(
        description="The subject of the token that acknowledged it."
    )
    requested_amount: decimal.Decimal | None = strawberry.field(
        default=None, description="TOP_UP_REQUESTED: the top-up asked for, in `currency`."
    )

    @classmethod
    def of(cls, notice: events.AlertNotice) -> Alert:
        """As streamed by ``alertRaised`` (just raised: OPEN)."""
        return cls(
            id=strawberry.ID(str(notice.id)),
            code=notice.code,
            kind=AlertKind.of_code(notice.code),
            stage=notice.stage,
            message=notice.message,
            raised_at=notice.raised_at,
            budget_id=_id(notice.budget_id),
            scope=_scope(notice.scope_kind, notice.scope_id, notice.scope_name),
            period_start=notice.period_start,
            period_end=notice.period_end,
            spent=notice.spent,
            limit=notice.limit,
            currency=None if notice.currency is None else CurrencyCode(notice.currency),
            state=AlertState.OPEN,
            acknowledged_at=None,
            acknowledged_by=None,
            requested_amount=notice.requested_amount,
        )

    @classmethod
    def of_record(cls, alert: AlertRecord) -> Alert:
        return cls(
            id=strawberry.ID(str(alert.id)),
            code=alert.kind.code,
            kind=alert.kind,
            stage=None if alert.stage == FORECAST_STAGE else alert.stage,
            message=alert.message,
            raised_at=alert.raised_at,
            budget_id=_id(alert.budget_id),
            scope=_scope(alert.scope_kind, alert.scope_id, alert.scope_name),
            period_start=alert.period_start,
            period_end=alert.period_end,
            spent=alert.spent,
            limit=alert.limit,
            currency=CurrencyCode(alert.currency),
            state=alert.state,
            acknowledged_at=alert.acknowledged_at,
            acknowledged_by=alert.acknowledged_by,
            requested_amount=alert.requested_amount,
        )


@strawberry.input(description="Every field narrows; none: every alert of the organisation.")
class AlertFilter:
    scope: BudgetScopeInput | None = strawberry.field(
        default=None, description="Alerts of budgets on exactly this scope."
    )
    budget_id: strawberry.ID | None = None
    stage: int | None = strawberry.field(default=None, description="A threshold, in percent.")
    kind: AlertKind | None = None
    state: AlertState | None = None
    range: DateRange | None = strawberry.field(
        default=None, description="When raised, half-open [start, end)."
    )


@strawberry.type(description="Where alerts are sent.")
class NotificationChannel:
    id: strawberry.ID
    kind: ChannelKind
    target: str = strawberry.field(
        description="URL, address or number (a Slack or Teams URL is shown masked: it is a "
        "credential)."
    )
    scope: BudgetScope | None = strawberry.field(
        description="Alerts of budgets on this scope and below it; null: the whole organisation."
    )
    budget_id: strawberry.ID | None
    enabled: bool
    created_at: dt.datetime
    secret_count: int = strawberry.field(description="Active signing secrets (each signs).")
    signing_secret: str | None = strawberry.field(
        description="A WEBHOOK channel's new signing secret, shown once: in the answer of "
        "createNotificationChannel and rotateNotificationChannelSecret only."
    )

    @classmethod
    def of(cls, channel: ChannelRecord) -> NotificationChannel:
        return cls(
            id=strawberry.ID(str(channel.id)),
            kind=channel.kind,
            target=masked_target(channel.kind, channel.target),
            scope=_scope(channel.scope_kind, channel.scope_id),
            budget_id=_id(channel.budget_id),
            enabled=channel.enabled,
            created_at=channel.created_at,
            secret_count=channel.secret_count,
            signing_secret=channel.new_secret,
        )


@strawberry.input
class NotificationChannelInput:
    kind: ChannelKind
    target: str = strawberry.field(
        description="WEBHOOK, SLACK, TEAMS: an https URL; PAGERDUTY: the Events API v2 URL "
        "(https://events.pagerduty.com/v2/enqueue); EMAIL: an address; SMS: an E.164 number."
    )
    secret: str | None = strawberry.field(
        default=None,
        description="WEBHOOK: a whsec_… signing secret (omitted: one is generated and shown "
        "once); PAGERDUTY: the routing key; other kinds: none.",
    )
    scope: BudgetScopeInput | None = strawberry.field(
        default=None, description="Omitted: the whole organisation."
    )
    budget_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only this budget's alerts."
    )


@strawberry.type(description="One try of a delivery.")
class DeliveryAttempt:
    attempt: int
    started_at: dt.datetime
    duration_ms: int
    outcome: str = strawberry.field(
        description="DELIVERED, or HTTP_STATUS, TIMEOUT, CONNECT, REFUSED, REDIRECT, SMTP, ERROR."
    )
    status_code: int | None
    error: str | None

    @classmethod
    def of(cls, attempt: AttemptRecord) -> DeliveryAttempt:
        return cls(
            attempt=attempt.attempt,
            started_at=attempt.started_at,
            duration_ms=attempt.duration_ms,
            outcome=attempt.outcome,
            status_code=attempt.status_code,
            error=attempt.error,
        )


@strawberry.type(description="An alert's delivery to one channel (its id is the message id).")
class AlertDelivery:
    id: strawberry.ID
    channel_id: strawberry.ID
    channel_kind: ChannelKind
    state: DeliveryState
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    delivered_at: dt.datetime | None
    history: list[DeliveryAttempt]

    @classmethod
    def of(cls, delivery: DeliveryRecord) -> AlertDelivery:
        return cls(
            id=strawberry.ID(str(delivery.id)),
            channel_id=strawberry.ID(str(delivery.channel_id)),
            channel_kind=delivery.channel_kind,
            state=delivery.state,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_error=delivery.last_error,
            delivered_at=delivery.delivered_at,
            history=[DeliveryAttempt.of(a) for a in delivery.history],
        )
