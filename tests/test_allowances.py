"""Allowance first, then the prepaid balance, then credit; the banner tells users where they are."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from costgraph.billing.allowances import allocate
from tests.conftest import Tenant, raw_connection
from tests.dates import month, rfc
from tests.test_ledger import DEPOSIT, RECORD_USAGE, deposit_input, entry_count, usage

RECORD = RECORD_USAGE.replace(
    "... on UserError",
    "... on AllowanceExhausted { accountId needed balance }\n    ... on UserError",
).replace("metadata userId", "metadata userId balanceDelta")
ALLOWANCE = """query($id: ID!) { allowance(accountId: $id) {
  planCode included used remaining topUpBalance banner resetsAt postpaid } }"""


async def prepaid_account(tenant: Tenant, tokens: int | None) -> str:
    made = await tenant.gql(
        """mutation($c: ID!) { createAccount(input: {customerId: $c, name: "Prepaid"}) { id } }""",
        {"c": str(tenant.customer_id)},
    )
    account_id: str = made["data"]["createAccount"]["id"]
    if tokens is not None:
        code = f"p{uuid.uuid4().hex[:6]}"
        plan = await tenant.gql(
            """mutation($i: PlanInput!) { setPlan(input: $i) { code } }""",
            {
                "i": {
                    "code": code,
                    "name": "Creator",
                    "monthlyFee": "9.00",
                    "currency": "USD",
                    "includedTokens": tokens,
                }
            },
        )
        assert "errors" not in plan, plan
        subscribed = await tenant.gql(
            """mutation($i: AccountSubscriptionInput!) { subscribeAccount(input: $i) { id } }""",
            {
                "i": {
                    "accountId": account_id,
                    "planCode": code,
                    "billing": "MONTHLY",
                    "startsAt": rfc(month(-1)),  # monthly cycles on the 1st
                }
            },
        )
        assert "errors" not in subscribed, subscribed
    return account_id


def spend(tenant: Tenant, account_id: str, tokens: int, cost: str) -> dict[str, Any]:
    return usage(
        tenant,
        accountId=account_id,
        inputTokens=tokens,
        outputTokens=0,
        providerCost=cost,
        occurredAt=rfc(month()),  # the current cycle, whatever the day
    )


async def allowance(tenant: Tenant, account_id: str) -> dict[str, Any]:
    body = await tenant.gql(ALLOWANCE, {"id": account_id})
    result: dict[str, Any] = body["data"]["allowance"]
    return result


async def test_allowance_then_top_up_then_exhausted(tenant: Tenant, database_url: str) -> None:
    account = await prepaid_account(tenant, tokens=1000)
    assert (await allowance(tenant, account))["banner"] == "NONE"

    # 800 of 1,000 tokens: covered by the allowance, nothing charged to the balance.
    first = (await tenant.gql(RECORD, {"input": spend(tenant, account, 800, "0.80")}))["data"][
        "recordUsage"
    ]
    assert Decimal(first["entry"]["balanceDelta"]) == 0
    state = await allowance(tenant, account)
    assert (state["used"], state["remaining"], state["banner"]) == (800, 200, "BUY_MORE")

    # 400 more: 200 covered, 200 uncovered with no top-up → refused, nothing written.
    refused = (await tenant.gql(RECORD, {"input": spend(tenant, account, 400, "0.40")}))["data"][
        "recordUsage"
    ]
    assert refused["__typename"] == "AllowanceExhausted"
    assert refused["code"] == "ALLOWANCE_EXHAUSTED"
    assert Decimal(refused["needed"]) == Decimal("0.20")
    assert (await allowance(tenant, account))["used"] == 800

    # A top-up pays for the uncovered half.
    await tenant.gql(DEPOSIT, {"input": deposit_input(tenant, accountId=account, amount="1.00")})
    second = (await tenant.gql(RECORD, {"input": spend(tenant, account, 400, "0.40")}))["data"][
        "recordUsage"
    ]
    assert Decimal(second["entry"]["balanceDelta"]) == Decimal("-0.20")
    state = await allowance(tenant, account)
    assert (state["used"], state["remaining"], state["banner"]) == (1000, 0, "EXHAUSTED")
    assert Decimal(state["topUpBalance"]) == Decimal("0.80")

    # Allowance gone: usage is paid from the balance until that is gone too.
    third = await tenant.gql(RECORD, {"input": spend(tenant, account, 100, "0.80")})
    assert third["data"]["recordUsage"]["__typename"] == "UsageRecorded"
    broke = await tenant.gql(RECORD, {"input": spend(tenant, account, 100, "0.01")})
    assert broke["data"]["recordUsage"]["code"] == "ALLOWANCE_EXHAUSTED"
    assert Decimal((await allowance(tenant, account))["topUpBalance"]) == 0

    # The balance counter always equals the sum of the ledger.
    async with raw_connection(database_url) as connection:
        ledger_sum = await connection.fetchval(
            "SELECT sum(balance_delta) FROM ledger_entries WHERE account_id = $1",
            uuid.UUID(account),
        )
        counter = await connection.fetchval(
            "SELECT balance FROM account_balances WHERE account_id = $1", uuid.UUID(account)
        )
    assert ledger_sum == counter == 0
    # The deposit and three usages, beside the plan's two cycle fees (last month's and this
    # month's) and their months recognised (billing/subscription_billing.py).
    assert await entry_count(database_url, tenant) == 4 + 4


async def test_prepaid_without_plan_needs_a_top_up(tenant: Tenant) -> None:
    account = await prepaid_account(tenant, tokens=None)
    assert (await allowance(tenant, account))["banner"] == "EXHAUSTED"
    refused = await tenant.gql(RECORD, {"input": spend(tenant, account, 10, "0.01")})
    assert refused["data"]["recordUsage"]["code"] == "ALLOWANCE_EXHAUSTED"
    await tenant.gql(DEPOSIT, {"input": deposit_input(tenant, accountId=account, amount="5.00")})
    paid = await tenant.gql(RECORD, {"input": spend(tenant, account, 10, "0.01")})
    assert Decimal(paid["data"]["recordUsage"]["entry"]["balanceDelta"]) == Decimal("-0.01")


async def test_postpaid_draws_on_credit(tenant: Tenant) -> None:
    account = str(tenant.account_id)  # the fixture's account is postpaid
    paid = await tenant.gql(RECORD, {"input": spend(tenant, account, 10, "3.00")})
    assert Decimal(paid["data"]["recordUsage"]["entry"]["balanceDelta"]) == Decimal("-3.00")
    state = await allowance(tenant, account)
    assert Decimal(state["topUpBalance"]) == Decimal("-3.00")
    assert state["banner"] == "NONE" and state["postpaid"] is True


async def test_allowance_of_another_tenant_is_unknown(tenant: Tenant, other_tenant: Tenant) -> None:
    body = await tenant.gql(ALLOWANCE, {"id": str(other_tenant.account_id)})
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_usage_that_costs_nothing_draws_nothing(tenant: Tenant) -> None:
    """The allowance covers cost: a call billed 0 leaves the allowance whole (it used to draw
    its tokens, shrinking the cover of the paid calls after it)."""
    account = await prepaid_account(tenant, tokens=1000)
    free = (await tenant.gql(RECORD, {"input": spend(tenant, account, 800, "0")}))["data"][
        "recordUsage"
    ]
    assert free["__typename"] == "UsageRecorded", free
    assert Decimal(free["entry"]["balanceDelta"]) == 0
    state = await allowance(tenant, account)
    assert (state["used"], state["remaining"], state["banner"]) == (0, 1000, "NONE")

    # Paid usage after it is covered by the whole allowance.
    paid = (await tenant.gql(RECORD, {"input": spend(tenant, account, 1000, "1.00")}))["data"][
        "recordUsage"
    ]
    assert Decimal(paid["entry"]["balanceDelta"]) == 0
    assert (await allowance(tenant, account))["used"] == 1000


def test_allocate_covers_only_usage_that_costs_something() -> None:
    draws = allocate(
        1000,
        [
            (300, Decimal(0)),
            (400, Decimal("0.40")),
            (500, Decimal("0.0000000000001")),
            (700, Decimal("0.70")),
        ],
    )
    # Nothing at the stored scale (12 places) is nothing: charged in full (0), no draw.
    assert [(d.covered_tokens, d.balance_charge) for d in draws] == [
        (0, Decimal(0)),
        (400, Decimal(0)),
        (0, Decimal(0)),
        (600, Decimal("0.10")),
    ]
