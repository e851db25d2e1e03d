"""Ledger writers read subscriptions under the organisation's writer guard.

Revision ID: 0020
Revises: 0019

A usage write charges under the subscriptions it reads (an allowance to draw on, or none). It
read them before it took any lock, so a subscription committed while the write waited (for
the account's balance, say) was not seen: the write charged in full inside the new plan's
cycle, whose fee was billed. Now a ledger writer reads an account's subscriptions through
:func:`subscriptions_for_writer`, which first takes the organisation's writer guard
(migration 0011) in SHARE mode until commit, then reads with a fresh snapshot; subscribing
takes the guard EXCLUSIVE, as setting a budget does. A subscription is then either committed
before a writer reads, or waits for the writers in flight to commit (and refuses a start
before their usage).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUBSCRIPTIONS_FOR_WRITER = """
CREATE FUNCTION subscriptions_for_writer(p_org uuid, p_accounts uuid[])
RETURNS SETOF account_subscriptions
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(budget_guard_key(p_org));
    RETURN QUERY
        SELECT * FROM account_subscriptions s
        WHERE s.organization_id = p_org AND s.account_id = ANY(p_accounts)
        ORDER BY s.starts_at;
END
$fn$
"""


def upgrade() -> None:
    op.execute(SUBSCRIPTIONS_FOR_WRITER)


def downgrade() -> None:
    op.execute("DROP FUNCTION subscriptions_for_writer(uuid, uuid[])")
