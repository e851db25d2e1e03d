"""Alerts that are not about a budget: a Stripe payment whose key another request took.

Revision ID: 0014
Revises: 0013

- ``alerts.budget_id`` may be NULL: an alert about something else than a budget (its scope
  is then the organisation, and only the organisation-wide channels hear it).
- ``alerts.subject``: what such an alert is about (for a payment conflict, the payment's key
  and the fingerprint of the refused body), unique per organisation, so a delivery Stripe
  retries for days raises one alert. An alert has a budget or a subject.
- ``alerts.kind`` may be ``PAYMENT_CONFLICT``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS_BEFORE = "kind IN ('THRESHOLD', 'FORECAST', 'OVERAGE', 'RATE_MISSING')"
KINDS_AFTER = "kind IN ('THRESHOLD', 'FORECAST', 'OVERAGE', 'RATE_MISSING', 'PAYMENT_CONFLICT')"


def upgrade() -> None:
    op.alter_column("alerts", "budget_id", existing_type=sa.Uuid(), nullable=True)
    op.add_column("alerts", sa.Column("subject", sa.String(length=255), nullable=True))
    op.create_check_constraint(
        op.f("ck_alerts_budget_or_subject"),
        "alerts",
        "budget_id IS NOT NULL OR subject IS NOT NULL",
    )
    op.create_index(
        "uq_alerts_subject",
        "alerts",
        ["organization_id", "subject"],
        unique=True,
        postgresql_where=sa.text("subject IS NOT NULL"),
    )
    op.drop_constraint(op.f("ck_alerts_kind"), "alerts", type_="check")
    op.create_check_constraint(op.f("ck_alerts_kind"), "alerts", KINDS_AFTER)


def downgrade() -> None:
    # The alerts the old schema cannot hold (no budget) go, with their deliveries.
    op.execute(
        "DELETE FROM delivery_attempts t USING alert_deliveries d, alerts a"
        " WHERE t.organization_id = d.organization_id AND t.delivery_id = d.id"
        " AND d.organization_id = a.organization_id AND d.alert_id = a.id"
        " AND a.budget_id IS NULL"
    )
    op.execute(
        "DELETE FROM alert_deliveries d USING alerts a WHERE d.organization_id = a.organization_id"
        " AND d.alert_id = a.id AND a.budget_id IS NULL"
    )
    op.execute("DELETE FROM alerts WHERE budget_id IS NULL")
    op.drop_constraint(op.f("ck_alerts_kind"), "alerts", type_="check")
    op.create_check_constraint(op.f("ck_alerts_kind"), "alerts", KINDS_BEFORE)
    op.drop_index("uq_alerts_subject", table_name="alerts")
    op.drop_constraint(op.f("ck_alerts_budget_or_subject"), "alerts", type_="check")
    op.drop_column("alerts", "subject")
    op.alter_column("alerts", "budget_id", existing_type=sa.Uuid(), nullable=False)
