"""Migration 0021 flags the balance row of every account with an enabled auto-top-up: its SQL,
run over flags spoiled on purpose, sets exactly those (making a missing balance row at 0, as
setAutoTopUp does) and leaves a disabled setting's row unflagged; verify is clean after."""

from __future__ import annotations

import importlib
import uuid

from costgraph.app.state import AppState
from tests.conftest import Tenant, raw_connection
from tests.test_allowances import prepaid_account
from tests.test_top_ups_withdrawals import SET_AUTO
from tests.test_verify import ok
from tests.verify_support import assert_no_drift

MIGRATION = importlib.import_module("costgraph.migrations.versions.0021_balance_auto_top_up_flag")


async def _set(tenant: Tenant, account: str, enabled: bool) -> None:
    top_up = {"accountId": account, "enabled": enabled, "threshold": "1.00", "amount": "20"}
    ok(await tenant.gql(SET_AUTO, {"input": top_up}), "setAutoTopUp", "AutoTopUp")


async def test_enabled_settings_get_their_flag(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    on, rowless, off = [await prepaid_account(tenant, None) for _ in range(3)]
    for account, enabled in ((on, True), (rowless, True), (off, False)):
        await _set(tenant, account, enabled)
    org = tenant.org.id
    async with raw_connection(database_url) as connection:
        # As before 0021: no flags, and one enabled setting whose balance row was never made.
        await connection.execute(
            "UPDATE account_balances SET auto_top_up = false WHERE organization_id = $1", org
        )
        await connection.execute(
            "DELETE FROM account_balances WHERE organization_id = $1 AND account_id = $2",
            org,
            uuid.UUID(rowless),
        )
        await connection.execute(MIGRATION.FLAG_ENABLED_SETTINGS)
        rows = await connection.fetch(
            "SELECT account_id, balance, auto_top_up FROM account_balances "
            "WHERE organization_id = $1 AND account_id = ANY($2::uuid[])",
            org,
            [uuid.UUID(a) for a in (on, rowless, off)],
        )
    flags = {str(row["account_id"]): (row["balance"], row["auto_top_up"]) for row in rows}
    assert flags == {on: (0, True), rowless: (0, True), off: (0, False)}
    await assert_no_drift(state, org)
