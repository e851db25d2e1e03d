"""Budgets that agree with the ledger (issue 16): counters that start from the period's spend,
stages that follow the limit, settlements bounded past their hold, holds that stop counting
when they expire, refunds bounded by the balance, and forecast alerts that fire.

Every date is relative to the business clock (tests/dates.py); tests that depend on where in
the month they run move the clock to a fixed day of the current month first.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from costgraph.app.forecast_alerts import ForecastAlerts
from costgraph.app.state import AppState
from tests.alerts_support import ALERTS, CHANNEL
from tests.conftest import Tenant, raw_connection
from tests.dates import later, month, now, rfc, set_now
from tests.test_budgets import AUTHORIZE, STATUS, authorize_input
from tests.test_ledger import DEPOSIT, RECORD_USAGE, deposit_input, usage
from tests.verify_support import assert_no_drift

RECORD = RECORD_USAGE.replace(
    "... on UserError",
    "... on BudgetLimitReached { budgetId limit spent }\n    ... on UserError",
)
SET_BUDGET = """mutation($input: BudgetInput!) {
  setBudget(input: $input) { id limit hardCap thresholds } }"""
SETTLE = """mutation($input: SettleUsageInput!) { settleUsage(input: $input) {
  __typename
  ... on UsageRecorded { replayed entry { id amount aiCost } }
  ... on OverageLimit { budgetId limit currency tolerancePercent hold room }
  ... on UserError { code message field } } }"""
FORECAST = """query($scope: BudgetScopeInput!) { forecast(scope: $scope) {
  budgetId spent limit limitReached periodStart } }"""
REFUND = """mutation($input: RefundInput!) { refund(input: $input) {
  __typename
  ... on LedgerEntryRecorded { entry { id amount balanceDelta } }
  ... on UserError { code message field } } }"""


def mid_month() -> datetime:
    """The 15th of the current month at noon: room on both sides for a month's tests."""
    return set_now(month(0, day=15, hour=12))


def spend(
    tenant: Tenant, cost: str, at: datetime | None = None, **overrides: Any
) -> dict[str, Any]:
    return usage(tenant, providerCost=cost, occurredAt=rfc(at or now()), **overrides)


async def record(
    tenant: Tenant, cost: str, at: datetime | None = None, **kw: Any
) -> dict[str, Any]:
    body = await tenant.gql(RECORD, {"input": spend(tenant, cost, at, **kw)})
    result: dict[str, Any] = body["data"]["recordUsage"]
    return result


async def budget(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "scope": {"kind": "ACCOUNT", "id": str(tenant.account_id)},
        "period": "MONTH",
        "limit": "10.00",
        "currency": "USD",
        "hardCap": True,
    }
    value.update(overrides)
    body = await tenant.gql(SET_BUDGET, {"input": value})
    made: dict[str, Any] = body["data"]["setBudget"]
    return made


async def status(tenant: Tenant, budget_id: str) -> dict[str, Any]:
    found: dict[str, Any] = (await tenant.gql(STATUS, {"id": budget_id}))["data"]["budgetStatus"]
    return found


async def alerts(tenant: Tenant, **filter: Any) -> list[dict[str, Any]]:
    body = await tenant.gql(ALERTS, {"filter": filter or None, "first": 100})
    nodes: list[dict[str, Any]] = body["data"]["alerts"]["nodes"]
    return sorted(nodes, key=lambda a: (a["raisedAt"], a["kind"], a["stage"] or 0))


async def ledger_usage(database_url: str, tenant: Tenant, start: datetime, end: datetime) -> Any:
    """The account's AI cost over ``[start, end)``, summed straight from the ledger."""
    async with raw_connection(database_url) as connection:
        return await connection.fetchval(
            "SELECT coalesce(sum(ai_cost), 0) FROM ledger_entries WHERE organization_id = $1"
            " AND account_id = $2 AND occurred_at >= $3 AND occurred_at < $4"
            " AND (type = 'USAGE_CHARGE'"
            " OR (type = 'ADJUSTMENT' AND related_entry_id IS NOT NULL))",
            tenant.org.id,
            tenant.account_id,
            start,
            end,
        )


async def counter(database_url: str, budget_id: str, start: datetime) -> tuple[Decimal, Decimal]:
    async with raw_connection(database_url) as connection:
        row = await connection.fetchrow(
            "SELECT spent, reserved FROM budget_counters"
            " WHERE budget_id = $1 AND period_start = $2",
            uuid.UUID(budget_id),
            start,
        )
    assert row is not None
    return row["spent"], row["reserved"]


# --- counters start from the ledger ---


async def test_a_budget_set_mid_period_counts_what_was_already_spent(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    mid_month()
    assert (await record(tenant, "8.00"))["__typename"] == "UsageRecorded"
    made = await budget(tenant, limit="10.00", hardCap=True)
    found = await status(tenant, made["id"])
    assert Decimal(found["spent"]) == Decimal("8.00")
    assert found["stagesReached"] == [50, 75]
    refused = await record(tenant, "9.00")
    assert refused["code"] == "BUDGET_LIMIT_REACHED" and refused["budgetId"] == made["id"]
    assert Decimal(refused["spent"]) == Decimal("8.00")
    assert (await record(tenant, "2.00"))["__typename"] == "UsageRecorded"
    # forecast reads the ledger, budgetStatus the counter: they agree.
    scope = {"kind": "ACCOUNT", "id": str(tenant.account_id)}
    projected = (await tenant.gql(FORECAST, {"scope": scope}))["data"]["forecast"]
    found = await status(tenant, made["id"])
    assert projected["budgetId"] == made["id"]
    assert Decimal(projected["spent"]) == Decimal(found["spent"]) == Decimal("10.00")
    assert projected["limitReached"] is True and found["stagesReached"] == [50, 75, 90, 100]
    start = month(0)
    assert await ledger_usage(database_url, tenant, start, month(1)) == Decimal("10.00")
    # The stages the period had already reached when the budget was set fired then, at 8.00.
    raised = await alerts(tenant, kind="THRESHOLD")
    assert [(a["stage"], Decimal(a["spent"])) for a in raised] == [
        (50, Decimal("8.00")),
        (75, Decimal("8.00")),
        (90, Decimal("10.00")),
        (100, Decimal("10.00")),
    ]
    await assert_no_drift(state, tenant.org.id)


async def test_an_organisation_budget_fires_its_stages_at_the_real_percentages(
    tenant: Tenant, state: AppState
) -> None:
    mid_month()
    await record(tenant, "7.00")
    made = await budget(tenant, scope={"kind": "ORGANIZATION"}, hardCap=False)
    for cost in ("0.50", "1.50", "1.00"):  # 7.50 (75 %), 9.00 (90 %), 10.00 (100 %)
        assert (await record(tenant, cost))["__typename"] == "UsageRecorded"
    raised = await alerts(tenant, budgetId=made["id"])
    assert [(a["stage"], Decimal(a["spent"])) for a in raised] == [
        (50, Decimal("7.00")),
        (75, Decimal("7.50")),
        (90, Decimal("9.00")),
        (100, Decimal("10.00")),
    ]
    await assert_no_drift(state, tenant.org.id)


async def test_a_period_first_written_late_starts_from_its_ledger_spend(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    set_now(month(0, day=1, hour=1))  # last month's final hours are within the late window
    last_month = month(0) - timedelta(hours=2)
    assert (await record(tenant, "6.00", last_month))["__typename"] == "UsageRecorded"
    made = await budget(tenant, limit="10.00", hardCap=True)
    # The first write into last month's period creates its counter from the ledger: 6.00.
    assert (await record(tenant, "3.00", last_month))["__typename"] == "UsageRecorded"
    assert (await counter(database_url, made["id"], month(-1)))[0] == Decimal("9.00")
    refused = await record(tenant, "2.00", last_month)
    assert refused["code"] == "BUDGET_LIMIT_REACHED"
    # This month is a period of its own.
    assert (await record(tenant, "2.00"))["__typename"] == "UsageRecorded"
    assert Decimal((await status(tenant, made["id"]))["spent"]) == Decimal("2.00")
    assert await ledger_usage(database_url, tenant, month(-1), month(0)) == Decimal("9.00")
    await assert_no_drift(state, tenant.org.id)


async def test_a_budget_set_among_concurrent_writers_misses_none(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    mid_month()
    events = [spend(tenant, "0.10") for _ in range(40)]

    async def writes() -> list[dict[str, Any]]:
        return await asyncio.gather(*(tenant.gql(RECORD, {"input": e}) for e in events))

    async def setter() -> dict[str, Any]:
        await asyncio.sleep(0.05)  # among the writes
        return await budget(tenant, limit="100.00", hardCap=True)

    written, made = await asyncio.gather(writes(), setter())
    assert all(w["data"]["recordUsage"]["__typename"] == "UsageRecorded" for w in written)
    assert Decimal((await status(tenant, made["id"]))["spent"]) == Decimal("4.00")
    assert await ledger_usage(database_url, tenant, month(0), month(1)) == Decimal("4.00")
    await assert_no_drift(state, tenant.org.id)


# --- stages follow the limit ---


async def test_raising_a_limit_rearms_the_stages_above_the_spend(
    tenant: Tenant, state: AppState
) -> None:
    mid_month()
    made = await budget(tenant, limit="1.00", hardCap=True)
    await record(tenant, "1.00")
    assert [a["stage"] for a in await alerts(tenant)] == [50, 75, 90, 100]
    await budget(tenant, limit="2.00", hardCap=True)  # 1.00 is now 50 %: nothing new
    assert len(await alerts(tenant)) == 4
    await record(tenant, "0.60")  # 80 %
    await record(tenant, "0.40")  # 100 %
    raised = await alerts(tenant, budgetId=made["id"])
    assert [(a["stage"], Decimal(a["limit"])) for a in raised[4:]] == [
        (75, Decimal("2.00")),
        (90, Decimal("2.00")),
        (100, Decimal("2.00")),
    ]
    refused = await record(tenant, "0.01")
    assert refused["code"] == "BUDGET_LIMIT_REACHED"
    await assert_no_drift(state, tenant.org.id)


async def test_lowering_a_limit_fires_the_stages_it_crosses_once(
    tenant: Tenant, state: AppState
) -> None:
    mid_month()
    made = await budget(tenant, limit="4.00", hardCap=False)
    await record(tenant, "2.40")  # 60 %: stage 50
    await budget(tenant, limit="3.00", hardCap=False)  # 80 %: stage 75, at once
    await budget(tenant, limit="3.00", hardCap=False)  # the same terms: nothing
    raised = await alerts(tenant, budgetId=made["id"])
    assert [(a["stage"], Decimal(a["limit"])) for a in raised] == [
        (50, Decimal("4.00")),
        (75, Decimal("3.00")),
    ]
    await record(tenant, "0.30")  # 90 % of the new limit
    assert [a["stage"] for a in await alerts(tenant, budgetId=made["id"])][-1] == 90
    await assert_no_drift(state, tenant.org.id)


# --- settlements beyond their hold ---


async def test_a_settlement_past_its_hold_is_bounded_by_the_tolerance(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    mid_month()
    made = await budget(tenant, limit="10.00", hardCap=True)
    held = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "1.00")})
    reservation = held["data"]["authorizeUsage"]["reservation"]["id"]
    settle = {"reservationId": reservation, "usage": spend(tenant, "500.00")}
    refused = (await tenant.gql(SETTLE, {"input": settle}))["data"]["settleUsage"]
    assert refused["__typename"] == "OverageLimit" and refused["code"] == "OVERAGE_LIMIT"
    assert refused["budgetId"] == made["id"] and refused["field"] == "input.usage"
    assert Decimal(refused["hold"]) == Decimal("1.00")
    assert Decimal(refused["tolerancePercent"]) == Decimal("10")
    assert Decimal(refused["room"]) == Decimal("11.00")  # 10.00 and 10 %, none spent
    assert await ledger_usage(database_url, tenant, month(0), month(1)) == 0
    assert await counter(database_url, made["id"], month(0)) == (Decimal(0), Decimal("1.00"))

    # Within the tolerance: recorded, counted, alerted.
    settle = {"reservationId": reservation, "usage": spend(tenant, "10.50")}
    settled = (await tenant.gql(SETTLE, {"input": settle}))["data"]["settleUsage"]
    assert settled["__typename"] == "UsageRecorded"
    found = await status(tenant, made["id"])
    assert Decimal(found["spent"]) == Decimal("10.50") and Decimal(found["reserved"]) == 0
    (overage,) = await alerts(tenant, kind="OVERAGE")
    assert overage["code"] == "BUDGET_OVERAGE" and overage["stage"] is None
    assert Decimal(overage["spent"]) == Decimal("10.50") and "hard cap" in overage["message"]

    # While the period is over its cap, nothing more gets in.
    again = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.10")})
    assert again["data"]["authorizeUsage"]["code"] == "BUDGET_LIMIT_REACHED"
    assert (await record(tenant, "0.01"))["code"] == "BUDGET_LIMIT_REACHED"
    await assert_no_drift(state, tenant.org.id)


async def test_a_settlement_within_its_hold_always_lands(tenant: Tenant, state: AppState) -> None:
    mid_month()
    made = await budget(tenant, limit="2.00", hardCap=True)
    held = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "1.50")})
    reservation = held["data"]["authorizeUsage"]["reservation"]["id"]
    await budget(tenant, limit="1.00", hardCap=True)  # lowered under the hold
    settle = {"reservationId": reservation, "usage": spend(tenant, "1.40")}
    settled = (await tenant.gql(SETTLE, {"input": settle}))["data"]["settleUsage"]
    assert settled["__typename"] == "UsageRecorded"
    assert Decimal((await status(tenant, made["id"]))["spent"]) == Decimal("1.40")
    await assert_no_drift(state, tenant.org.id)


# --- holds past their expiry ---


async def test_expired_holds_stop_counting_before_anyone_sweeps_them(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    mid_month()
    made = await budget(tenant, limit="1.00", hardCap=True)
    held = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.80")})
    assert held["data"]["authorizeUsage"]["__typename"] == "UsageAuthorized"
    assert Decimal((await status(tenant, made["id"]))["reserved"]) == Decimal("0.80")
    assert (await record(tenant, "0.90"))["code"] == "BUDGET_LIMIT_REACHED"  # still held
    set_now(later(seconds=901))  # past the 900 s hold
    found = await status(tenant, made["id"])
    assert Decimal(found["reserved"]) == 0 and Decimal(found["remaining"]) == Decimal("1.00")
    assert (await record(tenant, "0.90"))["__typename"] == "UsageRecorded"
    async with raw_connection(database_url) as connection:
        states = await connection.fetch(
            "SELECT state FROM reservations WHERE organization_id = $1", tenant.org.id
        )
    assert [row["state"] for row in states] == ["HELD"]  # not swept: expiry read at read time
    scope = {"kind": "ACCOUNT", "id": str(tenant.account_id)}
    projected = (await tenant.gql(FORECAST, {"scope": scope}))["data"]["forecast"]
    assert Decimal(projected["spent"]) == Decimal("0.90")  # holds are not spend
    await assert_no_drift(state, tenant.org.id)


# --- refunds of prepaid money ---


async def test_a_prepaid_refund_is_bounded_by_the_remaining_balance(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    mid_month()
    created = await tenant.gql(
        """mutation($c: ID!) { createAccount(input: {customerId: $c, name: "Prepaid"}) { id } }""",
        {"c": str(tenant.customer_id)},
    )
    account = created["data"]["createAccount"]["id"]
    paid = await tenant.gql(
        DEPOSIT, {"input": deposit_input(tenant, accountId=account, amount="10.00")}
    )
    deposit_id = paid["data"]["deposit"]["entry"]["id"]
    assert (await record(tenant, "9.50", accountId=account))["__typename"] == "UsageRecorded"
    async with raw_connection(database_url) as connection:
        balance = await connection.fetchval(
            "SELECT balance FROM account_balances WHERE account_id = $1", uuid.UUID(account)
        )
    assert 0 < balance < Decimal("10.00")
    refund = {"idempotencyKey": f"r-{uuid.uuid4().hex}", "entryId": deposit_id, "amount": "10.00"}
    refused = (await tenant.gql(REFUND, {"input": refund}))["data"]["refund"]
    assert refused["code"] == "VALIDATION_FAILED" and refused["field"] == "input.amount"
    assert "remaining prepaid balance" in refused["message"]
    refund = {**refund, "idempotencyKey": f"r-{uuid.uuid4().hex}", "amount": format(balance, "f")}
    done = (await tenant.gql(REFUND, {"input": refund}))["data"]["refund"]
    assert done["__typename"] == "LedgerEntryRecorded"
    async with raw_connection(database_url) as connection:
        left = await connection.fetchval(
            "SELECT balance FROM account_balances WHERE account_id = $1", uuid.UUID(account)
        )
    assert left == 0
    await assert_no_drift(state, tenant.org.id)


# --- forecast alerts ---


async def test_forecast_alerts_fire_once_per_period_and_rearm_with_the_limit(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    for day in range(1, 20):  # 1.00 a day, every day so far
        set_now(month(0, day=day, hour=12))
        assert (await record(tenant, "1.00"))["__typename"] == "UsageRecorded"
    set_now(month(0, day=20, hour=12))
    channel = await tenant.gql(
        CHANNEL, {"input": {"kind": "WEBHOOK", "target": "http://127.0.0.1:9/never"}}
    )
    assert channel["data"]["createNotificationChannel"]["id"]
    made = await budget(tenant, limit="25.00", hardCap=False)  # 19.00 spent; ~30 projected
    rounds = ForecastAlerts(state.sessions, state.units, state.limits, history_days=84)
    assert await rounds.tick(tenant.org.id) == 1
    assert await rounds.tick(tenant.org.id) == 0  # once per period
    (raised,) = await alerts(tenant, kind="FORECAST")
    assert raised["code"] == "BUDGET_FORECAST" and raised["budgetId"] == made["id"]
    assert Decimal(raised["spent"]) > Decimal("25.00") and "forecast" in raised["message"]
    async with raw_connection(database_url) as connection:
        deliveries = await connection.fetchval(
            "SELECT count(*) FROM alert_deliveries WHERE alert_id = $1", uuid.UUID(raised["id"])
        )
    assert deliveries == 1  # to the organisation's channel, like any alert
    await budget(tenant, limit="26.00", hardCap=False)  # new terms: re-armed
    assert await rounds.tick(tenant.org.id) == 1
    assert [Decimal(a["limit"]) for a in await alerts(tenant, kind="FORECAST")] == [
        Decimal("25.00"),
        Decimal("26.00"),
    ]
    await budget(tenant, limit="500.00", hardCap=False)  # far above any projection
    assert await rounds.tick(tenant.org.id) == 0
    await assert_no_drift(state, tenant.org.id)
