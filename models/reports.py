"""Saved report templates and their scheduled monthly runs.

A template is an organisation's saved report: a kind (ledger, usage, pnl, summary), its
filters and columns, and a file format; optionally scheduled to a notification channel.

A run is one template's file for one month: ``UNIQUE (organization_id, template_id, month)``
decides, in PostgreSQL, that a month is delivered at most once whatever the number of
schedulers. The row is also the run's outbox entry: claimed with ``FOR UPDATE SKIP LOCKED``
and a lease, settled as DELIVERED, retried with backoff, or DEAD (as alert deliveries are).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from costgraph.models.alerts import DELIVERY_STATES
from costgraph.models.base import Base, CreatedAt, Id, TenantScoped

REPORT_KINDS = ("LEDGER", "USAGE", "PNL", "SUMMARY")
REPORT_FORMATS = ("CSV", "XLSX", "PDF")
#: A run is settled by the outbox protocol of alert deliveries, so it has their states.
RUN_STATES = DELIVERY_STATES


class ReportTemplate(TenantScoped, Base):
    """A saved report of one organisation, runnable on demand or monthly to a channel."""

    __tablename__ = "report_templates"
    __table_args__ = (
        UniqueConstraint("organization_id", "name"),
        CheckConstraint("kind IN (" + ", ".join(f"'{k}'" for k in REPORT_KINDS) + ")", name="kind"),
        CheckConstraint(
            "format IN (" + ", ".join(f"'{f}'" for f in REPORT_FORMATS) + ")", name="format"
        ),
        ForeignKeyConstraint(
            ["organization_id", "channel_id"],
            ["notification_channels.organization_id", "notification_channels.id"],
        ),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(8))
    #: The report's filters as query parameters (``customerId``, ``model``, ``groupBy``, …).
    filters: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    #: Chosen columns in order; empty: the report's defaults.
    columns: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    #: Delivered monthly to this channel; None: on demand only.
    channel_id: Mapped[uuid.UUID | None]
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]


class ReportRun(TenantScoped, Base):
    """One template's file for one month, delivered (at least once) to its channel."""

    __tablename__ = "report_runs"
    __table_args__ = (
        UniqueConstraint("organization_id", "template_id", "month"),
        ForeignKeyConstraint(
            ["organization_id", "template_id"],
            ["report_templates.organization_id", "report_templates.id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("state IN (" + ", ".join(f"'{s}'" for s in RUN_STATES) + ")", name="state"),
        CheckConstraint("extract(day FROM month) = 1", name="month_start"),
        Index("ix_report_runs_due", "next_attempt_at", postgresql_where=text("state = 'PENDING'")),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    template_id: Mapped[uuid.UUID]
    #: The first day of the month reported.
    month: Mapped[date] = mapped_column(Date)
    #: The channel when the run was created (the template's may change later).
    channel_id: Mapped[uuid.UUID]
    state: Mapped[str] = mapped_column(String(16), server_default=text("'PENDING'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
    claim_token: Mapped[uuid.UUID | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[CreatedAt]
