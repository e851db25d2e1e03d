"""Reprice: past entries are never rewritten; corrections are new ADJUSTMENT entries."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from tests import dates
from tests.conftest import Tenant, raw_connection
from tests.dates import month, rfc
from tests.test_pricing_catalog import SET_RATE, provider_name, record, set_price

REPRICE = """mutation($input: RepriceInput!) { repriceUsage(input: $input) {
  __typename
  ... on RepriceCompleted { runId examined adjusted adjustments {
      type amount aiCost balanceDelta relatedEntryId priceVersionId metadata occurredAt } }
  ... on UserError { code message field } } }"""
RANGE = {"start": rfc(month(-6)), "end": rfc(month(-5))}


async def reprice(tenant: Tenant, **extra: Any) -> dict[str, Any]:
    body = await tenant.gql(REPRICE, {"input": {"range": RANGE, "reason": "fix", **extra}})
    result: dict[str, Any] = body["data"]["repriceUsage"]
    return result


async def test_a_rate_added_later_is_applied_by_an_explicit_reprice(
    tenant: Tenant, database_url: str, mint: Any
) -> None:
    p = provider_name()
    platform = mint(None, ["platform_admin"])
    # A platform price in EUR; the tenant's own EUR->USD rate.
    await set_price(tenant, token=platform, provider=p, currency="EUR")
    await tenant.gql(
        SET_RATE,
        {
            "input": {
                "base": "EUR",
                "quote": "USD",
                "rate": "1.25",
                "effectiveFrom": rfc(month(-11)),
            }
        },
    )
    original = (await record(tenant, p, occurredAt=rfc(month(-6, 10))))["entry"]
    # 6.00 EUR at 1.25 = 7.50 USD
    assert original["aiCost"] == "7.500000000000"
    # Nothing to correct yet.
    first = await reprice(tenant)
    assert (first["examined"], first["adjusted"]) == (1, 0)
    # A corrected rate from June 1st (a new, later rate: rates are never edited).
    await tenant.gql(
        SET_RATE,
        {
            "input": {
                "base": "EUR",
                "quote": "USD",
                "rate": "1.10",
                "effectiveFrom": rfc(month(-6)),
            }
        },
    )
    second = await reprice(tenant)
    assert (second["examined"], second["adjusted"]) == (1, 1)
    adjustment = second["adjustments"][0]
    # 6.00 * 1.10 = 6.60: a correction of -0.90, dated like the entry it corrects
    assert adjustment["type"] == "ADJUSTMENT"
    assert Decimal(adjustment["aiCost"]) == Decimal("-0.90")
    assert Decimal(adjustment["amount"]) == Decimal("-0.90")
    assert Decimal(adjustment["balanceDelta"]) == Decimal("0.90")
    assert adjustment["relatedEntryId"] == original["id"]
    assert adjustment["occurredAt"] == rfc(month(-6, 10))
    assert adjustment["metadata"]["kind"] == "reprice"
    assert adjustment["metadata"]["run_id"] == second["runId"]
    assert adjustment["metadata"]["previous"]["ai_cost"] == "7.500000000000"
    # Running it again finds nothing left to correct.
    third = await reprice(tenant)
    assert third["adjusted"] == 0
    async with raw_connection(database_url) as connection:
        stored = await connection.fetchval(
            "SELECT ai_cost FROM ledger_entries WHERE id = $1::uuid", original["id"]
        )
        runs = await connection.fetch(
            "SELECT requested_by, reason, examined, adjusted FROM reprice_runs "
            "WHERE organization_id = $1 ORDER BY created_at",
            tenant.org.id,
        )
        with pytest.raises(asyncpg.RestrictViolationError):
            await connection.execute(
                "UPDATE ledger_entries SET ai_cost = 0 WHERE id = $1::uuid", original["id"]
            )
    assert stored == Decimal("7.5")  # the original entry is untouched
    assert [(r["examined"], r["adjusted"]) for r in runs] == [(1, 0), (1, 1), (1, 0)]
    assert all(r["reason"] == "fix" for r in runs)


async def test_reprice_of_an_empty_or_bad_range(tenant: Tenant) -> None:
    empty = await reprice(tenant)
    assert (empty["examined"], empty["adjusted"]) == (0, 0)
    body = await tenant.gql(
        REPRICE, {"input": {"range": {"start": RANGE["end"], "end": RANGE["start"]}}}
    )
    assert body["data"]["repriceUsage"]["code"] == "VALIDATION_FAILED"


CREATE_ACCOUNT = """mutation($input: AccountInput!) { createAccount(input: $input) { id } }"""
DEPOSIT = """mutation($input: DepositInput!) { deposit(input: $input) {
  __typename ... on UserError { code message } } }"""
SET_BUDGET = """mutation($input: BudgetInput!) { setBudget(input: $input) { id } }"""
STATUS = """query($id: ID!) { budgetStatus(budgetId: $id) { spent } }"""
ALLOWANCE = """query($id: ID!) { allowance(accountId: $id) { topUpBalance } }"""


async def test_reprice_moves_money_like_any_entry(tenant: Tenant, database_url: str) -> None:
    """Deposit 100.00, three usages of 10.00, the price raised so each costs 50.00, reprice:
    the balance is the ledger's sum (-50.00), the budget counter holds the repriced spend,
    and the prepaid account can no longer spend money it lost to the reprice."""
    dates.set_now(dates.month(0, day=15, hour=12))  # the whole story in one budget month
    p = provider_name()
    cheap = {"inputPerMillion": "2.00", "outputPerMillion": "8.00"}
    await set_price(tenant, provider=p, effectiveFrom=dates.rfc(dates.ago(days=2)), **cheap)
    made = await tenant.gql(
        CREATE_ACCOUNT,
        {
            "input": {
                "customerId": str(tenant.customer_id),
                "name": "Prepaid",
                "postpaid": False,
                "currency": "USD",
            }
        },
    )
    account = made["data"]["createAccount"]["id"]
    budget = await tenant.gql(
        SET_BUDGET,
        {
            "input": {
                "scope": {"kind": "ACCOUNT", "id": account},
                "period": "MONTH",
                "limit": "1000",
                "currency": "USD",
                "basis": "BILLED_USAGE",
                "hardCap": False,
            }
        },
    )
    budget_id = budget["data"]["setBudget"]["id"]
    paid = await tenant.gql(
        DEPOSIT,
        {
            "input": {
                "idempotencyKey": f"d-{uuid.uuid4().hex}",
                "accountId": account,
                "amount": "100.00",
                "currency": "USD",
            }
        },
    )
    assert paid["data"]["deposit"]["__typename"] == "LedgerEntryRecorded"
    tokens = {"inputTokens": 1_000_000, "outputTokens": 1_000_000}
    for hours in (5, 4, 3):
        usage = await record(
            tenant, p, accountId=account, occurredAt=dates.rfc(dates.ago(hours=hours)), **tokens
        )
        assert Decimal(usage["entry"]["amount"]) == Decimal("10.00")
    dear = {"inputPerMillion": "10.00", "outputPerMillion": "40.00"}
    await set_price(tenant, provider=p, effectiveFrom=dates.rfc(dates.ago(days=1)), **dear)
    window = {"start": dates.rfc(dates.ago(days=1)), "end": dates.rfc(dates.now())}
    body = await tenant.gql(REPRICE, {"input": {"range": window, "accountId": account}})
    outcome = body["data"]["repriceUsage"]
    assert (outcome["examined"], outcome["adjusted"]) == (3, 3)
    assert {Decimal(a["balanceDelta"]) for a in outcome["adjustments"]} == {Decimal("-40")}

    async with raw_connection(database_url) as connection:
        stored = await connection.fetchval(
            "SELECT balance FROM account_balances WHERE account_id = $1::uuid", account
        )
        summed = await connection.fetchval(
            "SELECT sum(balance_delta) FROM ledger_entries WHERE account_id = $1::uuid", account
        )
    assert stored == summed == Decimal("-50")
    allowance = await tenant.gql(ALLOWANCE, {"id": account})
    assert Decimal(allowance["data"]["allowance"]["topUpBalance"]) == Decimal("-50")
    status = await tenant.gql(STATUS, {"id": budget_id})
    assert Decimal(status["data"]["budgetStatus"]["spent"]) == Decimal("150")

    # 60.00 at the new price: refused, the balance is below zero.
    refused = await record(
        tenant,
        p,
        accountId=account,
        occurredAt=dates.rfc(dates.ago(minutes=5)),
        inputTokens=2_000_000,
        outputTokens=1_000_000,
    )
    assert refused["code"] == "ALLOWANCE_EXHAUSTED"
