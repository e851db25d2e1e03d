"""Running counters of an account: its prepaid balance and its plan allowance per cycle.

Both are caches of sums over the ledger, kept in the same transaction as the entries they
count, so a conditional UPDATE on them is an atomic check-and-spend across processes.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKeyConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from costgraph.models.base import Base, Money, TenantScoped


class AccountBalance(TenantScoped, Base):
    """Equals SUM(ledger_entries.balance_delta) for the account, at every commit."""

    __tablename__ = "account_balances"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "account_id"], ["accounts.organization_id", "accounts.id"]
        ),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    balance: Mapped[Money] = mapped_column(server_default=text("0"))
    #: Whether the account has an auto-top-up on, set under this row's lock by
    #: ``setAutoTopUp`` (migration 0021): a writer that moved the balance and read it off
    #: skips the top-up evaluation (alerts/top_up_requests.py).
    auto_top_up: Mapped[bool] = mapped_column(Boolean, server_default=false())


class AllowanceCounter(TenantScoped, Base):
    """Tokens drawn from a plan's allowance in one billing cycle."""

    __tablename__ = "allowance_counters"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "account_id"], ["accounts.organization_id", "accounts.id"]
        ),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    cycle_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    cycle_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    included_tokens: Mapped[int] = mapped_column(BigInteger)
    used_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class PoolAllowanceCounter(TenantScoped, Base):
    """Tokens drawn from a pooled allowance in one cycle, by every account of the pool
    (``pool_id``: the team subscription, :mod:`costgraph.billing.pools`)."""

    __tablename__ = "pool_allowance_counters"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "pool_id"],
            ["account_subscriptions.organization_id", "account_subscriptions.id"],
            name="fk_pool_allowance_counters_pool",
        ),
    )

    pool_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    cycle_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    cycle_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    included_tokens: Mapped[int] = mapped_column(BigInteger)
    used_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
