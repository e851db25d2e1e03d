"""Migration 0015 restates the rollups and the month closes under the one definition of
revenue: its SQL, run over rows spoiled on purpose, gives back exactly what the rollup job
and the monthly close compute from the ledger."""

from __future__ import annotations

import importlib
from decimal import Decimal
from typing import Any

from costgraph.billing import month_close, rollups
from costgraph.billing.pnl_ranges import TimeBucket, truncate
from tests.conftest import raw_connection
from tests.pnl_support import catch_up
from tests.test_pnl_property import BASE, TYPES, insert, make_org

MIGRATION = importlib.import_module(
    "costgraph.migrations.versions.0015_revenue_charged_usage_and_alert_names"
)


def _rows() -> list[dict[str, Any]]:
    return [
        {
            "type": kind,
            "account": index % 3,
            "minute": index * 37,
            "second": index,
            "amount": Decimal(index) / 3,
            "cost": Decimal(index) / 7,
            "tokens": index * 11,
            "model": ["m1", "m2", None][index % 3],
            "agent": ["a1", None][index % 2],
            "user": [0, 1, None][index % 3],
            "feature": ["f1", None][index % 2],
            "sign": index % 2 == 0,
            "covered": index % 3,
        }
        for index, kind in enumerate(TYPES * 4)
    ]


async def _rollup(connection: Any, table: str, organization: Any) -> set[tuple[Any, ...]]:
    rows = await connection.fetch(
        f"SELECT *, postpaid_usage, charged_usage FROM {table} WHERE organization_id = $1",
        organization,
    )
    return {tuple(row) for row in rows}


async def test_restated_rollups_and_closes_equal_the_ledgers_sums(database_url: str) -> None:
    async with raw_connection(database_url) as connection:
        org = await make_org(connection, [60])
        await insert(connection, org, _rows())
        await catch_up(connection)
        month = truncate(BASE, TimeBucket.MONTH)
        async with connection.transaction():
            await month_close.close_month(connection, org.ctx.id, "USD", month)
        want = {table: await _rollup(connection, table, org.ctx.id) for table in rollups.TABLE_KEYS}
        closes = await connection.fetch(
            "SELECT scope_kind, scope_id, currency, postpaid_usage FROM pnl_month_closes "
            "WHERE organization_id = $1 ORDER BY 1, 2, 3",
            org.ctx.id,
        )
        assert any(row["postpaid_usage"] != 0 for row in closes)
        assert any(row[-1] != 0 for row in want["rollup_org_hourly"])  # charged usage
        async with connection.transaction():
            for table in rollups.TABLE_KEYS:
                await connection.execute(
                    f"UPDATE {table} SET postpaid_usage = 999, charged_usage = 999 "
                    "WHERE organization_id = $1",
                    org.ctx.id,
                )
                await connection.execute(
                    MIGRATION._restate(
                        table,
                        {
                            "postpaid_usage": MIGRATION.POSTPAID_CHARGED,
                            "charged_usage": MIGRATION.CHARGED,
                        },
                    )
                )
            await connection.execute(
                "UPDATE pnl_month_closes SET postpaid_usage = 999 WHERE organization_id = $1",
                org.ctx.id,
            )
            await connection.execute(MIGRATION._restate_closes(MIGRATION.POSTPAID_CHARGED))
        for table in rollups.TABLE_KEYS:
            assert await _rollup(connection, table, org.ctx.id) == want[table], table
        assert (
            await connection.fetch(
                "SELECT scope_kind, scope_id, currency, postpaid_usage FROM pnl_month_closes "
                "WHERE organization_id = $1 ORDER BY 1, 2, 3",
                org.ctx.id,
            )
            == closes
        )
