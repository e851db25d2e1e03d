"""The users view, payer KPIs, liability estimates and the monthly close, on the hand-computed
books of :mod:`tests.test_pnl`."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from costgraph.app.state import AppState
from costgraph.billing import month_close
from tests.conftest import Tenant, raw_connection
from tests.dates import month, rfc
from tests.pnl_support import LIABILITY, catch_up, key, ok, write
from tests.test_pnl import Books, _books, at, end_of_range

D = Decimal

USERS_VIEW = """query($range: DateRange!) { usersView(range: $range) {
  user { id email } currency spend aiCost eventCount tokens lastActivityAt status
  ledger(first: 5) { edges { node { id amount userId } } } } }"""
CUSTOMERS_VIEW = """query($range: DateRange!) { customersView(range: $range) {
  customer { id name } currency revenue spend aiCost margin eventCount
  balances { currency amount } lastActivityAt status } }"""
KPIS = """query($range: DateRange!, $currency: CurrencyCode) {
  payerKpis(range: $range, currency: $currency) {
    currency activePayers newPayers customersServed revenue aiCost arpu averageCostToServe } }"""
CLOSES = """query($month: DateTime!) { monthlyCloses(month: $month) {
  month scopeKind scopeId currency revenue aiCost billedUsage platformFees margin eventCount } }"""


@pytest.fixture
async def books(tenant: Tenant) -> Books:
    return await _books(tenant)


async def test_users_view(books: Books) -> None:
    rng = {"start": at(5), "end": end_of_range()}
    rows = (await ok(books.tenant, USERS_VIEW, {"range": rng}))["usersView"]
    (user,) = rows
    assert user["user"]["id"] == books.user
    assert (D(user["spend"]), D(user["aiCost"]), user["eventCount"]) == (D("2.40"), D("2.00"), 1)
    assert user["lastActivityAt"] == rfc(month(-2, 5, 10, 15))
    assert user["status"] == "ACTIVE"
    assert [e["node"]["userId"] for e in user["ledger"]["edges"]] == [books.user]
    later = {"start": rfc(month(-2, 10)), "end": rfc(month(-2, 11))}
    (idle,) = (await ok(books.tenant, USERS_VIEW, {"range": later}))["usersView"]
    assert (idle["status"], D(idle["spend"])) == ("IDLE", D(0))
    before = {"start": rfc(month(-3)), "end": rfc(month(-3, 2))}
    (never,) = (await ok(books.tenant, USERS_VIEW, {"range": before}))["usersView"]
    assert (never["status"], never["lastActivityAt"]) == ("NEVER", None)


async def test_customers_view(books: Books) -> None:
    rng = {"start": at(5), "end": end_of_range()}
    rows = (await ok(books.tenant, CUSTOMERS_VIEW, {"range": rng}))["customersView"]
    by_id = {r["customer"]["id"]: r for r in rows}
    b = by_id[books.customer_b]
    assert (D(b["revenue"]), D(b["spend"]), D(b["aiCost"]), D(b["margin"])) == (
        D("60.60"),
        D("27.60"),
        D("23.00"),
        D("37.60"),
    )
    # B1 is postpaid: its usage took its balance below zero (24 EUR of billed usage).
    assert [(x["currency"], D(x["amount"])) for x in b["balances"]] == [("EUR", D("-24.00"))]
    assert b["status"] == "ACTIVE" and b["lastActivityAt"] == rfc(month(-2, 6, 12, 45))
    a = by_id[str(books.tenant.customer_id)]
    # Prepaid A1: 100 - 10 refunded - 2.40 used - 1 adjusted; postpaid A2: 6.00 used.
    assert [(x["currency"], D(x["amount"])) for x in a["balances"]] == [("USD", D("80.60"))]
    assert rows[0]["customer"]["id"] == books.customer_b  # the larger spender first


async def test_payer_kpis(books: Books) -> None:
    rng = {"start": at(5), "end": end_of_range()}
    kpis = (await ok(books.tenant, KPIS, {"range": rng}))["payerKpis"]
    # Both customers paid (A: top-up and subscription; B: subscription and postpaid usage),
    # neither had paid before; both had usage.
    assert (kpis["activePayers"], kpis["newPayers"], kpis["customersServed"]) == (2, 2, 2)
    assert D(kpis["revenue"]) == D("205.60") and D(kpis["arpu"]) == D("102.80")
    assert D(kpis["averageCostToServe"]) == D("15.00")
    later = {"start": rfc(month(-2, 6)), "end": end_of_range()}
    kpis = (await ok(books.tenant, KPIS, {"range": later}))["payerKpis"]
    # From the 6th: A paid nothing new (the refund is not a payment), B paid again.
    assert (kpis["activePayers"], kpis["newPayers"]) == (2, 1)


async def test_liability_estimate_is_idempotent(tenant: Tenant) -> None:
    payload = {"idempotencyKey": key(), "agent": "scout", "amount": "4.00", "currency": "USD"}
    first = await write(tenant, LIABILITY, "recordLiabilityEstimate", payload)
    again = await write(tenant, LIABILITY, "recordLiabilityEstimate", payload)
    assert again["replayed"] is True and again["estimate"]["id"] == first["estimate"]["id"]
    changed = (await ok(tenant, LIABILITY, {"input": dict(payload, amount="5.00")}))[
        "recordLiabilityEstimate"
    ]
    assert changed["code"] == "IDEMPOTENCY_CONFLICT"
    bad = (await ok(tenant, LIABILITY, {"input": dict(payload, idempotencyKey=key(), amount="0")}))[
        "recordLiabilityEstimate"
    ]
    assert (bad["code"], bad["field"]) == ("VALIDATION_FAILED", "input.amount")


async def test_monthly_close(books: Books, database_url: str) -> None:
    async with raw_connection(database_url) as connection:
        await catch_up(connection)
        async with connection.transaction():
            count = await month_close.close_month(
                connection,
                books.tenant.org.id,
                "USD",
                month(-2),
            )
        assert count > 0
    rows = (await ok(books.tenant, CLOSES, {"month": rfc(month(-2, 15))}))["monthlyCloses"]
    by_scope: dict[tuple[str, str, str], Any] = {
        (r["scopeKind"], r["scopeId"], r["currency"]): r for r in rows
    }
    euro = by_scope[("ACCOUNT", books.euro, "EUR")]
    assert (D(euro["revenue"]), D(euro["aiCost"]), euro["eventCount"]) == (
        D("54.00"),
        D("20.00"),
        2,
    )
    org_usd = by_scope[("ORGANIZATION", str(books.tenant.org.id), "USD")]
    # The books' month in USD entries only (the refund and the fee are recorded now, later).
    assert (D(org_usd["revenue"]), D(org_usd["aiCost"])) == (D("155.00"), D("7.00"))
    customer_b = by_scope[("CUSTOMER", books.customer_b, "EUR")]
    assert D(customer_b["margin"]) == D("34.00")


async def test_close_months_closes_what_is_due_once(tenant: Tenant, state: AppState) -> None:
    await write(
        tenant,
        """mutation($input: DepositInput!) { deposit(input: $input) {
          __typename ... on LedgerEntryRecorded { entry { id } } ... on UserError { code } } }""",
        "deposit",
        {
            "idempotencyKey": key(),
            "accountId": str(tenant.account_id),
            "amount": "7.00",
            "currency": "USD",
            "occurredAt": rfc(month()),  # the month the tenant's books start in
        },
    )
    now = month(2, day=10)  # this month and the next are due, not the one after
    grace, only = timedelta(hours=24), [tenant.org.id]
    closed = await month_close.close_months(state.units, now, grace, only=only)
    again = await month_close.close_months(state.units, now, grace, only=only)
    mine = [c for c in closed if c.organization_id == tenant.org.id]
    assert [c.month for c in mine] == [month(), month(1)]
    assert not [c for c in again if c.organization_id == tenant.org.id]
    first = (await ok(tenant, CLOSES, {"month": rfc(month())}))["monthlyCloses"]
    org_row = next(r for r in first if r["scopeKind"] == "ORGANIZATION")
    assert D(org_row["revenue"]) == D("7.00")
    second = (await ok(tenant, CLOSES, {"month": rfc(month(1))}))["monthlyCloses"]
    assert [(r["scopeKind"], D(r["revenue"])) for r in second] == [("ORGANIZATION", D(0))]
