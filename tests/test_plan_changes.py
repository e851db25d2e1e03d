"""Plan changes as customers make them (issue 18): a cycle keeps the allowance it opened
with, ``changePlan`` holds the tier rules under the customer's lock and moves a whole team
between pooled plans, and a pool's draw tells every member (``allowanceChanged``)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from costgraph.app.state import AppState
from tests import dates
from tests.conftest import Tenant, raw_connection
from tests.subscriptions_support import subscribed
from tests.test_plan_tiers import (
    RECORD,
    allowance,
    error_of,
    new_account,
    new_customer,
    set_plan,
    spend,
    subscribe,
)
from tests.test_subscriptions import Live, live
from tests.test_subscriptions_state import ALLOWANCE_CHANGED, post
from tests.verify_support import assert_no_drift

__all__ = ["live"]  # the module-scoped server fixture

CHANGE = """mutation($i: ChangePlanInput!) { changePlan(input: $i) {
  subscription { planCode fee includedTokens poolId } entries { type amount } } }"""


async def change(tenant: Tenant, account_id: str, code: str) -> dict[str, Any]:
    return await tenant.gql(CHANGE, {"i": {"accountId": account_id, "planCode": code}})


async def record(tenant: Tenant, account_id: str, tokens: int) -> None:
    body = await tenant.gql(RECORD, {"input": spend(tenant, account_id, tokens)})
    assert body["data"]["recordUsage"]["__typename"] == "UsageRecorded", body


async def written(database_url: str, tenant: Tenant) -> tuple[int, list[str]]:
    """Ledger entries of the tenant, and its subscriptions' plans (what a refusal must keep)."""
    async with raw_connection(database_url) as connection:
        entries = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE organization_id = $1", tenant.org.id
        )
        plans = await connection.fetch(
            "SELECT plan_code FROM account_subscriptions WHERE organization_id = $1 ORDER BY id",
            tenant.org.id,
        )
    return entries, [row[0] for row in plans]


async def fees(database_url: str, account_id: str) -> list[Decimal]:
    async with raw_connection(database_url) as connection:
        rows = await connection.fetch(
            "SELECT amount FROM ledger_entries WHERE account_id = $1 "
            "AND type = 'SUBSCRIPTION_FEE' ORDER BY occurred_at",
            uuid.UUID(account_id),
        )
    return [row[0] for row in rows]


async def test_a_cycle_keeps_the_allowance_it_opened_with(tenant: Tenant, state: AppState) -> None:
    dates.set_now(dates.month(0, 10, 12))
    await set_plan(tenant, "big", monthlyFee="49.00", includedTokens=5000)
    await set_plan(tenant, "small", monthlyFee="19.00", includedTokens=1000)
    customer = await new_customer(tenant)
    account, fresh = await new_account(tenant, customer), await new_account(tenant, customer)
    for each in (account, fresh):
        assert "errors" not in await subscribe(
            tenant, each, "big", startsAt=dates.rfc(dates.month())
        )
    await record(tenant, account, 3000)  # opens the cycle at 5,000

    # A downgrade after usage: this cycle keeps its 5,000 (drawing, status and verify agree).
    dates.set_now(dates.month(0, 15, 12))
    down = await change(tenant, account, "small")
    assert down["data"]["changePlan"]["subscription"]["includedTokens"] == 1000, down
    shown = await allowance(tenant, account)
    assert (shown["planCode"], shown["included"], shown["used"]) == ("small", 5000, 3000)
    await record(tenant, account, 1500)  # still covered by the cycle's allowance
    assert (await allowance(tenant, account))["used"] == 4500
    await assert_no_drift(state, tenant.org.id)
    # An account whose cycle has not opened yet takes the new allowance at once.
    assert "errors" not in await change(tenant, fresh, "small")
    assert (await allowance(tenant, fresh))["included"] == 1000

    # The next cycle opens with the new plan's allowance.
    dates.set_now(dates.month(1, 2, 12))
    shown = await allowance(tenant, account)
    assert (shown["included"], shown["used"]) == (1000, 0)
    await record(tenant, account, 1500)
    shown = await allowance(tenant, account)
    assert (shown["used"], shown["banner"]) == (1000, "EXHAUSTED")
    await assert_no_drift(state, tenant.org.id)


async def test_change_plan_holds_the_tier_rules(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    dates.set_now(dates.month(0, 10, 12))
    await set_plan(tenant, "creator", maxAccountsPerCustomer=1)
    await set_plan(tenant, "pro", monthlyFee="49.00", includedTokens=10_000)
    await set_plan(tenant, "team", pooled=True, seatFee="10.00", seats=25)
    duo = await new_customer(tenant)
    one, two = await new_account(tenant, duo), await new_account(tenant, duo)
    for account in (one, two):
        assert "errors" not in await subscribe(tenant, account, "pro")
    before = await written(database_url, tenant)

    # A customer with two accounts cannot move one of them onto Creator: nothing written.
    limited = error_of(await change(tenant, one, "creator"))
    assert limited["extensions"] == {"code": "PLAN_LIMIT", "field": "input.planCode"}
    assert "this customer has 2" in limited["message"]
    # Pooled and unpooled plans are told apart: that move is a new subscription.
    crossing = error_of(await change(tenant, one, "team"))
    assert crossing["extensions"] == {"code": "VALIDATION_FAILED", "field": "input.planCode"}
    assert "subscribeAccount" in crossing["message"]
    assert await written(database_url, tenant) == before

    # A customer with one account may.
    solo = await new_account(tenant, await new_customer(tenant))
    assert "errors" not in await subscribe(tenant, solo, "pro")
    moved = (await change(tenant, solo, "creator"))["data"]["changePlan"]
    assert moved["subscription"]["planCode"] == "creator"
    await assert_no_drift(state, tenant.org.id)


async def test_a_team_moves_between_pooled_plans_as_one(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    dates.set_now(dates.month(0, 10, 12))
    await set_plan(tenant, "atelier", monthlyFee="149.00", pooled=True, seatFee="39.00", seats=25)
    await set_plan(
        tenant,
        "studio",
        monthlyFee="299.00",
        pooled=True,
        seatFee="49.00",
        seats=10,
        includedTokens=2000,
    )
    await set_plan(tenant, "duet", monthlyFee="99.00", pooled=True, seatFee="29.00", seats=1)
    team = await new_customer(tenant)
    lead, member = await new_account(tenant, team), await new_account(tenant, team)
    opened = (await subscribe(tenant, lead, "atelier", seats=2))["data"]["subscribeAccount"]
    assert "errors" not in await subscribe(tenant, member, "atelier")
    # The member pays no base fee, but its own seat: 39.00 a month (last month's and this).
    assert await fees(database_url, member) == [Decimal("39.00")] * 2
    await record(tenant, member, 500)
    before = await written(database_url, tenant)

    # A member cannot leave its team's plan alone; a plan with fewer seats is PLAN_LIMIT.
    alone = error_of(await change(tenant, member, "studio"))
    assert alone["extensions"] == {"code": "VALIDATION_FAILED", "field": "input.accountId"}
    seats = error_of(await change(tenant, lead, "duet"))
    assert seats["extensions"] == {"code": "PLAN_LIMIT", "field": "input.planCode"}
    assert await written(database_url, tenant) == before

    # The team subscription moves, and its members with it: one pool, one plan.
    moved = (await change(tenant, lead, "studio"))["data"]["changePlan"]
    assert moved["subscription"]["poolId"] == opened["id"]
    # The member's usage opened this cycle, which keeps what it opened with: the new terms,
    # and their fees, start with the next cycle; nothing is credited or charged now.
    kinds = [e["type"] for e in moved["entries"]]
    assert "SUBSCRIPTION_CREDIT" not in kinds and "SUBSCRIPTION_FEE" not in kinds, kinds
    for account in (lead, member):
        shown = await allowance(tenant, account)
        # This cycle keeps what it opened with (3 seats x 1,000); studio's 2,000 a seat next.
        assert (shown["planCode"], shown["pooled"], shown["included"]) == ("studio", True, 3000)
        assert shown["used"] == 500
    _, plans = await written(database_url, tenant)
    assert plans == ["studio", "studio"]
    dates.set_now(dates.month(1, 2, 12))
    assert (await allowance(tenant, member))["included"] == 6000
    await assert_no_drift(state, tenant.org.id)


async def test_a_pool_draw_tells_every_member(live: Live, tenant: Tenant) -> None:
    await set_plan(tenant, "atelier", monthlyFee="149.00", pooled=True, seatFee="39.00")
    team = await new_customer(tenant)
    lead, member = await new_account(tenant, team), await new_account(tenant, team)
    since = dates.rfc(dates.ago(minutes=5))  # the usage below is a minute old
    assert "errors" not in await subscribe(tenant, lead, "atelier", seats=2, startsAt=since)
    assert "errors" not in await subscribe(tenant, member, "atelier", startsAt=since)
    async with subscribed(live.port, tenant.token, ALLOWANCE_CHANGED, {"id": member}) as client:
        first = (await client.next_data("1"))["allowanceChanged"]
        assert (first["included"], first["used"]) == (3000, 0)
        event = spend(tenant, lead, 1200)
        result = (await post(live, tenant, RECORD, {"input": event}))["recordUsage"]
        assert result["__typename"] == "UsageRecorded", result
        update = (await client.next_data("1"))["allowanceChanged"]
        assert update["accountId"] == member
        assert (update["used"], update["remaining"]) == (1200, 1800)
        assert Decimal(update["topUpBalance"]) == 0
