"""Tier rules as plan data, pooled allowances and seats (issue 18).

- ``plans``: the tier rules an operator sets with ``setPlan``: ``max_accounts_per_customer``
  (NULL: unlimited), ``priority_class`` (STANDARD or PRIORITY, for the caller's scheduler),
  ``pooled`` (one allowance shared by a customer's accounts on the plan) and ``seat_fee`` (per
  seat and monthly cycle, pooled plans only). ``seats`` keeps its column and now means the most
  seats a subscription may have.
- ``account_subscriptions``: ``seats`` (default 1), the ``priority_class`` copied from the plan
  like the fee, and ``pool_id``: the team subscription whose pool the account draws on (the
  team subscription names itself), NULL for a subscription with an allowance of its own.
- ``pool_allowance_counters``: tokens drawn from a pool per cycle, keyed by the pool (the
  per-account ``allowance_counters`` keep the unpooled ones).

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PRIORITIES = "priority_class IN ('STANDARD', 'PRIORITY')"


def upgrade() -> None:
    op.add_column("plans", sa.Column("max_accounts_per_customer", sa.Integer(), nullable=True))
    op.add_column(
        "plans",
        sa.Column(
            "priority_class",
            sa.String(length=16),
            server_default=sa.text("'STANDARD'"),
            nullable=False,
        ),
    )
    op.add_column(
        "plans", sa.Column("pooled", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("plans", sa.Column("seat_fee", sa.Numeric(precision=38, scale=12)))
    op.create_check_constraint(
        op.f("ck_plans_max_accounts"),
        "plans",
        "max_accounts_per_customer IS NULL OR max_accounts_per_customer > 0",
    )
    op.create_check_constraint(op.f("ck_plans_priority_class"), "plans", _PRIORITIES)
    op.create_check_constraint(
        op.f("ck_plans_seat_fee"), "plans", "seat_fee IS NULL OR (pooled AND seat_fee >= 0)"
    )

    op.add_column(
        "account_subscriptions",
        sa.Column("seats", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.add_column(
        "account_subscriptions",
        sa.Column(
            "priority_class",
            sa.String(length=16),
            server_default=sa.text("'STANDARD'"),
            nullable=False,
        ),
    )
    op.add_column("account_subscriptions", sa.Column("pool_id", sa.Uuid(), nullable=True))
    op.create_check_constraint(
        op.f("ck_account_subscriptions_seats"), "account_subscriptions", "seats > 0"
    )
    op.create_check_constraint(
        op.f("ck_account_subscriptions_priority_class"), "account_subscriptions", _PRIORITIES
    )
    op.create_foreign_key(
        "fk_account_subscriptions_pool",
        "account_subscriptions",
        "account_subscriptions",
        ["organization_id", "pool_id"],
        ["organization_id", "id"],
    )
    op.create_index(
        "ix_account_subscriptions_org_pool",
        "account_subscriptions",
        ["organization_id", "pool_id"],
        postgresql_where=sa.text("pool_id IS NOT NULL"),
    )

    op.create_table(
        "pool_allowance_counters",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("pool_id", sa.Uuid(), nullable=False),
        sa.Column("cycle_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cycle_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("included_tokens", sa.BigInteger(), nullable=False),
        sa.Column("used_tokens", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "pool_id"],
            ["account_subscriptions.organization_id", "account_subscriptions.id"],
            name="fk_pool_allowance_counters_pool",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_pool_allowance_counters_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "pool_id", "cycle_start", name=op.f("pk_pool_allowance_counters")
        ),
    )


def downgrade() -> None:
    op.drop_table("pool_allowance_counters")
    op.drop_index("ix_account_subscriptions_org_pool", table_name="account_subscriptions")
    op.drop_constraint("fk_account_subscriptions_pool", "account_subscriptions", type_="foreignkey")
    op.drop_constraint(
        op.f("ck_account_subscriptions_priority_class"), "account_subscriptions", type_="check"
    )
    op.drop_constraint(
        op.f("ck_account_subscriptions_seats"), "account_subscriptions", type_="check"
    )
    op.drop_column("account_subscriptions", "pool_id")
    op.drop_column("account_subscriptions", "priority_class")
    op.drop_column("account_subscriptions", "seats")
    op.drop_constraint(op.f("ck_plans_seat_fee"), "plans", type_="check")
    op.drop_constraint(op.f("ck_plans_priority_class"), "plans", type_="check")
    op.drop_constraint(op.f("ck_plans_max_accounts"), "plans", type_="check")
    op.drop_column("plans", "seat_fee")
    op.drop_column("plans", "pooled")
    op.drop_column("plans", "priority_class")
    op.drop_column("plans", "max_accounts_per_customer")
