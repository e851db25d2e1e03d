"""Tier rules as plan data (issue 18): accounts per customer (PLAN_LIMIT), the priority class
on authorisation and usage results, seats, and pooled allowances drawn exactly by many
writers across two server processes."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.billing import verify
from costgraph.billing.plans import STARTER_PLANS, PriorityClass
from costgraph.subscriptions.totals_check import LEDGER_CHECKS
from tests import dates
from tests.conftest import Tenant, raw_connection
from tests.servers import running_servers
from tests.test_budgets import _race, authorize_input
from tests.test_ledger import usage
from tests.verify_support import assert_no_drift

SET_PLAN = """mutation($i: PlanInput!) { setPlan(input: $i) {
  code monthlyFee seats maxAccountsPerCustomer priorityClass pooled seatFee } }"""
SUBSCRIBE = """mutation($i: AccountSubscriptionInput!) { subscribeAccount(input: $i) {
  id accountId planCode fee seats priorityClass poolId } }"""
CREATE_CUSTOMER = """mutation($n: String!) { createCustomer(input: {name: $n}) { id } }"""
CREATE_ACCOUNT = """mutation($c: ID!, $p: Boolean) {
  createAccount(input: {customerId: $c, name: "Account", postpaid: $p}) { id } }"""
RECORD = """mutation($input: UsageEventInput!) { recordUsage(input: $input) {
  __typename
  ... on UsageRecorded { priorityClass entry { id balanceDelta } }
  ... on UserError { code message field } } }"""
AUTHORIZE = """mutation($input: AuthorizeUsageInput!) { authorizeUsage(input: $input) {
  __typename
  ... on UsageAuthorized { priorityClass reservation { id } }
  ... on UserError { code message field } } }"""
ALLOWANCE = """query($id: ID!) { allowance(accountId: $id) {
  planCode included used remaining banner pooled seats cycleStart } }"""


def plan(code: str, **rules: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "code": code,
        "name": code.title(),
        "monthlyFee": "19.00",
        "currency": "USD",
        "includedTokens": 1000,
    }
    value.update(rules)
    return value


async def set_plan(tenant: Tenant, code: str, **rules: Any) -> dict[str, Any]:
    body = await tenant.gql(SET_PLAN, {"i": plan(code, **rules)})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["setPlan"]
    return result


async def subscribe(tenant: Tenant, account_id: str, code: str, **extra: Any) -> dict[str, Any]:
    value = {
        "accountId": account_id,
        "planCode": code,
        "billing": "MONTHLY",
        "startsAt": dates.rfc(dates.month(-1)),  # monthly cycles on the 1st
    }
    value.update(extra)
    return await tenant.gql(SUBSCRIBE, {"i": value})


async def new_customer(tenant: Tenant) -> str:
    body = await tenant.gql(CREATE_CUSTOMER, {"n": f"Customer {uuid.uuid4().hex[:6]}"})
    customer_id: str = body["data"]["createCustomer"]["id"]
    return customer_id


async def new_account(tenant: Tenant, customer_id: str, postpaid: bool = True) -> str:
    body = await tenant.gql(CREATE_ACCOUNT, {"c": customer_id, "p": postpaid})
    assert "errors" not in body, body
    account_id: str = body["data"]["createAccount"]["id"]
    return account_id


async def allowance(tenant: Tenant, account_id: str) -> dict[str, Any]:
    body = await tenant.gql(ALLOWANCE, {"id": account_id})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["allowance"]
    return result


def spend(tenant: Tenant, account_id: str, tokens: int, cost: str = "0.10") -> dict[str, Any]:
    return usage(
        tenant,
        accountId=account_id,
        inputTokens=tokens,
        outputTokens=0,
        providerCost=cost,
        occurredAt=dates.rfc(dates.ago(minutes=1).replace(microsecond=0)),
    )


def error_of(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("errors"), body
    error: dict[str, Any] = body["errors"][0]
    return error


async def accounts_of(database_url: str, customer_id: str) -> int:
    async with raw_connection(database_url) as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM accounts WHERE customer_id = $1", uuid.UUID(customer_id)
        )
    return count


def test_starter_tiers_are_priced_and_ruled_consistently() -> None:
    creator, pro, atelier = STARTER_PLANS
    assert creator.max_accounts_per_customer == 1 and pro.max_accounts_per_customer is None
    assert creator.priority_class is PriorityClass.STANDARD
    assert pro.priority_class is atelier.priority_class is PriorityClass.PRIORITY
    assert atelier.pooled and atelier.seat_fee is not None and not pro.pooled
    # A team of three seats costs more than Pro and includes three seats' tokens.
    assert atelier.seat_fee is not None
    assert atelier.monthly_fee + 3 * atelier.seat_fee > pro.monthly_fee
    assert atelier.monthly_fee != pro.monthly_fee
    for tier in STARTER_PLANS:  # annual prepay is cheaper than twelve months
        assert tier.annual_fee is not None and tier.annual_fee < tier.monthly_fee * 12


async def test_plan_rules_round_trip_and_bad_rules(tenant: Tenant) -> None:
    made = await set_plan(
        tenant,
        "team",
        seats=10,
        pooled=True,
        seatFee="12.50",
        priorityClass="PRIORITY",
        maxAccountsPerCustomer=4,
    )
    assert made == {
        "code": "team",
        "monthlyFee": "19.000000000000",
        "seats": 10,
        "maxAccountsPerCustomer": 4,
        "priorityClass": "PRIORITY",
        "pooled": True,
        "seatFee": "12.500000000000",
    }
    plain = await set_plan(tenant, "plain")
    assert (plain["priorityClass"], plain["pooled"], plain["maxAccountsPerCustomer"]) == (
        "STANDARD",
        False,
        None,
    )
    for rules, field in (
        ({"seatFee": "5.00"}, "input.seatFee"),  # only pooled plans have a seat fee
        ({"pooled": True, "seatFee": "-1.00"}, "input.seatFee"),
        ({"pooled": True, "seatFee": "0.001"}, "input.seatFee"),
        ({"maxAccountsPerCustomer": 0}, "input.maxAccountsPerCustomer"),
    ):
        refused = await tenant.gql(SET_PLAN, {"i": plan("bad", **rules)})
        assert error_of(refused)["extensions"] == {"code": "VALIDATION_FAILED", "field": field}


async def test_creator_allows_one_account_per_customer(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    await set_plan(tenant, "creator", maxAccountsPerCustomer=1)
    await set_plan(tenant, "pro", monthlyFee="49.00", includedTokens=10_000)
    solo = await new_customer(tenant)
    first = await new_account(tenant, solo)
    assert "errors" not in await subscribe(tenant, first, "creator")

    # A second account under a Creator customer is refused, and nothing is written.
    refused = await tenant.gql(CREATE_ACCOUNT, {"c": solo, "p": True})
    error = error_of(refused)
    assert error["extensions"] == {"code": "PLAN_LIMIT", "field": "input.customerId"}
    assert "'creator' allows 1 account per customer" in error["message"]
    assert await accounts_of(database_url, solo) == 1

    # A customer with two accounts cannot put one of them on Creator; Pro has no limit.
    duo = await new_customer(tenant)
    one, two = await new_account(tenant, duo), await new_account(tenant, duo)
    limited = await subscribe(tenant, one, "creator")
    assert error_of(limited)["extensions"] == {"code": "PLAN_LIMIT", "field": "input.planCode"}
    assert "this customer has 2" in error_of(limited)["message"]
    assert "errors" not in await subscribe(tenant, one, "pro")
    assert "errors" not in await subscribe(tenant, two, "pro")
    await new_account(tenant, duo)  # Pro: unlimited accounts

    # Moving the Creator account to Pro lifts the limit from then on (not for its past).
    assert "errors" not in await subscribe(tenant, first, "pro", startsAt=dates.rfc(dates.now()))
    await new_account(tenant, solo)
    assert await accounts_of(database_url, solo) == 2
    await assert_no_drift(state, tenant.org.id)


async def test_account_limit_holds_across_two_processes(
    tenant: Tenant, settings: Settings, database_url: str, state: AppState
) -> None:
    await set_plan(tenant, "duo", maxAccountsPerCustomer=3)
    customer = await new_customer(tenant)
    owner = await new_account(tenant, customer)
    assert "errors" not in await subscribe(tenant, owner, "duo")
    bodies = [{"query": CREATE_ACCOUNT, "variables": {"c": customer, "p": True}} for _ in range(12)]
    with running_servers(settings, 2) as urls:
        results = await _race(urls, tenant.token, bodies)
    codes = sorted(
        r["errors"][0]["extensions"]["code"] if r.get("errors") else "CREATED" for r in results
    )
    assert codes == ["CREATED"] * 2 + ["PLAN_LIMIT"] * 10
    assert await accounts_of(database_url, customer) == 3
    await assert_no_drift(state, tenant.org.id)


async def test_priority_class_on_authorisation_and_usage(tenant: Tenant, state: AppState) -> None:
    account = str(tenant.account_id)  # postpaid, no plan yet: STANDARD
    held = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.10")})
    assert held["data"]["authorizeUsage"]["priorityClass"] == "STANDARD", held
    recorded = await tenant.gql(RECORD, {"input": spend(tenant, account, 10)})
    assert recorded["data"]["recordUsage"]["priorityClass"] == "STANDARD", recorded

    await set_plan(tenant, "pro", priorityClass="PRIORITY", includedTokens=10_000)
    subscribed = await subscribe(tenant, account, "pro", startsAt=dates.rfc(dates.now()))
    assert subscribed["data"]["subscribeAccount"]["priorityClass"] == "PRIORITY"
    held = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.10")})
    assert held["data"]["authorizeUsage"]["priorityClass"] == "PRIORITY", held
    recorded = await tenant.gql(RECORD, {"input": spend(tenant, account, 10)})
    assert recorded["data"]["recordUsage"]["priorityClass"] == "PRIORITY", recorded
    await assert_no_drift(state, tenant.org.id)


async def test_seats_are_held_to_the_plan(tenant: Tenant) -> None:
    await set_plan(tenant, "solo")
    await set_plan(tenant, "team", pooled=True, seatFee="10.00", seats=5)
    customer = await new_customer(tenant)
    account = await new_account(tenant, customer)
    unpooled = await subscribe(tenant, account, "solo", seats=2)
    assert error_of(unpooled)["extensions"] == {"code": "VALIDATION_FAILED", "field": "input.seats"}
    too_many = await subscribe(tenant, account, "team", seats=6)
    error = error_of(too_many)
    assert error["extensions"] == {"code": "PLAN_LIMIT", "field": "input.seats"}
    assert "at most 5 seats" in error["message"]
    bad = await subscribe(tenant, account, "team", seats=0)
    assert error_of(bad)["extensions"]["code"] == "VALIDATION_FAILED"
    made = (await subscribe(tenant, account, "team", seats=5))["data"]["subscribeAccount"]
    assert made["seats"] == 5 and made["poolId"] == made["id"]


async def test_a_team_shares_one_pooled_allowance(
    tenant: Tenant, other_tenant: Tenant, state: AppState
) -> None:
    dates.set_now(dates.month(0, 15, 12))  # usage a minute ago is in this cycle
    await set_plan(tenant, "atelier", pooled=True, seatFee="10.00", monthlyFee="99.00")
    team = await new_customer(tenant)
    lead, member = await new_account(tenant, team), await new_account(tenant, team)
    opened = (await subscribe(tenant, lead, "atelier", seats=2))["data"]["subscribeAccount"]
    joined = (await subscribe(tenant, member, "atelier"))["data"]["subscribeAccount"]
    # The member joins the team's pool: no base fee of its own, one seat.
    assert opened["poolId"] == opened["id"] and joined["poolId"] == opened["id"]
    assert (Decimal(opened["fee"]), Decimal(joined["fee"])) == (Decimal(99), Decimal(0))
    assert joined["seats"] == 1

    # Three seats x 1,000 tokens, drawn by both accounts, seen the same by both.
    await tenant.gql(RECORD, {"input": spend(tenant, lead, 1000)})
    await tenant.gql(RECORD, {"input": spend(tenant, member, 1500)})
    for account in (lead, member):
        shown = await allowance(tenant, account)
        assert (shown["included"], shown["used"], shown["remaining"]) == (3000, 2500, 500)
        assert (shown["pooled"], shown["seats"], shown["banner"]) == (True, 3, "BUY_MORE")
        assert shown["cycleStart"] == dates.rfc(dates.month())  # the team's anchor

    # 1,000 more: 500 covered by the pool, the rest charged (postpaid) at half the price.
    over = await tenant.gql(RECORD, {"input": spend(tenant, member, 1000, "0.10")})
    assert Decimal(over["data"]["recordUsage"]["entry"]["balanceDelta"]) == Decimal("-0.05")
    assert (await allowance(tenant, lead))["banner"] == "EXHAUSTED"

    # Another customer of the tenant on the same plan has a pool of its own.
    solo = await new_account(tenant, await new_customer(tenant))
    own = (await subscribe(tenant, solo, "atelier"))["data"]["subscribeAccount"]
    assert own["poolId"] == own["id"] != opened["poolId"]
    assert (await allowance(tenant, solo))["used"] == 0

    # The team's holder cannot leave while a member draws on its pool; a member can.
    await set_plan(tenant, "solo")
    now = dates.rfc(dates.now())
    held = await subscribe(tenant, lead, "solo", startsAt=now)
    assert error_of(held)["extensions"] == {"code": "VALIDATION_FAILED", "field": "input.accountId"}
    assert "errors" not in await subscribe(tenant, member, "solo", startsAt=now)
    assert (await allowance(tenant, member))["pooled"] is False

    # Another tenant's account is not found (the pool is the tenant's own).
    foreign = await other_tenant.gql(ALLOWANCE, {"id": lead})
    assert error_of(foreign)["extensions"]["code"] == "NOT_FOUND"
    await assert_no_drift(state, tenant.org.id)


async def test_verify_recomputes_pooled_use(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    dates.set_now(dates.month(0, 15, 12))  # usage a minute ago is in this cycle
    await set_plan(tenant, "atelier", pooled=True)
    team = await new_customer(tenant)
    lead, member = await new_account(tenant, team), await new_account(tenant, team)
    pool = (await subscribe(tenant, lead, "atelier"))["data"]["subscribeAccount"]["poolId"]
    await subscribe(tenant, member, "atelier")
    await tenant.gql(RECORD, {"input": spend(tenant, lead, 700)})
    await tenant.gql(RECORD, {"input": spend(tenant, member, 700)})  # 300 of 2,000 left
    await assert_no_drift(state, tenant.org.id)

    async with raw_connection(database_url) as connection:
        assert (
            await connection.fetchval(
                "SELECT used_tokens FROM pool_allowance_counters WHERE pool_id = $1",
                uuid.UUID(pool),
            )
            == 1400
        )
        await connection.execute(
            "UPDATE pool_allowance_counters SET used_tokens = used_tokens + 1 WHERE pool_id = $1",
            uuid.UUID(pool),
        )
    try:
        report = await verify.verify(
            state.engine, state.limits.zone, organization_id=tenant.org.id, checks=LEDGER_CHECKS
        )
        drifts = [d for d in report.drift if d.what == "pool_allowance.used_tokens"]
        assert [(d.stored, d.recomputed) for d in drifts] == [(Decimal(1401), Decimal(1400))]
    finally:
        async with raw_connection(database_url) as connection:
            await connection.execute(
                "UPDATE pool_allowance_counters SET used_tokens = used_tokens - 1 "
                "WHERE pool_id = $1",
                uuid.UUID(pool),
            )
    await assert_no_drift(state, tenant.org.id)


async def test_a_pool_is_drawn_exactly_across_two_processes(
    tenant: Tenant, settings: Settings, state: AppState, database_url: str
) -> None:
    # Mid-month: the cycle cannot end while 240 racing writes run.
    dates.set_now(dates.month(0, 15, 12))
    await set_plan(tenant, "atelier", pooled=True, includedTokens=5000, seatFee="10.00")
    team = await new_customer(tenant)
    # Prepaid accounts with no balance: beyond the pool, usage is refused.
    accounts = [await new_account(tenant, team, postpaid=False) for _ in range(4)]
    pool = (await subscribe(tenant, accounts[0], "atelier", seats=2))["data"]["subscribeAccount"]
    for account in accounts[1:]:
        assert "errors" not in await subscribe(tenant, account, "atelier")
    capacity = 5000 * 5  # two seats on the team subscription, one per member

    bodies = [
        {"query": RECORD, "variables": {"input": spend(tenant, accounts[i % 4], 250, "0.01")}}
        for i in range(240)
    ]  # 60,000 tokens asked of a 25,000-token pool
    with running_servers(settings, 2) as urls:
        results = await _race(urls, tenant.token, bodies)
    kinds = [r["data"]["recordUsage"]["__typename"] for r in results]
    assert kinds.count("UsageRecorded") == capacity // 250
    assert kinds.count("AllowanceExhausted") == 240 - capacity // 250
    async with raw_connection(database_url) as connection:
        used = await connection.fetchval(
            "SELECT used_tokens FROM pool_allowance_counters WHERE pool_id = $1",
            uuid.UUID(pool["poolId"]),
        )
        drawn, charged = await connection.fetchrow(
            "SELECT sum(input_tokens), sum(balance_delta) FROM ledger_entries "
            "WHERE organization_id = $1 AND type = 'USAGE_CHARGE'",
            tenant.org.id,
        )
    assert used == drawn == capacity  # exactly the pool, no overshoot
    assert charged == 0  # every written entry was covered by the pool
    for account in accounts:
        shown = await allowance(tenant, account)
        assert (shown["used"], shown["remaining"], shown["banner"]) == (capacity, 0, "EXHAUSTED")
    await assert_no_drift(state, tenant.org.id)
