"""Budgets, their per-period counters, and reservations.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("custom_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("custom_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("limit_amount", sa.Numeric(precision=38, scale=12), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("basis", sa.String(length=16), nullable=False),
        sa.Column("hard_cap", sa.Boolean(), nullable=False),
        sa.Column("thresholds", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(period = 'CUSTOM') = (custom_start IS NOT NULL AND custom_end IS NOT NULL)",
            name=op.f("ck_budgets_custom_window"),
        ),
        sa.CheckConstraint(
            "custom_end IS NULL OR custom_end > custom_start", name=op.f("ck_budgets_window_order")
        ),
        sa.CheckConstraint("limit_amount > 0", name=op.f("ck_budgets_limit_positive")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_budgets_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_budgets")),
        sa.UniqueConstraint(
            "organization_id",
            "scope_kind",
            "scope_id",
            "period",
            "basis",
            name=op.f("uq_budgets_organization_id_scope_kind_scope_id_period_basis"),
        ),
    )
    op.create_table(
        "budget_counters",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("budget_id", sa.Uuid(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "spent", sa.Numeric(precision=38, scale=12), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "reserved",
            sa.Numeric(precision=38, scale=12),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "budget_id"],
            ["budgets.organization_id", "budgets.id"],
            name=op.f("fk_budget_counters_organization_id_budget_id_budgets"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_budget_counters_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "budget_id", "period_start", name=op.f("pk_budget_counters")
        ),
    )
    op.create_table(
        "reservations",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("ai_cost", sa.Numeric(precision=38, scale=12), nullable=False),
        sa.Column("billed", sa.Numeric(precision=38, scale=12), nullable=False),
        sa.Column("holds", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.String(length=16), server_default=sa.text("'HELD'"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_entry_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('HELD', 'SETTLED', 'RELEASED', 'EXPIRED')",
            name=op.f("ck_reservations_state"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "account_id"],
            ["accounts.organization_id", "accounts.id"],
            name=op.f("fk_reservations_organization_id_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_reservations_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_reservations")),
        sa.UniqueConstraint(
            "organization_id",
            "idempotency_key",
            name=op.f("uq_reservations_organization_id_idempotency_key"),
        ),
    )
    op.create_index(
        "ix_reservations_org_state_expires",
        "reservations",
        ["organization_id", "state", "expires_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_reservations_org_state_expires", table_name="reservations")
    op.drop_table("reservations")
    op.drop_table("budget_counters")
    op.drop_table("budgets")
