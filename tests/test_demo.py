"""`costgraph demo` seeds a realistic tenant and never duplicates on a second run."""

from __future__ import annotations

from costgraph.app.demo import seed_demo
from costgraph.app.state import AppState
from tests import dates
from tests.conftest import raw_connection


async def test_demo_is_idempotent_and_has_a_weekly_rhythm(
    state: AppState, database_url: str
) -> None:
    now = dates.now()  # one instant for both runs: the same events
    first = await seed_demo(state.units, state.limits, now=now)
    second = await seed_demo(state.units, state.limits, now=now)
    assert first.written > 3000
    assert second.written == 0
    async with raw_connection(database_url) as connection:
        by_dow = dict(
            await connection.fetch(
                """SELECT extract(isodow FROM occurred_at)::int, count(*) FROM ledger_entries
                   WHERE organization_id = $1 AND type = 'USAGE_CHARGE' GROUP BY 1""",
                first.organization.id,
            )
        )
        total = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE organization_id = $1", first.organization.id
        )
    assert total == first.written
    weekday = sum(by_dow[d] for d in range(1, 6)) / 5
    weekend = (by_dow[6] + by_dow[7]) / 2
    assert weekday > 2 * weekend
