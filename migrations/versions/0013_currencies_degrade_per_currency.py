"""Currencies degrade per currency: rates with a source, budgets that cannot evaluate.

Revision ID: 0013
Revises: 0012

- ``exchange_rates.source``: where a rate comes from (the platform rates shipped with
  CostGraph name the published reference rates and their date; see
  ``billing/data/platform_rates.csv``). Optional for rates set through the API.
- ``budget_counters.uncounted``: spend of the period the budget could not count because no
  rate into its currency was in force, per entry currency (exact amounts as text). Not
  empty: the budget "cannot evaluate" that period (``budgetStatus.canEvaluate``).
- ``alerts.kind`` may be ``RATE_MISSING``: raised once per budget and period when its
  counter first leaves spend uncounted.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS_BEFORE = "kind IN ('THRESHOLD', 'FORECAST', 'OVERAGE')"
KINDS_AFTER = "kind IN ('THRESHOLD', 'FORECAST', 'OVERAGE', 'RATE_MISSING')"


def upgrade() -> None:
    op.add_column("exchange_rates", sa.Column("source", sa.Text(), nullable=True))
    op.add_column(
        "budget_counters",
        sa.Column(
            "uncounted",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.drop_constraint(op.f("ck_alerts_kind"), "alerts", type_="check")
    op.create_check_constraint(op.f("ck_alerts_kind"), "alerts", KINDS_AFTER)


def downgrade() -> None:
    op.execute(
        "DELETE FROM delivery_attempts t USING alert_deliveries d, alerts a"
        " WHERE t.organization_id = d.organization_id AND t.delivery_id = d.id"
        " AND d.organization_id = a.organization_id AND d.alert_id = a.id"
        " AND a.kind = 'RATE_MISSING'"
    )
    op.execute(
        "DELETE FROM alert_deliveries d USING alerts a WHERE d.organization_id = a.organization_id"
        " AND d.alert_id = a.id AND a.kind = 'RATE_MISSING'"
    )
    op.execute("DELETE FROM alerts WHERE kind = 'RATE_MISSING'")
    op.drop_constraint(op.f("ck_alerts_kind"), "alerts", type_="check")
    op.create_check_constraint(op.f("ck_alerts_kind"), "alerts", KINDS_BEFORE)
    op.drop_column("budget_counters", "uncounted")
    op.drop_column("exchange_rates", "source")
