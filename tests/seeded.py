"""For tests that seed the ledger straight in SQL (bypassing the write path, to build large or
odd histories fast): keep what the write path would have kept beside the entries, so the
suite's database stays consistent for ``costgraph verify`` (CI runs it after the suite)."""

from __future__ import annotations

import uuid

import asyncpg

BALANCES_AS_WRITTEN = """
INSERT INTO account_balances (organization_id, account_id, balance)
SELECT organization_id, account_id, sum(balance_delta) FROM ledger_entries
WHERE organization_id = $1 AND account_id IS NOT NULL GROUP BY 1, 2
ON CONFLICT (organization_id, account_id) DO UPDATE SET balance = excluded.balance
"""

#: A balance row of an account with no entries (a test that used the row as a plain row to
#: fight over, tests/test_retry.py) is what the write path leaves there before any entry: 0.
BALANCES_WITHOUT_ENTRIES = """
UPDATE account_balances b SET balance = 0
WHERE b.organization_id = $1 AND b.balance <> 0 AND NOT EXISTS (
  SELECT 1 FROM ledger_entries e
  WHERE e.organization_id = b.organization_id AND e.account_id = b.account_id)
"""


async def balances_as_written(connection: asyncpg.Connection, organization_id: uuid.UUID) -> None:
    """Every account balance of the organisation = SUM(balance_delta) of its entries, as the
    write path moves it with each entry it writes (0 for an account with none)."""
    await connection.execute(BALANCES_AS_WRITTEN, organization_id)
    await connection.execute(BALANCES_WITHOUT_ENTRIES, organization_id)
