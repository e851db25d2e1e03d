"""One definition of revenue: usage covered by a plan's allowance is paid by the fee; names
beside ids in alerts.

Revision ID: 0015
Revises: 0014

- Every rollup table gains ``charged_usage``: the billed usage the customer was charged
  beyond the plan's allowance (``-balance_delta`` of usage entries), the revenue attributed
  to a slice of usage. ``postpaid_usage`` now holds the same for postpaid accounts (the
  billed overage: revenue), no longer the whole billed amount, part of which the allowance
  covered. Both are restated in place, row by row, from the entries each row holds: those
  visible in the rollup job's high-water mark (the entries 0006 copied carry txid 0, below
  every mark). The mark stays as it is, so nothing is folded twice or missed.
- Month closes keep their figures, restated under the same definition: ``postpaid_usage``
  of each closed (scope, month, currency) is recomputed from the entries recorded by the
  time it was closed.
- ``alerts.scope_name``: the budget scope's name when the alert was raised.
"""

# SQL text here is assembled from constant names only.
# ruff: noqa: S608

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NIL = "'00000000-0000-0000-0000-000000000000'::uuid"
USAGE = "(e.type = 'USAGE_CHARGE' OR (e.type = 'ADJUSTMENT' AND e.related_entry_id IS NOT NULL))"
#: Each rollup table's key besides organisation, hour and currency: column -> SQL over ``e``.
ROLLUPS: dict[str, dict[str, str]] = {
    "rollup_org_hourly": {},
    "rollup_account_hourly": {"account_id": f"coalesce(e.account_id, {NIL})"},
    "rollup_model_hourly": {
        "provider": "coalesce(e.provider, '')",
        "model": "coalesce(e.model, '')",
    },
    "rollup_agent_hourly": {
        "agent": "coalesce(e.agent, '')",
        "provider": "coalesce(e.provider, '')",
        "model": "coalesce(e.model, '')",
    },
    "rollup_user_hourly": {
        "user_id": f"coalesce(e.user_id, {NIL})",
        "department_id": f"coalesce(e.department_id, {NIL})",
    },
    "rollup_feature_hourly": {"feature": "coalesce(e.feature, '')"},
}
MARK = "(SELECT s.snapshot::txid_snapshot FROM rollup_state s WHERE s.name = 'ledger')"
CHARGED = f"CASE WHEN {USAGE} THEN -e.balance_delta ELSE 0 END"
POSTPAID_CHARGED = f"CASE WHEN {USAGE} AND a.postpaid THEN -e.balance_delta ELSE 0 END"
POSTPAID_BILLED = f"CASE WHEN {USAGE} AND a.postpaid THEN e.amount ELSE 0 END"


def _restate(table: str, values: dict[str, str]) -> str:
    """``UPDATE`` the table's ``values`` (column -> SQL over ``e``/``a``) from the entries
    its rows hold (those visible in the mark), row by row."""
    keys = {
        "organization_id": "e.organization_id",
        "bucket": "date_trunc('hour', e.occurred_at, 'UTC')",
        "currency": "e.currency",
        **ROLLUPS[table],
    }
    selected = [f"{sql} AS {name}" for name, sql in keys.items()]
    selected += [f"sum({sql}) AS {name}" for name, sql in values.items()]
    return (
        f"UPDATE {table} r SET {', '.join(f'{n} = x.{n}' for n in values)} FROM ("
        f"SELECT {', '.join(selected)} FROM ledger_entries e LEFT JOIN accounts a "
        "ON a.organization_id = e.organization_id AND a.id = e.account_id "
        f"WHERE txid_visible_in_snapshot(e.txid, {MARK}) "
        f"GROUP BY {', '.join(str(i) for i in range(1, len(keys) + 1))}) x "
        f"WHERE {' AND '.join(f'r.{k} = x.{k}' for k in keys)}"
    )


def _restate_closes(postpaid: str) -> str:
    return f"""
UPDATE pnl_month_closes c SET postpaid_usage = coalesce((
    SELECT sum({postpaid})
    FROM ledger_entries e
    JOIN accounts a ON a.organization_id = e.organization_id AND a.id = e.account_id
    WHERE e.organization_id = c.organization_id
      AND e.occurred_at >= c.month AND e.occurred_at < c.month + interval '1 month'
      AND e.currency = c.currency AND e.recorded_at <= c.closed_at
      AND CASE c.scope_kind
          WHEN 'ACCOUNT' THEN e.account_id = c.scope_id
          WHEN 'CUSTOMER' THEN e.customer_id = c.scope_id
          ELSE true END), 0)
"""


def upgrade() -> None:
    for table in ROLLUPS:
        op.add_column(
            table,
            sa.Column(
                "charged_usage",
                sa.Numeric(precision=38, scale=12),
                server_default=sa.text("0"),
                nullable=False,
            ),
        )
        op.execute(_restate(table, {"postpaid_usage": POSTPAID_CHARGED, "charged_usage": CHARGED}))
    op.execute(_restate_closes(POSTPAID_CHARGED))
    op.add_column("alerts", sa.Column("scope_name", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("alerts", "scope_name")
    op.execute(_restate_closes(POSTPAID_BILLED))
    for table in ROLLUPS:
        op.execute(_restate(table, {"postpaid_usage": POSTPAID_BILLED}))
        op.drop_column(table, "charged_usage")
