"""Subscriptions that bill: cycle fees, plan changes, cancellation (issue 18).

- The ledger's entry types gain ``SUBSCRIPTION_FEE`` (a cycle's fee billed, unearned until
  recognised), ``SUBSCRIPTION_CREDIT`` (the unused part of a fee credited back),
  ``REVENUE_RECOGNIZED`` and ``REVENUE_REVERSED`` (fees earned month by month, and earned
  revenue given back by a downgrade). See billing/subscription_billing.py.
- ``account_subscriptions.cancelled_at``: when a cancellation was asked (it takes effect at
  the period's end, which ``ends_at`` then holds).

The type check is replaced on the partitioned parent (PostgreSQL applies it to every
partition). Downgrading refuses while entries of the new types exist (the check would fail).

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = (
    "USAGE_CHARGE",
    "DEPOSIT",
    "SUBSCRIPTION_PAYMENT",
    "REFUND",
    "ADJUSTMENT",
    "WITHDRAWAL",
    "PLATFORM_FEE",
)
_AFTER = (
    *_BEFORE,
    "SUBSCRIPTION_FEE",
    "SUBSCRIPTION_CREDIT",
    "REVENUE_RECOGNIZED",
    "REVENUE_REVERSED",
)


def _types(types: Sequence[str]) -> str:
    return "type IN ({})".format(", ".join(f"'{t}'" for t in types))


def upgrade() -> None:
    op.drop_constraint(op.f("ck_ledger_entries_type"), "ledger_entries", type_="check")
    op.create_check_constraint(op.f("ck_ledger_entries_type"), "ledger_entries", _types(_AFTER))
    op.add_column(
        "account_subscriptions",
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("account_subscriptions", "cancelled_at")
    op.drop_constraint(op.f("ck_ledger_entries_type"), "ledger_entries", type_="check")
    op.create_check_constraint(op.f("ck_ledger_entries_type"), "ledger_entries", _types(_BEFORE))
