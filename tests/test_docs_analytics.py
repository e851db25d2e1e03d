"""Every GraphQL example of docs/analytics.md runs against a seeded organisation, without
errors, and answers what the page says it answers (figures computed by hand).

The organisation (markup 20 %, USD):

- last month: Acme (prepaid) tops up 100, alice spends 5.00 of gpt-4o (feature chat) through
  it; Beta (postpaid) — bob spends 2.00 of claude (search), billed 2.40;
- this month: Acme tops up 50, alice spends 10.00 and 1.00 of gpt-4o (chat); bob 20.00 of
  claude (search) through Beta, billed 24.00.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from graphql import OperationDefinitionNode, parse

from tests.conftest import Tenant
from tests.dates import month, rfc
from tests.docs_examples import ROOT, examples
from tests.pnl_support import (
    CREATE_ACCOUNT,
    CREATE_CUSTOMER,
    CREATE_USER,
    DEPOSIT,
    SET_MARKUP,
    key,
    ok,
    usage_event,
    write,
)

D = Decimal
PAGE = ROOT / "docs" / "analytics.md"


def operations(page: Path) -> dict[str, str]:
    """The page's GraphQL blocks by operation name."""
    found = {}
    for example in examples(page):
        if example.lang != "graphql":
            continue
        (operation,) = parse(example.code).definitions
        assert isinstance(operation, OperationDefinitionNode) and operation.name is not None
        found[operation.name.value] = example.code
    return found


def variables(query: str, offered: dict[str, Any]) -> dict[str, Any]:
    (operation,) = parse(query).definitions
    assert isinstance(operation, OperationDefinitionNode)
    names = [v.variable.name.value for v in operation.variable_definitions]
    assert set(names) <= set(offered), names
    return {name: offered[name] for name in names}


async def _seed(tenant: Tenant) -> None:
    await write(tenant, SET_MARKUP, "setMarkup", {"percent": "20"})
    accounts = {}
    for name, postpaid in (("Acme", False), ("Beta", True)):
        customer = await write(tenant, CREATE_CUSTOMER, "createCustomer", {"name": name})
        account = await write(
            tenant,
            CREATE_ACCOUNT,
            "createAccount",
            {"customerId": customer["id"], "name": name, "postpaid": postpaid},
        )
        accounts[name] = account["id"]
    users = {
        name: (
            await write(tenant, CREATE_USER, "createUser", {"email": f"{name}-{key()}@example.com"})
        )["id"]
        for name in ("alice", "bob")
    }
    for amount, at in (("100", month(-1, 10)), ("50", month())):
        await write(
            tenant,
            DEPOSIT,
            "deposit",
            {
                "idempotencyKey": key(),
                "accountId": accounts["Acme"],
                "amount": amount,
                "currency": "USD",
                "occurredAt": rfc(at),
            },
        )
    for account, user, model, feature, cost, at in (
        ("Acme", "alice", "gpt-4o", "chat", "5.00", month(-1, 11)),
        ("Beta", "bob", "claude", "search", "2.00", month(-1, 12)),
        ("Acme", "alice", "gpt-4o", "chat", "10.00", month()),
        ("Acme", "alice", "gpt-4o", "chat", "1.00", month()),
        ("Beta", "bob", "claude", "search", "20.00", month()),
    ):
        await usage_event(
            tenant,
            accounts[account],
            rfc(at),
            cost,
            "USD",
            userId=users[user],
            model=model,
            feature=feature,
        )


@pytest.fixture
async def answers(tenant: Tenant) -> dict[str, dict[str, Any]]:
    await _seed(tenant)
    offered = {
        "thisMonth": {"start": rfc(month()), "end": rfc(month(1))},
        "lastMonth": {"start": rfc(month(-1)), "end": rfc(month())},
        "lastYear": {"start": rfc(month(-11)), "end": rfc(month(1))},
    }
    found = operations(PAGE)
    assert set(found) == {
        "ModelsThisMonthAgainstLast",
        "TopSpenders",
        "ReturningPayersRunningLow",
        "PayersAndCohorts",
        "FeatureRoi",
    }
    return {
        name: await ok(tenant, query, variables(query, offered)) for name, query in found.items()
    }


def change(value: dict[str, Any]) -> tuple[Decimal, Decimal]:
    return D(value["current"]), D(value["previous"])


async def test_models_this_month_against_last(answers: dict[str, dict[str, Any]]) -> None:
    pnl = answers["ModelsThisMonthAgainstLast"]["organizationPnl"]
    # This month: Acme's top-up 50 + Beta's postpaid 24.00; last month 100 + 2.40.
    assert change(pnl["comparison"]["revenue"]) == (D("74.00"), D("102.40"))
    assert D(pnl["comparison"]["revenue"]["relative"]) == D("-27.7344")  # -28.40 / 102.40
    models = pnl["comparison"]["byModel"]
    assert [m["model"] for m in models] == ["claude", "gpt-4o"]  # the larger revenue first
    claude, gpt = models
    assert change(claude["revenue"]) == (D("24.00"), D("2.40"))
    assert change(claude["margin"]) == (D("4.00"), D("0.40"))
    assert change(gpt["revenue"]) == (D("13.20"), D("6.00"))
    assert change(gpt["aiCost"]) == (D("11.00"), D("5.00"))
    assert pnl["comparison"]["missingRates"] == []


async def test_top_spenders_and_their_cost(answers: dict[str, dict[str, Any]]) -> None:
    users = answers["TopSpenders"]["usersView"]
    assert [(D(u["spend"]), D(u["aiCost"])) for u in users] == [
        (D("24.00"), D("20.00")),
        (D("13.20"), D("11.00")),
    ]
    # bob spends through Beta (postpaid: -2.40 - 24.00); alice through Acme (150 - 19.20).
    assert [D(u["balance"]) for u in users] == [D("-26.40"), D("130.80")]
    assert [u["payerSegment"] for u in users] == ["RETURNING", "RETURNING"]
    customers = answers["TopSpenders"]["customersView"]
    assert [c["customer"]["name"] for c in customers][:2] == ["Beta", "Acme"]
    assert (D(customers[0]["revenue"]), D(customers[0]["margin"])) == (D("24.00"), D("4.00"))


async def test_segments(answers: dict[str, dict[str, Any]]) -> None:
    answer = answers["ReturningPayersRunningLow"]
    assert [(c["customer"]["name"], D(c["balance"])) for c in answer["customersView"]] == [
        ("Beta", D("-26.40"))
    ]
    kpis = answer["payerKpis"]  # nobody paid for the first time this month
    assert (kpis["activePayers"], D(kpis["revenue"]), kpis["arpu"]) == (0, D(0), None)


async def test_payers_and_cohorts(answers: dict[str, dict[str, Any]]) -> None:
    answer = answers["PayersAndCohorts"]
    kpis = answer["payerKpis"]
    assert (kpis["activePayers"], kpis["newPayers"], D(kpis["arpu"])) == (2, 0, D("37.00"))
    assert D(kpis["comparison"]["arpu"]["previous"]) == D("51.20")
    (cohort,) = answer["cohorts"]["cohorts"]  # both paid first last month
    assert (cohort["month"], cohort["size"]) == (rfc(month(-1)), 2)
    assert [
        (c["monthIndex"], c["activePayers"], D(c["revenue"]), D(c["arpu"])) for c in cohort["cells"]
    ] == [(0, 2, D("102.40"), D("51.20")), (1, 2, D("74.00"), D("37.00"))]


async def test_feature_roi(answers: dict[str, dict[str, Any]]) -> None:
    features = answers["FeatureRoi"]["featureRoi"]["features"]
    assert [f["feature"] for f in features] == ["search", "chat"]
    search, chat = features
    assert (D(search["revenue"]), D(search["margin"]), search["activeUsers"]) == (
        D("24.00"),
        D("4.00"),
        1,
    )
    assert (D(chat["costPerActiveUser"]), D(chat["requestsPerUser"])) == (D("11.00"), D(2))
    assert D(chat["change"]["margin"]["absolute"]) == D("1.20")  # 2.20 against 1.00
