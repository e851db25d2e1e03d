"""The users view, payer KPIs, liability estimates and the monthly close, on the hand-computed
books of :mod:`tests.test_pnl`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from costgraph.billing import month_close
from tests.conftest import Tenant, raw_connection
from tests.pnl_support import LIABILITY, catch_up, key, ok, write
from tests.test_pnl import START, Books, _books, end_of_range

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
    rng = {"start": START, "end": end_of_range()}
    rows = (await ok(books.tenant, USERS_VIEW, {"range": rng}))["usersView"]
    (user,) = rows
    assert user["user"]["id"] == books.user
    assert (D(user["spend"]), D(user["aiCost"]), user["eventCount"]) == (D("2.40"), D("2.00"), 1)
    assert user["lastActivityAt"] == "2026-10-05T10:15:00Z"
    assert user["status"] == "ACTIVE"
    assert [e["node"]["userId"] for e in user["ledger"]["edges"]] == [books.user]
    later = {"start": "2026-10-10T00:00:00Z", "end": "2026-10-11T00:00:00Z"}
    (idle,) = (await ok(books.tenant, USERS_VIEW, {"range": later}))["usersView"]
    assert (idle["status"], D(idle["spend"])) == ("IDLE", D(0))
    before = {"start": "2026-09-01T00:00:00Z", "end": "2026-09-02T00:00:00Z"}
    (never,) = (await ok(books.tenant, USERS_VIEW, {"range": before}))["usersView"]
    assert (never["status"], never["lastActivityAt"]) == ("NEVER", None)


async def test_customers_view(books: Books) -> None:
    rng = {"start": START, "end": end_of_range()}
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
    assert b["status"] == "ACTIVE" and b["lastActivityAt"] == "2026-10-06T12:45:00Z"
    a = by_id[str(books.tenant.customer_id)]
    # Prepaid A1: 100 - 10 refunded - 2.40 used - 1 adjusted; postpaid A2: 6.00 used.
    assert [(x["currency"], D(x["amount"])) for x in a["balances"]] == [("USD", D("80.60"))]
    assert rows[0]["customer"]["id"] == books.customer_b  # the larger spender first


async def test_payer_kpis(books: Books) -> None:
    rng = {"start": START, "end": end_of_range()}
    kpis = (await ok(books.tenant, KPIS, {"range": rng}))["payerKpis"]
    # Both customers paid (A: top-up and subscription; B: subscription and postpaid usage),
    # neither had paid before; both had usage.
    assert (kpis["activePayers"], kpis["newPayers"], kpis["customersServed"]) == (2, 2, 2)
    assert D(kpis["revenue"]) == D("205.60") and D(kpis["arpu"]) == D("102.80")
    assert D(kpis["averageCostToServe"]) == D("15.00")
    later = {"start": "2026-10-06T00:00:00Z", "end": end_of_range()}
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
                datetime(2026, 10, 1, tzinfo=UTC),
            )
        assert count > 0
    rows = (await ok(books.tenant, CLOSES, {"month": "2026-10-15T00:00:00Z"}))["monthlyCloses"]
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
    # October in USD entries only (the refund and the fee are recorded now, in November).
    assert (D(org_usd["revenue"]), D(org_usd["aiCost"])) == (D("155.00"), D("7.00"))
    customer_b = by_scope[("CUSTOMER", books.customer_b, "EUR")]
    assert D(customer_b["margin"]) == D("34.00")


async def test_close_months_closes_what_is_due_once(database_url: str, tenant: Tenant) -> None:
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
            "occurredAt": "2005-01-15T00:00:00Z",
        },
    )
    now = datetime(2005, 3, 10, tzinfo=UTC)  # January and February are due, not March
    async with raw_connection(database_url) as connection:
        grace, only = timedelta(hours=24), [tenant.org.id]
        closed = await month_close.close_months(connection, now, grace, only=only)
        again = await month_close.close_months(connection, now, grace, only=only)
    mine = [c for c in closed if c.organization_id == tenant.org.id]
    assert [c.month.month for c in mine] == [1, 2]
    assert not [c for c in again if c.organization_id == tenant.org.id]
    january = (await ok(tenant, CLOSES, {"month": "2005-01-01T00:00:00Z"}))["monthlyCloses"]
    org_row = next(r for r in january if r["scopeKind"] == "ORGANIZATION")
    assert D(org_row["revenue"]) == D("7.00")
    february = (await ok(tenant, CLOSES, {"month": "2005-02-01T00:00:00Z"}))["monthlyCloses"]
    assert [(r["scopeKind"], D(r["revenue"])) for r in february] == [("ORGANIZATION", D(0))]
