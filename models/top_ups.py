"""Allowance weights (how many budgeted tokens usage consumes) and auto-top-up settings."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Numeric,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from costgraph.models.base import MONEY_SCALE, Base, CurrencyColumn, Money, TenantScoped

#: What a weight applies to (see :mod:`costgraph.billing.weights`).
WEIGHT_DIMENSIONS = ("MODEL", "FEATURE", "UNIT")


class AllowanceWeight(TenantScoped, Base):
    """One weight of an organisation's allowance catalog: a MODEL's or a FEATURE's multiplier
    on tokens, or a UNIT kind's budgeted tokens per unit. ``provider`` is '' except for
    MODEL (where '' with a model name never matches: a model weight names its provider)."""

    __tablename__ = "allowance_weights"
    __table_args__ = (
        CheckConstraint(
            "dimension IN (" + ", ".join(f"'{d}'" for d in WEIGHT_DIMENSIONS) + ")",
            name="dimension",
        ),
        CheckConstraint("weight >= 0", name="weight"),
    )

    dimension: Mapped[str] = mapped_column(String(16), primary_key=True)
    provider: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    weight: Mapped[Decimal] = mapped_column(Numeric(38, MONEY_SCALE))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AutoTopUp(TenantScoped, Base):
    """An account's auto-top-up: when its prepaid balance is below ``threshold``, one
    ``topUpRequested`` of ``amount`` is raised (``requested_at`` set: disarmed) until the
    balance is back at or above the threshold (re-armed)."""

    __tablename__ = "auto_top_ups"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "account_id"], ["accounts.organization_id", "accounts.id"]
        ),
        CheckConstraint("threshold >= 0 AND amount > 0", name="amounts"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    threshold: Mapped[Money]
    amount: Mapped[Money]
    currency: Mapped[CurrencyColumn]
    #: When the pending request was raised; None: armed (no request outstanding).
    requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Requests raised so far (each crossing's number: the alert's subject).
    requests: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
