"""Period comparisons and segments on the hand-computed books of :mod:`tests.test_pnl`.

The books' two days, each computed by hand (USD; EUR at 1.10, then 1.20 from 12:30 on the 6th):

- the 5th: top-up 100 and subscription 49 (revenue 149), one prepaid call of cost 2.00 billed
  2.40 (the user's, model gpt-4o) — margin 147;
- the 6th: postpaid call cost 5.00 billed 6.00 (model claude), subscription 30 EUR = 33.00,
  two postpaid EUR calls cost 10 EUR each, billed 12 EUR: 11.00/13.20 and 12.00/14.40 —
  revenue 66.60, AI cost 28.00, margin 38.60.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest

from costgraph.app.state import AppState
from tests.conftest import Tenant, raw_connection
from tests.dates import later, rfc
from tests.pnl_support import CREATE_ACCOUNT, ok, usage_event, write
from tests.test_pnl import Books, _books, at, end_of_range
from tests.verify_support import assert_no_drift

D = Decimal
CHANGE = "current previous absolute relative"
ORG_COMPARE = f"""query($range: DateRange!, $compareTo: DateRange) {{
  organizationPnl(range: $range, compareTo: $compareTo) {{ revenue aiCost margin
    comparison {{ start end previous {{ revenue aiCost margin eventCount }}
      revenue {{ {CHANGE} }} aiCost {{ {CHANGE} }} margin {{ {CHANGE} }}
      billedUsage {{ {CHANGE} }} eventCount {{ {CHANGE} }} marginPercent {{ {CHANGE} }}
      missingRates {{ base quote }}
      byCurrency {{ currency revenue {{ {CHANGE} }} aiCost {{ {CHANGE} }} }}
      byModel {{ key model revenue {{ {CHANGE} }} aiCost {{ {CHANGE} }} margin {{ {CHANGE} }} }}
    }} }} }}"""
ACCOUNT_COMPARE = f"""query($id: ID!, $range: DateRange!, $compareTo: DateRange) {{
  accountPnl(accountId: $id, range: $range, compareTo: $compareTo) {{
    comparison {{ revenue {{ {CHANGE} }} aiCost {{ {CHANGE} }} }} }} }}"""
CUSTOMER_COMPARE = f"""query($id: ID!, $range: DateRange!, $compareTo: DateRange) {{
  customerPnl(customerId: $id, range: $range, compareTo: $compareTo) {{
    comparison {{ revenue {{ {CHANGE} }} }} }} }}"""
TIMELINE = """query($range: DateRange!, $compareTo: DateRange) {
  pnlTimeline(scope: {kind: ORGANIZATION}, range: $range, bucket: DAY, compareTo: $compareTo) {
    start revenue aiCost previous { start revenue aiCost } } }"""
USAGE = f"""query($range: DateRange!, $compareTo: DateRange, $bucket: TimeBucket) {{
  usage(range: $range, groupBy: [MODEL], compareTo: $compareTo, bucket: $bucket) {{
    bucket model currency aiCost events
    comparison {{ previous {{ aiCost events }} aiCost {{ {CHANGE} }} events {{ {CHANGE} }} }}
  }} }}"""
KPIS = f"""query($range: DateRange!, $compareTo: DateRange, $segment: SegmentInput) {{
  payerKpis(range: $range, compareTo: $compareTo, segment: $segment) {{
    activePayers newPayers revenue arpu
    comparison {{ previous {{ activePayers revenue }} activePayers {{ {CHANGE} }}
      newPayers {{ {CHANGE} }} revenue {{ {CHANGE} }} arpu {{ {CHANGE} }} }} }} }}"""
CUSTOMERS = """query($range: DateRange!, $segment: SegmentInput) {
  customersView(range: $range, segment: $segment) {
    customer { id } payerSegment balance balances { currency amount } } }"""
USERS = """query($range: DateRange!, $segment: SegmentInput) {
  usersView(range: $range, segment: $segment) {
    user { id } spend payerSegment balance lastActivityAt
    accounts { accountId currency balance shared }
    integrationAccess { active clients activeClients } } }"""
REGISTER = """mutation($input: OAuthClientInput!) { registerOAuthClient(input: $input) {
  client { id userId } } }"""
REVOKE = """mutation($id: ID!) { revokeOAuthClient(id: $id) { id revokedAt } }"""


@pytest.fixture
async def books(tenant: Tenant) -> Books:
    return await _books(tenant)


def day5() -> dict[str, str]:
    return {"start": at(5), "end": at(6)}


def day6() -> dict[str, str]:
    return {"start": at(6), "end": at(7)}


def pct(current: str, previous: str) -> Decimal | None:
    now, then = D(current), D(previous)
    if then == 0:
        return None
    return ((now - then) * 100 / abs(then)).quantize(D("0.0001"), rounding=ROUND_HALF_EVEN)


def check(change: dict[str, Any], current: str, previous: str) -> None:
    assert (D(change["current"]), D(change["previous"])) == (D(current), D(previous)), change
    assert D(change["absolute"]) == D(current) - D(previous)
    relative = change["relative"]
    assert (None if relative is None else D(relative)) == pct(current, previous)


async def test_organization_pnl_against_the_day_before(tenant: Tenant) -> None:
    books = await _books(tenant)
    pnl = (await ok(tenant, ORG_COMPARE, {"range": day6(), "compareTo": day5()}))["organizationPnl"]
    assert (D(pnl["revenue"]), D(pnl["aiCost"]), D(pnl["margin"])) == (
        D("66.60"),
        D("28.00"),
        D("38.60"),
    )
    c = pnl["comparison"]
    assert (c["start"], c["end"]) == (day5()["start"], day5()["end"])
    previous = c["previous"]
    assert (D(previous["revenue"]), D(previous["aiCost"]), previous["eventCount"]) == (
        D("149"),
        D("2.00"),
        1,
    )
    check(c["revenue"], "66.60", "149")  # -82.40, -55.3020 %
    assert D(c["revenue"]["relative"]) == D("-55.3020")
    check(c["aiCost"], "28.00", "2.00")  # +1300 %
    check(c["margin"], "38.60", "147")
    check(c["billedUsage"], "33.60", "2.40")
    check(c["eventCount"], "3", "1")
    # margin %: 38.60 / 66.60 = 57.9580 %, 147 / 149 = 98.6577 %.
    assert (D(c["marginPercent"]["current"]), D(c["marginPercent"]["previous"])) == (
        D("57.9580"),
        D("98.6577"),
    )
    assert c["missingRates"] == []
    panels = {p["currency"]: p for p in c["byCurrency"]}
    check(panels["EUR"]["revenue"], "54", "0")  # 30 + 12 + 12 EUR; nothing the day before
    assert panels["EUR"]["revenue"]["relative"] is None
    check(panels["USD"]["revenue"], "6.00", "149")
    check(panels["USD"]["aiCost"], "5.00", "2.00")
    # By model, revenue attributed (charged usage): gpt-4o 13.20 + 14.40 against the user's
    # 2.40; claude 6.00 against nothing.
    models = [(m["model"], m) for m in c["byModel"]]
    assert [name for name, _ in models] == ["gpt-4o", "claude"]
    check(models[0][1]["revenue"], "27.60", "2.40")
    check(models[0][1]["aiCost"], "23.00", "2.00")
    check(models[0][1]["margin"], "4.60", "0.40")
    check(models[1][1]["revenue"], "6.00", "0")
    # The accounts' and customers' P&L compare too.
    account = (
        await ok(
            tenant,
            ACCOUNT_COMPARE,
            {"id": books.prepaid, "range": day6(), "compareTo": day5()},
        )
    )["accountPnl"]["comparison"]
    check(account["revenue"], "0", "100")  # A1's top-up was on the 5th
    check(account["aiCost"], "0", "2.00")
    customer = (
        await ok(
            tenant,
            CUSTOMER_COMPARE,
            {"id": books.customer_b, "range": day6(), "compareTo": day5()},
        )
    )["customerPnl"]["comparison"]
    check(customer["revenue"], "60.60", "0")
    # Without compareTo there is no comparison; a reversed compareTo is refused by name.
    plain = (await ok(tenant, ORG_COMPARE, {"range": day6()}))["organizationPnl"]
    assert plain["comparison"] is None
    bad = await tenant.gql(
        ORG_COMPARE, {"range": day6(), "compareTo": {"start": at(6), "end": at(5)}}
    )
    (error,) = bad["errors"]
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert error["extensions"]["field"] == "compareTo"


async def test_changes_agree_with_a_sum_over_the_ledger(books: Books, database_url: str) -> None:
    """The USD panel of each period against a plain SUM over ledger_entries."""
    body = await ok(books.tenant, ORG_COMPARE, {"range": day6(), "compareTo": day5()})
    usd = next(
        p for p in body["organizationPnl"]["comparison"]["byCurrency"] if p["currency"] == "USD"
    )
    sql = """SELECT coalesce(sum(ai_cost) FILTER (WHERE type = 'USAGE_CHARGE'), 0)
             FROM ledger_entries WHERE organization_id = $1 AND currency = 'USD'
             AND occurred_at >= $2 AND occurred_at < $3"""
    async with raw_connection(database_url) as connection:
        sums = []
        for rng in (day6(), day5()):
            start, end = (_parse(rng["start"]), _parse(rng["end"]))
            sums.append(await connection.fetchval(sql, books.tenant.org.id, start, end))
    assert (D(usd["aiCost"]["current"]), D(usd["aiCost"]["previous"])) == tuple(sums)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_timeline_overlays_the_previous_period(books: Books) -> None:
    rng = {"start": at(6), "end": at(8)}
    points = (
        await ok(books.tenant, TIMELINE, {"range": rng, "compareTo": day5() | {"end": at(7)}})
    )["pnlTimeline"]
    assert [p["start"] for p in points] == [at(6), at(7)]
    first, second = points
    assert (D(first["revenue"]), first["previous"]["start"], D(first["previous"]["revenue"])) == (
        D("66.60"),
        at(5),
        D("149"),
    )
    # The 7th (a balance adjustment only) beside the 6th.
    assert (D(second["revenue"]), D(second["previous"]["revenue"])) == (D(0), D("66.60"))
    assert D(second["previous"]["aiCost"]) == D("28.00")
    # A shorter comparison range: the points beyond it have no previous.
    short = (await ok(books.tenant, TIMELINE, {"range": rng, "compareTo": day5()}))["pnlTimeline"]
    assert short[0]["previous"] is not None and short[1]["previous"] is None
    alone = (await ok(books.tenant, TIMELINE, {"range": rng}))["pnlTimeline"]
    assert all(p["previous"] is None for p in alone)


async def test_usage_against_another_range(books: Books) -> None:
    rows = (await ok(books.tenant, USAGE, {"range": day6(), "compareTo": day5()}))["usage"]
    by_model = {r["model"]: r for r in rows}
    assert set(by_model) == {"gpt-4o", "claude"}
    gpt = by_model["gpt-4o"]["comparison"]
    check(gpt["aiCost"], "23.00", "2.00")
    check(gpt["events"], "2", "1")
    check(by_model["claude"]["comparison"]["aiCost"], "5.00", "0")
    # A model of the comparison range only comes with zero figures: the 5th against the 6th.
    rows = (await ok(books.tenant, USAGE, {"range": day5(), "compareTo": day6()}))["usage"]
    claude = next(r for r in rows if r["model"] == "claude")
    assert (D(claude["aiCost"]), claude["events"]) == (D(0), 0)
    check(claude["comparison"]["aiCost"], "0", "5.00")
    # Bucketed: matched by offset (the 6th's hours against the 5th's).
    rows = (
        await ok(
            books.tenant,
            USAGE,
            {"range": day6(), "compareTo": day5(), "bucket": "DAY"},
        )
    )["usage"]
    gpt_rows = [r for r in rows if r["model"] == "gpt-4o"]
    assert [r["bucket"] for r in gpt_rows] == [at(6)]
    check(gpt_rows[0]["comparison"]["aiCost"], "23.00", "2.00")


async def test_payer_kpis_compare_and_segment(books: Books) -> None:
    kpis = (await ok(books.tenant, KPIS, {"range": day6(), "compareTo": day5()}))["payerKpis"]
    # The 6th: A (postpaid usage, had paid on the 5th: returning) and B (new) paid: 66.60.
    # The 5th: A alone (top-up and subscription): 149.
    c = kpis["comparison"]
    check(c["activePayers"], "2", "1")
    check(c["newPayers"], "1", "1")
    check(c["revenue"], "66.60", "149")
    check(c["arpu"], "33.30", "149")
    new = (await ok(books.tenant, KPIS, {"range": day6(), "segment": {"payers": "NEW"}}))[
        "payerKpis"
    ]
    # B alone: 33.00 + 13.20 + 14.40.
    assert (new["activePayers"], new["newPayers"], D(new["revenue"])) == (1, 1, D("60.60"))
    returning = (
        await ok(books.tenant, KPIS, {"range": day6(), "segment": {"payers": "RETURNING"}})
    )["payerKpis"]
    assert (returning["activePayers"], returning["newPayers"], D(returning["revenue"])) == (
        1,
        0,
        D("6.00"),
    )
    # Balance bands: A holds 80.60 USD, B -24 EUR = -28.80 USD at today's 1.20.
    banded = (await ok(books.tenant, KPIS, {"range": day6(), "segment": {"balanceBelow": "0"}}))[
        "payerKpis"
    ]
    assert (banded["activePayers"], D(banded["revenue"])) == (1, D("60.60"))


async def test_customers_view_segments(books: Books) -> None:
    a, b = str(books.tenant.customer_id), books.customer_b

    async def ids(segment: dict[str, Any] | None) -> dict[str, Any]:
        rows = (await ok(books.tenant, CUSTOMERS, {"range": day6(), "segment": segment}))[
            "customersView"
        ]
        return {r["customer"]["id"]: r for r in rows}

    everyone = await ids(None)
    assert (everyone[a]["payerSegment"], everyone[b]["payerSegment"]) == ("RETURNING", "NEW")
    assert (D(everyone[a]["balance"]), D(everyone[b]["balance"])) == (D("80.60"), D("-28.80"))
    assert set(await ids({"payers": "NEW"})) == {b}
    assert set(await ids({"payers": "RETURNING"})) == {a}
    assert set(await ids({"balanceAtLeast": "0"})) == {a}
    # Bands are half-open: [atLeast, below).
    assert set(await ids({"balanceAtLeast": "-30", "balanceBelow": "-28.80"})) == set()
    assert set(await ids({"balanceAtLeast": "-28.80", "balanceBelow": "80.60"})) == {b}
    assert set(await ids({"payers": "NEW", "balanceAtLeast": "0"})) == set()
    bad = await books.tenant.gql(
        CUSTOMERS, {"range": day6(), "segment": {"balanceAtLeast": "5", "balanceBelow": "5"}}
    )
    assert bad["errors"][0]["extensions"]["field"] == "segment.balanceBelow"


async def test_users_view_balance_segment_and_integration_access(books: Books) -> None:
    tenant = books.tenant
    whole = {"start": at(5), "end": end_of_range()}
    (user,) = (await ok(tenant, USERS, {"range": whole}))["usersView"]
    # The user spends through A1 alone: 100 - 2.40 - 10 refunded - 1 adjusted.
    assert user["accounts"] == [
        {
            "accountId": books.prepaid,
            "currency": "USD",
            "balance": "86.600000000000",
            "shared": False,
        }
    ]
    assert D(user["balance"]) == D("86.60")
    assert user["payerSegment"] == "NEW"  # 2.40 charged on the 5th, nothing before
    assert user["integrationAccess"] == {"active": False, "clients": 0, "activeClients": 0}
    # On the 6th the user paid nothing: in no payer segment.
    (idle,) = (await ok(tenant, USERS, {"range": day6()}))["usersView"]
    assert idle["payerSegment"] is None
    assert (await ok(tenant, USERS, {"range": day6(), "segment": {"payers": "NEW"}}))[
        "usersView"
    ] == []
    assert (
        len(
            (await ok(tenant, USERS, {"range": whole, "segment": {"balanceAtLeast": "86.60"}}))[
                "usersView"
            ]
        )
        == 1
    )
    assert (await ok(tenant, USERS, {"range": whole, "segment": {"balanceAtLeast": "86.61"}}))[
        "usersView"
    ] == []
    # An OAuth client acting for the user makes their integration access active; revoked, not.
    client = (
        await ok(
            tenant,
            REGISTER,
            {"input": {"name": "sync", "scopes": ["usage:write"], "userId": books.user}},
        )
    )["registerOAuthClient"]["client"]
    assert client["userId"] == books.user
    (user,) = (await ok(tenant, USERS, {"range": whole}))["usersView"]
    assert user["integrationAccess"] == {"active": True, "clients": 1, "activeClients": 1}
    await ok(tenant, REVOKE, {"id": client["id"]})
    (user,) = (await ok(tenant, USERS, {"range": whole}))["usersView"]
    assert user["integrationAccess"] == {"active": False, "clients": 1, "activeClients": 0}
    # A client for an unknown user is NOT_FOUND and registers nothing.
    body = await tenant.gql(
        REGISTER,
        {"input": {"name": "x", "scopes": ["usage:write"], "userId": str(tenant.customer_id)}},
    )
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_a_currency_without_a_rate_is_named_in_both_periods(
    tenant: Tenant, state: AppState
) -> None:
    shillings = await write(
        tenant,
        CREATE_ACCOUNT,
        "createAccount",
        {"customerId": str(tenant.customer_id), "name": "K", "postpaid": True, "currency": "KES"},
    )
    now = later(minutes=-30).replace(microsecond=0)
    await usage_event(tenant, shillings["id"], rfc(now), "300", "KES")
    await usage_event(tenant, str(tenant.account_id), rfc(now), "2.00", "USD")
    rng = {"start": rfc(later(hours=-1)), "end": rfc(later(hours=1))}
    before = {"start": rfc(later(hours=-3)), "end": rfc(later(hours=-1))}
    c = (await ok(tenant, ORG_COMPARE, {"range": rng, "compareTo": before}))["organizationPnl"][
        "comparison"
    ]
    assert c["missingRates"] == [{"base": "KES", "quote": "USD"}]
    check(c["aiCost"], "2.00", "0")  # the KES call is left out, never converted at 1.0
    panels = {p["currency"]: p for p in c["byCurrency"]}
    check(panels["KES"]["aiCost"], "300", "0")
    await assert_no_drift(state, tenant.org.id)
