"""``costgraph verify`` as a test's closing invariant: every number derived from the ledger of
the test's organisation(s) (balances, allowance cycles, budget counters and holds,
reservations, rollups, live totals, month closes) equals what the ledger says.

    await assert_no_drift(state, tenant.org.id)

It runs the command line's own checks (:data:`~costgraph.subscriptions.totals_check.
LEDGER_CHECKS`) through the domain checker, in the app's zone, and fails with the command's
drift table, so a failure reads as ``costgraph verify`` would print it.
"""

from __future__ import annotations

import uuid

from costgraph.app.cli import drift_table
from costgraph.app.state import AppState
from costgraph.billing import verify
from costgraph.subscriptions.totals_check import LEDGER_CHECKS


async def assert_no_drift(state: AppState, *organization_ids: uuid.UUID | None) -> None:
    """No drift for each organisation named (``None``: every organisation of the database, for
    a database of the test's own)."""
    assert organization_ids, "name the organisation(s) to verify"
    for organization_id in organization_ids:
        report = await verify.verify(
            state.engine, state.limits.zone, organization_id=organization_id, checks=LEDGER_CHECKS
        )
        if not report.clean:
            where = "every organisation" if organization_id is None else str(organization_id)
            unlisted = f" (and {report.unlisted} not listed)" if report.unlisted else ""
            raise AssertionError(
                f"costgraph verify found drift in {where}{unlisted}:\n{drift_table(report)}"
            )
