"""Payer cohorts: the retention triangle, by hand and against a SUM over the ledger.

Markup 50 %. Four payers (customers), USD unless said, over the last three months and this one
(m-3 … m0):

- X (prepaid): top-up 10 and a call of cost 1.00 in m-3; top-up 10 in m-2; top-up 10 and a
  call of cost 2.00 in m0;
- Y (prepaid): top-up 20 in m-3; a call of cost 3.00 in m-2;
- Z (postpaid): a call of cost 0 in m-3 (usage, no money); cost 4.00 in m-2 (billed 6.00:
  revenue) and 0.50 in m-1 (0.75);
- W (postpaid, KES, no rate to USD): cost 300 KES in m-1 (billed 450 KES).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from costgraph.app.state import AppState
from tests.conftest import Tenant, raw_connection
from tests.dates import month, rfc
from tests.pnl_support import (
    CREATE_ACCOUNT,
    CREATE_CUSTOMER,
    DEPOSIT,
    SET_MARKUP,
    key,
    ok,
    usage_event,
    write,
)
from tests.verify_support import assert_no_drift

D = Decimal
COHORTS = """query($range: DateRange!, $basis: CohortBasis!) {
  cohorts(range: $range, basis: $basis) { currency basis missingRates { base quote }
    cohorts { month size customerIds cells { monthIndex start end activePayers retention
      revenue aiCost platformFees margin arpu } }
    byCurrency { currency cohorts { month size cells { monthIndex activePayers revenue aiCost } } }
  } }"""


@dataclass
class Payers:
    tenant: Tenant
    ids: dict[str, str]  # name -> customer id


async def _payer(
    tenant: Tenant, name: str, postpaid: bool, currency: str = "USD"
) -> tuple[str, str]:
    customer = await write(tenant, CREATE_CUSTOMER, "createCustomer", {"name": name})
    account = await write(
        tenant,
        CREATE_ACCOUNT,
        "createAccount",
        {"customerId": customer["id"], "name": name, "postpaid": postpaid, "currency": currency},
    )
    return customer["id"], account["id"]


async def _top_up(tenant: Tenant, account: str, amount: str, at: datetime) -> None:
    await write(
        tenant,
        DEPOSIT,
        "deposit",
        {
            "idempotencyKey": key(),
            "accountId": account,
            "amount": amount,
            "currency": "USD",
            "occurredAt": rfc(at),
        },
    )


@pytest.fixture
async def payers(tenant: Tenant) -> Payers:
    await write(tenant, SET_MARKUP, "setMarkup", {"percent": "50"})
    x, xa = await _payer(tenant, "X", False)
    y, ya = await _payer(tenant, "Y", False)
    z, za = await _payer(tenant, "Z", True)
    w, wa = await _payer(tenant, "W", True, "KES")
    await _top_up(tenant, xa, "10", month(-3, 3))
    await usage_event(tenant, xa, rfc(month(-3, 4)), "1.00", "USD")
    await _top_up(tenant, xa, "10", month(-2, 3))
    await _top_up(tenant, xa, "10", month())
    await usage_event(tenant, xa, rfc(month()), "2.00", "USD")
    await _top_up(tenant, ya, "20", month(-3, 5))
    await usage_event(tenant, ya, rfc(month(-2, 5)), "3.00", "USD")
    await usage_event(tenant, za, rfc(month(-3, 6)), "0", "USD")
    await usage_event(tenant, za, rfc(month(-2, 6)), "4.00", "USD")
    await usage_event(tenant, za, rfc(month(-1, 6)), "0.50", "USD")
    await usage_event(tenant, wa, rfc(month(-1, 7)), "300", "KES")
    return Payers(tenant, {"X": x, "Y": y, "Z": z, "W": w})


def _range() -> dict[str, str]:
    return {"start": rfc(month(-3)), "end": rfc(month(1))}


def cells(cohort: dict[str, Any]) -> list[tuple[int, int, Decimal, Decimal, Decimal | None]]:
    return [
        (
            c["activePayers"],
            c["monthIndex"],
            D(c["revenue"]),
            D(c["aiCost"]),
            None if c["arpu"] is None else D(c["arpu"]),
        )
        for c in cohort["cells"]
    ]


async def test_payment_cohorts_by_hand(payers: Payers, state: AppState) -> None:
    body = (await ok(payers.tenant, COHORTS, {"range": _range(), "basis": "PAYMENT"}))["cohorts"]
    assert body["missingRates"] == [{"base": "KES", "quote": "USD"}]
    by_month = {c["month"]: c for c in body["cohorts"]}
    assert list(by_month) == [rfc(month(-3)), rfc(month(-2)), rfc(month(-1))]
    first = by_month[rfc(month(-3))]
    assert (first["size"], set(first["customerIds"])) == (2, {payers.ids["X"], payers.ids["Y"]})
    # (active, index, revenue, AI cost, ARPU)
    assert cells(first) == [
        (2, 0, D("30"), D("1.00"), D("15")),  # both topped up; X's call
        (1, 1, D("10"), D("3.00"), D("10")),  # X topped up; Y only used
        (0, 2, D("0"), D("0"), None),
        (1, 3, D("10"), D("2.00"), D("10")),
    ]
    assert [D(c["retention"]) for c in first["cells"]] == [D(100), D(50), D(0), D(50)]
    assert [D(c["margin"]) for c in first["cells"]] == [D(29), D(7), D(0), D(8)]
    second = by_month[rfc(month(-2))]  # Z: its cost-0 call in m-3 paid nothing
    assert second["customerIds"] == [payers.ids["Z"]]
    assert cells(second) == [
        (1, 0, D("6.00"), D("4.00"), D("6.00")),
        (1, 1, D("0.75"), D("0.50"), D("0.75")),
        (0, 2, D("0"), D("0"), None),
    ]
    # W paid in KES alone: a cohort of one whose money has no rate to USD.
    third = by_month[rfc(month(-1))]
    assert third["size"] == 1 and cells(third) == [
        (0, 0, D(0), D(0), None),
        (0, 1, D(0), D(0), None),
    ]
    kes = next(p for p in body["byCurrency"] if p["currency"] == "KES")
    (kes_cohort,) = [c for c in kes["cohorts"] if c["month"] == rfc(month(-1))]
    assert (kes_cohort["cells"][0]["activePayers"], D(kes_cohort["cells"][0]["revenue"])) == (
        1,
        D("450"),
    )
    await assert_no_drift(state, payers.tenant.org.id)


async def test_usage_cohorts_by_hand(payers: Payers) -> None:
    body = (await ok(payers.tenant, COHORTS, {"range": _range(), "basis": "USAGE"}))["cohorts"]
    by_month = {c["month"]: c for c in body["cohorts"]}
    first = by_month[rfc(month(-3))]
    assert set(first["customerIds"]) == {payers.ids["X"], payers.ids["Z"]}
    assert cells(first) == [
        (2, 0, D("10"), D("1.00"), D("5")),  # X's call and Z's cost-0 call
        (1, 1, D("16.00"), D("4.00"), D("16")),  # Z used; X only topped up
        (1, 2, D("0.75"), D("0.50"), D("0.75")),
        (1, 3, D("10"), D("2.00"), D("10")),
    ]
    second = by_month[rfc(month(-2))]
    assert second["customerIds"] == [payers.ids["Y"]]
    assert cells(second) == [
        (1, 0, D("0"), D("3.00"), D("0")),
        (0, 1, D("0"), D("0"), None),
        (0, 2, D("0"), D("0"), None),
    ]
    assert D(second["cells"][0]["margin"]) == D("-3.00")


_SQL = """
SELECT coalesce(sum(CASE
         WHEN e.type IN ('DEPOSIT', 'SUBSCRIPTION_PAYMENT') THEN e.amount
         WHEN e.type IN ('REFUND', 'WITHDRAWAL') THEN -e.amount
         WHEN e.type = 'USAGE_CHARGE' AND a.postpaid THEN -e.balance_delta
         ELSE 0 END), 0),
       coalesce(sum(CASE WHEN e.type = 'USAGE_CHARGE' THEN e.ai_cost ELSE 0 END), 0)
FROM ledger_entries e
JOIN accounts a ON a.organization_id = e.organization_id AND a.id = e.account_id
WHERE e.organization_id = $1 AND a.customer_id = ANY($2::uuid[]) AND e.currency = 'USD'
  AND e.occurred_at >= $3 AND e.occurred_at < $4"""


@pytest.mark.parametrize("basis", ["PAYMENT", "USAGE"])
async def test_every_cell_is_a_sum_over_the_ledger(
    payers: Payers, database_url: str, basis: str
) -> None:
    body = (await ok(payers.tenant, COHORTS, {"range": _range(), "basis": basis}))["cohorts"]
    checked = 0
    async with raw_connection(database_url) as connection:
        for cohort in body["cohorts"]:
            for cell in cohort["cells"]:
                revenue, cost = await connection.fetchrow(
                    _SQL,
                    payers.tenant.org.id,
                    cohort["customerIds"],
                    datetime.fromisoformat(cell["start"]),
                    datetime.fromisoformat(cell["end"]),
                )
                assert (D(cell["revenue"]), D(cell["aiCost"])) == (revenue, cost), cell
                checked += 1
    assert checked == 9


async def test_a_range_inside_a_month_clips_the_cells(payers: Payers) -> None:
    rng = {"start": rfc(month(-3, 4)), "end": rfc(month(-2, 4))}
    body = (await ok(payers.tenant, COHORTS, {"range": rng, "basis": "PAYMENT"}))["cohorts"]
    # Z's first payment (the 6th of m-2) comes after the range's end: no cohort of m-2 yet.
    (first,) = body["cohorts"]
    assert first["month"] == rng["start"]
    # From the 4th: X's top-up on the 3rd is outside, Y's on the 5th inside; in m-2 X's
    # top-up on the 3rd is inside.
    assert [(c["start"], c["end"]) for c in first["cells"]] == [
        (rng["start"], rfc(month(-2))),
        (rfc(month(-2)), rng["end"]),
    ]
    assert cells(first) == [(1, 0, D("20"), D("1.00"), D("20")), (1, 1, D("10"), D("0"), D("10"))]
    bad = await payers.tenant.gql(
        COHORTS, {"range": {"start": rng["end"], "end": rng["start"]}, "basis": "PAYMENT"}
    )
    assert bad["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
