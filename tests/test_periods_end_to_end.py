"""One budget's month end to end, through GraphQL as a user and an attacker drive it:
``budgetStatus``, the alerts, ``forecast``, the P&L, the month close and ``costgraph verify``
agree at every step.

The story, in the month before the test's own (a fresh organisation whose books start then,
so that month can be closed; every date is relative to the business clock):

1. 8.00 is spent, then a 10.00 hard cap is set mid-month: it starts at 8.00 (stages 50 and 75
   fire at once) and refuses what would pass 10.00.
2. The limit is raised to 20.00: the stages above the spend are re-armed and fire again when
   spending crosses them.
3. A settlement beyond its hold: past the tolerance (10 % of the limit) it is refused with
   OVERAGE_LIMIT and writes nothing; within it, it is recorded and counted, raises an OVERAGE
   alert, and the next authorisation is refused. The forecast alert fires, once.
4. Backdating: plain writes outside the late-arrival window are refused; a backfill enters a
   past period under its own cap and is refused past it; nothing enters the capped period.
5. The month ends: a late deposit within the window is still booked into it; the month-close
   function the rollup runner calls closes it once the runner's grace has passed; a late
   entry for it is then PERIOD_CLOSED, and ``monthlyCloses`` equals the live P&L.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from costgraph.app.forecast_alerts import ForecastAlerts
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.billing import month_close, rollups
from tests import dates
from tests.alerts_support import ALERTS
from tests.conftest import Tenant, make_tenant, raw_connection
from tests.dates import rfc
from tests.verify_support import assert_no_drift

D = Decimal
#: The shipped late-arrival window (the suite's app runs a wide one).
WINDOW = timedelta(hours=72)

_REFUSED = """... on BudgetLimitReached { code budgetId limit spent }
  ... on PeriodClosed { code field month }
  ... on UserError { code message field }"""
_USAGE = f"""__typename ... on UsageRecorded {{ entry {{ id aiCost occurredAt }} }}
  ... on OverageLimit {{ code field budgetId limit tolerancePercent hold room }}
  {_REFUSED}"""
RECORD = f"""mutation($input: UsageEventInput!) {{ recordUsage(input: $input) {{ {_USAGE} }} }}"""
SETTLE = f"""mutation($input: SettleUsageInput!) {{ settleUsage(input: $input) {{ {_USAGE} }} }}"""
BACKFILL = f"""mutation($input: [UsageEventInput!]!) {{ backfillUsage(input: $input) {{
  __typename ... on UsageBatchRecorded {{ recorded }} {_REFUSED} }} }}"""
DEPOSIT = """mutation($input: DepositInput!) { deposit(input: $input) {
  __typename ... on LedgerEntryRecorded { entry { id occurredAt } }
  ... on PeriodClosed { code field month } ... on UserError { code message field } } }"""
AUTHORIZE = """mutation($input: AuthorizeUsageInput!) { authorizeUsage(input: $input) {
  __typename ... on UsageAuthorized { reservation { id } }
  ... on BudgetLimitReached { code budgetId spent }
  ... on UserError { code message field } } }"""
SET_BUDGET = """mutation($input: BudgetInput!) { setBudget(input: $input) {
  __typename ... on Budget { id limit } } }"""
STATUS = """query($id: ID!) { budgetStatus(budgetId: $id) {
  periodStart spent reserved remaining percentUsed stagesReached budget { limit } } }"""
FORECAST = """query { forecast(scope: {kind: ORGANIZATION}) {
  budgetId limit periodStart spent projectedTotal limitReached interval80 { low high } } }"""
PNL = """query($range: DateRange!) { organizationPnl(range: $range) {
  currency revenue aiCost billedUsage platformFees margin eventCount } }"""
ACCOUNT_PNL = """query($id: ID!, $range: DateRange!) { accountPnl(accountId: $id, range: $range) {
  currency revenue aiCost billedUsage platformFees margin eventCount } }"""
CLOSES = """query($month: DateTime!) { monthlyCloses(month: $month) {
  scopeKind scopeId currency revenue aiCost billedUsage platformFees margin eventCount } }"""
FIGURES = ("currency", "revenue", "aiCost", "billedUsage", "platformFees", "margin", "eventCount")


@pytest.fixture(autouse=True)
def shipped_policy(state: AppState) -> Iterator[None]:
    """The app's late-arrival policy at its shipped defaults for this test."""
    limits = state.limits
    saved = (limits.late_arrival_window_seconds, limits.future_skew_seconds)
    limits.late_arrival_window_seconds = int(WINDOW.total_seconds())
    limits.future_skew_seconds = 300
    yield
    limits.late_arrival_window_seconds, limits.future_skew_seconds = saved


def figures(row: dict[str, Any]) -> dict[str, Any]:
    """A P&L's or a close's figures, amounts as numbers."""
    return {
        name: row[name] if name in ("currency", "eventCount") else D(row[name]) for name in FIGURES
    }


def event(tenant: Tenant, at: datetime, cost: str) -> dict[str, Any]:
    return {
        "idempotencyKey": uuid.uuid4().hex,
        "accountId": str(tenant.account_id),
        "occurredAt": rfc(at),
        "provider": "openai",
        "model": "gpt-4o",
        "inputTokens": 1_000,
        "outputTokens": 100,
        "providerCost": cost,
        "providerCurrency": "USD",
    }


async def call(tenant: Tenant, query: str, variables: dict[str, Any] | None = None) -> Any:
    body = await tenant.gql(query, variables)
    assert "errors" not in body, body
    (value,) = body["data"].values()
    return value


async def write(tenant: Tenant, query: str, value: Any) -> dict[str, Any]:
    result: dict[str, Any] = await call(tenant, query, {"input": value})
    return result


class Story:
    """The organisation, its budget and the checks every step ends with."""

    def __init__(self, tenant: Tenant, state: AppState, budget_id: str) -> None:
        self.tenant = tenant
        self.state = state
        self.budget_id = budget_id

    async def status(self) -> dict[str, Any]:
        found: dict[str, Any] = await call(self.tenant, STATUS, {"id": self.budget_id})
        return found

    async def alerts(self, **filter: Any) -> list[tuple[Any, ...]]:
        """(kind, stage, limit, spent, period start) of the budget's alerts, oldest first."""
        found = await call(
            self.tenant, ALERTS, {"filter": {"budgetId": self.budget_id, **filter}, "first": 100}
        )
        nodes = sorted(found["nodes"], key=lambda a: (a["raisedAt"], a["kind"], a["stage"] or 0))
        return [
            (a["kind"], a["stage"], D(a["limit"]), D(a["spent"]), a["periodStart"]) for a in nodes
        ]

    async def agree(self, spent: str, reserved: str = "0") -> dict[str, Any]:
        """budgetStatus, forecast and the ledger (verify) say the same about the period."""
        status = await self.status()
        limit = D(status["budget"]["limit"])
        assert (D(status["spent"]), D(status["reserved"])) == (D(spent), D(reserved)), status
        assert D(status["remaining"]) == max(D(0), limit - D(spent) - D(reserved)), status
        assert D(status["percentUsed"]) == (D(spent) * 100 / limit).quantize(D("0.01")), status
        forecast = await call(self.tenant, FORECAST)
        assert forecast["budgetId"] == self.budget_id, forecast
        assert (forecast["periodStart"], D(forecast["limit"])) == (status["periodStart"], limit)
        assert D(forecast["spent"]) == D(spent), (forecast, status)
        assert forecast["limitReached"] is (D(spent) >= limit), (forecast, status)
        assert D(forecast["projectedTotal"]) >= D(spent), forecast
        interval = forecast["interval80"]  # the FORECAST alert's bound: never under the spend
        assert interval is None or D(interval["low"]) >= D(spent), forecast
        await assert_no_drift(self.state, self.tenant.org.id)
        return status


async def test_budget_status_alerts_forecast_pnl_close_and_verify_agree(
    state: AppState,
    settings: Settings,
    client: httpx.AsyncClient,
    mint: Any,
    database_url: str,
) -> None:
    # The month before the test's own (its books can be closed while the test runs).
    month = dates.month(-1)
    following = dates.month(0)
    before = dates.month(-2)
    dates.set_now(month + timedelta(days=9, hours=12))  # the 10th, noon
    tenant = await make_tenant(state, client, mint)  # its books start this month
    period = rfc(month)

    # --- 1. a budget set mid-month, with spend already there ---
    spent = await write(tenant, RECORD, event(tenant, dates.ago(hours=2), "8.00"))
    assert spent["__typename"] == "UsageRecorded", spent
    paid = {
        "idempotencyKey": uuid.uuid4().hex,
        "accountId": str(tenant.account_id),
        "amount": "50.00",
        "currency": "USD",
    }
    assert (await write(tenant, DEPOSIT, paid))["__typename"] == "LedgerEntryRecorded"
    cap = {
        "scope": {"kind": "ORGANIZATION"},
        "period": "MONTH",
        "limit": "10.00",
        "currency": "USD",
        "hardCap": True,
    }
    budget = await write(tenant, SET_BUDGET, cap)
    story = Story(tenant, state, budget["id"])
    status = await story.agree(spent="8.00")
    assert status["periodStart"] == period and status["stagesReached"] == [50, 75]
    first_stages = [
        ("THRESHOLD", 50, D("10.00"), D("8.00"), period),
        ("THRESHOLD", 75, D("10.00"), D("8.00"), period),
    ]
    assert await story.alerts() == first_stages
    refused = await write(tenant, RECORD, event(tenant, dates.ago(hours=1), "3.00"))
    assert (refused["code"], refused["budgetId"], D(refused["spent"])) == (
        "BUDGET_LIMIT_REACHED",
        budget["id"],
        D("8.00"),
    )
    await story.agree(spent="8.00")

    # --- 2. the limit raised: the stages above the spend re-armed ---
    await write(tenant, SET_BUDGET, {**cap, "limit": "20.00"})
    status = await story.agree(spent="8.00")
    assert status["stagesReached"] == []  # 40 % of the new limit
    assert await story.alerts() == first_stages  # nothing new at 40 %
    more = await write(tenant, RECORD, event(tenant, dates.ago(minutes=50), "10.00"))
    assert more["__typename"] == "UsageRecorded", more
    status = await story.agree(spent="18.00")
    assert status["stagesReached"] == [50, 75, 90]
    second_stages = [("THRESHOLD", s, D("20.00"), D("18.00"), period) for s in (50, 75, 90)]
    assert await story.alerts() == first_stages + second_stages

    # --- 3. a settlement beyond its hold ---
    held = await write(
        tenant,
        AUTHORIZE,
        {
            "idempotencyKey": uuid.uuid4().hex,
            "accountId": str(tenant.account_id),
            "provider": "openai",
            "model": "gpt-4o",
            "estimatedCost": "1.00",
            "estimatedCostCurrency": "USD",
        },
    )
    reservation = held["reservation"]["id"]
    await story.agree(spent="18.00", reserved="1.00")
    # Beyond the tolerance: the period may reach 22.00 (20.00 and 10 %), 4.00 more at most.
    beyond = await write(
        tenant,
        SETTLE,
        {"reservationId": reservation, "usage": event(tenant, dates.ago(minutes=40), "5.00")},
    )
    assert (beyond["__typename"], beyond["code"], beyond["field"]) == (
        "OverageLimit",
        "OVERAGE_LIMIT",
        "input.usage",
    )
    assert beyond["budgetId"] == budget["id"]
    assert (D(beyond["limit"]), D(beyond["tolerancePercent"])) == (D("20.00"), D(10))
    assert (D(beyond["hold"]), D(beyond["room"])) == (D("1.00"), D("4.00"))
    await story.agree(spent="18.00", reserved="1.00")  # nothing written, still held
    # Within the tolerance: recorded and counted, over the cap.
    within = await write(
        tenant,
        SETTLE,
        {"reservationId": reservation, "usage": event(tenant, dates.ago(minutes=40), "3.50")},
    )
    assert within["__typename"] == "UsageRecorded", within
    status = await story.agree(spent="21.50")
    assert status["stagesReached"] == [50, 75, 90, 100]
    assert D(status["percentUsed"]) == D("107.50")
    over = [
        ("THRESHOLD", 100, D("20.00"), D("21.50"), period),
        ("OVERAGE", None, D("20.00"), D("21.50"), period),
    ]
    assert sorted(await story.alerts(), key=repr) == sorted(
        first_stages + second_stages + over, key=repr
    )
    # While the period is over its cap, nothing more gets in.
    again = await write(
        tenant,
        AUTHORIZE,
        {
            "idempotencyKey": uuid.uuid4().hex,
            "accountId": str(tenant.account_id),
            "provider": "openai",
            "model": "gpt-4o",
            "estimatedCost": "0.01",
            "estimatedCostCurrency": "USD",
        },
    )
    assert (again["code"], again["budgetId"]) == ("BUDGET_LIMIT_REACHED", budget["id"])
    tiny = await write(tenant, RECORD, event(tenant, dates.ago(minutes=30), "0.01"))
    assert tiny["code"] == "BUDGET_LIMIT_REACHED"
    # The forecast agrees: the period's total is past the limit, one FORECAST alert.
    rounds = ForecastAlerts(state.sessions, state.units, state.limits, history_days=84)
    assert await rounds.tick(tenant.org.id) == 1
    assert await rounds.tick(tenant.org.id) == 0
    ((kind, stage, limit, projected, start),) = await story.alerts(kind="FORECAST")
    assert (kind, stage, limit, start) == ("FORECAST", None, D("20.00"), period)
    assert projected >= D("21.50")
    await story.agree(spent="21.50")

    # --- 4. backdating ---
    # Plain writes: outside the window, refused, even within the open period.
    for at in (before + timedelta(days=9), dates.ago(hours=73)):
        late = await write(tenant, RECORD, event(tenant, at, "1.00"))
        assert (late["code"], late["field"]) == ("VALIDATION_FAILED", "input.occurredAt")
    # A backfill into a past period meets that period's cap ...
    history = before + timedelta(days=9)
    filled = await write(tenant, BACKFILL, [event(tenant, history, "15.00")])
    assert filled["recorded"] == 1, filled
    past = await write(tenant, BACKFILL, [event(tenant, history, "6.00")])
    assert (past["code"], past["budgetId"], D(past["spent"])) == (
        "BUDGET_LIMIT_REACHED",
        budget["id"],
        D("15.00"),
    )
    # ... and none enters the period over its cap, whatever its date.
    for at in (month + timedelta(days=2), dates.ago(hours=1)):
        capped = await write(tenant, BACKFILL, [event(tenant, at, "0.50")])
        assert capped["code"] == "BUDGET_LIMIT_REACHED", capped
    await story.agree(spent="21.50")  # the current period is untouched
    history_alerts = [a for a in await story.alerts() if a[4] == rfc(before)]
    assert history_alerts == [
        ("THRESHOLD", 50, D("20.00"), D("15.00"), rfc(before)),
        ("THRESHOLD", 75, D("20.00"), D("15.00"), rfc(before)),
    ]

    # --- 5. the month ends, closes, and stays closed ---
    span = {"start": rfc(month), "end": rfc(following)}
    dates.set_now(following + timedelta(days=1, hours=12))  # 36 hours after it ended
    status = await story.agree(spent="0")
    assert (status["periodStart"], status["stagesReached"]) == (rfc(following), [])
    # Within the window a late deposit still lands in the month; usage meets its cap.
    late_paid = {**paid, "idempotencyKey": uuid.uuid4().hex, "amount": "5.00"}
    late_paid["occurredAt"] = rfc(dates.ago(hours=40))
    booked = await write(tenant, DEPOSIT, late_paid)
    assert booked["entry"]["occurredAt"] == rfc(dates.ago(hours=40))
    late_usage = await write(tenant, RECORD, event(tenant, dates.ago(hours=40), "0.10"))
    assert late_usage["code"] == "BUDGET_LIMIT_REACHED"
    now_usage = await write(tenant, RECORD, event(tenant, dates.ago(hours=1), "2.00"))
    assert now_usage["__typename"] == "UsageRecorded", now_usage
    await story.agree(spent="2.00")

    # The rollup runner's close: not before its grace (the late-arrival window at least).
    grace = max(timedelta(hours=settings.month_close_grace_hours), WINDOW)
    assert (
        await month_close.close_months(state.units, dates.now(), grace, only=[tenant.org.id]) == []
    )
    dates.set_now(following + timedelta(days=4))
    async with raw_connection(database_url) as connection:
        await rollups.catch_up(connection)
    closed = await month_close.close_months(state.units, dates.now(), grace, only=[tenant.org.id])
    assert [(c.organization_id, c.month) for c in closed] == [(tenant.org.id, month)]
    await story.agree(spent="2.00")

    # A late entry for the closed month: a backfill (the only writer the window still lets
    # reach it) is PERIOD_CLOSED; a plain write is past the window.
    refused_late = await write(
        tenant, BACKFILL, [event(tenant, month + timedelta(days=20), "0.10")]
    )
    assert (refused_late["code"], refused_late["field"], refused_late["month"]) == (
        "PERIOD_CLOSED",
        "input.0.occurredAt",
        period,
    )
    plain = await write(tenant, RECORD, event(tenant, following - timedelta(hours=1), "0.10"))
    assert (plain["code"], plain["field"]) == ("VALIDATION_FAILED", "input.occurredAt")

    # monthlyCloses equals the live P&L of the month, for the organisation and the account.
    live = await call(tenant, PNL, {"range": span})
    assert (D(live["aiCost"]), live["eventCount"]) == (D("21.50"), 3)
    rows = await call(tenant, CLOSES, {"month": period})
    (org_row,) = [r for r in rows if r["scopeKind"] == "ORGANIZATION"]
    (account_row,) = [r for r in rows if r["scopeKind"] == "ACCOUNT"]
    account = await call(tenant, ACCOUNT_PNL, {"id": str(tenant.account_id), "range": span})
    assert figures(org_row) == figures(live)
    assert figures(account_row) == figures(account)
    assert account_row["scopeId"] == str(tenant.account_id)
    await story.agree(spent="2.00")
