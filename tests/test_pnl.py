"""P&L by hand: a small dataset covering subscriptions, top-ups, postpaid usage, refunds,
platform fees, markup, a manual adjustment and two currencies with a rate change inside an
hour — every figure computed here, from the definitions in docs/architecture.md."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest

from tests.conftest import Tenant, make_tenant, raw_connection
from tests.dates import later, month, rfc
from tests.pnl_support import (
    ACCOUNT_PNL,
    ADJUST,
    CREATE_ACCOUNT,
    CREATE_CUSTOMER,
    CREATE_USER,
    CUSTOMER_PNL,
    DEPOSIT,
    FEE,
    LIABILITY,
    ORG_PNL,
    REFUND,
    SET_MARKUP,
    SET_RATE,
    SUBSCRIPTION,
    TIMELINE,
    USAGE,
    catch_up,
    error_code,
    key,
    ok,
    usage_event,
    write,
)

D = Decimal


def at(day: int, hour: int = 0, minute: int = 0) -> str:
    """``day`` of the month before last at ``hour``:``minute`` UTC: the books are kept on the
    5th to the 7th of that month."""
    return rfc(month(-2, day, hour, minute))


def end_of_range() -> str:
    """Refunds and fees are recorded now: the range runs to just after now."""
    return rfc(later(hours=1).replace(microsecond=0))


def money(value: str) -> Decimal:
    return D(value)


@dataclass
class Books:
    tenant: Tenant
    prepaid: str  # A1, customer A, USD, prepaid
    postpaid: str  # A2 = the fixture's account, customer A, USD, postpaid
    customer_b: str
    euro: str  # B1, customer B, EUR, postpaid
    user: str


async def _books(tenant: Tenant) -> Books:
    await write(tenant, SET_MARKUP, "setMarkup", {"percent": "20"})
    for rate, since in (("1.10", rfc(month(-11))), ("1.20", at(6, 12, 30))):
        await write(
            tenant,
            SET_RATE,
            "setExchangeRate",
            {"base": "EUR", "quote": "USD", "rate": rate, "effectiveFrom": since},
        )
    prepaid = await write(
        tenant,
        CREATE_ACCOUNT,
        "createAccount",
        {"customerId": str(tenant.customer_id), "name": "A1", "postpaid": False},
    )
    customer_b = await write(tenant, CREATE_CUSTOMER, "createCustomer", {"name": "B"})
    euro = await write(
        tenant,
        CREATE_ACCOUNT,
        "createAccount",
        {"customerId": customer_b["id"], "name": "B1", "postpaid": True, "currency": "EUR"},
    )
    user = await write(tenant, CREATE_USER, "createUser", {"email": f"u-{key()}@example.com"})
    a1, a2, b1 = prepaid["id"], str(tenant.account_id), euro["id"]

    topped = await write(
        tenant,
        DEPOSIT,
        "deposit",
        {
            "idempotencyKey": key(),
            "accountId": a1,
            "amount": "100.00",
            "currency": "USD",
            "occurredAt": at(5, 9),
        },
    )
    await usage_event(tenant, a1, at(5, 10, 15), "2.00", "USD", agent="scout", userId=user["id"])
    await write(
        tenant,
        SUBSCRIPTION,
        "recordSubscriptionPayment",
        {
            "idempotencyKey": key(),
            "accountId": a2,
            "amount": "49.00",
            "currency": "USD",
            "occurredAt": at(5, 11),
        },
    )
    await usage_event(tenant, a2, at(6, 8), "5.00", "USD", agent="scout", model="claude")
    await write(
        tenant,
        SUBSCRIPTION,
        "recordSubscriptionPayment",
        {
            "idempotencyKey": key(),
            "accountId": b1,
            "amount": "30.00",
            "currency": "EUR",
            "occurredAt": at(6, 9),
        },
    )
    # Two EUR calls either side of the rate change at 12:30 (inside the 12:00 hour).
    await usage_event(tenant, b1, at(6, 12), "10.00", "EUR", agent="closer")
    await usage_event(tenant, b1, at(6, 12, 45), "10.00", "EUR", agent="closer")
    await write(
        tenant,
        REFUND,
        "refund",
        {"idempotencyKey": key(), "entryId": topped["entry"]["id"], "amount": "10.00"},
    )
    await write(
        tenant,
        FEE,
        "recordPlatformFee",
        {"idempotencyKey": key(), "amount": "2.50", "currency": "USD"},
    )
    await write(
        tenant,
        ADJUST,
        "adjust",
        {
            "idempotencyKey": key(),
            "accountId": a1,
            "amount": "-1.00",
            "currency": "USD",
            "occurredAt": at(7),
        },
    )
    return Books(tenant, a1, a2, customer_b["id"], b1, user["id"])


@pytest.fixture
async def books(tenant: Tenant) -> Books:
    return await _books(tenant)


def figures(pnl: dict[str, Any]) -> dict[str, Decimal | int | None]:
    source = pnl["revenueBySource"]
    return {
        "revenue": D(pnl["revenue"]),
        "subscriptions": D(source["subscriptions"]),
        "top_ups": D(source["topUps"]),
        "postpaid": D(source["billedUsage"]),
        "refunds": D(source["refunds"]),
        "ai_cost": D(pnl["aiCost"]),
        "billed": D(pnl["billedUsage"]),
        "markup": D(pnl["markupEarned"]),
        "fees": D(pnl["platformFees"]),
        "adjustments": D(pnl["balanceAdjustments"]),
        "margin": D(pnl["margin"]),
        "margin_percent": None if pnl["marginPercent"] is None else D(pnl["marginPercent"]),
        "events": pnl["eventCount"],
    }


def expected(**values: Any) -> dict[str, Decimal | int | None]:
    base: dict[str, Any] = {
        "subscriptions": D(0),
        "top_ups": D(0),
        "postpaid": D(0),
        "refunds": D(0),
        "ai_cost": D(0),
        "billed": D(0),
        "fees": D(0),
        "adjustments": D(0),
        "events": 0,
    }
    base.update({k: D(v) if isinstance(v, str) else v for k, v in values.items()})
    revenue = base["subscriptions"] + base["top_ups"] + base["postpaid"] - base["refunds"]
    margin = revenue - base["ai_cost"] - base["fees"]
    base["revenue"] = revenue
    base["markup"] = base["billed"] - base["ai_cost"]
    base["margin"] = margin
    base["margin_percent"] = (
        None
        if revenue == 0
        else (margin * 100 / revenue).quantize(D("0.0001"), rounding=ROUND_HALF_EVEN)
    )
    return base


async def test_organization_pnl_by_hand(books: Books) -> None:
    tenant = books.tenant
    rng = {"start": at(5), "end": end_of_range()}
    pnl = (await ok(tenant, ORG_PNL, {"range": rng}))["organizationPnl"]
    assert pnl["currency"] == "USD"
    # subscriptions 49 + 30 EUR @1.10; top-up 100; postpaid usage 5 x 1.2 and 10 EUR x 1.2
    # at 1.10 then 1.20; AI cost 2 + 5 + 10 @1.10 + 10 @1.20.
    assert figures(pnl) == expected(
        subscriptions="82.00",
        top_ups="100.00",
        postpaid="33.60",
        refunds="10.00",
        ai_cost="30.00",
        billed="36.00",
        fees="2.50",
        adjustments="-1.00",
        events=4,
    )
    assert D(pnl["marginPercent"]) == D("84.1926")
    assert pnl["tokens"] == {"input": 4000, "output": 400, "total": 4400}
    models = {
        m["key"]: (D(m["aiCost"]), D(m["billedUsage"]), m["eventCount"]) for m in pnl["byModel"]
    }
    assert models == {
        "openai/gpt-4o": (D("25.00"), D("30.00"), 3),
        "openai/claude": (D("5.00"), D("6.00"), 1),
    }
    assert [m["key"] for m in pnl["byModel"]] == ["openai/gpt-4o", "openai/claude"]
    # Net impact: billed usage - AI cost (closer 27.60 - 23.00, scout 8.40 - 7.00).
    agents = [(a["agent"], D(a["netImpact"])) for a in pnl["topAgents"]]
    assert agents == [("closer", D("4.60")), ("scout", D("1.40"))]
    assert [u["userId"] for u in pnl["topUsers"]] == [books.user]
    assert D(pnl["topUsers"][0]["netImpact"]) == D("0.40")
    assert pnl["liabilityEstimates"] == {
        "currency": "USD",
        "total": "0.000000000000",
        "byAgent": [],
    }


async def test_account_and_customer_pnl_by_hand(books: Books) -> None:
    tenant = books.tenant
    rng = {"start": at(5), "end": end_of_range()}
    prepaid = (await ok(tenant, ACCOUNT_PNL, {"id": books.prepaid, "range": rng}))["accountPnl"]
    # Prepaid: the top-up (less its refund) is revenue, the usage drawn from it is not.
    assert figures(prepaid) == expected(
        top_ups="100.00",
        refunds="10.00",
        ai_cost="2.00",
        billed="2.40",
        adjustments="-1.00",
        events=1,
    )
    b_usd = (await ok(tenant, CUSTOMER_PNL, {"id": books.customer_b, "range": rng}))["customerPnl"]
    assert figures(b_usd) == expected(
        subscriptions="33.00", postpaid="27.60", ai_cost="23.00", billed="27.60", events=2
    )
    b_eur = (
        await ok(tenant, CUSTOMER_PNL, {"id": books.customer_b, "range": rng, "currency": "EUR"})
    )["customerPnl"]
    assert b_eur["currency"] == "EUR"
    assert figures(b_eur) == expected(
        subscriptions="30.00", postpaid="24.00", ai_cost="20.00", billed="24.00", events=2
    )
    customer_a = (await ok(tenant, CUSTOMER_PNL, {"id": str(tenant.customer_id), "range": rng}))[
        "customerPnl"
    ]
    assert figures(customer_a) == expected(
        subscriptions="49.00",
        top_ups="100.00",
        postpaid="6.00",
        refunds="10.00",
        ai_cost="7.00",
        billed="8.40",
        adjustments="-1.00",
        events=2,
    )


async def test_org_pnl_in_euros_converts_each_entry_at_its_time(books: Books) -> None:
    rng = {"start": at(5), "end": end_of_range()}
    pnl = (await ok(books.tenant, ORG_PNL, {"range": rng, "currency": "EUR"}))["organizationPnl"]
    before, after = D("0.909090909091"), D("0.833333333333")  # 1/1.10, 1/1.20 (12 places)
    # USD entries: before the change the top-up, the first usage, the subscription and the
    # second usage; after it the refund, the fee and the adjustment.
    top_ups = D("100.00") * before
    subscriptions = D("49.00") * before + D("30.00")
    postpaid = D("6.00") * before + D("24.00")
    refunds = D("10.00") * after
    ai_cost = (D("2.00") + D("5.00")) * before + D("20.00")
    billed = (D("2.40") + D("6.00")) * before + D("24.00")
    fees = D("2.50") * after
    q = D("0.000000000001")
    revenue = (subscriptions + top_ups + postpaid - refunds).quantize(q)
    assert D(pnl["revenue"]) == revenue
    assert D(pnl["aiCost"]) == ai_cost.quantize(q)
    assert D(pnl["billedUsage"]) == billed.quantize(q)
    assert D(pnl["platformFees"]) == fees.quantize(q)
    assert D(pnl["margin"]) == (revenue - ai_cost - fees).quantize(q)
    assert D(pnl["balanceAdjustments"]) == (D("-1.00") * after).quantize(q)


async def test_agent_pnl_and_liabilities_beside_it(books: Books) -> None:
    tenant = books.tenant
    rng = {"start": at(5), "end": end_of_range()}
    for amount, currency in (("5.00", "USD"), ("3.00", "EUR")):
        recorded = await write(
            tenant,
            LIABILITY,
            "recordLiabilityEstimate",
            {
                "idempotencyKey": key(),
                "agent": "scout",
                "amount": amount,
                "currency": currency,
                "occurredAt": at(6, 14),
            },
        )
        assert recorded["replayed"] is False
    scout = (await ok(tenant, ORG_PNL, {"range": rng, "agent": "scout"}))["organizationPnl"]
    # An agent is a slice of usage: its revenue is what its usage was charged (2.40 prepaid +
    # 6.00 postpaid), not only the postpaid part; margin and net impact are one figure.
    assert figures(scout) == expected(postpaid="8.40", ai_cost="7.00", billed="8.40", events=2)
    assert D(scout["netImpact"]) == D(scout["margin"]) == D("1.40")
    assert scout["revenueBasis"] == "ATTRIBUTED"
    assert scout["liabilityEstimates"]["byAgent"] == [
        {"agent": "scout", "amount": "8.600000000000", "estimates": 2}
    ]
    # Beside the P&L, never in it: the organisation's margin is unchanged.
    whole = (await ok(tenant, ORG_PNL, {"range": rng}))["organizationPnl"]
    assert D(whole["margin"]) == D("173.10")
    assert D(whole["liabilityEstimates"]["total"]) == D("8.60")


async def test_timeline_by_day(books: Books) -> None:
    tenant = books.tenant
    body = await ok(
        tenant,
        TIMELINE,
        {
            "scope": {"kind": "ORGANIZATION"},
            "range": {"start": at(5, 6), "end": at(8)},
            "bucket": "DAY",
        },
    )
    points = body["pnlTimeline"]
    assert [(p["start"], p["end"]) for p in points] == [
        (at(5, 6), at(6)),
        (at(6), at(7)),
        (at(7), at(8)),
    ]
    assert figures(points[0]) == expected(
        subscriptions="49.00", top_ups="100.00", ai_cost="2.00", billed="2.40", events=1
    )
    assert figures(points[1]) == expected(
        subscriptions="33.00", postpaid="33.60", ai_cost="28.00", billed="33.60", events=3
    )
    assert figures(points[2]) == expected(adjustments="-1.00")


async def test_usage_grouped_and_bucketed(books: Books) -> None:
    tenant = books.tenant
    rng = {"start": at(5), "end": at(8)}
    rows = (await ok(tenant, USAGE, {"range": rng, "groupBy": ["MODEL"], "bucket": "DAY"}))["usage"]
    got = {
        (r["bucket"], r["model"]): (r["events"], D(r["aiCost"]), D(r["billedUsage"])) for r in rows
    }
    assert got == {
        (at(5), "gpt-4o"): (1, D("2.00"), D("2.40")),
        (at(6), "claude"): (1, D("5.00"), D("6.00")),
        (at(6), "gpt-4o"): (2, D("23.00"), D("27.60")),
    }
    by_customer = (
        await ok(
            tenant,
            USAGE,
            {"range": rng, "groupBy": ["CUSTOMER", "AGENT"], "filter": {"agent": "closer"}},
        )
    )["usage"]
    assert [(r["customerId"], r["agent"], r["events"], r["tokens"]) for r in by_customer] == [
        (books.customer_b, "closer", 2, 2200)
    ]
    in_euros = (
        await ok(
            tenant,
            USAGE,
            {
                "range": rng,
                "groupBy": ["ACCOUNT"],
                "filter": {"accountId": books.euro},
                "currency": "EUR",
            },
        )
    )["usage"]
    assert [(r["currency"], D(r["aiCost"])) for r in in_euros] == [("EUR", D("20.00"))]


async def test_same_answers_before_and_after_rollup(books: Books, database_url: str) -> None:
    """Rolled up or still in the tail, through a range cutting hours: the same figures."""
    tenant = books.tenant
    rng = {"start": at(5, 10, 10), "end": at(6, 12, 50)}
    first = (await ok(tenant, ORG_PNL, {"range": rng, "currency": "EUR"}))["organizationPnl"]
    async with raw_connection(database_url) as connection:
        await catch_up(connection)
    second = (await ok(tenant, ORG_PNL, {"range": rng, "currency": "EUR"}))["organizationPnl"]
    assert first == second
    assert first["eventCount"] == 4


# --- bad input ---


async def test_bad_ranges_buckets_and_currencies(tenant: Tenant) -> None:
    backwards = {"start": at(5), "end": at(4)}
    body = await tenant.gql(ORG_PNL, {"range": backwards})
    assert error_code(body) == "VALIDATION_FAILED"
    too_long = {"start": rfc(month(-24)), "end": at(1)}
    body = await tenant.gql(ORG_PNL, {"range": too_long})
    assert error_code(body) == "VALIDATION_FAILED"
    assert "400 days" in body["errors"][0]["message"]
    many_hours = {"start": rfc(month(-2) - timedelta(days=122)), "end": at(1)}
    body = await tenant.gql(
        TIMELINE, {"scope": {"kind": "ORGANIZATION"}, "range": many_hours, "bucket": "HOUR"}
    )
    assert error_code(body) == "VALIDATION_FAILED"
    assert "2928 points" in body["errors"][0]["message"]
    day = {"start": at(5), "end": at(6)}
    body = await tenant.gql(ORG_PNL, {"range": day, "currency": "XYZ"})
    assert error_code(body) == "VALIDATION_FAILED"
    body = await tenant.gql(USAGE, {"range": day, "groupBy": ["MODEL"], "bucket": "HOUR"})
    assert "errors" not in body


async def test_other_tenants_ids_answer_as_unknown(tenant: Tenant, other_tenant: Tenant) -> None:
    day = {"start": at(5), "end": at(6)}
    unknown = "00000000-0000-4000-8000-000000000001"
    for query, theirs in (
        (ACCOUNT_PNL, str(other_tenant.account_id)),
        (CUSTOMER_PNL, str(other_tenant.customer_id)),
    ):
        a = await tenant.gql(query, {"id": theirs, "range": day})
        b = await tenant.gql(query, {"id": unknown, "range": day})
        assert error_code(a) == error_code(b) == "NOT_FOUND"
        assert a["errors"][0]["message"].replace(theirs, "X") == b["errors"][0]["message"].replace(
            unknown, "X"
        )
    body = await tenant.gql(
        USAGE,
        {"range": day, "groupBy": ["MODEL"], "filter": {"accountId": str(other_tenant.account_id)}},
    )
    assert error_code(body) == "NOT_FOUND"
    body = await tenant.gql(
        TIMELINE,
        {
            "scope": {"kind": "CUSTOMER", "id": str(other_tenant.customer_id)},
            "range": day,
            "bucket": "DAY",
        },
    )
    assert error_code(body) == "NOT_FOUND"


async def test_missing_rate_names_the_pair(tenant: Tenant) -> None:
    euro = await write(
        tenant,
        CREATE_ACCOUNT,
        "createAccount",
        {"customerId": str(tenant.customer_id), "name": "E", "postpaid": True, "currency": "KES"},
    )
    await write(
        tenant,
        DEPOSIT,
        "deposit",
        {
            "idempotencyKey": key(),
            "accountId": euro["id"],
            "amount": "5.00",
            "currency": "KES",
            "occurredAt": at(5, 9),
        },
    )
    day = {"start": at(5), "end": at(6)}
    # No KES->USD rate: the P&L in USD leaves KES out and names the pair, never an error;
    # the KES panel has the money in its own currency.
    panels = """query($range: DateRange!) { organizationPnl(range: $range) { revenue
      missingRates { base quote } byCurrency { currency revenue } } }"""
    found = (await ok(tenant, panels, {"range": day}))["organizationPnl"]
    assert D(found["revenue"]) == 0
    assert found["missingRates"] == [{"base": "KES", "quote": "USD"}]
    assert [(p["currency"], D(p["revenue"])) for p in found["byCurrency"]] == [("KES", D("5.00"))]
    in_shillings = await ok(tenant, ORG_PNL, {"range": day, "currency": "KES"})
    assert D(in_shillings["organizationPnl"]["revenue"]) == D("5.00")


async def test_rights(tenant: Tenant, mint: Any) -> None:
    day = {"start": at(5), "end": at(6)}
    member = tenant.token_for(roles=["member"])
    body = await tenant.gql(ORG_PNL, {"range": day}, token=member)
    assert error_code(body) == "FORBIDDEN"
    platform = "query($range: DateRange!) { platformPnl(range: $range) { currency } }"
    body = await tenant.gql(platform, {"range": day})
    assert error_code(body) == "FORBIDDEN"
    reader = tenant.token_for(scopes=["usage:read"])
    body = await tenant.gql(USAGE, {"range": day, "groupBy": ["MODEL"]}, token=reader)
    assert "errors" not in body
    body = await tenant.gql(ORG_PNL, {"range": day}, token=reader)
    assert error_code(body) == "FORBIDDEN"


async def test_platform_pnl(state: Any, client: Any, mint: Any) -> None:
    """Two organisations (USD and EUR) with books in March 2003, a month no other test uses.

    The platform converts with the platform's rates only: the EUR organisation's own rate
    serves its own P&L, not the platform's, so without a platform EUR->USD rate its figures
    are left out of the totals — for it alone — and its EUR panel and the pair are named.
    (tests/test_currencies.py converts with shipped platform rates.)"""
    dollars = await make_tenant(state, client, mint)
    euros = await make_tenant(state, client, mint, currency="EUR")
    await write(
        euros,
        SET_RATE,
        "setExchangeRate",
        {"base": "EUR", "quote": "USD", "rate": "1.25", "effectiveFrom": "2003-01-01T00:00:00Z"},
    )
    for tenant, payment, cost in ((dollars, "40.00", "4.00"), (euros, "20.00", "8.00")):
        currency = tenant.org.reporting_currency
        await write(
            tenant,
            SUBSCRIPTION,
            "recordSubscriptionPayment",
            {
                "idempotencyKey": key(),
                "accountId": str(tenant.account_id),
                "amount": payment,
                "currency": currency,
                "occurredAt": "2003-03-03T10:00:00Z",
            },
        )
        await usage_event(tenant, str(tenant.account_id), "2003-03-03T10:30:00Z", cost, currency)
    admin = mint(None, ["platform_admin"])
    query = """query($range: DateRange!, $currency: CurrencyCode) {
      platformPnl(range: $range, currency: $currency) {
        currency totals { revenue aiCost margin eventCount } missingRates { base quote }
        organizations { organization { id } revenue aiCost margin eventCount
          missingRates { base quote } byCurrency { currency aiCost eventCount } } } }"""
    rng = {"start": "2003-03-01T00:00:00Z", "end": "2003-04-01T00:00:00Z"}
    body = await dollars.gql(query, {"range": rng}, token=admin)
    assert "errors" not in body, body
    platform = body["data"]["platformPnl"]
    assert platform["currency"] == "USD"
    rows = {o["organization"]["id"]: o for o in platform["organizations"]}
    # USD: revenue 40 + 4 (postpaid usage, no markup), cost 4; EUR: no platform rate.
    mine, theirs = rows[str(dollars.org.id)], rows[str(euros.org.id)]
    assert (D(mine["revenue"]), D(mine["aiCost"]), D(mine["margin"])) == (
        D("44.00"),
        D("4.00"),
        D("40.00"),
    )
    assert mine["missingRates"] == []
    assert (D(theirs["revenue"]), D(theirs["aiCost"]), theirs["eventCount"]) == (0, 0, 0)
    assert theirs["missingRates"] == [{"base": "EUR", "quote": "USD"}]
    assert [(p["currency"], D(p["aiCost"]), p["eventCount"]) for p in theirs["byCurrency"]] == [
        ("EUR", D("8.00"), 1)
    ]
    assert {"base": "EUR", "quote": "USD"} in platform["missingRates"]
    totals = platform["totals"]
    assert D(totals["revenue"]) == sum(D(o["revenue"]) for o in platform["organizations"])
    assert totals["eventCount"] == sum(o["eventCount"] for o in platform["organizations"])
    assert D(totals["revenue"]) >= D("44.00")
    # The EUR organisation's own P&L uses its own rate: 20 + 8 EUR at 1.25.
    own = await ok(euros, ORG_PNL, {"range": rng, "currency": "USD"})
    assert D(own["organizationPnl"]["aiCost"]) == D("10.00")


async def test_inside_a_transaction_the_same_figures(books: Books, state: Any) -> None:
    """A session already in a transaction cannot take the repeatable-read path: the one-
    statement form answers, with the same figures."""
    from sqlalchemy import text

    from costgraph.billing import pnl
    from costgraph.billing.pnl_ranges import ReportLimits
    from costgraph.models.scoping import bind_tenant

    tenant = books.tenant
    start = month(-2, 5, 10, 10)
    end = month(-2, 6, 12, 50)
    results = []
    for begun in (False, True):
        async with state.sessions() as session:
            bind_tenant(session.sync_session, tenant.org.id)
            if begun:
                await session.execute(text("SELECT 1"))
            scope = pnl.Scope(pnl.ScopeKind.ORGANIZATION)
            report = await pnl.open_report(
                session, tenant.org, scope, start, end, "EUR", ReportLimits()
            )
            results.append(await pnl.totals(session, report))
    assert results[0] == results[1]
    assert results[0].events == 4
