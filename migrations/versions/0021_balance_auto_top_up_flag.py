"""The balance row says whether its account has an auto-top-up on.

Revision ID: 0021
Revises: 0020

Every write that moves a prepaid balance evaluates the account's auto-top-up before commit,
a statement of its own under the balance's row lock (billing/top_ups.py) — also for the many
accounts that have none. ``account_balances.auto_top_up`` mirrors "an enabled setting
exists": ``setAutoTopUp`` sets it on the balance row (creating the row) in its transaction,
under that row's lock, so a writer whose statement moved the balance reads the flag as the
lock left it — the latest committed value, even when the setting committed while the writer
waited for the lock (a read of ``auto_top_ups`` in the same statement would miss it: its
snapshot predates the wait). Off, the writer skips the evaluation: there is nothing to
evaluate until it commits, since changing the setting needs the lock it holds.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: Every enabled setting's balance row flagged (made at 0 where missing, as setAutoTopUp
#: does); tests/test_migration_0021.py runs it over spoiled flags.
FLAG_ENABLED_SETTINGS = (
    "INSERT INTO account_balances (organization_id, account_id, balance, auto_top_up) "
    "SELECT organization_id, account_id, 0, true FROM auto_top_ups WHERE enabled "
    "ON CONFLICT (organization_id, account_id) DO UPDATE SET auto_top_up = true"
)


def upgrade() -> None:
    op.add_column(
        "account_balances",
        sa.Column("auto_top_up", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.execute(FLAG_ENABLED_SETTINGS)


def downgrade() -> None:
    op.drop_column("account_balances", "auto_top_up")
