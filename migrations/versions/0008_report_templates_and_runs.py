"""Saved report templates and their monthly runs (one row per template and month).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_templates",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column(
            "filters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "columns",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("channel_id", sa.Uuid(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "format IN ('CSV', 'XLSX', 'PDF')", name=op.f("ck_report_templates_format")
        ),
        sa.CheckConstraint(
            "kind IN ('LEDGER', 'USAGE', 'PNL', 'SUMMARY')", name=op.f("ck_report_templates_kind")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "channel_id"],
            ["notification_channels.organization_id", "notification_channels.id"],
            name=op.f("fk_report_templates_organization_id_channel_id_notification_channels"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_report_templates_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_report_templates")),
        sa.UniqueConstraint(
            "organization_id", "name", name=op.f("uq_report_templates_organization_id_name")
        ),
    )
    op.create_table(
        "report_runs",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
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
            "state IN ('PENDING', 'DELIVERED', 'DEAD')", name=op.f("ck_report_runs_state")
        ),
        sa.CheckConstraint("extract(day FROM month) = 1", name=op.f("ck_report_runs_month_start")),
        sa.ForeignKeyConstraint(
            ["organization_id", "template_id"],
            ["report_templates.organization_id", "report_templates.id"],
            name=op.f("fk_report_runs_organization_id_template_id_report_templates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_report_runs_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_report_runs")),
        sa.UniqueConstraint(
            "organization_id",
            "template_id",
            "month",
            name=op.f("uq_report_runs_organization_id_template_id_month"),
        ),
    )
    op.create_index(
        "ix_report_runs_due",
        "report_runs",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state = 'PENDING'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_report_runs_due",
        table_name="report_runs",
        postgresql_where=sa.text("state = 'PENDING'"),
    )
    op.drop_table("report_runs")
    op.drop_table("report_templates")
