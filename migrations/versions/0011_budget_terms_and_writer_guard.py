"""Budget counters that start from the ledger; alerts re-armed by a change of terms.

Revision ID: 0011
Revises: 0010

- ``budgets.terms_version``: raised by ``setBudget`` whenever the limit, currency, hard cap,
  thresholds or window change. Alerts are raised once per version (below), so a new limit
  re-arms the stages above the current spend.
- ``alerts.kind`` (THRESHOLD, FORECAST, OVERAGE; the forecast alerts raised so far, stage 0,
  become FORECAST) and ``alerts.terms_version``; an alert is unique per budget, kind, stage,
  period and terms version.
- The guard between budget setters and ledger writers. Setting a budget seeds its counter
  with the period's spend read from the ledger; a writer whose entries that read cannot see
  (not yet committed) must then see the budget and raise its counter itself. So every writer
  reads the organisation's budgets through :func:`budgets_for_writer` (or asks
  :func:`budget_writers_guard` whether there are any), which first takes the organisation's
  guard lock in SHARE mode until commit, then reads with a fresh snapshot (a VOLATILE
  function's queries each take one). ``setBudget`` takes the same lock EXCLUSIVE before it
  reads the ledger: it waits for the writers in flight to commit, and writers after it see
  the budget. Writers share the lock, so they never wait for each other.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARD_KEY = """
CREATE FUNCTION budget_guard_key(p_org uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT hashtextextended('costgraph.budget_writers:' || p_org::text, 0)
$fn$
"""

WRITERS_GUARD = """
CREATE FUNCTION budget_writers_guard(p_org uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(budget_guard_key(p_org));
    RETURN EXISTS (SELECT 1 FROM budgets b WHERE b.organization_id = p_org);
END
$fn$
"""

BUDGETS_FOR_WRITER = """
CREATE FUNCTION budgets_for_writer(p_org uuid) RETURNS SETOF budgets
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(budget_guard_key(p_org));
    RETURN QUERY
        SELECT * FROM budgets b WHERE b.organization_id = p_org ORDER BY b.created_at, b.id;
END
$fn$
"""

FUNCTIONS = ("budgets_for_writer(uuid)", "budget_writers_guard(uuid)", "budget_guard_key(uuid)")


def upgrade() -> None:
    op.add_column(
        "budgets",
        sa.Column("terms_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.add_column(
        "alerts",
        sa.Column(
            "kind", sa.String(length=16), server_default=sa.text("'THRESHOLD'"), nullable=False
        ),
    )
    op.add_column(
        "alerts",
        sa.Column("terms_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.execute("UPDATE alerts SET kind = 'FORECAST' WHERE stage = 0")
    op.create_check_constraint(
        op.f("ck_alerts_kind"), "alerts", "kind IN ('THRESHOLD', 'FORECAST', 'OVERAGE')"
    )
    op.drop_constraint(
        op.f("uq_alerts_organization_id_budget_id_stage_period_start"), "alerts", type_="unique"
    )
    op.create_unique_constraint(
        "uq_alerts_once_per_terms",
        "alerts",
        ["organization_id", "budget_id", "kind", "stage", "period_start", "terms_version"],
    )
    for statement in (GUARD_KEY, WRITERS_GUARD, BUDGETS_FOR_WRITER):
        op.execute(statement)


def downgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    op.drop_constraint("uq_alerts_once_per_terms", "alerts", type_="unique")
    # Alerts the old key cannot hold (re-armed by a change of terms, or OVERAGE) go, with
    # their deliveries.
    op.execute(
        "DELETE FROM delivery_attempts t USING alert_deliveries d, alerts a"
        " WHERE t.organization_id = d.organization_id AND t.delivery_id = d.id"
        " AND d.organization_id = a.organization_id AND d.alert_id = a.id"
        " AND (a.terms_version > 1 OR a.kind = 'OVERAGE')"
    )
    op.execute(
        "DELETE FROM alert_deliveries d USING alerts a WHERE d.organization_id = a.organization_id"
        " AND d.alert_id = a.id AND (a.terms_version > 1 OR a.kind = 'OVERAGE')"
    )
    op.execute("DELETE FROM alerts a WHERE a.terms_version > 1 OR a.kind = 'OVERAGE'")
    op.create_unique_constraint(
        op.f("uq_alerts_organization_id_budget_id_stage_period_start"),
        "alerts",
        ["organization_id", "budget_id", "stage", "period_start"],
    )
    op.drop_constraint(op.f("ck_alerts_kind"), "alerts", type_="check")
    op.drop_column("alerts", "terms_version")
    op.drop_column("alerts", "kind")
    op.drop_column("budgets", "terms_version")
