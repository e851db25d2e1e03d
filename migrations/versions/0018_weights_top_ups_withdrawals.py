"""Weighted allowance consumption, auto-top-up settings, withdrawals (issue 18).

Revision ID: 0018
Revises: 0017

- ``allowance_weights``: an organisation's allowance catalog (billing/weights.py): a MODEL's
  or FEATURE's multiplier on tokens, a UNIT kind's budgeted tokens per unit.
- ``ledger_entries.allowance_weight`` and ``budgeted_tokens``: what a usage entry consumed of
  an allowance, fixed when written. Entries written before stay NULL (the ledger is
  immutable): weight 1, budgeted = their tokens, as they were counted.
- ``auto_top_ups``: an account's auto-top-up (threshold and amount on its prepaid balance)
  and whether a request is outstanding (billing/top_ups.py).
- ``alerts.kind`` may be ``TOP_UP_REQUESTED`` (the webhook of a top-up request), whose
  ``requested_amount`` says how much to top up.

Withdrawals need no schema: ``WITHDRAWAL`` was an entry type from the start.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS_BEFORE = "kind IN ('THRESHOLD', 'FORECAST', 'OVERAGE', 'RATE_MISSING', 'PAYMENT_CONFLICT')"
KINDS_AFTER = (
    "kind IN ('THRESHOLD', 'FORECAST', 'OVERAGE', 'RATE_MISSING', 'PAYMENT_CONFLICT', "
    "'TOP_UP_REQUESTED')"
)


def upgrade() -> None:
    op.create_table(
        "allowance_weights",
        sa.Column("organization_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("weight", sa.Numeric(precision=38, scale=12), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "dimension IN ('MODEL', 'FEATURE', 'UNIT')",
            name=op.f("ck_allowance_weights_dimension"),
        ),
        sa.CheckConstraint("weight >= 0", name=op.f("ck_allowance_weights_weight")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_allowance_weights_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "dimension", "provider", "name", name=op.f("pk_allowance_weights")
        ),
    )
    op.create_table(
        "auto_top_ups",
        sa.Column("organization_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("account_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("threshold", sa.Numeric(precision=38, scale=12), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=12), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requests", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("threshold >= 0 AND amount > 0", name=op.f("ck_auto_top_ups_amounts")),
        sa.ForeignKeyConstraint(
            ["organization_id", "account_id"],
            ["accounts.organization_id", "accounts.id"],
            name=op.f("fk_auto_top_ups_organization_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_auto_top_ups_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "account_id", name=op.f("pk_auto_top_ups")),
    )
    op.add_column(
        "ledger_entries",
        sa.Column("allowance_weight", sa.Numeric(precision=38, scale=12), nullable=True),
    )
    op.add_column("ledger_entries", sa.Column("budgeted_tokens", sa.BigInteger(), nullable=True))
    op.add_column(
        "alerts", sa.Column("requested_amount", sa.Numeric(precision=38, scale=12), nullable=True)
    )
    op.drop_constraint(op.f("ck_alerts_kind"), "alerts", type_="check")
    op.create_check_constraint(op.f("ck_alerts_kind"), "alerts", KINDS_AFTER)


def downgrade() -> None:
    # The alerts the old schema cannot hold go, with their deliveries.
    op.execute(
        "DELETE FROM delivery_attempts t USING alert_deliveries d, alerts a"
        " WHERE t.organization_id = d.organization_id AND t.delivery_id = d.id"
        " AND d.organization_id = a.organization_id AND d.alert_id = a.id"
        " AND a.kind = 'TOP_UP_REQUESTED'"
    )
    op.execute(
        "DELETE FROM alert_deliveries d USING alerts a WHERE d.organization_id = a.organization_id"
        " AND d.alert_id = a.id AND a.kind = 'TOP_UP_REQUESTED'"
    )
    op.execute("DELETE FROM alerts WHERE kind = 'TOP_UP_REQUESTED'")
    op.drop_constraint(op.f("ck_alerts_kind"), "alerts", type_="check")
    op.create_check_constraint(op.f("ck_alerts_kind"), "alerts", KINDS_BEFORE)
    op.drop_column("alerts", "requested_amount")
    op.drop_column("ledger_entries", "budgeted_tokens")
    op.drop_column("ledger_entries", "allowance_weight")
    op.drop_table("auto_top_ups")
    op.drop_table("allowance_weights")
