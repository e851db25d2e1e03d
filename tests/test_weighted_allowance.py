"""Weighted consumption: an allowance counts budgeted tokens (model x feature x tokens, plus
units at their per-unit weight), each entry keeps its weight and budgeted tokens, verify
recomputes them; and messages show amounts and tokens that mean something."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from costgraph.app.state import AppState
from costgraph.billing import verify
from costgraph.kernel.money import format_money
from costgraph.subscriptions.totals_check import LEDGER_CHECKS
from tests.conftest import Tenant, raw_connection
from tests.dates import month, rfc
from tests.test_allowances import allowance, prepaid_account, spend
from tests.test_ledger import DEPOSIT, deposit_input, entry_count
from tests.verify_support import assert_no_drift

RECORD = """
mutation($input: UsageEventInput!) {
  recordUsage(input: $input) {
    __typename
    ... on UsageRecorded { entry { id balanceDelta allowanceWeight budgetedTokens
                                   units { kind quantity weight } } }
    ... on AllowanceExhausted { accountId needed balance tokensLeft }
    ... on UserError { code message field }
  }
}"""
SET_WEIGHT = """
mutation($input: AllowanceWeightInput!) {
  setAllowanceWeight(input: $input) {
    __typename
    ... on AllowanceWeight { dimension provider name weight }
    ... on UserError { code message field }
  }
}"""
WEIGHTS = "query { allowanceWeights { dimension provider name weight } }"
LEDGER_WEIGHTS = """query($filter: LedgerFilter) { ledger(first: 20, filter: $filter) {
  nodes { type model allowanceWeight budgetedTokens inputTokens } } }"""


async def set_weight(tenant: Tenant, **weight: Any) -> dict[str, Any]:
    body = await tenant.gql(SET_WEIGHT, {"input": weight})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["setAllowanceWeight"]
    return result


async def record(tenant: Tenant, event: dict[str, Any]) -> dict[str, Any]:
    body = await tenant.gql(RECORD, {"input": event})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["recordUsage"]
    return result


def weighed(tenant: Tenant, account: str, tokens: int, cost: str, **extra: Any) -> dict[str, Any]:
    event = spend(tenant, account, tokens, cost)
    event.update(extra)
    return event


async def test_an_expensive_model_consumes_more_of_the_allowance(
    tenant: Tenant, state: AppState
) -> None:
    account = await prepaid_account(tenant, tokens=1000)
    made = await set_weight(
        tenant, dimension="MODEL", provider="openai", name="o1-pro", weight="2.5"
    )
    assert Decimal(made.pop("weight")) == Decimal("2.5")
    assert made == {
        "__typename": "AllowanceWeight",
        "dimension": "MODEL",
        "provider": "openai",
        "name": "o1-pro",
    }
    cheap = await record(tenant, weighed(tenant, account, 100, "0.10"))
    assert Decimal(cheap["entry"]["allowanceWeight"]) == 1
    assert cheap["entry"]["budgetedTokens"] == 100
    heavy = await record(tenant, weighed(tenant, account, 100, "0.50", model="o1-pro"))
    assert Decimal(heavy["entry"]["allowanceWeight"]) == Decimal("2.5")
    assert heavy["entry"]["budgetedTokens"] == 250
    state_now = await allowance(tenant, account)
    assert (state_now["used"], state_now["remaining"]) == (350, 650)
    # 300 raw tokens of o1-pro are 750 budgeted: 650 covered, the rest charged in proportion
    # (100 of 750 budgeted tokens uncovered: 2/15 of 1.50), which needs a top-up first.
    refused = await record(tenant, weighed(tenant, account, 300, "1.50", model="o1-pro"))
    assert refused["__typename"] == "AllowanceExhausted"
    assert refused["tokensLeft"] == 650 and Decimal(refused["needed"]) == Decimal("0.20")
    await tenant.gql(DEPOSIT, {"input": deposit_input(tenant, accountId=account, amount="1.00")})
    paid = await record(tenant, weighed(tenant, account, 300, "1.50", model="o1-pro"))
    assert Decimal(paid["entry"]["balanceDelta"]) == Decimal("-0.20")
    assert (await allowance(tenant, account))["used"] == 1000
    ledger = await tenant.gql(LEDGER_WEIGHTS, {"filter": {"accountId": account}})
    usage = [n for n in ledger["data"]["ledger"]["nodes"] if n["type"] == "USAGE_CHARGE"]
    assert sorted(n["budgetedTokens"] for n in usage) == [100, 250, 750]
    deposits = [n for n in ledger["data"]["ledger"]["nodes"] if n["type"] == "DEPOSIT"]
    assert deposits[0]["allowanceWeight"] is None and deposits[0]["budgetedTokens"] is None
    await assert_no_drift(state, tenant.org.id)


async def test_features_and_units_weigh_a_video_step(tenant: Tenant, state: AppState) -> None:
    account = await prepaid_account(tenant, tokens=10_000)
    await set_weight(tenant, dimension="UNIT", name="VIDEO_SECOND", weight="50")
    await set_weight(tenant, dimension="FEATURE", name="video-compose", weight="2")
    listed = (await tenant.gql(WEIGHTS))["data"]["allowanceWeights"]
    assert {(w["dimension"], w["name"], Decimal(w["weight"])) for w in listed} == {
        ("UNIT", "VIDEO_SECOND", Decimal(50)),
        ("FEATURE", "video-compose", Decimal(2)),
    }
    video = [{"kind": "VIDEO_SECOND", "quantity": "4.5"}, {"kind": "IMAGE", "quantity": "1"}]
    step = await record(
        tenant,
        weighed(tenant, account, 10, "0.30", feature="video-compose", units=video),
    )
    # ceil(2 x 10 + 2 x 50 x 4.5) = 470; images have no weight: they draw nothing.
    entry = step["entry"]
    assert entry["budgetedTokens"] == 470 and Decimal(entry["allowanceWeight"]) == 2
    weights = {u["kind"]: u["weight"] for u in entry["units"]}
    assert Decimal(weights["VIDEO_SECOND"]) == 100 and weights["IMAGE"] is None
    text = await record(tenant, weighed(tenant, account, 10, "0.01"))
    assert text["entry"]["budgetedTokens"] == 10
    assert (await allowance(tenant, account))["used"] == 480

    # A later change of a weight applies to later usage only: history keeps its weight.
    await set_weight(tenant, dimension="FEATURE", name="video-compose", weight="0.5")
    later = await record(tenant, weighed(tenant, account, 10, "0.01", feature="video-compose"))
    assert later["entry"]["budgetedTokens"] == 5  # ceil(0.5 x 10)
    async with raw_connection(tenant_db(state)) as connection:
        kept = await connection.fetchval(
            "SELECT budgeted_tokens FROM ledger_entries WHERE id = $1", uuid.UUID(entry["id"])
        )
    assert kept == 470
    assert (await allowance(tenant, account))["used"] == 485
    await assert_no_drift(state, tenant.org.id)


def tenant_db(state: AppState) -> str:
    url = state.settings.database_url
    assert url is not None
    return url


async def test_verify_counts_the_allowance_in_budgeted_tokens(
    tenant: Tenant, state: AppState
) -> None:
    account = await prepaid_account(tenant, tokens=1000)
    await set_weight(tenant, dimension="MODEL", provider="openai", name="*", weight="3")
    await record(tenant, weighed(tenant, account, 100, "0.10"))  # any openai model: x3
    assert (await allowance(tenant, account))["used"] == 300
    await assert_no_drift(state, tenant.org.id)
    # A counter holding the raw tokens (as before weights) is drift.
    async with raw_connection(tenant_db(state)) as connection:
        await connection.execute(
            "UPDATE allowance_counters SET used_tokens = 100 WHERE account_id = $1",
            uuid.UUID(account),
        )
        try:
            report = await verify.verify(
                state.engine, state.limits.zone, organization_id=tenant.org.id, checks=LEDGER_CHECKS
            )
        finally:
            await connection.execute(
                "UPDATE allowance_counters SET used_tokens = 300 WHERE account_id = $1",
                uuid.UUID(account),
            )
    assert [(d.what, d.stored, d.recomputed) for d in report.drift] == [
        ("allowance.used_tokens", 100, 300)
    ]
    assert report.checked["budgeted tokens"] == 1
    await assert_no_drift(state, tenant.org.id)


async def test_bad_weights_are_refused_and_write_nothing(tenant: Tenant) -> None:
    cases = [
        ({"dimension": "MODEL", "name": "gpt-4o", "weight": "2"}, "input.provider"),
        ({"dimension": "FEATURE", "name": "x", "weight": "-1"}, "input.weight"),
        ({"dimension": "FEATURE", "name": "x", "weight": "1.1234567"}, "input.weight"),
        ({"dimension": "FEATURE", "name": "x", "weight": "2000000"}, "input.weight"),
        ({"dimension": "UNIT", "name": "GIGABYTE", "weight": "1"}, "input.name"),
        (
            {"dimension": "UNIT", "name": "IMAGE", "provider": "openai", "weight": "1"},
            "input.provider",
        ),
        ({"dimension": "FEATURE", "name": " ", "weight": "1"}, "input.name"),
    ]
    for weight, field in cases:
        refused = await set_weight(tenant, **weight)
        assert (refused["code"], refused["field"]) == ("VALIDATION_FAILED", field), weight
    assert (await tenant.gql(WEIGHTS))["data"]["allowanceWeights"] == []


async def test_allowance_exhausted_says_what_is_left(tenant: Tenant, state: AppState) -> None:
    """Never "0E-12", never "no tokens left" while tokens remain."""
    account = await prepaid_account(tenant, tokens=1000)
    await record(tenant, weighed(tenant, account, 850, "0.85"))
    refused = await record(tenant, weighed(tenant, account, 400, "0.004"))
    assert refused["__typename"] == "AllowanceExhausted" and refused["tokensLeft"] == 150
    message = refused["message"]
    assert "0E-" not in message and "no tokens left" not in message
    assert "150 budgeted tokens left" in message
    assert "0.0025 USD" in message and "has 0.00 USD" in message  # 250 of 400 uncovered
    before = await entry_count(tenant_db(state), tenant)
    await record(tenant, weighed(tenant, account, 150, "0.15"))
    gone = await record(tenant, weighed(tenant, account, 10, "0.01"))
    assert gone["__typename"] == "AllowanceExhausted" and gone["tokensLeft"] == 0
    assert "no tokens left in its allowance" in gone["message"]
    assert await entry_count(tenant_db(state), tenant) == before + 1
    no_plan = await prepaid_account(tenant, tokens=None)
    bare = await record(tenant, weighed(tenant, no_plan, 10, "0.01"))
    assert bare["tokensLeft"] is None and "no plan allowance" in bare["message"]
    await assert_no_drift(state, tenant.org.id)


def test_messages_show_amounts_at_a_precision_that_means_something() -> None:
    cases = {
        ("0E-12", "USD"): "0.00 USD",
        ("0.005", "USD"): "0.005 USD",
        ("0.01", "USD"): "0.01 USD",
        ("0.000123456", "USD"): "0.000123 USD",
        ("0.5", "USD"): "0.50 USD",
        ("7.6", "USD"): "7.60 USD",
        ("1234.565", "USD"): "1234.56 USD",  # half-to-even at the minor unit
        ("12.6", "JPY"): "13 JPY",
        ("0.4", "JPY"): "0.4 JPY",
        ("-0.002", "EUR"): "-0.002 EUR",
    }
    for (value, currency), shown in cases.items():
        assert format_money(Decimal(value), currency) == shown, (value, currency)


async def test_a_small_budget_alert_reads_its_real_amounts(tenant: Tenant) -> None:
    """A 50 % stage of a 0.01 USD budget used to read "0.01 USD of 0.01 USD spent"."""
    budget = await tenant.gql(
        """mutation($i: BudgetInput!) { setBudget(input: $i) { id } }""",
        {
            "i": {
                "scope": {"kind": "ORGANIZATION"},
                "period": "MONTH",
                "limit": "0.01",
                "currency": "USD",
                "hardCap": False,
                "thresholds": [50],
            }
        },
    )
    assert "errors" not in budget, budget
    event = spend(tenant, str(tenant.account_id), 10, "0.005")
    event["occurredAt"] = rfc(month())
    assert (await record(tenant, event))["__typename"] == "UsageRecorded"
    alerts = await tenant.gql("query { alerts(first: 5) { nodes { stage message } } }")
    (alert,) = alerts["data"]["alerts"]["nodes"]
    assert alert["stage"] == 50
    assert "0.005 USD of 0.01 USD spent" in alert["message"], alert["message"]
