"""Budgets and reservations: hard caps that hold, soft caps that only count."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.billing.periods import Period, window
from tests import dates
from tests.conftest import Tenant, raw_connection
from tests.servers import running_servers
from tests.test_ledger import RECORD_BATCH, entry_count, usage
from tests.test_ledger import RECORD_USAGE as RECORD_ANY
from tests.verify_support import assert_no_drift

RECORD_USAGE = RECORD_ANY.replace(
    "... on UserError",
    "... on BudgetLimitReached { budgetId limit spent resetsAt }\n    ... on UserError",
)

SET_BUDGET = """mutation($input: BudgetInput!) {
  setBudget(input: $input) { id limit hardCap thresholds period scope { kind id } } }"""
STATUS = """query($id: ID!) { budgetStatus(budgetId: $id) {
  spent reserved remaining percentUsed stagesReached periodStart resetsAt } }"""
AUTHORIZE = """mutation($input: AuthorizeUsageInput!) { authorizeUsage(input: $input) {
  __typename
  ... on UsageAuthorized { replayed reservation { id state aiCost expiresAt } }
  ... on BudgetLimitReached { code budgetId spent }
  ... on UserError { code message field } } }"""
SETTLE = """mutation($input: SettleUsageInput!) { settleUsage(input: $input) {
  __typename
  ... on UsageRecorded { replayed entry { id amount } }
  ... on UserError { code message field } } }"""
RELEASE = """mutation($id: ID!) { releaseReservation(id: $id) { id state } }"""


def at(offset_minutes: int = 0) -> str:
    """``offset_minutes`` before the test's start (the current budget period, unless the test
    starts within that many minutes of a period's start)."""
    return dates.rfc(dates.ago(minutes=offset_minutes).replace(microsecond=0))


async def set_budget(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "scope": {"kind": "ACCOUNT", "id": str(tenant.account_id)},
        "period": "MONTH",
        "limit": "1.00",
        "currency": "USD",
        "hardCap": True,
    }
    value.update(overrides)
    return await tenant.gql(SET_BUDGET, {"input": value})


def charge(tenant: Tenant, cost: str, **overrides: Any) -> dict[str, Any]:
    return usage(tenant, providerCost=cost, occurredAt=at(), **overrides)


async def test_hard_cap_refuses_and_writes_nothing(tenant: Tenant, database_url: str) -> None:
    budget = (await set_budget(tenant))["data"]["setBudget"]
    ok = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0.60")})
    assert ok["data"]["recordUsage"]["__typename"] == "UsageRecorded"
    refused = (await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0.50")}))["data"][
        "recordUsage"
    ]
    assert refused["__typename"] == "BudgetLimitReached"
    assert refused["code"] == "BUDGET_LIMIT_REACHED"
    assert budget["id"] in refused["message"]
    assert "1.00" in refused["message"] and "resets at" in refused["message"]
    assert await entry_count(database_url, tenant) == 1
    status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
    assert Decimal(status["spent"]) == Decimal("0.60")
    assert Decimal(status["remaining"]) == Decimal("0.40")
    assert status["stagesReached"] == [50]
    # What still fits is accepted.
    fits = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0.40")})
    assert fits["data"]["recordUsage"]["__typename"] == "UsageRecorded"


async def test_replay_does_not_count_twice(tenant: Tenant) -> None:
    budget = (await set_budget(tenant))["data"]["setBudget"]
    event = charge(tenant, "0.70")
    for _ in range(3):
        result = await tenant.gql(RECORD_USAGE, {"input": event})
        assert result["data"]["recordUsage"]["__typename"] == "UsageRecorded"
    status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
    assert Decimal(status["spent"]) == Decimal("0.70")


async def test_soft_budget_counts_but_never_refuses(tenant: Tenant) -> None:
    budget = (await set_budget(tenant, hardCap=False))["data"]["setBudget"]
    await tenant.gql(RECORD_BATCH, {"input": [charge(tenant, "0.80"), charge(tenant, "0.40")]})
    status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
    assert Decimal(status["percentUsed"]) == Decimal("120.00")
    assert status["stagesReached"] == [50, 75, 90, 100]
    assert Decimal(status["remaining"]) == 0


async def test_every_applicable_budget_is_checked(tenant: Tenant) -> None:
    department = await tenant.gql('mutation { createDepartment(input: {name: "R&D"}) { id } }')
    department_id = department["data"]["createDepartment"]["id"]
    user = await tenant.gql(
        'mutation($d: ID) { createUser(input: {email: "u@x.io", departmentId: $d}) { id } }',
        {"d": department_id},
    )
    user_id = user["data"]["createUser"]["id"]
    account_budget = (await set_budget(tenant, limit="10.00"))["data"]["setBudget"]
    department_budget = (
        await set_budget(tenant, scope={"kind": "DEPARTMENT", "id": department_id}, limit="0.50")
    )["data"]["setBudget"]
    org_budget = (
        await set_budget(tenant, scope={"kind": "ORGANIZATION"}, limit="5.00", hardCap=False)
    )["data"]["setBudget"]
    ok = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0.30", userId=user_id)})
    assert ok["data"]["recordUsage"]["__typename"] == "UsageRecorded"
    refused = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0.30", userId=user_id)})
    assert refused["data"]["recordUsage"]["budgetId"] == department_budget["id"]
    # Without the user, the department budget does not apply.
    ok = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0.30")})
    assert ok["data"]["recordUsage"]["__typename"] == "UsageRecorded"
    for budget, spent in (
        (account_budget, "0.60"),
        (department_budget, "0.30"),
        (org_budget, "0.60"),
    ):
        status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
        assert Decimal(status["spent"]) == Decimal(spent), budget


async def test_a_batch_over_the_cap_writes_nothing(tenant: Tenant, database_url: str) -> None:
    await set_budget(tenant)
    batch = [charge(tenant, "0.40") for _ in range(3)]
    result = (await tenant.gql(RECORD_BATCH, {"input": batch}))["data"]["recordUsageBatch"]
    assert result["code"] == "BUDGET_LIMIT_REACHED"
    assert await entry_count(database_url, tenant) == 0


async def test_a_free_usage_is_refused_once_the_cap_is_passed(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    """A hard cap refuses every usage of a period past its limit, one costing 0.00 too (as
    an authorisation of 0.00 is): ``spent + reserved + 0.00 <= limit`` does not hold there.
    At the limit exactly, a free usage still fits."""
    spent = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0.60")})
    assert spent["data"]["recordUsage"]["__typename"] == "UsageRecorded"
    await set_budget(tenant, limit="0.60")  # its counter starts at the period's 0.60
    at_limit = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0")})
    assert at_limit["data"]["recordUsage"]["__typename"] == "UsageRecorded", at_limit
    budget = (await set_budget(tenant, limit="0.50"))["data"]["setBudget"]  # now past it

    refused = (await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0")}))["data"][
        "recordUsage"
    ]

    assert refused["__typename"] == "BudgetLimitReached", refused
    assert refused["budgetId"] == budget["id"]
    assert Decimal(refused["spent"]) == Decimal("0.60")
    assert await entry_count(database_url, tenant) == 2
    held = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0")})
    assert held["data"]["authorizeUsage"]["__typename"] == "BudgetLimitReached", held
    # A soft budget past its limit refuses nothing.
    await set_budget(tenant, limit="0.50", hardCap=False)
    free = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0")})
    assert free["data"]["recordUsage"]["__typename"] == "UsageRecorded", free
    await assert_no_drift(state, tenant.org.id)


async def test_month_boundary_starts_a_new_period(tenant: Tenant) -> None:
    budget = (await set_budget(tenant))["data"]["setBudget"]
    last = dates.month(-1)
    late = usage(tenant, providerCost="0.90", occurredAt=dates.rfc(last - timedelta(seconds=1)))
    early = usage(tenant, providerCost="0.90", occurredAt=dates.rfc(last))
    again = usage(tenant, providerCost="0.20", occurredAt=dates.rfc(dates.month(-1, 15, 12)))
    assert (await tenant.gql(RECORD_USAGE, {"input": late}))["data"]["recordUsage"]["entry"]
    assert (await tenant.gql(RECORD_USAGE, {"input": early}))["data"]["recordUsage"]["entry"]
    refused = (await tenant.gql(RECORD_USAGE, {"input": again}))["data"]["recordUsage"]
    assert refused["code"] == "BUDGET_LIMIT_REACHED"
    assert dates.rfc(dates.month()) in refused["message"]  # when the period ends
    assert budget["period"] == "MONTH"


def test_periods_reset_at_local_calendar_boundaries() -> None:
    paris = ZoneInfo("Europe/Paris")
    instant = datetime(2026, 3, 29, 12, tzinfo=UTC)  # the day clocks go forward
    day = window(Period.DAY, instant, paris)
    assert day == (datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC))
    week = window(Period.WEEK, instant, paris)
    assert week[0] == datetime(2026, 3, 22, 23, tzinfo=UTC)  # Monday 00:00 local
    quarter = window(Period.QUARTER, datetime(2026, 12, 31, 23, 30, tzinfo=UTC), paris)
    assert quarter == (
        datetime(2026, 12, 31, 23, tzinfo=UTC),
        datetime(2027, 3, 31, 22, tzinfo=UTC),
    )
    month = window(Period.MONTH, datetime(2026, 12, 15, tzinfo=UTC), ZoneInfo("UTC"))
    assert month == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


BAD_BUDGETS: list[tuple[str, dict[str, Any], str]] = [
    ("zero limit", {"limit": "0"}, "input.limit"),
    ("negative limit", {"limit": "-1.00"}, "input.limit"),
    ("threshold 0", {"thresholds": [0, 50]}, "input.thresholds"),
    ("threshold 101", {"thresholds": [50, 101]}, "input.thresholds"),
    ("unsorted", {"thresholds": [75, 50]}, "input.thresholds"),
    ("duplicates", {"thresholds": [50, 50, 90]}, "input.thresholds"),
    (
        "custom reversed",
        {
            "period": "CUSTOM",
            "customStart": dates.rfc(dates.month(-1)),
            "customEnd": dates.rfc(dates.month(-2)),
        },
        "input.customEnd",
    ),
    ("custom without window", {"period": "CUSTOM"}, "input.customStart"),
    ("window on a month", {"customStart": dates.rfc(dates.month(-1))}, "input.period"),
]


@pytest.mark.parametrize(
    ("label", "override", "field"), BAD_BUDGETS, ids=[b[0] for b in BAD_BUDGETS]
)
async def test_bad_budgets(
    tenant: Tenant, label: str, override: dict[str, Any], field: str
) -> None:
    body = await set_budget(tenant, **override)
    assert body["errors"][0]["extensions"] == {"code": "VALIDATION_FAILED", "field": field}
    listed = await tenant.gql("{ budgets { id } }")
    assert listed["data"]["budgets"] == []


async def test_other_tenant_scope_is_unknown(tenant: Tenant, other_tenant: Tenant) -> None:
    body = await set_budget(tenant, scope={"kind": "ACCOUNT", "id": str(other_tenant.account_id)})
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    theirs = (await set_budget(other_tenant))["data"]["setBudget"]
    status = await tenant.gql(STATUS, {"id": theirs["id"]})
    assert status["errors"][0]["extensions"]["code"] == "NOT_FOUND"


# --- reservations ---


def authorize_input(tenant: Tenant, cost: str, **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "idempotencyKey": f"a-{uuid.uuid4().hex}",
        "accountId": str(tenant.account_id),
        "provider": "openai",
        "model": "gpt-4o",
        "estimatedInputTokens": 1000,
        "estimatedOutputTokens": 500,
        "estimatedCost": cost,
        "estimatedCostCurrency": "USD",
    }
    value.update(overrides)
    return value


async def test_reserve_settle_release(tenant: Tenant) -> None:
    budget = (await set_budget(tenant))["data"]["setBudget"]
    held = (await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.70")}))["data"][
        "authorizeUsage"
    ]
    assert held["__typename"] == "UsageAuthorized", held
    reservation_id = held["reservation"]["id"]
    status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
    assert Decimal(status["reserved"]) == Decimal("0.70")
    # The hold counts: a second reservation that does not fit is refused.
    refused = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.40")})
    assert refused["data"]["authorizeUsage"]["__typename"] == "BudgetLimitReached"
    # Settle with the actual (smaller) cost: the difference is given back.
    actual = charge(tenant, "0.25")
    settled = (
        await tenant.gql(SETTLE, {"input": {"reservationId": reservation_id, "usage": actual}})
    )["data"]["settleUsage"]
    assert settled["__typename"] == "UsageRecorded", settled
    status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
    assert (Decimal(status["spent"]), Decimal(status["reserved"])) == (Decimal("0.25"), 0)
    # A retry of the same settlement replays; another settlement is refused.
    retry = await tenant.gql(SETTLE, {"input": {"reservationId": reservation_id, "usage": actual}})
    assert retry["data"]["settleUsage"]["replayed"] is True
    second = await tenant.gql(
        SETTLE, {"input": {"reservationId": reservation_id, "usage": charge(tenant, "0.10")}}
    )
    assert second["data"]["settleUsage"]["code"] == "VALIDATION_FAILED"
    # Release frees a hold unused.
    other = (await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.50")}))["data"][
        "authorizeUsage"
    ]["reservation"]
    released = await tenant.gql(RELEASE, {"id": other["id"]})
    assert released["data"]["releaseReservation"]["state"] == "RELEASED"
    status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
    assert Decimal(status["reserved"]) == 0


async def test_reservation_bad_input(tenant: Tenant, other_tenant: Tenant) -> None:
    await set_budget(tenant)
    too_big = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "5.00")})
    assert too_big["data"]["authorizeUsage"]["code"] == "VALIDATION_FAILED"
    assert "could ever allow" in too_big["data"]["authorizeUsage"]["message"]
    theirs = (await other_tenant.gql(AUTHORIZE, {"input": authorize_input(other_tenant, "0.10")}))[
        "data"
    ]["authorizeUsage"]["reservation"]
    steal = await tenant.gql(
        SETTLE, {"input": {"reservationId": theirs["id"], "usage": charge(tenant, "0.10")}}
    )
    assert steal["data"]["settleUsage"]["code"] == "NOT_FOUND"
    release = await tenant.gql(RELEASE, {"id": theirs["id"]})
    assert release["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_expired_reservations_stop_holding(tenant: Tenant, database_url: str) -> None:
    budget = (await set_budget(tenant))["data"]["setBudget"]
    held = (await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.90")}))["data"][
        "authorizeUsage"
    ]["reservation"]
    async with raw_connection(database_url) as connection:  # let it lapse
        await connection.execute(
            "UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = $1",
            uuid.UUID(held["id"]),
        )
    late = await tenant.gql(
        SETTLE, {"input": {"reservationId": held["id"], "usage": charge(tenant, "0.10")}}
    )
    assert late["data"]["settleUsage"]["code"] == "VALIDATION_FAILED"
    assert "expired" in late["data"]["settleUsage"]["message"]
    # The next reservation sweeps the lapsed hold, so the budget is free again.
    fresh = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.90")})
    assert fresh["data"]["authorizeUsage"]["__typename"] == "UsageAuthorized"
    status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
    assert Decimal(status["reserved"]) == Decimal("0.90")


# --- concurrency across processes ---


async def _race(urls: list[str], token: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def send(index: int, body: dict[str, Any]) -> dict[str, Any]:
            response = await http.post(
                f"{urls[index % len(urls)]}/graphql",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200, response.text
            result: dict[str, Any] = response.json()
            return result

        return await asyncio.gather(*(send(i, b) for i, b in enumerate(bodies)))


async def test_hard_cap_holds_across_two_processes(
    tenant: Tenant, settings: Settings, database_url: str
) -> None:
    # Two servers and 400 racing writes take a while: mid-month, the period cannot end while
    # the test reads it (a run at COSTGRAPH_TEST_NOW starts 30 s before it would).
    dates.set_now(dates.month(0, 15, 12))
    budget = (await set_budget(tenant, limit="100.00"))["data"]["setBudget"]
    charges = [
        {"query": RECORD_USAGE, "variables": {"input": charge(tenant, "1.00")}} for _ in range(200)
    ]
    reserves = [
        {"query": AUTHORIZE, "variables": {"input": authorize_input(tenant, "1.00")}}
        for _ in range(200)
    ]
    with running_servers(settings, 2) as urls:
        results = await _race(urls, tenant.token, charges)
        kinds = [r["data"]["recordUsage"]["__typename"] for r in results]
        assert kinds.count("UsageRecorded") == 100
        assert kinds.count("BudgetLimitReached") == 100
        status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
        assert Decimal(status["spent"]) == Decimal("100.00")
        assert await entry_count(database_url, tenant) == 100

        # Reservations against a fresh 100.00 cap on another account's budget.
        fresh = await tenant.gql(
            """mutation($c: ID!) { createAccount(input: {customerId: $c, name: "B"}) { id } }""",
            {"c": str(tenant.customer_id)},
        )
        account_id = fresh["data"]["createAccount"]["id"]
        second = (
            await set_budget(tenant, scope={"kind": "ACCOUNT", "id": account_id}, limit="100.00")
        )["data"]["setBudget"]
        for body in reserves:
            body["variables"]["input"]["accountId"] = account_id
        held = await _race(urls, tenant.token, reserves)
        kinds = [r["data"]["authorizeUsage"]["__typename"] for r in held]
        assert kinds.count("UsageAuthorized") == 100
        assert kinds.count("BudgetLimitReached") == 100
        status = (await tenant.gql(STATUS, {"id": second["id"]}))["data"]["budgetStatus"]
        assert Decimal(status["reserved"]) == Decimal("100.00")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"estimatedCost": "-1.00"}, "input.estimatedCost"),
        ({"estimatedCostCurrency": None}, "input.estimatedCostCurrency"),
        ({"estimatedCost": None}, "input.estimatedCost"),
        ({"estimatedInputTokens": -1}, "input.estimatedInputTokens"),
        ({"estimatedOutputTokens": -1}, "input.estimatedOutputTokens"),
    ],
)
async def test_a_bad_estimate_names_the_authorisation_field(
    tenant: Tenant, overrides: dict[str, Any], field: str
) -> None:
    # authorizeUsage's own field names, never the usage event's (providerCost…), which a
    # client of this mutation cannot send.
    answer = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "1.00", **overrides)})
    refused = answer["data"]["authorizeUsage"]
    assert refused["__typename"] == "ValidationFailed", refused
    assert refused["field"] == field
    assert "provider" not in refused["message"], refused["message"]
