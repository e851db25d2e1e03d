"""Alerts, notification channels, and the delivery outbox with its attempts.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("budget_id", sa.Uuid(), nullable=False),
        sa.Column("stage", sa.SmallInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.Uuid(), nullable=False),
        sa.Column("spent", sa.Numeric(precision=38, scale=12), nullable=False),
        sa.Column("limit_amount", sa.Numeric(precision=38, scale=12), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "raised_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=255), nullable=True),
        sa.CheckConstraint("stage BETWEEN 0 AND 100", name=op.f("ck_alerts_stage")),
        sa.ForeignKeyConstraint(
            ["organization_id", "budget_id"],
            ["budgets.organization_id", "budgets.id"],
            name=op.f("fk_alerts_organization_id_budget_id_budgets"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_alerts_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_alerts")),
        sa.UniqueConstraint(
            "organization_id",
            "budget_id",
            "stage",
            "period_start",
            name=op.f("uq_alerts_organization_id_budget_id_stage_period_start"),
        ),
    )
    op.create_index("ix_alerts_org_raised", "alerts", ["organization_id", "raised_at"])
    op.create_table(
        "notification_channels",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column(
            "secrets",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("scope_kind", sa.String(length=16), nullable=True),
        sa.Column("scope_id", sa.Uuid(), nullable=True),
        sa.Column("budget_id", sa.Uuid(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('WEBHOOK', 'EMAIL', 'SLACK', 'TEAMS', 'PAGERDUTY', 'SMS')",
            name=op.f("ck_notification_channels_kind"),
        ),
        sa.CheckConstraint(
            "(scope_kind IS NULL) = (scope_id IS NULL)",
            name=op.f("ck_notification_channels_scope"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "budget_id"],
            ["budgets.organization_id", "budgets.id"],
            name=op.f("fk_notification_channels_organization_id_budget_id_budgets"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_notification_channels_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_notification_channels")),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("alert_id", sa.Uuid(), nullable=False),
        sa.Column("channel_id", sa.Uuid(), nullable=False),
        sa.Column(
            "state", sa.String(length=16), server_default=sa.text("'PENDING'"), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("claim_token", sa.Uuid(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('PENDING', 'DELIVERED', 'DEAD')", name=op.f("ck_alert_deliveries_state")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "alert_id"],
            ["alerts.organization_id", "alerts.id"],
            name=op.f("fk_alert_deliveries_organization_id_alert_id_alerts"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "channel_id"],
            ["notification_channels.organization_id", "notification_channels.id"],
            name=op.f("fk_alert_deliveries_organization_id_channel_id_notification_channels"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_alert_deliveries_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_alert_deliveries")),
        sa.UniqueConstraint(
            "organization_id",
            "alert_id",
            "channel_id",
            name=op.f("uq_alert_deliveries_organization_id_alert_id_channel_id"),
        ),
    )
    op.create_index(
        "ix_alert_deliveries_due",
        "alert_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("state = 'PENDING'"),
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id", "delivery_id"],
            ["alert_deliveries.organization_id", "alert_deliveries.id"],
            name=op.f("fk_delivery_attempts_organization_id_delivery_id_alert_deliveries"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_delivery_attempts_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "delivery_id", "attempt", name=op.f("pk_delivery_attempts")
        ),
    )


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    op.drop_index("ix_alert_deliveries_due", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_table("notification_channels")
    op.drop_index("ix_alerts_org_raised", table_name="alerts")
    op.drop_table("alerts")
