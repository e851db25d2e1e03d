"""Alerts, the channels that hear of them, and the outbox that delivers to those channels.

An alert is raised once per budget, stage and period: ``UNIQUE (organization_id, budget_id,
stage, period_start)`` decides it, in the writer's transaction, whatever the concurrency.
Stage 1..100 is a threshold in percent; stage 0 is the forecast stage.

Deliveries are a transactional outbox: one row per alert and matching channel, written in the
same transaction as the alert; a worker claims due rows (``FOR UPDATE SKIP LOCKED``), delivers
them, and records every attempt. A delivery's id is its stable message id (``webhook-id``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from costgraph.models.base import Base, CreatedAt, CurrencyColumn, Id, Money, TenantScoped

CHANNEL_KINDS = ("WEBHOOK", "EMAIL", "SLACK", "TEAMS", "PAGERDUTY", "SMS")
DELIVERY_STATES = ("PENDING", "DELIVERED", "DEAD")


class NotificationChannel(TenantScoped, Base):
    """Where alerts of the organisation (or of one scope or budget) are sent.

    ``secrets`` holds the active signing secrets, newest first (several while one is being
    rotated: a webhook is signed with each); for PagerDuty, the routing key.
    """

    __tablename__ = "notification_channels"
    __table_args__ = (
        CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in CHANNEL_KINDS) + ")", name="kind"
        ),
        CheckConstraint("(scope_kind IS NULL) = (scope_id IS NULL)", name="scope"),
        ForeignKeyConstraint(
            ["organization_id", "budget_id"], ["budgets.organization_id", "budgets.id"]
        ),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    secrets: Mapped[list[dict[str, str]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    #: None: the whole organisation.
    scope_kind: Mapped[str | None] = mapped_column(String(16))
    scope_id: Mapped[uuid.UUID | None]
    #: Only this budget's alerts (within the scope, if one is set too).
    budget_id: Mapped[uuid.UUID | None]
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=true())
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[CreatedAt]


class Alert(TenantScoped, Base):
    """A budget stage reached in a period; facts frozen when raised, acknowledged by a person."""

    __tablename__ = "alerts"
    __table_args__ = (
        # Once per budget, kind, stage and period under one version of the budget's terms:
        # a limit change re-arms the stages (budgets.terms_version).
        UniqueConstraint(
            "organization_id",
            "budget_id",
            "kind",
            "stage",
            "period_start",
            "terms_version",
            name="uq_alerts_once_per_terms",
        ),
        ForeignKeyConstraint(
            ["organization_id", "budget_id"], ["budgets.organization_id", "budgets.id"]
        ),
        CheckConstraint("stage BETWEEN 0 AND 100", name="stage"),
        CheckConstraint(
            "kind IN ('THRESHOLD', 'FORECAST', 'OVERAGE', 'RATE_MISSING', 'PAYMENT_CONFLICT', "
            "'TOP_UP_REQUESTED')",
            name="kind",
        ),
        CheckConstraint("budget_id IS NOT NULL OR subject IS NOT NULL", name="budget_or_subject"),
        Index("ix_alerts_org_raised", "organization_id", "raised_at"),
        # An alert about something else than a budget, once per subject.
        Index(
            "uq_alerts_subject",
            "organization_id",
            "subject",
            unique=True,
            postgresql_where=text("subject IS NOT NULL"),
        ),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    #: None: an alert about something else (``subject``), e.g. a PAYMENT_CONFLICT.
    budget_id: Mapped[uuid.UUID | None]
    #: What an alert without a budget is about (a Stripe payment's key and refused body).
    subject: Mapped[str | None] = mapped_column(String(255))
    #: THRESHOLD (a stage reached), FORECAST (the projected total is over the limit),
    #: OVERAGE (a settle beyond its hold took a hard-capped period over its limit) or
    #: RATE_MISSING (spend the budget could not count for want of a rate).
    kind: Mapped[str] = mapped_column(String(16), server_default=text("'THRESHOLD'"))
    #: Percent of the limit (1..100) for a THRESHOLD; 0 for the other kinds.
    stage: Mapped[int] = mapped_column(SmallInteger)
    #: The budget's ``terms_version`` the alert was raised under.
    terms_version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    scope_kind: Mapped[str] = mapped_column(String(16))
    scope_id: Mapped[uuid.UUID]
    #: The scope's name as it was when raised (a user's name and email, a department's name).
    scope_name: Mapped[str | None] = mapped_column(Text)
    #: Spend after the write that crossed the stage (the projection, for the forecast stage).
    spent: Mapped[Money]
    limit_amount: Mapped[Money]
    currency: Mapped[CurrencyColumn]
    #: TOP_UP_REQUESTED: the top-up asked for (``spent`` the balance, ``limit`` the threshold).
    requested_amount: Mapped[Decimal | None] = mapped_column(Numeric(38, 12))
    message: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[CreatedAt]
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(String(255))


class AlertDelivery(TenantScoped, Base):
    """One alert to one channel: the outbox row. Its id is the message id receivers dedupe by."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("organization_id", "alert_id", "channel_id"),
        ForeignKeyConstraint(
            ["organization_id", "alert_id"], ["alerts.organization_id", "alerts.id"]
        ),
        ForeignKeyConstraint(
            ["organization_id", "channel_id"],
            ["notification_channels.organization_id", "notification_channels.id"],
        ),
        CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in DELIVERY_STATES) + ")", name="state"
        ),
        # The worker's claim: due PENDING rows, across organisations (platform work).
        Index(
            "ix_alert_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("state = 'PENDING'"),
        ),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    alert_id: Mapped[uuid.UUID]
    channel_id: Mapped[uuid.UUID]
    state: Mapped[str] = mapped_column(String(16), server_default=text("'PENDING'"))
    #: Attempts started (a claim counts one, so a delivery that kills its worker still ends).
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: When the row is next due; a claim moves it forward by the lease.
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
    #: The current claim; only its holder may record the outcome.
    claim_token: Mapped[uuid.UUID | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[CreatedAt]


class DeliveryAttempt(TenantScoped, Base):
    """One try of a delivery and how it went."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "delivery_id"],
            ["alert_deliveries.organization_id", "alert_deliveries.id"],
        ),
    )

    delivery_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer)
    #: DELIVERED, or why not: HTTP_STATUS, TIMEOUT, CONNECT, REFUSED, REDIRECT, ERROR.
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
