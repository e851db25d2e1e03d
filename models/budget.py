"""Budgets, their per-period counters, and reservations held against them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from costgraph.models.base import Base, CreatedAt, CurrencyColumn, Id, Money, TenantScoped


class Budget(TenantScoped, Base):
    """A limit on spend for one scope and period. Configuration, so it may be changed."""

    __tablename__ = "budgets"
    __table_args__ = (
        UniqueConstraint("organization_id", "scope_kind", "scope_id", "period", "basis"),
        CheckConstraint("limit_amount > 0", name="limit_positive"),
        CheckConstraint(
            "(period = 'CUSTOM') = (custom_start IS NOT NULL AND custom_end IS NOT NULL)",
            name="custom_window",
        ),
        CheckConstraint("custom_end IS NULL OR custom_end > custom_start", name="window_order"),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    scope_kind: Mapped[str] = mapped_column(String(16))
    #: The scoped object's id; the organisation's own id for ORGANIZATION budgets.
    scope_id: Mapped[uuid.UUID]
    period: Mapped[str] = mapped_column(String(16))
    custom_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    custom_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    limit_amount: Mapped[Money]
    currency: Mapped[CurrencyColumn]
    basis: Mapped[str] = mapped_column(String(16))
    hard_cap: Mapped[bool] = mapped_column(Boolean)
    thresholds: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    #: Raised whenever the limit, currency, hard cap, thresholds or window change: alerts are
    #: once per version, so a change re-arms the stages (alerts.terms_version).
    terms_version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    created_at: Mapped[CreatedAt]


class BudgetCounter(TenantScoped, Base):
    """Spend and holds of one budget in one period: the row that enforcement locks.

    ``spent + reserved <= limit`` is checked and applied in one conditional UPDATE, so a hard
    cap holds across processes without any lock held in memory.
    """

    __tablename__ = "budget_counters"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "budget_id"], ["budgets.organization_id", "budgets.id"]
        ),
    )

    budget_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    spent: Mapped[Money] = mapped_column(server_default=text("0"))
    reserved: Mapped[Money] = mapped_column(server_default=text("0"))
    #: Spend of the period the budget could not count for want of a rate into its currency,
    #: ``{entry currency: exact amount as text}``; not empty: the budget cannot evaluate.
    uncounted: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))


class Reservation(TenantScoped, Base):
    """An estimated cost held before an AI call, settled by its actual usage or released."""

    __tablename__ = "reservations"
    __table_args__ = (
        UniqueConstraint("organization_id", "idempotency_key"),
        ForeignKeyConstraint(
            ["organization_id", "account_id"], ["accounts.organization_id", "accounts.id"]
        ),
        CheckConstraint("state IN ('HELD', 'SETTLED', 'RELEASED', 'EXPIRED')", name="state"),
        Index("ix_reservations_org_state_expires", "organization_id", "state", "expires_at"),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[bytes] = mapped_column(LargeBinary)
    account_id: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID | None]
    provider: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(200))
    currency: Mapped[CurrencyColumn]
    ai_cost: Mapped[Money]
    billed: Mapped[Money]
    #: [{budget_id, period_start, amount}] as added to the counters' ``reserved``.
    holds: Mapped[list[dict[str, str]]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(String(16), server_default=text("'HELD'"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    settled_entry_id: Mapped[uuid.UUID | None]
    created_at: Mapped[CreatedAt]
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
