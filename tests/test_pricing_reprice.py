"""Reprice: past entries are never rewritten; corrections are new ADJUSTMENT entries."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from costgraph.app.state import AppState
from costgraph.billing import rollups
from tests import dates
from tests.conftest import Tenant, raw_connection
from tests.dates import month, rfc
from tests.test_pricing_catalog import SET_RATE, provider_name, record, set_price
from tests.verify_support import assert_no_drift

D = Decimal

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


PLAN = """mutation($i: PlanInput!) { setPlan(input: $i) { code } }"""
SUBSCRIBE = """mutation($i: AccountSubscriptionInput!) { subscribeAccount(input: $i) { id } }"""
BY_MODEL = """query($range: DateRange!) { organizationPnl(range: $range) {
  byModel { provider model revenue billedUsage allowanceUsage } } }"""


async def planned_account(tenant: Tenant, *, postpaid: bool, included: int) -> str:
    """An account on a monthly plan of ``included`` tokens whose cycle started this month."""
    made = await tenant.gql(
        CREATE_ACCOUNT,
        {
            "input": {
                "customerId": str(tenant.customer_id),
                "name": "Postpaid" if postpaid else "Prepaid",
                "postpaid": postpaid,
                "currency": "USD",
            }
        },
    )
    account: str = made["data"]["createAccount"]["id"]
    code = f"r{uuid.uuid4().hex[:8]}"
    plan = {"code": code, "name": code, "monthlyFee": "9.00", "currency": "USD"}
    planned = await tenant.gql(PLAN, {"i": {**plan, "includedTokens": included}})
    assert "errors" not in planned, planned
    subscription = {"accountId": account, "planCode": code, "billing": "MONTHLY"}
    subscribed = await tenant.gql(
        SUBSCRIBE, {"i": {**subscription, "startsAt": dates.rfc(dates.month(-1))}}
    )
    assert "errors" not in subscribed, subscribed
    return account


async def test_a_reprice_charges_the_balance_only_its_share_of_the_entry(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    """A correction charges the balance what ingestion at the new price would have charged
    with the same cover by the plan's allowance, prepaid or postpaid, and a second reprice
    (a correction of a correction) lands where ingestion at the last price would have.

    Prices per million (input/output): 1,000/4,000, then 15,000/60,000, then 2,000/8,000.
    Prepaid P (1,000 tokens included, 10.00 deposited): A 400 tokens (covered), B 800 (600
    covered: the balance pays 200/800), C 100 (not covered). Postpaid Q (500 included): D 300
    input + 400 output tokens (500 covered: its credit pays 200/700 of it).
    """
    dates.set_now(dates.month(0, day=15, hour=12))  # the whole story in the current cycle
    p = provider_name()
    first_price = {"inputPerMillion": "1000", "outputPerMillion": "4000"}
    await set_price(tenant, provider=p, effectiveFrom=dates.rfc(dates.ago(days=3)), **first_price)
    prepaid = await planned_account(tenant, postpaid=False, included=1_000)
    postpaid = await planned_account(tenant, postpaid=True, included=500)
    paid = await tenant.gql(
        DEPOSIT,
        {
            "input": {
                "idempotencyKey": f"d-{uuid.uuid4().hex}",
                "accountId": prepaid,
                "amount": "10.00",
                "currency": "USD",
            }
        },
    )
    assert paid["data"]["deposit"]["__typename"] == "LedgerEntryRecorded"
    usages = {
        "A": (prepaid, 400, 0),
        "B": (prepaid, 800, 0),
        "C": (prepaid, 100, 0),
        "D": (postpaid, 300, 400),
    }
    ids: dict[str, str] = {}
    for hours, (name, (account, tokens_in, tokens_out)) in zip(
        (5, 4, 3, 2), usages.items(), strict=True
    ):
        recorded = await record(
            tenant,
            p,
            accountId=account,
            occurredAt=dates.rfc(dates.ago(hours=hours)),
            inputTokens=tokens_in,
            outputTokens=tokens_out,
        )
        ids[recorded["entry"]["id"]] = name

    async def charges() -> dict[str, tuple[Decimal, Decimal]]:
        """(billed, charged to the balance) of each usage entry with its corrections."""
        async with raw_connection(database_url) as connection:
            rows = await connection.fetch(
                "SELECT coalesce(related_entry_id, id)::text AS entry, sum(amount) AS billed, "
                "sum(-balance_delta) AS charged FROM ledger_entries WHERE organization_id = $1 "
                "AND type IN ('USAGE_CHARGE', 'ADJUSTMENT') AND account_id = ANY($2::uuid[]) "
                "GROUP BY 1",
                tenant.org.id,
                [prepaid, postpaid],
            )
        return {ids[r["entry"]]: (r["billed"], r["charged"]) for r in rows}

    async def balances() -> tuple[Decimal, Decimal]:
        async with raw_connection(database_url) as connection:
            found = dict(
                await connection.fetch(
                    "SELECT account_id::text, balance FROM account_balances "
                    "WHERE account_id = ANY($1::uuid[])",
                    [prepaid, postpaid],
                )
            )
        return found[prepaid], found[postpaid]

    # At ingestion: D is 0.30 + 1.60 = 1.90, of which 1.90 x 200/700 = 0.542857142857 charged.
    assert await charges() == {
        "A": (D("0.40"), D(0)),
        "B": (D("0.80"), D("0.20")),
        "C": (D("0.10"), D("0.10")),
        "D": (D("1.90"), D("0.542857142857")),
    }
    window = {"start": dates.rfc(dates.ago(days=1)), "end": dates.rfc(dates.now())}

    async def reprice_at(hours: int, per_input: int, per_output: int) -> dict[str, Any]:
        await set_price(
            tenant,
            provider=p,
            effectiveFrom=dates.rfc(dates.ago(days=2, hours=hours)),
            inputPerMillion=str(per_input),
            outputPerMillion=str(per_output),
        )
        body = await tenant.gql(REPRICE, {"input": {"range": window}})
        outcome: dict[str, Any] = body["data"]["repriceUsage"]
        return outcome

    first = await reprice_at(12, 15_000, 60_000)
    assert (first["examined"], first["adjusted"]) == (4, 4)
    by_entry = {ids[a["relatedEntryId"]]: a for a in first["adjustments"]}
    # A was covered: 6.00 at the new price is still covered, nothing charged (not 5.60).
    # B: 12.00 x 200/800 = 3.00, 2.80 more; C in full; D: 28.50 x 200/700 = 8.142857142857.
    assert {n: (D(a["amount"]), D(a["balanceDelta"])) for n, a in by_entry.items()} == {
        "A": (D("5.60"), D(0)),
        "B": (D("11.20"), D("-2.80")),
        "C": (D("1.40"), D("-1.40")),
        "D": (D("26.60"), D("-7.60")),
    }
    assert by_entry["B"]["metadata"]["previous"]["charged"] == "0.200000000000"
    assert await balances() == (D("5.50"), D("-8.142857142857"))

    # Again, down to 2,000/8,000: each correction is corrected to what ingestion at that
    # price would have charged (B 1.60 x 200/800 = 0.40; D 3.80 x 200/700 = 1.085714285714).
    second = await reprice_at(6, 2_000, 8_000)
    assert (second["examined"], second["adjusted"]) == (4, 4)
    by_entry = {ids[a["relatedEntryId"]]: a for a in second["adjustments"]}
    assert {n: (D(a["amount"]), D(a["balanceDelta"])) for n, a in by_entry.items()} == {
        "A": (D("-5.20"), D(0)),
        "B": (D("-10.40"), D("2.60")),
        "C": (D("-1.30"), D("1.30")),
        "D": (D("-24.70"), D("7.057142857143")),
    }
    assert await charges() == {
        "A": (D("0.80"), D(0)),
        "B": (D("1.60"), D("0.40")),
        "C": (D("0.20"), D("0.20")),
        "D": (D("3.80"), D("1.085714285714")),
    }
    # 10.00 - 0.40 - 0.20 on the prepaid balance; the postpaid account owes D's share.
    assert await balances() == (D("9.40"), D("-1.085714285714"))
    assert (await reprice_at(3, 2_000, 8_000))["adjusted"] == 0

    # Revenue attributed to the usage (charged_usage) moved with the balances: the model
    # earned 0.60 + 1.085714285714; the allowance covered the rest of 6.40 billed.
    async with raw_connection(database_url) as connection:
        await rollups.catch_up(connection)
    span = {"start": dates.rfc(dates.ago(days=1)), "end": dates.rfc(dates.later(hours=1))}
    pnl = await tenant.gql(BY_MODEL, {"range": span})
    (model,) = [m for m in pnl["data"]["organizationPnl"]["byModel"] if m["provider"] == p]
    assert (D(model["revenue"]), D(model["billedUsage"]), D(model["allowanceUsage"])) == (
        D("1.685714285714"),
        D("6.40"),
        D("4.714285714286"),
    )
    await assert_no_drift(state, tenant.org.id)
