"""Subscriptions that bill: cycle fees anchored at the start, the annual discount, prorated
plan and seat changes, cancellation at the period's end, an idempotent catch-up under
concurrent runners, and revenue recognised month by month with the rest deferred.

Figures are computed by hand in the comments; every test ends with ``costgraph verify``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import text

from costgraph.app.state import AppState
from costgraph.app.subscription_biller import bill_round
from costgraph.billing import directory, ledger, plans
from costgraph.billing import fee_schedule as schedule
from costgraph.billing.commands import UsageEvent
from costgraph.billing.directory import OrgContext
from costgraph.kernel import clock
from costgraph.kernel.errors import ValidationFailed
from costgraph.models.scoping import bind_tenant
from tests.conftest import Tenant, raw_connection
from tests.dates import anchor, now, rfc
from tests.test_ledger import RECORD_USAGE, usage
from tests.verify_support import assert_no_drift

SET_PLAN = """mutation($i: PlanInput!) { setPlan(input: $i) { code annualDiscountPercent } }"""
SUBSCRIBE = """mutation($i: AccountSubscriptionInput!) { subscribeAccount(input: $i) {
  id planCode fee startsAt endsAt cancelledAt } }"""
CHANGE = """mutation($i: ChangePlanInput!) { changePlan(input: $i) {
  subscription { planCode fee includedTokens } entries { type amount occurredAt } } }"""
SEATS = """mutation($i: SetSeatsInput!) { setSeats(input: $i) {
  subscription { seats } entries { type amount } } }"""
CANCEL = """mutation($a: ID!) { cancelSubscription(accountId: $a) { endsAt cancelledAt } }"""
PNL = """query($a: ID!, $r: DateRange!) { accountPnl(accountId: $a, range: $r) {
  revenue margin deferredRevenue } }"""
PAY = """mutation($i: SubscriptionPaymentInput!) { recordSubscriptionPayment(input: $i) {
  __typename ... on LedgerEntryRecorded { entry { id relatedEntryId } } } }"""


class FrozenClock:
    """The business clock held at one instant (exact proration figures)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def freeze(at: datetime) -> None:
    clock.install(FrozenClock(at))
    anchor(at)


#: Last year, by the business clock when the suite started (tests freeze the clock in it).
LAST_YEAR = now().year - 1


def last_year(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A date of last year (relative to the clock, never a fixed calendar date)."""
    return datetime(LAST_YEAR, month, day, hour, minute, tzinfo=UTC)


async def ok(tenant: Tenant, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    body = await tenant.gql(query, variables)
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def error_code(body: dict[str, Any]) -> str:
    assert "errors" in body, body
    code: str = body["errors"][0]["extensions"]["code"]
    return code


async def plan(tenant: Tenant, code: str, monthly: str, annual: str | None = None, **extra: Any):
    spec = {
        "code": code,
        "name": code.title(),
        "monthlyFee": monthly,
        "annualFee": annual,
        "currency": "USD",
        "includedTokens": 1000,
        **extra,
    }
    return (await ok(tenant, SET_PLAN, {"i": spec}))["setPlan"]


async def subscribe(
    tenant: Tenant, code: str, billing: str, starts: datetime, **extra: Any
) -> dict[str, Any]:
    variables = {
        "i": {
            "accountId": str(tenant.account_id),
            "planCode": code,
            "billing": billing,
            "startsAt": rfc(starts),
            **extra,
        }
    }
    return (await ok(tenant, SUBSCRIBE, variables))["subscribeAccount"]


async def fee_entries(database_url: str, tenant: Tenant) -> list[Any]:
    async with raw_connection(database_url) as connection:
        return list(
            await connection.fetch(
                "SELECT type, amount, occurred_at, metadata->>'cycleStart' AS cycle, "
                "metadata->>'serviceStart' AS service FROM ledger_entries "
                "WHERE organization_id = $1 AND type IN ('SUBSCRIPTION_FEE', "
                "'SUBSCRIPTION_CREDIT', 'REVENUE_RECOGNIZED', 'REVENUE_REVERSED') "
                "ORDER BY occurred_at, type",
                tenant.org.id,
            )
        )


async def entry_count(database_url: str, tenant: Tenant) -> int:
    async with raw_connection(database_url) as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE organization_id = $1", tenant.org.id
        )
    return count


# --- the arithmetic ---


def test_cycles_are_anchored_at_the_start_across_month_ends() -> None:
    start = datetime(now().year - 1, 1, 31, 9, 30, tzinfo=UTC)
    leap = (now().year - 1) % 4 == 0 and (
        (now().year - 1) % 100 != 0 or (now().year - 1) % 400 == 0
    )
    feb_end = 29 if leap else 28
    cycles = [schedule.cycle(start, "MONTHLY", i) for i in range(4)]
    assert [(c.start.month, c.start.day) for c in cycles] == [
        (1, 31),
        (2, feb_end),
        (3, 31),
        (4, 30),
    ]
    assert cycles[1].end == cycles[2].start  # 31 March follows the short month, from the anchor
    annual = schedule.cycle(start, "ANNUAL", 1)
    assert (annual.start, annual.end) == (
        start.replace(year=start.year + 1),
        start.replace(year=start.year + 2),
    )
    assert [p[0].month for p in annual.pieces()][:3] == [1, 2, 3]
    assert schedule.cycle_at(start, "MONTHLY", cycles[2].start) == cycles[2]
    assert (
        schedule.cycle_at(start, "MONTHLY", cycles[2].start - timedelta(microseconds=1))
        == (cycles[1])
    )


def test_proration_and_spreading_round_half_even_to_the_cent() -> None:
    # 0.125 -> 0.12 and 0.175 -> 0.18 (half-to-even at the minor unit)
    assert schedule.prorate(D("0.25"), Fraction(1, 2), "USD") == D("0.12")
    assert schedule.prorate(D("0.35"), Fraction(1, 2), "USD") == D("0.18")
    assert schedule.prorate(D("1000"), Fraction(1, 2), "JPY") == D("500")
    # 190.00 over twelve months: 15.83 x 11 = 174.13; the last month takes 15.87.
    shares = schedule.spread(D("190.00"), [Fraction(1)] * 12, "USD")
    assert shares[:11] == [D("15.83")] * 11 and shares[11] == D("15.87")
    assert sum(shares) == D("190.00")
    # Time left in an annual cycle is counted in months: 10.5 of 12 after 1.5 months.
    start = datetime(now().year - 1, 4, 1, tzinfo=UTC)  # April: 30 days
    cycle = schedule.cycle(start, "ANNUAL", 0)
    at = datetime(now().year - 1, 5, 16, 12, tzinfo=UTC)  # May (31 days) half gone
    assert schedule.time_left(cycle, at) == Fraction(21, 24)


# --- through the API ---


async def test_monthly_cycles_catch_up_from_a_31st_and_annual_bills_once_with_its_discount(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    discount = await plan(tenant, "creator", "19.00", "190.00")
    assert discount["annualDiscountPercent"] == "16.67"  # (228 - 190) / 228
    start = last_year(1, 31, 8)
    freeze(last_year(5, 2, 12))
    await subscribe(tenant, "creator", "MONTHLY", start)
    fees = [r for r in await fee_entries(database_url, tenant) if r["type"] == "SUBSCRIPTION_FEE"]
    feb_end = (last_year(3, 1) - timedelta(days=1)).day
    # One fee per cycle: 31 Jan, 28/29 Feb, 31 Mar, 30 Apr (the anchor's day, clamped).
    assert [(r["occurred_at"].month, r["occurred_at"].day) for r in fees] == [
        (1, 31),
        (2, feb_end),
        (3, 31),
        (4, 30),
    ]
    assert {r["amount"] for r in fees} == {D("19.00")}
    # A monthly fee is earned in its month: no deferred revenue once the month has begun.
    pnl = (
        await ok(
            tenant,
            PNL,
            {"a": str(tenant.account_id), "r": {"start": rfc(start), "end": rfc(now())}},
        )
    )["accountPnl"]
    assert (D(pnl["revenue"]), D(pnl["deferredRevenue"])) == (D("76.00"), D(0))

    # An annual subscription (of a second account) bills once, with the discount.
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, tenant.org.id)
        account = await directory.create_account(
            session, tenant.org, tenant.customer_id, "Annual", True
        )
        other = account.id
    body = await tenant.gql(
        SUBSCRIBE,
        {
            "i": {
                "accountId": str(other),
                "planCode": "creator",
                "billing": "ANNUAL",
                "startsAt": rfc(start),
            }
        },
    )
    assert "errors" not in body, body
    async with raw_connection(database_url) as connection:
        annual = await connection.fetch(
            "SELECT amount FROM ledger_entries WHERE organization_id = $1 AND account_id = $2 "
            "AND type = 'SUBSCRIPTION_FEE'",
            tenant.org.id,
            other,
        )
    assert [r["amount"] for r in annual] == [D("190.00")]
    await assert_no_drift(state, tenant.org.id)


async def test_annual_prepay_is_recognised_month_by_month_and_the_rest_deferred(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    await plan(tenant, "creator", "19.00", "190.00")
    start = last_year(3, 10)
    freeze(last_year(5, 20))  # months 1-3 (10 Mar, 10 Apr, 10 May) have begun
    await subscribe(tenant, "creator", "ANNUAL", start)
    account = str(tenant.account_id)

    async def month_figures(k: int) -> tuple[D, D, D]:
        lower, upper = schedule.add_months(start, k), schedule.add_months(start, k + 1)
        figures = await ok(
            tenant, PNL, {"a": account, "r": {"start": rfc(lower), "end": rfc(upper)}}
        )
        pnl = figures["accountPnl"]
        return D(pnl["revenue"]), D(pnl["margin"]), D(pnl["deferredRevenue"])

    async def independent_deferred(at: datetime) -> D:
        async with raw_connection(database_url) as connection:
            value: D = await connection.fetchval(
                "SELECT coalesce(sum(CASE type WHEN 'SUBSCRIPTION_FEE' THEN amount "
                "WHEN 'REVENUE_RECOGNIZED' THEN -amount ELSE 0 END), 0) FROM ledger_entries "
                "WHERE organization_id = $1 AND occurred_at < $2",
                tenant.org.id,
                at,
            )
        return value

    # By hand: 190.00 / 12 = 15.83 a month (the twelfth month 15.87); deferred at the end
    # of month k (k = 1, 2, ...) = 190.00 - 15.83 k. Revenue is the month's share; margin
    # equals it (no usage, no fees): the deferred part is never margin.
    for k in range(2):
        revenue, margin, deferred = await month_figures(k)
        assert (revenue, margin) == (D("15.83"), D("15.83"))
        assert deferred == D("190.00") - D("15.83") * (k + 1)
        assert deferred == await independent_deferred(schedule.add_months(start, k + 1))
    # Month 3 has begun (10 May) but not ended: recognised at its start.
    revenue, _, deferred = await month_figures(2)
    assert (revenue, deferred) == (D("15.83"), D("190.00") - D("15.83") * 3)
    # Month 4 (from 10 June) has not begun: nothing earned yet.
    assert (await month_figures(3))[0] == D(0)

    # The clock runs on past the year's end; a catch-up round recognises the rest and bills
    # the next year once, however many runners.
    freeze(schedule.add_months(start, 12) + timedelta(days=1))
    await asyncio.gather(
        *(bill_round(state.sessions, state.units, tenant.org.id) for _ in range(2))
    )
    assert (await month_figures(11))[0] == D("15.87")
    assert (await month_figures(11))[2] == D(0)  # the year is earned; the next starts at its end
    assert (await month_figures(12))[:2] == (D("15.83"), D("15.83"))
    total = await ok(
        tenant,
        PNL,
        {"a": account, "r": {"start": rfc(start), "end": rfc(schedule.add_months(start, 12))}},
    )
    assert D(total["accountPnl"]["revenue"]) == D("190.00")
    fees = [r for r in await fee_entries(database_url, tenant) if r["type"] == "SUBSCRIPTION_FEE"]
    assert [r["amount"] for r in fees] == [D("190.00"), D("190.00")]
    await assert_no_drift(state, tenant.org.id)


async def test_catch_up_is_idempotent_under_concurrent_runners(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    await plan(tenant, "creator", "19.00", "190.00")
    start = last_year(1, 15)
    freeze(last_year(1, 20))

    async def subscribe_only(unit: Any) -> Any:  # the domain's subscribe: nothing billed yet
        return await plans.subscribe_account(
            unit.session, unit.org, tenant.account_id, "creator", plans.BillingCycle.MONTHLY, start
        )

    await state.units.run(tenant.org, subscribe_only)
    assert await fee_entries(database_url, tenant) == []
    freeze(last_year(7, 1))  # six cycles began: 15 Jan ... 15 Jun
    rounds = await asyncio.gather(
        *(bill_round(state.sessions, state.units, tenant.org.id) for _ in range(4))
    )
    assert sum(rounds) == 12  # six fees and six months recognised, written once in all
    again = await bill_round(state.sessions, state.units, tenant.org.id)
    assert again == 0  # a replay writes nothing
    entries = await fee_entries(database_url, tenant)
    fees = [r for r in entries if r["type"] == "SUBSCRIPTION_FEE"]
    assert [r["occurred_at"].month for r in fees] == [1, 2, 3, 4, 5, 6]
    assert len({r["cycle"] for r in fees}) == 6
    await assert_no_drift(state, tenant.org.id)


async def test_plan_changes_are_prorated_to_the_cent(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    await plan(tenant, "basic", "30.00")
    await plan(tenant, "pro", "49.00", includedTokens=5000)
    await plan(tenant, "lite", "19.00")
    start = last_year(4, 1)  # April: a 30-day cycle
    freeze(last_year(4, 1, 0, 5))
    await subscribe(tenant, "basic", "MONTHLY", start)
    account = str(tenant.account_id)

    # Upgrade on 13 April 06:00: 17.75 of 30 days left (0.591666...).
    freeze(last_year(4, 13, 6))
    up = (await ok(tenant, CHANGE, {"i": {"accountId": account, "planCode": "pro"}}))["changePlan"]
    assert up["subscription"] == {
        "planCode": "pro",
        "fee": "49.000000000000",
        "includedTokens": 5000,
    }
    got = {(e["type"], D(e["amount"])) for e in up["entries"]}
    # credit 30.00 x 17.75/30 = 17.75; charge 49.00 x 17.75/30 = 28.991666.. -> 28.99;
    # the month already earned 30.00, now 30.00 - 17.75 + 28.99 = 41.24: 11.24 more.
    assert got == {
        ("SUBSCRIPTION_CREDIT", D("17.75")),
        ("SUBSCRIPTION_FEE", D("28.99")),
        ("REVENUE_RECOGNIZED", D("11.24")),
    }
    # Downgrade on 20 April 12:00: 10.5 days left (0.35): credit 49.00 x 0.35 = 17.15,
    # charge 19.00 x 0.35 = 6.65; the month gives back 10.50.
    freeze(last_year(4, 20, 12))
    down = (await ok(tenant, CHANGE, {"i": {"accountId": account, "planCode": "lite"}}))[
        "changePlan"
    ]
    assert {(e["type"], D(e["amount"])) for e in down["entries"]} == {
        ("SUBSCRIPTION_CREDIT", D("17.15")),
        ("SUBSCRIPTION_FEE", D("6.65")),
        ("REVENUE_REVERSED", D("10.50")),
    }
    april = {"start": rfc(start), "end": rfc(last_year(5, 1))}
    pnl = (await ok(tenant, PNL, {"a": account, "r": april}))["accountPnl"]
    assert (D(pnl["revenue"]), D(pnl["deferredRevenue"])) == (D("30.74"), D(0))  # 30 + 11.24 - 10.5
    # The next cycle bills the new plan's fee, from the same anchor.
    freeze(last_year(5, 2))
    await bill_round(state.sessions, state.units, tenant.org.id)
    fees = [r for r in await fee_entries(database_url, tenant) if r["type"] == "SUBSCRIPTION_FEE"]
    assert (fees[-1]["occurred_at"], fees[-1]["amount"]) == (last_year(5, 1), D("19.00"))

    # Bad input: typed errors, nothing written.
    before = await entry_count(database_url, tenant)
    cases = [
        ({"accountId": account, "planCode": "lite"}, "VALIDATION_FAILED"),  # already on it
        ({"accountId": account, "planCode": "nope"}, "NOT_FOUND"),
        ({"accountId": str(uuid.uuid4()), "planCode": "pro"}, "NOT_FOUND"),
        ({"accountId": "not-an-id", "planCode": "pro"}, "NOT_FOUND"),
        ({"accountId": account, "planCode": "pro", "billing": "ANNUAL"}, "VALIDATION_FAILED"),
    ]
    for variables, code in cases:
        assert error_code(await tenant.gql(CHANGE, {"i": variables})) == code, variables
    assert await entry_count(database_url, tenant) == before
    await assert_no_drift(state, tenant.org.id)


async def test_cancellation_takes_effect_at_the_period_end(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    await plan(tenant, "basic", "30.00")
    start = last_year(3, 31)
    freeze(last_year(4, 10))
    await subscribe(tenant, "basic", "MONTHLY", start)
    account = str(tenant.account_id)
    cancelled = (await ok(tenant, CANCEL, {"a": account}))["cancelSubscription"]
    # The running cycle (31 Mar - 30 Apr) is paid: the subscription ends at its end.
    assert cancelled == {"endsAt": rfc(last_year(4, 30)), "cancelledAt": rfc(now())}
    again = (await tenant.gql(CANCEL, {"a": account}))["errors"][0]["extensions"]
    assert again == {"code": "VALIDATION_FAILED", "field": "accountId"}  # the argument's name
    change = {"i": {"accountId": account, "planCode": "basic"}}
    assert error_code(await tenant.gql(CHANGE, change)) == "VALIDATION_FAILED"
    assert error_code(await tenant.gql(CANCEL, {"a": str(uuid.uuid4())})) == "NOT_FOUND"
    # The allowance stays until the period's end ...
    allowance = """query($a: ID!) { allowance(accountId: $a) { included } }"""
    freeze(last_year(4, 29))
    assert (await ok(tenant, allowance, {"a": account}))["allowance"]["included"] == 1000
    # ... and no later cycle is billed.
    freeze(last_year(7, 1))
    assert await bill_round(state.sessions, state.units, tenant.org.id) == 0
    fees = [r for r in await fee_entries(database_url, tenant) if r["type"] == "SUBSCRIPTION_FEE"]
    assert [(r["occurred_at"], r["amount"]) for r in fees] == [(start, D("30.00"))]
    await assert_no_drift(state, tenant.org.id)


async def test_seats_added_and_removed_mid_cycle_are_prorated(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    await plan(tenant, "atelier", "199.00", pooled=True, seatFee="10.00", seats=25)
    start = last_year(6, 1)  # June: 30 days
    freeze(last_year(6, 1, 1))
    await subscribe(tenant, "atelier", "MONTHLY", start, seats=2)
    fees = [r for r in await fee_entries(database_url, tenant) if r["type"] == "SUBSCRIPTION_FEE"]
    assert [r["amount"] for r in fees] == [D("219.00")]  # 199 + 2 seats x 10
    account = str(tenant.account_id)
    freeze(last_year(6, 16))  # 15 of 30 days left
    added = (await ok(tenant, SEATS, {"i": {"accountId": account, "seats": 5}}))["setSeats"]
    assert added["subscription"] == {"seats": 5}
    # 3 seats x 10.00 x 1/2 = 15.00 charged and earned in the running month.
    assert {(e["type"], D(e["amount"])) for e in added["entries"]} == {
        ("SUBSCRIPTION_FEE", D("15.00")),
        ("REVENUE_RECOGNIZED", D("15.00")),
    }
    same = (await ok(tenant, SEATS, {"i": {"accountId": account, "seats": 5}}))["setSeats"]
    assert same["entries"] == []  # a retry writes nothing
    freeze(last_year(6, 22, 12))  # 8.5 of 30 days left
    removed = (await ok(tenant, SEATS, {"i": {"accountId": account, "seats": 4}}))["setSeats"]
    # 1 seat x 10.00 x 8.5/30 = 2.8333.. -> 2.83 credited and given back.
    assert {(e["type"], D(e["amount"])) for e in removed["entries"]} == {
        ("SUBSCRIPTION_CREDIT", D("2.83")),
        ("REVENUE_REVERSED", D("2.83")),
    }
    before = await entry_count(database_url, tenant)
    for seats, code in ((0, "VALIDATION_FAILED"), (26, "PLAN_LIMIT")):
        body = await tenant.gql(SEATS, {"i": {"accountId": account, "seats": seats}})
        assert error_code(body) == code
    assert await entry_count(database_url, tenant) == before
    # The next cycle bills 199 + 4 x 10.
    freeze(last_year(7, 2))
    await bill_round(state.sessions, state.units, tenant.org.id)
    fees = [r for r in await fee_entries(database_url, tenant) if r["type"] == "SUBSCRIPTION_FEE"]
    assert (fees[-1]["occurred_at"], fees[-1]["amount"]) == (last_year(7, 1), D("239.00"))
    await assert_no_drift(state, tenant.org.id)


async def test_a_payment_of_billed_fees_is_not_revenue_twice(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    await plan(tenant, "basic", "30.00")
    start = last_year(8, 1)
    freeze(last_year(8, 2))
    await subscribe(tenant, "basic", "MONTHLY", start)
    account = str(tenant.account_id)
    paid = await ok(
        tenant,
        PAY,
        {
            "i": {
                "idempotencyKey": f"pay-{uuid.uuid4()}",
                "accountId": account,
                "amount": "30.00",
                "currency": "USD",
            }
        },
    )
    assert paid["recordSubscriptionPayment"]["entry"]["relatedEntryId"] is not None
    august = {"start": rfc(start), "end": rfc(last_year(9, 1))}
    pnl = (await ok(tenant, PNL, {"a": account, "r": august}))["accountPnl"]
    assert D(pnl["revenue"]) == D("30.00")  # the fee earned; its payment settles it
    await assert_no_drift(state, tenant.org.id)


# --- a start is never backdated over recorded usage ---


async def subscriptions_of(database_url: str, tenant: Tenant) -> list[Any]:
    async with raw_connection(database_url) as connection:
        return list(
            await connection.fetch(
                "SELECT plan_code, starts_at, ends_at FROM account_subscriptions "
                "WHERE organization_id = $1 AND account_id = $2 ORDER BY starts_at",
                tenant.org.id,
                tenant.account_id,
            )
        )


async def test_a_start_before_recorded_usage_is_refused_on_starts_at(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    """Usage is charged when it is written, under the terms then in force. A subscription
    backdated before it (to the month's start, say) would claim it for an allowance none of
    its counters ever drew on, and ``costgraph verify`` reported drift: such a start is
    refused on ``startsAt``, writing nothing, with or without a plan in force; a start just
    after the account's latest usage is accepted, and verify finds no drift."""
    await plan(tenant, "basic", "30.00")
    await plan(tenant, "more", "60.00")
    freeze(last_year(8, 10, 12))
    account = str(tenant.account_id)

    async def used(at: datetime) -> None:
        body = await tenant.gql(
            RECORD_USAGE, {"input": usage(tenant, occurredAt=rfc(at), providerCost="0.50")}
        )
        assert body["data"]["recordUsage"]["__typename"] == "UsageRecorded", body

    async def written() -> tuple[int, list[Any]]:
        return await entry_count(database_url, tenant), await subscriptions_of(database_url, tenant)

    async def refused(code: str, starts: datetime, latest: datetime) -> None:
        before = await written()
        subscribing = {"accountId": account, "planCode": code, "billing": "MONTHLY"}
        body = await tenant.gql(SUBSCRIBE, {"i": {**subscribing, "startsAt": rfc(starts)}})
        assert error_code(body) == "VALIDATION_FAILED"
        error = body["errors"][0]
        assert error["extensions"]["field"] == "input.startsAt"
        assert rfc(latest) in error["message"], error["message"]
        assert await written() == before

    # No plan in force: the usage was charged in full.
    first = last_year(8, 10, 11)
    await used(first)
    await refused("basic", last_year(8, 1), first)  # the month's start
    await refused("basic", first, first)  # the usage's own instant is covered by a start
    await subscribe(tenant, "basic", "MONTHLY", first + timedelta(seconds=1))

    # Under a plan: its usage drew on that plan's counter, which a new plan cannot take over.
    second = last_year(8, 10, 11, 30)
    await used(second)
    await refused("more", last_year(8, 10, 11, 15), second)
    await subscribe(tenant, "more", "MONTHLY", last_year(8, 10, 11, 45))
    assert [
        (r["plan_code"], r["ends_at"]) for r in await subscriptions_of(database_url, tenant)
    ] == [
        ("basic", last_year(8, 10, 11, 45)),
        ("more", None),
    ]
    await assert_no_drift(state, tenant.org.id)


async def until_waiting_on_a_lock(
    database_url: str, task: asyncio.Future[Any], backend: list[int], what: str
) -> None:
    """Return once ``task``'s database backend (its pid, in ``backend`` once known) waits on a
    lock; fail if ``task`` ends first or never waits (bounded polls: no timing)."""
    async with raw_connection(database_url) as connection:
        for _ in range(400):
            assert not task.done(), task.result()
            if backend and await connection.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                backend[0],
            ):
                return
            await asyncio.sleep(0.025)
    raise AssertionError(f"{what} never waited on a lock")


async def behind(
    state: AppState,
    org: OrgContext,
    first: Callable[[Any], Awaitable[Any]],
    started: asyncio.Event,
    release: asyncio.Event,
    second: Callable[[Any], Awaitable[Any]],
    database_url: str,
    backend: list[int],
    what: str,
) -> asyncio.Future[Any]:
    """Unit ``first`` runs until it sets ``started`` and holds its locks until ``release``;
    unit ``second`` starts then, and once it waits on a lock (its backend in ``backend``),
    ``first`` is let go and completes. ``second``'s task is returned for the caller to await
    (it may fail)."""
    holder = asyncio.ensure_future(state.units.run(org, first))
    await started.wait()
    waiter = asyncio.ensure_future(state.units.run(org, second))
    try:
        await until_waiting_on_a_lock(database_url, waiter, backend, what)
    finally:
        release.set()
        await holder
    return waiter


async def test_a_subscribe_waits_for_usage_being_written_and_sees_it(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    """Usage written while the account subscribes from before it: the subscribe waits for the
    usage write's share of the writer guard (held until it commits), then reads the usage
    and refuses (unordered, it passed the check unseen and verify reported drift)."""
    await plan(tenant, "basic", "30.00")
    freeze(last_year(8, 10, 12))
    event = UsageEvent(
        idempotency_key=f"u-{uuid.uuid4().hex}",
        account_id=tenant.account_id,
        occurred_at=last_year(8, 10, 11),
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=1200,
        provider_cost=D("0.50"),
        provider_currency="USD",
    )
    written, release = asyncio.Event(), asyncio.Event()
    backend: list[int] = []

    async def write_usage(unit: Any) -> Any:
        entry = await ledger.record_usage(unit.session, unit.org, event, state.limits)
        written.set()
        await release.wait()  # the write in flight: not committed yet
        return entry

    async def subscribe_from_the_month_start(unit: Any) -> Any:
        backend.append(await unit.session.scalar(text("SELECT pg_backend_pid()")))
        return await plans.subscribe_account(
            unit.session,
            unit.org,
            tenant.account_id,
            "basic",
            plans.BillingCycle.MONTHLY,
            last_year(8, 1),
        )

    subscriber = await behind(
        state,
        tenant.org,
        write_usage,
        written,
        release,
        subscribe_from_the_month_start,
        database_url,
        backend,
        "the subscribe",
    )
    with pytest.raises(ValidationFailed) as refused:
        await subscriber
    assert refused.value.field == "input.startsAt"
    assert await subscriptions_of(database_url, tenant) == []
    await assert_no_drift(state, tenant.org.id)


async def test_usage_written_while_the_account_subscribes_draws_on_the_new_plan(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    """A usage write that starts while a subscription is being committed waits for it (the
    organisation's writer guard, migration 0020), then draws on the new plan's allowance.
    Unordered, it read the subscriptions before the subscribe committed and charged in full
    inside the plan's first cycle, whose fee was billed (found by an adversary with two
    servers)."""
    await plan(tenant, "basic", "30.00")
    freeze(last_year(8, 10, 12))
    subscribed, release = asyncio.Event(), asyncio.Event()
    backend: list[int] = []

    async def subscribe_and_hold(unit: Any) -> Any:
        subscription = await plans.subscribe_account(
            unit.session,
            unit.org,
            tenant.account_id,
            "basic",
            plans.BillingCycle.MONTHLY,
            last_year(8, 10, 9),
        )
        subscribed.set()
        await release.wait()  # the subscribe in flight: not committed yet
        return subscription

    async def write_usage(unit: Any) -> Any:
        backend.append(await unit.session.scalar(text("SELECT pg_backend_pid()")))
        return await ledger.record_usage(
            unit.session,
            unit.org,
            UsageEvent(
                idempotency_key=f"u-{uuid.uuid4().hex}",
                account_id=tenant.account_id,
                occurred_at=last_year(8, 10, 11),
                provider="openai",
                model="gpt-4o-mini",
                input_tokens=400,
                provider_cost=D("0.50"),
                provider_currency="USD",
            ),
            state.limits,
        )

    writer = await behind(
        state,
        tenant.org,
        subscribe_and_hold,
        subscribed,
        release,
        write_usage,
        database_url,
        backend,
        "the usage write",
    )
    entry = await writer
    assert entry.balance_delta == 0  # covered by the allowance: 400 of the 1,000 tokens
    async with raw_connection(database_url) as connection:
        used = await connection.fetchval(
            "SELECT used_tokens FROM allowance_counters WHERE organization_id = $1 "
            "AND account_id = $2",
            tenant.org.id,
            tenant.account_id,
        )
    assert used == 400
    await assert_no_drift(state, tenant.org.id)
