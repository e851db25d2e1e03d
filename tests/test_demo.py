"""`costgraph demo` seeds a realistic tenant and never duplicates on a second run."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from costgraph.app.demo import seed_demo
from costgraph.app.state import AppState
from tests import dates
from tests.conftest import raw_connection
from tests.verify_support import assert_no_drift

PNL = """query($r: DateRange!) { organizationPnl(range: $r) {
  currency revenue aiCost margin deferredRevenue
  revenueBySource { subscriptions topUps billedUsage } } }"""


async def test_demo_is_idempotent_and_has_a_weekly_rhythm(
    state: AppState, database_url: str
) -> None:
    # Another test of the session may have seeded the demo already (one organisation 'demo'
    # per database): what this test checks is that a run adds exactly what was missing.
    async with raw_connection(database_url) as connection:
        before = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries e JOIN organizations o "
            "ON o.id = e.organization_id WHERE o.slug = 'demo'"
        )
    now = dates.now()  # one instant for both runs: the same events
    first = await seed_demo(state.units, state.limits, now=now)
    second = await seed_demo(state.units, state.limits, now=now)
    assert before + first.written > 3000
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
    assert total == before + first.written
    weekday = sum(by_dow[d] for d in range(1, 6)) / 5
    weekend = (by_dow[6] + by_dow[7]) / 2
    assert weekday > 2 * weekend


async def test_demo_is_believable(
    state: AppState, database_url: str, client: httpx.AsyncClient, mint: Any
) -> None:
    """One customer on each tier (a pooled team among them), a P&L where AI cost is a real
    share of revenue, and books that verify."""
    summary = await seed_demo(state.units, state.limits, now=dates.now())
    org_id = summary.organization.id
    async with raw_connection(database_url) as connection:
        tiers = await connection.fetch(
            """SELECT s.plan_code, count(DISTINCT a.customer_id) AS customers,
                      count(DISTINCT s.account_id) AS accounts, sum(s.seats) AS seats,
                      count(DISTINCT s.pool_id) AS pools
               FROM account_subscriptions s JOIN accounts a ON a.id = s.account_id
               WHERE s.organization_id = $1 AND s.ends_at IS NULL GROUP BY 1""",
            org_id,
        )
        started = await connection.fetchval(
            "SELECT min(starts_at) FROM account_subscriptions WHERE organization_id = $1", org_id
        )
        currencies = await connection.fetchval(
            "SELECT count(DISTINCT currency) FROM accounts WHERE organization_id = $1", org_id
        )
    by_plan = {row["plan_code"]: row for row in tiers}
    assert sorted(by_plan) == ["atelier", "creator", "pro"]
    assert all(row["customers"] >= 1 for row in tiers)
    team = by_plan["atelier"]
    assert (team["customers"], team["accounts"], team["pools"]) == (1, 3, 1)
    assert team["seats"] >= 5
    assert currencies == 2
    # Subscriptions began a few months back by the clock: a few cycles billed, not years.
    assert dates.ago(days=130) < started < dates.ago(days=90)

    token = mint(org_id, ["org_admin"])
    last_30_days = {"start": dates.rfc(dates.ago(days=30)), "end": dates.rfc(dates.now())}
    response = await client.post(
        "/graphql",
        json={"query": PNL, "variables": {"r": last_30_days}},
        headers={"Authorization": f"Bearer {token}"},
    )
    pnl = response.json()["data"]["organizationPnl"]
    revenue, ai_cost, margin = (Decimal(pnl[k]) for k in ("revenue", "aiCost", "margin"))
    assert Decimal(pnl["revenueBySource"]["subscriptions"]) > 0
    assert Decimal("0.30") <= margin / revenue <= Decimal("0.60"), pnl
    assert ai_cost > revenue / 3, pnl
    await assert_no_drift(state, org_id)
