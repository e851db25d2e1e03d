"""The late-arrival policy and closed months, through GraphQL at the shipped defaults.

- A plain write takes an ``occurredAt`` from 72 hours ago to 5 minutes ahead; older usage is
  history, which only ``backfillUsage`` (an org_admin's explicit request) records.
- Usage dated in an allowance cycle that is over is charged in full: a late event never spends
  a past cycle's unused allowance.
- Every hard cap holds in the period an event lands in, whatever ``occurredAt`` says.
- Closed months are immutable: every writer dated in one gets ``PERIOD_CLOSED``, so a close
  always equals the live P&L; a close and a late writer never race.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.billing import ledger, month_close
from costgraph.billing.closed_months_repository import month_lock_key
from costgraph.billing.commands import UsageEvent
from costgraph.models.scoping import bind_tenant
from tests import dates
from tests.conftest import Tenant, raw_connection
from tests.dates import rfc
from tests.pnl_support import catch_up
from tests.test_pricing_catalog import provider_name, set_price
from tests.test_pricing_stripe import SECRET, checkout, post
from tests.verify_support import assert_no_drift

D = Decimal
WINDOW = 72 * 3600

USAGE_FIELDS = """__typename
  ... on UsageRecorded { replayed entry { id amount balanceDelta occurredAt } }
  ... on PeriodClosed { code message field month }
  ... on UserError { code message field }"""
RECORD = (
    f"""mutation($input: UsageEventInput!) {{ recordUsage(input: $input) {{ {USAGE_FIELDS} }} }}"""
)
BATCH_FIELDS = """__typename
  ... on UsageBatchRecorded { recorded replayed entries { id balanceDelta } }
  ... on BudgetLimitReached { code budgetId limit spent }
  ... on PeriodClosed { code message field month }
  ... on UserError { code message field }"""
BATCH = f"""mutation($input: [UsageEventInput!]!) {{
  recordUsageBatch(input: $input) {{ {BATCH_FIELDS} }} }}"""
BACKFILL = f"""mutation($input: [UsageEventInput!]!) {{
  backfillUsage(input: $input) {{ {BATCH_FIELDS} }} }}"""
_ENTRY = """__typename ... on LedgerEntryRecorded { replayed entry { id occurredAt } }
  ... on PeriodClosed { code message field month }
  ... on UserError { code message field }"""
DEPOSIT = f"mutation($input: DepositInput!) {{ deposit(input: $input) {{ {_ENTRY} }} }}"
SUBSCRIPTION = f"""mutation($input: SubscriptionPaymentInput!) {{
  recordSubscriptionPayment(input: $input) {{ {_ENTRY} }} }}"""
ADJUST = f"mutation($input: AdjustmentInput!) {{ adjust(input: $input) {{ {_ENTRY} }} }}"
FEE = f"""mutation($input: PlatformFeeInput!) {{
  recordPlatformFee(input: $input) {{ {_ENTRY} }} }}"""
REFUND = f"mutation($input: RefundInput!) {{ refund(input: $input) {{ {_ENTRY} }} }}"
LIABILITY = """mutation($input: LiabilityEstimateInput!) { recordLiabilityEstimate(input: $input) {
  __typename ... on UserError { code message field } } }"""
AUTHORIZE = """mutation($input: AuthorizeUsageInput!) { authorizeUsage(input: $input) {
  __typename ... on UsageAuthorized { reservation { id } } ... on UserError { code message } } }"""
SETTLE = (
    f"""mutation($input: SettleUsageInput!) {{ settleUsage(input: $input) {{ {USAGE_FIELDS} }} }}"""
)
REPRICE = """mutation($input: RepriceInput!) { repriceUsage(input: $input) {
  __typename ... on RepriceCompleted { adjusted }
  ... on PeriodClosed { code message field month }
  ... on UserError { code message field } } }"""
SET_BUDGET = """mutation($input: BudgetInput!) { setBudget(input: $input) { id } }"""
STATUS = """query($id: ID!) { budgetStatus(budgetId: $id) { spent } }"""
ORG_PNL = """query($range: DateRange!) { organizationPnl(range: $range) {
  revenue aiCost billedUsage platformFees eventCount } }"""
CLOSES = """query($month: DateTime!) { monthlyCloses(month: $month) {
  scopeKind currency revenue aiCost billedUsage platformFees eventCount } }"""


@pytest.fixture(autouse=True)
def shipped_policy(state: AppState) -> Iterator[None]:
    """The app's late-arrival policy at its defaults (the suite's app runs a wide window)."""
    limits = state.limits
    saved = (limits.late_arrival_window_seconds, limits.future_skew_seconds)
    limits.late_arrival_window_seconds, limits.future_skew_seconds = WINDOW, 300
    yield
    limits.late_arrival_window_seconds, limits.future_skew_seconds = saved


def key() -> str:
    return uuid.uuid4().hex


def event(tenant: Tenant, at: datetime, cost: str = "1.00", **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "idempotencyKey": key(),
        "accountId": str(tenant.account_id),
        "occurredAt": rfc(at),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputTokens": 500,
        "outputTokens": 0,
        "providerCost": cost,
        "providerCurrency": "USD",
    }
    value.update(overrides)
    return value


def money(tenant: Tenant, at: datetime | None, amount: str = "5.00") -> dict[str, Any]:
    value: dict[str, Any] = {
        "idempotencyKey": key(),
        "accountId": str(tenant.account_id),
        "amount": amount,
        "currency": "USD",
    }
    if at is not None:
        value["occurredAt"] = rfc(at)
    return value


async def result(tenant: Tenant, query: str, input: Any, token: str | None = None) -> Any:
    body = await tenant.gql(query, {"input": input}, token=token)
    assert "errors" not in body, body
    (value,) = body["data"].values()
    return value


async def entries(database_url: str, tenant: Tenant) -> int:
    async with raw_connection(database_url) as connection:
        found = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE organization_id = $1", tenant.org.id
        )
    return int(found)


# --- the window ---


async def test_plain_writes_take_events_within_the_window(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    inside = await result(tenant, RECORD, event(tenant, dates.ago(hours=71)))
    assert inside["__typename"] == "UsageRecorded"
    skewed = await result(tenant, RECORD, event(tenant, dates.later(minutes=4)))
    assert skewed["__typename"] == "UsageRecorded"
    written = await entries(database_url, tenant)

    late = await result(tenant, RECORD, event(tenant, dates.ago(hours=73)))
    assert (late["code"], late["field"]) == ("VALIDATION_FAILED", "input.occurredAt")
    assert "late-arrival window (3 days" in late["message"] and "backfillUsage" in late["message"]
    ahead = await result(tenant, RECORD, event(tenant, dates.later(minutes=10)))
    assert (ahead["code"], ahead["field"]) == ("VALIDATION_FAILED", "input.occurredAt")
    assert "5 minutes of clock skew" in ahead["message"]
    # The case: usage dated back to 2001.
    ancient = await result(tenant, RECORD, event(tenant, dates.year(-25)))
    assert (ancient["code"], ancient["field"]) == ("VALIDATION_FAILED", "input.occurredAt")
    batch = [event(tenant, dates.ago(hours=1)), event(tenant, dates.ago(days=30))]
    refused = await result(tenant, BATCH, batch)
    assert (refused["code"], refused["field"]) == ("VALIDATION_FAILED", "input.1.occurredAt")

    # Payments, adjustments, fees and liability estimates with an occurredAt: the same window.
    old = dates.ago(days=4)
    for query, value in (
        (DEPOSIT, money(tenant, old)),
        (SUBSCRIPTION, money(tenant, old)),
        (ADJUST, money(tenant, old)),
        (FEE, {k: v for k, v in money(tenant, old).items() if k != "accountId"}),
        (
            LIABILITY,
            {
                "idempotencyKey": key(),
                "agent": "scout",
                "amount": "1.00",
                "currency": "USD",
                "occurredAt": rfc(old),
            },
        ),
    ):
        refusal = await result(tenant, query, value)
        assert (refusal["code"], refusal["field"]) == ("VALIDATION_FAILED", "input.occurredAt")
        assert "older than the late-arrival window" in refusal["message"]
    fee = await result(
        tenant,
        FEE,
        {
            "idempotencyKey": key(),
            "amount": "0.30",
            "currency": "USD",
            "occurredAt": rfc(dates.ago(hours=2)),
        },
    )
    assert fee["entry"]["occurredAt"] == rfc(dates.ago(hours=2))

    # settleUsage: the actual usage of a reservation is a plain write too.
    held = await result(
        tenant,
        AUTHORIZE,
        {
            "idempotencyKey": key(),
            "accountId": str(tenant.account_id),
            "provider": "openai",
            "model": "gpt-4o-mini",
            "estimatedCost": "1.00",
            "estimatedCostCurrency": "USD",
        },
    )
    reservation = held["reservation"]["id"]
    settle_late = await result(
        tenant, SETTLE, {"reservationId": reservation, "usage": event(tenant, old)}
    )
    assert (settle_late["code"], settle_late["field"]) == (
        "VALIDATION_FAILED",
        "input.usage.occurredAt",
    )
    assert await entries(database_url, tenant) == written + 1  # only the fee
    await assert_no_drift(state, tenant.org.id)


async def test_a_stripe_payment_outside_the_window_is_refused(
    settings: Settings, state: AppState, database_url: str, tenant: Tenant
) -> None:
    configured = settings.model_copy(
        update={"stripe_webhook_secret": SecretStr(SECRET), "late_arrival_window_seconds": WINDOW}
    )
    app = create_app(configured, database_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            stale = checkout(tenant, f"pi_{uuid.uuid4().hex}")
            stale["created"] = int(dates.ago(days=4).timestamp())
            refused = await post(http, stale)
            retried = checkout(tenant, f"pi_{uuid.uuid4().hex}")
            retried["created"] = int(dates.ago(days=2).timestamp())  # Stripe retries for 3 days
            accepted = await post(http, retried)
    assert refused.status_code == 422, refused.text
    assert orjson.loads(refused.content)["error"]["code"] == "VALIDATION_FAILED"
    assert accepted.status_code == 200, accepted.text
    assert await entries(database_url, tenant) == 1
    await assert_no_drift(state, tenant.org.id)


# --- backfill ---


async def test_backfill_is_an_org_admins_and_reaches_back_as_far_as_allowed(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    history = [event(tenant, dates.ago(days=40)), event(tenant, dates.ago(days=400))]
    for token in (tenant.token_for(roles=["member"]), tenant.token_for(scopes=["usage:write"])):
        body = await tenant.gql(BACKFILL, {"input": history}, token=token)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
    done = await result(tenant, BACKFILL, history)
    assert (done["recorded"], done["replayed"]) == (2, 0)
    again = await result(tenant, BACKFILL, history)
    assert (again["recorded"], again["replayed"]) == (0, 2)
    too_old = await result(tenant, BACKFILL, [event(tenant, dates.ago(days=732))])
    assert (too_old["code"], too_old["field"]) == ("VALIDATION_FAILED", "input.0.occurredAt")
    ahead = await result(tenant, BACKFILL, [event(tenant, dates.later(hours=1))])
    assert (ahead["code"], ahead["field"]) == ("VALIDATION_FAILED", "input.0.occurredAt")
    assert await entries(database_url, tenant) == 2
    await assert_no_drift(state, tenant.org.id)


async def test_no_occurred_at_takes_spend_past_a_hard_cap(tenant: Tenant, state: AppState) -> None:
    """The issue's case: 54.00 through a 10.00 monthly cap by dating usage in earlier
    months. Plain writes cannot reach them now, and a backfill meets each month's cap."""
    dates.set_now(dates.month(0, day=15, hour=12))
    budget = await result(
        tenant,
        SET_BUDGET,
        {
            "scope": {"kind": "ORGANIZATION"},
            "period": "MONTH",
            "limit": "10.00",
            "currency": "USD",
            "hardCap": True,
        },
    )
    months = [dates.month(-k, day=10, hour=12) for k in range(1, 7)]
    for at in months:
        refused = await result(tenant, RECORD, event(tenant, at, cost="9.00"))
        assert refused["code"] == "VALIDATION_FAILED"
    # A backfill of 9.00 into each of six past months: each month within its cap.
    filled = await result(tenant, BACKFILL, [event(tenant, at, cost="9.00") for at in months])
    assert filled["recorded"] == 6
    # One more in any of them is over that month's cap, also hidden in a batch.
    for at in months[:2]:
        over = await result(tenant, BACKFILL, [event(tenant, at, cost="2.00")])
        assert (over["code"], over["budgetId"]) == ("BUDGET_LIMIT_REACHED", budget["id"])
        assert D(over["spent"]) == D(9)
    mixed = [event(tenant, months[3], cost="0.50"), event(tenant, months[3], cost="0.60")]
    assert (await result(tenant, BACKFILL, mixed))["code"] == "BUDGET_LIMIT_REACHED"
    # This month's cap holds for late events of this month too.
    now_ = await result(tenant, RECORD, event(tenant, dates.now(), cost="9.00"))
    assert now_["__typename"] == "UsageRecorded"
    late = await result(tenant, RECORD, event(tenant, dates.ago(minutes=30), cost="2.00"))
    assert late["code"] == "BUDGET_LIMIT_REACHED"
    status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
    assert D(status["spent"]) == D(9)
    await assert_no_drift(state, tenant.org.id)


# --- allowances ---


async def test_a_late_event_never_spends_a_past_cycles_allowance(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    # Noon on the 2nd: the allowance cycle (monthly, from the 1st) began 36 hours ago.
    dates.set_now(dates.month(0, day=2, hour=12))
    code = f"p{uuid.uuid4().hex[:6]}"
    plan = {
        "code": code,
        "name": "Creator",
        "monthlyFee": "9.00",
        "currency": "USD",
        "includedTokens": 1000,
    }
    assert "errors" not in await tenant.gql(
        "mutation($i: PlanInput!) { setPlan(input: $i) { code } }", {"i": plan}
    )
    subscribed = await tenant.gql(
        "mutation($i: AccountSubscriptionInput!) { subscribeAccount(input: $i) { id } }",
        {
            "i": {
                "accountId": str(tenant.account_id),
                "planCode": code,
                "billing": "MONTHLY",
                "startsAt": rfc(dates.month(-2)),
            }
        },
    )
    assert "errors" not in subscribed, subscribed
    # Within the window, but dated in last month's cycle (whose 1,000 tokens are unused):
    # charged in full, drawing on neither cycle.
    late = await result(tenant, RECORD, event(tenant, dates.ago(hours=48), cost="1.00"))
    assert D(late["entry"]["balanceDelta"]) == D("-1.00")
    backfilled = await result(tenant, BACKFILL, [event(tenant, dates.month(-2, day=5))])
    assert D(backfilled["entries"][0]["balanceDelta"]) == D("-1.00")
    # Usage of the current cycle draws on it as before.
    current = await result(tenant, RECORD, event(tenant, dates.ago(hours=1), cost="1.00"))
    assert D(current["entry"]["balanceDelta"]) == D(0)
    async with raw_connection(database_url) as connection:
        used = await connection.fetch(
            "SELECT cycle_start, used_tokens FROM allowance_counters WHERE organization_id = $1",
            tenant.org.id,
        )
    drawn = [(r["cycle_start"], r["used_tokens"]) for r in used if r["used_tokens"]]
    assert drawn == [(dates.month(), 500)]
    await assert_no_drift(state, tenant.org.id)


# --- closed months ---


async def close(database_url: str, tenant: Tenant, month: datetime) -> None:
    """Close one month of the tenant's books as the monthly job does (lock, then close)."""
    async with raw_connection(database_url) as connection:
        await catch_up(connection)
        async with connection.transaction():
            assert await connection.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                month_lock_key(tenant.org.id, month),
            )
            await month_close.close_month(connection, tenant.org.id, "USD", month)


async def test_a_closed_month_is_immutable_for_every_writer(
    tenant: Tenant, state: AppState, database_url: str, mint: Any
) -> None:
    dates.set_now(dates.month(0, day=2, hour=12))  # last month ended 36 hours ago
    last_month = dates.month(-1)
    inside = dates.ago(hours=40)  # within the window, in last month
    p = provider_name()
    await set_price(tenant, token=mint(None, ["platform_admin"]), provider=p)
    priced = event(tenant, inside, provider=p, model="m1", inputTokens=1_000_000)
    del priced["providerCost"], priced["providerCurrency"]
    kept = [event(tenant, inside, cost="2.00"), priced]
    assert (await result(tenant, BATCH, kept))["recorded"] == 2
    paid = await result(tenant, DEPOSIT, money(tenant, inside, "20.00"))
    await close(database_url, tenant, last_month)
    written = await entries(database_url, tenant)

    closed = await result(tenant, RECORD, event(tenant, inside))
    assert (closed["code"], closed["field"], closed["month"]) == (
        "PERIOD_CLOSED",
        "input.occurredAt",
        rfc(last_month),
    )
    batch = [event(tenant, dates.now()), event(tenant, inside)]
    assert (await result(tenant, BATCH, batch))["field"] == "input.1.occurredAt"
    backfill = await result(tenant, BACKFILL, [event(tenant, dates.month(-1, day=10))])
    assert (backfill["code"], backfill["field"]) == ("PERIOD_CLOSED", "input.0.occurredAt")
    for query in (DEPOSIT, SUBSCRIPTION, ADJUST):
        refusal = await result(tenant, query, money(tenant, inside))
        assert (refusal["code"], refusal["field"]) == ("PERIOD_CLOSED", "input.occurredAt")
    fee = {k: v for k, v in money(tenant, inside).items() if k != "accountId"}
    assert (await result(tenant, FEE, fee))["code"] == "PERIOD_CLOSED"
    held = await result(
        tenant,
        AUTHORIZE,
        {
            "idempotencyKey": key(),
            "accountId": str(tenant.account_id),
            "provider": "openai",
            "model": "gpt-4o-mini",
            "estimatedCost": "1.00",
            "estimatedCostCurrency": "USD",
        },
    )
    settled = await result(
        tenant, SETTLE, {"reservationId": held["reservation"]["id"], "usage": event(tenant, inside)}
    )
    assert (settled["code"], settled["field"]) == ("PERIOD_CLOSED", "input.usage.occurredAt")
    # A price corrected for last month: its reprice would land there.
    await set_price(
        tenant,
        token=mint(None, ["platform_admin"]),
        provider=p,
        effectiveFrom=rfc(last_month),
        inputPerMillion="1.00",
    )
    reprice = await result(
        tenant, REPRICE, {"range": {"start": rfc(last_month), "end": rfc(dates.month())}}
    )
    assert (reprice["code"], reprice["field"]) == ("PERIOD_CLOSED", "input.range")
    assert await entries(database_url, tenant) == written

    # What was written before the close replays; a refund is dated now, in the open month.
    replay = await result(tenant, BATCH, kept)
    assert (replay["recorded"], replay["replayed"]) == (0, 2)
    refund = await result(
        tenant, REFUND, {"idempotencyKey": key(), "entryId": paid["entry"]["id"], "amount": "5.00"}
    )
    assert refund["entry"]["occurredAt"] >= rfc(dates.month())

    # The close still equals the live P&L of the month.
    live = (
        await tenant.gql(ORG_PNL, {"range": {"start": rfc(last_month), "end": rfc(dates.month())}})
    )["data"]
    rows = (await tenant.gql(CLOSES, {"month": rfc(last_month)}))["data"]["monthlyCloses"]
    (org_row,) = [r for r in rows if r["scopeKind"] == "ORGANIZATION"]
    pnl = live["organizationPnl"]
    for name in ("revenue", "aiCost", "billedUsage", "platformFees"):
        assert D(org_row[name]) == D(pnl[name]), name
    assert org_row["eventCount"] == pnl["eventCount"] == 2
    await assert_no_drift(state, tenant.org.id)


async def test_a_close_waits_for_a_late_writer_and_a_late_writer_for_a_close(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    dates.set_now(dates.month(0, day=2, hour=12))
    last_month = dates.month(-1)
    async with raw_connection(database_url) as connection:  # its books start last month
        await connection.execute(
            "UPDATE organizations SET books_start = $2 WHERE id = $1", tenant.org.id, last_month
        )

    # Something of last month is on the books already.
    await result(tenant, RECORD, event(tenant, dates.ago(hours=39)))
    # A writer dated in last month, still in its transaction: the close leaves the month for
    # a later run (and closes nothing after it: months close in order) ...
    usage = UsageEvent(
        idempotency_key=key(),
        account_id=tenant.account_id,
        occurred_at=dates.ago(hours=40),
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=10,
        provider_cost=D("3.00"),
        provider_currency="USD",
    )
    later = dates.later(days=10)
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, tenant.org.id)
        await ledger.record_usage(session, tenant.org, usage, state.limits)
        skipped = await month_close.close_months(
            state.units, later, timedelta(0), only=[tenant.org.id]
        )
        assert skipped == []
    # ... which counts the writer's entry once it has committed.
    async with raw_connection(database_url) as connection:
        await catch_up(connection)
    closed = await month_close.close_months(state.units, later, timedelta(0), only=[tenant.org.id])
    assert [c.month for c in closed] == [last_month]
    rows = (await tenant.gql(CLOSES, {"month": rfc(last_month)}))["data"]["monthlyCloses"]
    assert [D(r["aiCost"]) for r in rows if r["scopeKind"] == "ORGANIZATION"] == [D("4.00")]

    # A close in progress: a late writer waits for it, then finds the month closed.
    this_month = dates.month()
    dates.set_now(dates.month(1, day=2, hour=12))
    async with raw_connection(database_url) as connection:
        async with connection.transaction():
            assert await connection.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                month_lock_key(tenant.org.id, this_month),
            )
            writer = asyncio.ensure_future(
                result(tenant, RECORD, event(tenant, dates.ago(hours=40)))
            )
            await asyncio.sleep(0.5)
            assert not writer.done()
            await month_close.close_month(connection, tenant.org.id, "USD", this_month)
        refused = await writer
    assert (refused["code"], refused["month"]) == ("PERIOD_CLOSED", rfc(this_month))
    await assert_no_drift(state, tenant.org.id)


async def test_history_before_the_books_start_is_never_closed(
    tenant: Tenant, state: AppState
) -> None:
    """An import of many batches is not cut off by a close between two of them."""
    history = dates.month(-3, day=5)
    first = await result(tenant, BACKFILL, [event(tenant, history)])
    assert first["recorded"] == 1
    closed = await month_close.close_months(
        state.units, dates.now(), timedelta(0), only=[tenant.org.id]
    )
    assert closed == []  # the months before this one are history; this one is not over
    second = await result(tenant, BACKFILL, [event(tenant, history + timedelta(days=1))])
    assert second["recorded"] == 1
    # The month the books start in is closed once it is over.
    closed = await month_close.close_months(
        state.units, dates.month(1, day=5), timedelta(0), only=[tenant.org.id]
    )
    assert [c.month for c in closed] == [dates.month()]
    await assert_no_drift(state, tenant.org.id)


async def books_start(database_url: str, tenant: Tenant, month: datetime) -> None:
    async with raw_connection(database_url) as connection:
        await connection.execute(
            "UPDATE organizations SET books_start = $2 WHERE id = $1", tenant.org.id, month
        )


async def test_empty_months_close_in_order_from_the_books_start(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    """The books start three months ago; only last month holds an entry. The close closes all
    three, the empty ones too (it used to start at the first entry, leaving the first two
    open behind a closed month for a backfill to change); history before the books start
    stays open."""
    await books_start(database_url, tenant, dates.month(-3))
    last = await result(tenant, BACKFILL, [event(tenant, dates.month(-1, day=10))])
    assert last["recorded"] == 1
    closed = await month_close.close_months(
        state.units, dates.now(), timedelta(0), only=[tenant.org.id]
    )
    assert [c.month for c in closed] == [dates.month(-3), dates.month(-2), dates.month(-1)]
    empty = (await tenant.gql(CLOSES, {"month": rfc(dates.month(-2))}))["data"]["monthlyCloses"]
    assert [(r["scopeKind"], D(r["aiCost"]), r["eventCount"]) for r in empty] == [
        ("ORGANIZATION", D(0), 0)
    ]
    for month in (-3, -2):
        refused = await result(tenant, BACKFILL, [event(tenant, dates.month(month, day=10))])
        assert (refused["code"], refused["month"]) == ("PERIOD_CLOSED", rfc(dates.month(month)))
    history = await result(tenant, BACKFILL, [event(tenant, dates.month(-4, day=10))])
    assert history["recorded"] == 1
    await assert_no_drift(state, tenant.org.id)


async def test_a_month_left_open_behind_a_closed_one_is_refused_then_closed(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    """Books closed under the old rule: last month closed, the two before it (empty, in the
    books) never. A write dated in them is PERIOD_CLOSED (months before the latest close
    are never written again), and the next close closes them."""
    await books_start(database_url, tenant, dates.month(-3))
    assert (await result(tenant, BACKFILL, [event(tenant, dates.month(-1, day=10))]))["recorded"]
    await close(database_url, tenant, dates.month(-1))
    written = await entries(database_url, tenant)
    gap = await result(tenant, BACKFILL, [event(tenant, dates.month(-2, day=10), "4.00")])
    assert (gap["code"], gap["field"], gap["month"]) == (
        "PERIOD_CLOSED",
        "input.0.occurredAt",
        rfc(dates.month(-2)),
    )
    assert await entries(database_url, tenant) == written
    closed = await month_close.close_months(
        state.units, dates.now(), timedelta(0), only=[tenant.org.id]
    )
    assert [c.month for c in closed] == [dates.month(-3), dates.month(-2)]
    again = await month_close.close_months(
        state.units, dates.now(), timedelta(0), only=[tenant.org.id]
    )
    assert again == []
    refused = await result(tenant, BACKFILL, [event(tenant, dates.month(-3, day=10))])
    assert refused["code"] == "PERIOD_CLOSED"
    await assert_no_drift(state, tenant.org.id)
