"""The ledger: immutable, append-only entries of every AI call's cost and every payment."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Index,
    LargeBinary,
    Numeric,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from costgraph.models.base import (
    MONEY_SCALE,
    Base,
    CurrencyColumn,
    Id,
    Money,
    TenantScoped,
    Timestamp,
)


class EntryType(enum.StrEnum):
    USAGE_CHARGE = "USAGE_CHARGE"
    DEPOSIT = "DEPOSIT"
    SUBSCRIPTION_PAYMENT = "SUBSCRIPTION_PAYMENT"
    REFUND = "REFUND"
    ADJUSTMENT = "ADJUSTMENT"
    WITHDRAWAL = "WITHDRAWAL"
    PLATFORM_FEE = "PLATFORM_FEE"
    #: A subscription's fee billed for a cycle (or a prorated rest of one): unearned until
    #: recognised (billing/subscription_billing.py); moves no balance.
    SUBSCRIPTION_FEE = "SUBSCRIPTION_FEE"
    #: The unused part of a fee credited back (a plan change, seats removed mid-cycle).
    SUBSCRIPTION_CREDIT = "SUBSCRIPTION_CREDIT"
    #: Fees earned: a month of a subscription's billed fees recognised as revenue.
    REVENUE_RECOGNIZED = "REVENUE_RECOGNIZED"
    #: Revenue recognised before and given back (a downgrade credits a month already earned).
    REVENUE_REVERSED = "REVENUE_REVERSED"


_TYPES_SQL = ", ".join(f"'{t.value}'" for t in EntryType)


#: Where the monthly partitions of ``ledger_entries`` live (out of the models' schema, so the
#: models-vs-migrations check sees the partitioned parent only).
PARTITION_SCHEMA = "ledger_partitions"


class LedgerScoped(TenantScoped):
    """A ledger table's tenant column, without a per-row foreign key: the ledger's parents
    (organisation, account) are checked once per insert statement and may never be deleted
    (triggers of migration 0010)."""

    @declared_attr
    def organization_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(UUID(as_uuid=True), primary_key=True, sort_order=-100)


class LedgerEntry(LedgerScoped, Base):
    """One immutable fact. A database trigger refuses UPDATE, DELETE and TRUNCATE.

    Partitioned by ``occurred_at`` (monthly, in :data:`PARTITION_SCHEMA`, plus a DEFAULT
    partition so every accepted time has a home). A unique key on a partitioned table must
    contain the partition key, so idempotency keys are owned by :class:`LedgerKey`.
    ``txid`` is the writing transaction's id: the rollup job's high-water mark is a snapshot
    of those (see :mod:`costgraph.billing.rollups`).

    ``amount`` is the entry's value in ``currency`` (the account's currency): never negative
    except for adjustments. ``balance_delta`` is its signed effect on the account's prepaid
    balance, fixed when the entry is written, so a balance is a plain SUM.
    For usage, ``ai_cost`` is the provider cost converted at ``fx_rate`` and ``amount`` the
    customer-facing price (billed usage).
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(f"type IN ({_TYPES_SQL})", name="type"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        CheckConstraint("amount >= 0 OR type = 'ADJUSTMENT'", name="amount_sign"),
        CheckConstraint(
            "input_tokens >= 0 AND output_tokens >= 0 AND cached_input_tokens >= 0 "
            "AND reasoning_tokens >= 0",
            name="tokens",
        ),
        CheckConstraint("cache_write_tokens >= 0", name="cache_write_tokens"),
        Index("ix_ledger_entries_org_occurred", "organization_id", "occurred_at", "id"),
        Index(
            "ix_ledger_entries_org_account_occurred",
            "organization_id",
            "account_id",
            "occurred_at",
        ),
        Index(
            "ix_ledger_entries_txid",
            "txid",
            postgresql_using="brin",
            postgresql_with={"pages_per_range": 16, "autosummarize": "on"},
        ),
        {"postgresql_partition_by": "RANGE (occurred_at)"},
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[uuid.UUID | None]
    customer_id: Mapped[uuid.UUID | None]
    occurred_at: Mapped[Timestamp] = mapped_column(primary_key=True)
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    currency: Mapped[CurrencyColumn]
    amount: Mapped[Money]
    balance_delta: Mapped[Money] = mapped_column(server_default=text("0"))
    ai_cost: Mapped[Money] = mapped_column(server_default=text("0"))
    provider_cost: Mapped[Decimal | None] = mapped_column(Numeric(38, MONEY_SCALE))
    provider_currency: Mapped[str | None] = mapped_column(String(3))
    fx_rate: Mapped[Decimal | None] = mapped_column(Numeric(38, MONEY_SCALE))
    price_version_id: Mapped[uuid.UUID | None]
    caller_priced: Mapped[bool] = mapped_column(Boolean, server_default=false())
    provider: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(200))
    input_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    output_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    markup_percent: Mapped[Decimal | None] = mapped_column(Numeric(38, MONEY_SCALE))
    #: Usage only: the multiplier on its tokens (model x feature weight) and the budgeted
    #: tokens it consumes of an allowance (billing/weights.py). NULL on entries written
    #: before weights (migration 0018): weight 1, budgeted = its tokens.
    allowance_weight: Mapped[Decimal | None] = mapped_column(Numeric(38, MONEY_SCALE))
    budgeted_tokens: Mapped[int | None] = mapped_column(BigInteger)
    units: Mapped[list[dict[str, str]] | None] = mapped_column(JSONB)
    user_id: Mapped[uuid.UUID | None]
    department_id: Mapped[uuid.UUID | None]
    feature: Mapped[str | None] = mapped_column(String(200))
    agent: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(200))
    related_entry_id: Mapped[uuid.UUID | None]
    description: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[bytes] = mapped_column(LargeBinary)
    txid: Mapped[int] = mapped_column(BigInteger, server_default=text("txid_current()"))


class LedgerKey(LedgerScoped, Base):
    """The owner of idempotency: one row per ``(organization, idempotency key)``, unpartitioned.

    Written in the same statement as the entry it points to (``INSERT … ON CONFLICT DO
    NOTHING`` here decides which writer records an event); append-only like the ledger.
    """

    __tablename__ = "ledger_keys"

    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    entry_id: Mapped[uuid.UUID]
    occurred_at: Mapped[Timestamp]
