"""Account balances and allowance counters.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_balances",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column(
            "balance",
            sa.Numeric(precision=38, scale=12),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "account_id"],
            ["accounts.organization_id", "accounts.id"],
            name=op.f("fk_account_balances_organization_id_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_account_balances_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "account_id", name=op.f("pk_account_balances")),
    )
    # Balances of entries written before this revision.
    op.execute(
        """INSERT INTO account_balances (organization_id, account_id, balance)
           SELECT organization_id, account_id, sum(balance_delta) FROM ledger_entries
           WHERE account_id IS NOT NULL GROUP BY organization_id, account_id"""
    )
    op.create_table(
        "allowance_counters",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("cycle_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cycle_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("included_tokens", sa.BigInteger(), nullable=False),
        sa.Column("used_tokens", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "account_id"],
            ["accounts.organization_id", "accounts.id"],
            name=op.f("fk_allowance_counters_organization_id_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_allowance_counters_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "account_id", "cycle_start", name=op.f("pk_allowance_counters")
        ),
    )


def downgrade() -> None:
    op.drop_table("allowance_counters")
    op.drop_table("account_balances")
