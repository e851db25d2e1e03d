"""Pricing: the model price catalog, aliases, exchange rates, markup rules, plans and
subscriptions, and the audit record of every reprice run.

Three tables hold rows of two owners: the platform (``organization_id`` NULL, the catalog
every tenant sees) and one organisation (its own override, seen only by it). They cannot
use :class:`TenantScoped` (whose ``organization_id`` is part of the primary key and never
NULL), so every read of them goes through one explicit filter,
:func:`costgraph.billing.catalog_scope.visible_to`. The rest are ordinary tenant tables.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from costgraph.models.base import (
    MONEY_SCALE,
    Base,
    CreatedAt,
    CurrencyColumn,
    Id,
    Money,
    TenantScoped,
    Timestamp,
)

Price = Decimal | None


def _price() -> Any:
    return mapped_column(Numeric(38, MONEY_SCALE))


def _owner() -> Any:
    return mapped_column(UUID(as_uuid=True), ForeignKey("organizations.id"))


#: Columns of a price version that hold a price (all >= 0 where set).
PRICE_COLUMNS = (
    "input_per_million",
    "output_per_million",
    "cached_input_per_million",
    "cache_write_per_million",
    "reasoning_per_million",
    "input_per_million_above_threshold",
    "output_per_million_above_threshold",
    "image_price",
    "audio_second_price",
    "video_second_price",
    "request_price",
    "character_price",
)
#: Unit kind of a usage event -> the column with its price.
UNIT_PRICE_COLUMNS = {
    "IMAGE": "image_price",
    "AUDIO_SECOND": "audio_second_price",
    "VIDEO_SECOND": "video_second_price",
    "REQUEST": "request_price",
    "CHARACTER": "character_price",
}


class ModelPrice(Base):
    """One version of one model's prices, in force over ``[effective_from, effective_to)``.

    A version is never changed once written, except that an open end may be closed once
    (when the next version starts). Versions of one provider/model/owner never overlap.
    Both rules are enforced by a trigger (see migration 0003), so they hold for every writer.
    """

    __tablename__ = "model_prices"
    __table_args__ = (
        CheckConstraint(
            "effective_to IS NULL OR effective_to > effective_from", name="effective_range"
        ),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        CheckConstraint(
            " AND ".join(f"({c} IS NULL OR {c} >= 0)" for c in PRICE_COLUMNS),
            name="prices_not_negative",
        ),
        CheckConstraint(
            "long_context_threshold IS NULL OR long_context_threshold > 0",
            name="threshold_positive",
        ),
        Index(
            "ix_model_prices_provider_model",
            "provider",
            "model",
            "organization_id",
            "effective_from",
        ),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID | None] = _owner()
    provider: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(200))
    currency: Mapped[CurrencyColumn]
    effective_from: Mapped[Timestamp]
    effective_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    input_per_million: Mapped[Price] = _price()
    output_per_million: Mapped[Price] = _price()
    cached_input_per_million: Mapped[Price] = _price()
    cache_write_per_million: Mapped[Price] = _price()
    reasoning_per_million: Mapped[Price] = _price()
    long_context_threshold: Mapped[int | None] = mapped_column(BigInteger)
    input_per_million_above_threshold: Mapped[Price] = _price()
    output_per_million_above_threshold: Mapped[Price] = _price()
    image_price: Mapped[Price] = _price()
    audio_second_price: Mapped[Price] = _price()
    video_second_price: Mapped[Price] = _price()
    request_price: Mapped[Price] = _price()
    character_price: Mapped[Price] = _price()
    source_url: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[CreatedAt]


class ModelAlias(Base):
    """Another name of a model (e.g. a dated snapshot), per provider and owner."""

    __tablename__ = "model_aliases"
    __table_args__ = (
        UniqueConstraint(
            "organization_id", "provider", "alias", postgresql_nulls_not_distinct=True
        ),
        CheckConstraint("alias <> model", name="not_self"),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID | None] = _owner()
    provider: Mapped[str] = mapped_column(String(100))
    alias: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]


class ExchangeRate(Base):
    """1 ``base`` = ``rate`` ``quote``, in force from ``effective_from`` until the next rate."""

    __tablename__ = "exchange_rates"
    __table_args__ = (
        UniqueConstraint(
            "organization_id",
            "base",
            "quote",
            "effective_from",
            postgresql_nulls_not_distinct=True,
        ),
        CheckConstraint("rate > 0", name="rate_positive"),
        CheckConstraint("base <> quote", name="distinct_pair"),
        CheckConstraint("base ~ '^[A-Z]{3}$' AND quote ~ '^[A-Z]{3}$'", name="currencies"),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID | None] = _owner()
    base: Mapped[CurrencyColumn]
    quote: Mapped[CurrencyColumn]
    rate: Mapped[Money]
    effective_from: Mapped[Timestamp]
    created_by: Mapped[str | None] = mapped_column(String(255))
    #: Where the rate comes from (the shipped platform rates name the published reference
    #: rates and their date); optional for rates set through the API.
    source: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]


class MarkupRule(TenantScoped, Base):
    """A markup percentage over AI cost; the most specific matching rule applies."""

    __tablename__ = "markup_rules"
    __table_args__ = (
        UniqueConstraint(
            "organization_id",
            "customer_id",
            "provider",
            "model",
            postgresql_nulls_not_distinct=True,
        ),
        ForeignKeyConstraint(
            ["organization_id", "customer_id"], ["customers.organization_id", "customers.id"]
        ),
        CheckConstraint("percent >= -100", name="percent_floor"),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    customer_id: Mapped[uuid.UUID | None]
    provider: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(200))
    percent: Mapped[Money]
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


_PRIORITIES = "priority_class IN ('STANDARD', 'PRIORITY')"


class Plan(TenantScoped, Base):
    """What an organisation sells its customers: a fee per cycle and an included allowance,
    and the tier's rules (see :mod:`costgraph.billing.plans` and :mod:`costgraph.billing.pools`).

    ``seats``: the most seats a subscription may have (NULL: no limit);
    ``max_accounts_per_customer``: NULL is unlimited; ``seat_fee`` only on pooled plans.
    """

    __tablename__ = "plans"
    __table_args__ = (
        UniqueConstraint("organization_id", "code"),
        CheckConstraint("monthly_fee >= 0", name="monthly_fee"),
        CheckConstraint("annual_fee IS NULL OR annual_fee >= 0", name="annual_fee"),
        CheckConstraint("included_tokens >= 0", name="included_tokens"),
        CheckConstraint("seats IS NULL OR seats > 0", name="seats"),
        CheckConstraint(
            "max_accounts_per_customer IS NULL OR max_accounts_per_customer > 0",
            name="max_accounts",
        ),
        CheckConstraint(_PRIORITIES, name="priority_class"),
        CheckConstraint("seat_fee IS NULL OR (pooled AND seat_fee >= 0)", name="seat_fee"),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    monthly_fee: Mapped[Money]
    annual_fee: Mapped[Decimal | None] = _price()
    currency: Mapped[CurrencyColumn]
    included_tokens: Mapped[int] = mapped_column(BigInteger)
    seats: Mapped[int | None] = mapped_column(Integer)
    max_accounts_per_customer: Mapped[int | None] = mapped_column(Integer)
    priority_class: Mapped[str] = mapped_column(String(16), server_default=text("'STANDARD'"))
    pooled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    seat_fee: Mapped[Decimal | None] = _price()
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AccountSubscription(TenantScoped, Base):
    """An account on a plan from ``starts_at`` (until ``ends_at``, open while current).

    The fee and allowance are copied from the plan when subscribing: a later change of the
    plan applies to new subscriptions only. ``pool_id``: the team subscription whose pooled
    allowance this one draws on (the team subscription names itself); NULL for an allowance
    of its own (:mod:`costgraph.billing.pools`).
    """

    __tablename__ = "account_subscriptions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "account_id"], ["accounts.organization_id", "accounts.id"]
        ),
        ForeignKeyConstraint(["organization_id", "plan_id"], ["plans.organization_id", "plans.id"]),
        CheckConstraint("billing IN ('MONTHLY', 'ANNUAL')", name="billing"),
        CheckConstraint("ends_at IS NULL OR ends_at > starts_at", name="period"),
        Index("ix_account_subscriptions_org_account", "organization_id", "account_id", "starts_at"),
        ForeignKeyConstraint(
            ["organization_id", "pool_id"],
            ["account_subscriptions.organization_id", "account_subscriptions.id"],
            name="fk_account_subscriptions_pool",
        ),
        Index(
            "ix_account_subscriptions_org_pool",
            "organization_id",
            "pool_id",
            postgresql_where=text("pool_id IS NOT NULL"),
        ),
        CheckConstraint("seats > 0", name="seats"),
        CheckConstraint(_PRIORITIES, name="priority_class"),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    account_id: Mapped[uuid.UUID]
    plan_id: Mapped[uuid.UUID]
    plan_code: Mapped[str] = mapped_column(String(64))
    billing: Mapped[str] = mapped_column(String(16))
    fee: Mapped[Money]
    currency: Mapped[CurrencyColumn]
    included_tokens: Mapped[int] = mapped_column(BigInteger)
    starts_at: Mapped[Timestamp]
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[CreatedAt]
    seats: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    priority_class: Mapped[str] = mapped_column(String(16), server_default=text("'STANDARD'"))
    pool_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    #: When ``cancelSubscription`` was asked (``ends_at`` is then the period's end).
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RepriceRun(TenantScoped, Base):
    """The audit record of one ``reprice``: who asked, for what, and what it wrote."""

    __tablename__ = "reprice_runs"

    id: Mapped[Id] = mapped_column(primary_key=True)
    requested_by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    range_start: Mapped[Timestamp]
    range_end: Mapped[Timestamp]
    filters: Mapped[dict[str, Any]] = mapped_column(JSONB)
    examined: Mapped[int] = mapped_column(Integer)
    adjusted: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[CreatedAt]
