"""Rollups of the ledger: hourly sums per organisation, account, model, agent, user and feature,
the job's high-water mark, the monthly close, and agents' liability estimates.

A rollup row is a cache of a plain SUM over the ledger for one hour (UTC) and one value of its
dimensions; :mod:`costgraph.billing.rollups` keeps them, :mod:`costgraph.billing.pnl_repository`
reads them. Dimensions are NOT NULL so they can sit in the primary key: an entry without a
user, an agent, … is stored under the empty string or the nil UUID (real tags are never
empty, real ids never nil) and read back as NULL.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from costgraph.models.base import (
    Base,
    CreatedAt,
    CurrencyColumn,
    Id,
    Money,
    TenantScoped,
    Timestamp,
)

NIL_UUID = uuid.UUID(int=0)
_ZERO = text("0")
_NIL = text("'00000000-0000-0000-0000-000000000000'::uuid")
_EMPTY = text("''")


class RollupMeasures:
    """The sums every rollup row carries (see :mod:`costgraph.billing.pnl_measures`)."""

    bucket: Mapped[Timestamp] = mapped_column(primary_key=True)
    currency: Mapped[CurrencyColumn] = mapped_column(primary_key=True)
    entries: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    events: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    input_tokens: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    output_tokens: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    ai_cost: Mapped[Money] = mapped_column(server_default=_ZERO)
    billed_usage: Mapped[Money] = mapped_column(server_default=_ZERO)
    postpaid_usage: Mapped[Money] = mapped_column(server_default=_ZERO)
    subscriptions: Mapped[Money] = mapped_column(server_default=_ZERO)
    top_ups: Mapped[Money] = mapped_column(server_default=_ZERO)
    refunds: Mapped[Money] = mapped_column(server_default=_ZERO)
    withdrawals: Mapped[Money] = mapped_column(server_default=_ZERO)
    platform_fees: Mapped[Money] = mapped_column(server_default=_ZERO)
    balance_adjustments: Mapped[Money] = mapped_column(server_default=_ZERO)
    charged_usage: Mapped[Money] = mapped_column(server_default=_ZERO)
    last_at: Mapped[Timestamp]


def _tag(length: int) -> Mapped[str]:
    return mapped_column(String(length), primary_key=True, server_default=_EMPTY)


def _ref() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, server_default=_NIL)


class OrgHourly(RollupMeasures, TenantScoped, Base):
    __tablename__ = "rollup_org_hourly"


class AccountHourly(RollupMeasures, TenantScoped, Base):
    """Per account (the nil account: entries without one, e.g. organisation-wide fees)."""

    __tablename__ = "rollup_account_hourly"
    __table_args__ = (
        Index("ix_rollup_account_hourly_customer", "organization_id", "customer_id", "bucket"),
        Index("ix_rollup_account_hourly_bucket", "organization_id", "bucket"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, sort_order=-50)
    customer_id: Mapped[uuid.UUID] = mapped_column(server_default=_NIL)


class ModelHourly(RollupMeasures, TenantScoped, Base):
    __tablename__ = "rollup_model_hourly"

    provider: Mapped[str] = _tag(100)
    model: Mapped[str] = _tag(200)


class AgentHourly(RollupMeasures, TenantScoped, Base):
    __tablename__ = "rollup_agent_hourly"
    __table_args__ = (Index("ix_rollup_agent_hourly_agent", "organization_id", "agent", "bucket"),)

    agent: Mapped[str] = _tag(200)
    provider: Mapped[str] = _tag(100)
    model: Mapped[str] = _tag(200)


class UserHourly(RollupMeasures, TenantScoped, Base):
    __tablename__ = "rollup_user_hourly"
    __table_args__ = (Index("ix_rollup_user_hourly_user", "organization_id", "user_id", "bucket"),)

    user_id: Mapped[uuid.UUID] = _ref()
    department_id: Mapped[uuid.UUID] = _ref()


class FeatureHourly(RollupMeasures, TenantScoped, Base):
    __tablename__ = "rollup_feature_hourly"

    feature: Mapped[str] = _tag(200)


class RollupState(Base):
    """The rollup job's high-water mark: the snapshot (``txid_snapshot`` text) up to which
    every ledger entry is in the rollups. Platform-wide state of one job, not a tenant's row.
    """

    __tablename__ = "rollup_state"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    snapshot: Mapped[str] = mapped_column(Text)
    #: The run's own transaction id (it writes no entries: readers ignore it in the tail).
    txid: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    runs: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    rolled_up: Mapped[int] = mapped_column(BigInteger, server_default=_ZERO)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )


class MonthClose(TenantScoped, Base):
    """A month's P&L as closed by the monthly job, per scope and entry currency. Immutable."""

    __tablename__ = "pnl_month_closes"
    __table_args__ = (
        CheckConstraint("scope_kind IN ('ORGANIZATION', 'CUSTOMER', 'ACCOUNT')", name="scope_kind"),
    )

    month: Mapped[Timestamp] = mapped_column(primary_key=True)
    scope_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    currency: Mapped[CurrencyColumn] = mapped_column(primary_key=True)
    entries: Mapped[int] = mapped_column(BigInteger)
    events: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger)
    ai_cost: Mapped[Money]
    billed_usage: Mapped[Money]
    postpaid_usage: Mapped[Money]
    subscriptions: Mapped[Money]
    top_ups: Mapped[Money]
    refunds: Mapped[Money]
    withdrawals: Mapped[Money]
    platform_fees: Mapped[Money]
    balance_adjustments: Mapped[Money]
    closed_at: Mapped[CreatedAt]


class LiabilityEstimate(TenantScoped, Base):
    """An agent's expected exposure from a decision: reported beside the P&L, never in it."""

    __tablename__ = "liability_estimates"
    __table_args__ = (
        UniqueConstraint("organization_id", "idempotency_key"),
        Index("ix_liability_estimates_org_occurred", "organization_id", "occurred_at"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[bytes] = mapped_column(LargeBinary)
    agent: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Money]
    currency: Mapped[CurrencyColumn]
    occurred_at: Mapped[Timestamp]
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
