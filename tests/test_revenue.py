"""One definition of revenue (plans and allowances, prepaid and postpaid), one net impact,
names beside ids — each figure against a hand computation and an independent SUM over the
ledger, through GraphQL and the CSV exports as a user gets them."""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal
from typing import Any

import httpx

from costgraph.alerts.notifiers.base import Outgoing, facts
from costgraph.alerts.notifiers.slack import payload as slack_payload
from costgraph.alerts.records import AlertRecord, ChannelKind
from costgraph.app.state import AppState
from costgraph.billing.pnl_measures import margin_percent, net_impact
from tests.conftest import Tenant, raw_connection
from tests.dates import ago, later, rfc
from tests.pnl_support import (
    CREATE_ACCOUNT,
    CREATE_USER,
    DEPOSIT,
    LIABILITY,
    ORG_PNL,
    REFUND,
    SET_MARKUP,
    SUBSCRIPTION,
    TIMELINE,
    key,
    ok,
    write,
)
from tests.verify_support import assert_no_drift

D = Decimal
ACCOUNT_PNL = """query($id: ID!, $range: DateRange!) { accountPnl(accountId: $id, range: $range) {
  revenue revenueBasis revenueBySource { billedUsage } aiCost billedUsage allowanceUsage margin
  marginPercent netImpact } }"""
KPIS = """query($range: DateRange!) { payerKpis(range: $range) {
  activePayers revenue aiCost arpu } }"""
BY_MODEL = """query($range: DateRange!) { organizationPnl(range: $range) {
  byModel { model revenue revenueBasis aiCost billedUsage allowanceUsage margin marginPercent
            netImpact }
  topAgents(limit: 10) { agent revenue aiCost margin netImpact } } }"""
RECORD = """mutation($input: UsageEventInput!) { recordUsage(input: $input) {
  __typename ... on UsageRecorded { entry { id amount balanceDelta aiCost } }
  ... on UserError { code message } } }"""
SET_PLAN = """mutation($i: PlanInput!) { setPlan(input: $i) { code } }"""
SUBSCRIBE = """mutation($i: AccountSubscriptionInput!) { subscribeAccount(input: $i) { id } }"""


def _range() -> dict[str, str]:
    return {"start": rfc(ago(hours=2)), "end": rfc(later(hours=1))}


async def _usage(tenant: Tenant, account: str, cost: str, tokens: int, **extra: Any) -> Any:
    event = {
        "idempotencyKey": key(),
        "accountId": account,
        "occurredAt": rfc(ago(minutes=30)),
        "provider": "openai",
        "model": "gpt-4o",
        "inputTokens": tokens,
        "outputTokens": 0,
        "providerCost": cost,
        "providerCurrency": "USD",
        **extra,
    }
    result = (await ok(tenant, RECORD, {"input": event}))["recordUsage"]
    assert result["__typename"] == "UsageRecorded", result
    return result["entry"]


async def _plan(tenant: Tenant, account: str, fee: str, tokens: int) -> None:
    code = f"p{uuid.uuid4().hex[:8]}"
    plan = {"code": code, "name": "Pro", "monthlyFee": fee, "currency": "USD"}
    await ok(tenant, SET_PLAN, {"i": {**plan, "includedTokens": tokens}})
    # The cycle holding every event of the test, its fee billed and earned in the range.
    starts = rfc(ago(hours=1))
    subscribed = await tenant.gql(
        SUBSCRIBE,
        {"i": {"accountId": account, "planCode": code, "billing": "MONTHLY", "startsAt": starts}},
    )
    assert "errors" not in subscribed, subscribed


async def _ledger_sums(database_url: str, tenant: Tenant) -> dict[str, Decimal]:
    """The definitions applied by one plain SELECT over the ledger (independent of rollups)."""
    async with raw_connection(database_url) as connection:
        row = await connection.fetchrow(
            """SELECT
                 coalesce(sum(CASE WHEN e.type = 'USAGE_CHARGE' THEN -e.balance_delta END), 0)
                   AS charged,
                 coalesce(sum(CASE WHEN e.type = 'USAGE_CHARGE' AND a.postpaid
                                   THEN -e.balance_delta END), 0) AS postpaid_charged,
                 coalesce(sum(CASE WHEN e.type = 'USAGE_CHARGE' THEN e.amount END), 0) AS billed,
                 coalesce(sum(CASE WHEN e.type = 'USAGE_CHARGE' THEN e.ai_cost END), 0) AS cost,
                 coalesce(sum(CASE WHEN e.type = 'DEPOSIT' OR e.type = 'REVENUE_RECOGNIZED'
                                     OR (e.type = 'SUBSCRIPTION_PAYMENT'
                                         AND e.related_entry_id IS NULL) THEN e.amount
                                   WHEN e.type = 'REVENUE_REVERSED' THEN -e.amount END), 0)
                   AS received,
                 coalesce(sum(CASE WHEN e.type = 'REFUND' THEN e.amount END), 0) AS refunds
               FROM ledger_entries e
               LEFT JOIN accounts a ON a.organization_id = e.organization_id
                                   AND a.id = e.account_id
               WHERE e.organization_id = $1""",
            tenant.org.id,
        )
    return {name: D(row[name]) for name in row.keys()}  # noqa: SIM118 - a Record


async def _csv(tenant: Tenant, report: str, **params: str) -> list[dict[str, str]]:
    response: httpx.Response = await tenant.client.get(
        f"/exports/{report}.csv",
        params={**_range(), **params},
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


# --- the one function ---


def test_margin_percent_is_negative_on_a_loss_whatever_the_sign_of_revenue() -> None:
    assert margin_percent(D("-7.80"), D("-6.80")) == D("-114.7059")
    assert margin_percent(D("1.40"), D("8.40")) == D("16.6667")
    assert margin_percent(D("-0.96"), D("0.24")) == D("-400.0000")
    assert margin_percent(D("-1"), D(0)) is None
    assert net_impact(D("8.40"), D("7.00"), D("0.50")) == D("0.90")


# --- revenue with plans and allowances ---


async def test_allowance_usage_is_paid_by_the_fee_not_counted_again(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    """A postpaid account on a plan: usage the allowance covers is part of the fee; revenue is
    the fee plus the billed overage."""
    account = str(tenant.account_id)  # postpaid
    await write(tenant, SET_MARKUP, "setMarkup", {"percent": "20"})
    await _plan(tenant, account, "20.00", 1000)
    await write(
        tenant,
        SUBSCRIPTION,
        "recordSubscriptionPayment",
        {"idempotencyKey": key(), "accountId": account, "amount": "20.00", "currency": "USD"},
    )
    covered = await _usage(tenant, account, "0.80", 800)  # within the allowance
    partly = await _usage(tenant, account, "0.40", 400)  # 200 covered, 200 overage
    assert (D(covered["amount"]), D(covered["balanceDelta"])) == (D("0.96"), D(0))
    assert (D(partly["amount"]), D(partly["balanceDelta"])) == (D("0.48"), D("-0.24"))

    pnl = (await ok(tenant, ACCOUNT_PNL, {"id": account, "range": _range()}))["accountPnl"]
    # By hand: fee 20.00 + overage 0.24; AI cost 1.20; the allowance covered 1.20 of 1.44.
    assert pnl["revenueBasis"] == "RECEIVED"
    assert D(pnl["revenue"]) == D("20.24")
    assert D(pnl["revenueBySource"]["billedUsage"]) == D("0.24")
    assert (D(pnl["billedUsage"]), D(pnl["allowanceUsage"])) == (D("1.44"), D("1.20"))
    assert D(pnl["margin"]) == D(pnl["netImpact"]) == D("19.04")
    assert D(pnl["marginPercent"]) == D("94.0711")
    # The same from a plain SUM over the ledger.
    sums = await _ledger_sums(database_url, tenant)
    assert D(pnl["revenue"]) == sums["received"] + sums["postpaid_charged"]
    assert D(pnl["allowanceUsage"]) == sums["billed"] - sums["charged"]

    # Payer KPIs, per-model margin and the CSV say the same.
    kpis = (await ok(tenant, KPIS, {"range": _range()}))["payerKpis"]
    assert (kpis["activePayers"], D(kpis["revenue"]), D(kpis["arpu"])) == (
        1,
        D("20.24"),
        D("20.24"),
    )
    (model,) = (await ok(tenant, BY_MODEL, {"range": _range()}))["organizationPnl"]["byModel"]
    # A model is a slice of usage: revenue attributed = its usage charged beyond the allowance.
    assert model["revenueBasis"] == "ATTRIBUTED"
    assert (D(model["revenue"]), D(model["aiCost"]), D(model["allowanceUsage"])) == (
        D("0.24"),
        D("1.20"),
        D("1.20"),
    )
    assert D(model["margin"]) == D(model["netImpact"]) == D("-0.96")
    assert D(model["marginPercent"]) == D("-400.0000")
    (row,) = [r for r in await _csv(tenant, "pnl") if r["row_type"] == "data"]
    assert (row["revenue"], row["usage_revenue"], row["allowance_usage"]) == (
        "20.24",
        "0.24",
        "1.20",
    )
    assert row["net_impact"] == row["margin"] == "19.04"
    assert row["revenue_basis"] == "RECEIVED"
    await assert_no_drift(state, tenant.org.id)


async def test_prepaid_usage_agents_and_one_net_impact(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    """Prepaid usage is paid by its top-up (revenue once); a slice of it (a model, an agent)
    earns the usage charged. margin, topAgents.netImpact, the timeline and the CSV agree."""
    postpaid = str(tenant.account_id)
    prepaid = (
        await write(
            tenant,
            CREATE_ACCOUNT,
            "createAccount",
            {"customerId": str(tenant.customer_id), "name": "Prepaid"},
        )
    )["id"]
    await write(tenant, SET_MARKUP, "setMarkup", {"percent": "20"})
    await write(
        tenant,
        DEPOSIT,
        "deposit",
        {"idempotencyKey": key(), "accountId": prepaid, "amount": "10.00", "currency": "USD"},
    )
    await _usage(tenant, prepaid, "1.00", 1000, agent="scout", model="gpt-4o-mini")
    await _usage(tenant, postpaid, "2.00", 1000, agent="helper")
    await write(
        tenant,
        LIABILITY,
        "recordLiabilityEstimate",
        {
            "idempotencyKey": key(),
            "agent": "scout",
            "amount": "5.00",
            "currency": "USD",
            "occurredAt": rfc(ago(minutes=20)),
        },
    )

    whole = (await ok(tenant, ORG_PNL, {"range": _range()}))["organizationPnl"]
    # By hand: top-up 10.00 + postpaid 2.40 (the prepaid 1.20 was paid by the top-up).
    assert D(whole["revenue"]) == D("12.40")
    assert D(whole["margin"]) == D(whole["netImpact"]) == D("9.40")
    sums = await _ledger_sums(database_url, tenant)
    assert D(whole["revenue"]) == sums["received"] + sums["postpaid_charged"]
    # Per model: prepaid usage earned its markup, never a negative margin.
    models = {m["model"]: m for m in whole["byModel"]}
    assert D(models["gpt-4o-mini"]["billedUsage"]) == D("1.20")
    by_model = {
        m["model"]: m
        for m in (await ok(tenant, BY_MODEL, {"range": _range()}))["organizationPnl"]["byModel"]
    }
    assert D(by_model["gpt-4o-mini"]["revenue"]) == D("1.20")
    assert D(by_model["gpt-4o-mini"]["marginPercent"]) == D("16.6667")

    # One net impact for the agent, wherever it is read.
    scout = (await ok(tenant, ORG_PNL, {"range": _range(), "agent": "scout"}))["organizationPnl"]
    top = {a["agent"]: a for a in whole["topAgents"]}
    assert D(scout["margin"]) == D(scout["netImpact"]) == D(top["scout"]["netImpact"]) == D("0.20")
    assert D(top["helper"]["netImpact"]) == D("0.40")
    (row,) = [r for r in await _csv(tenant, "pnl", agent="scout") if r["row_type"] == "data"]
    assert D(row["net_impact"]) == D("0.20") and D(row["liability"]) == D("5.00")
    # The timeline: net impact and liability per bucket, the liability never inside.
    points = (
        await ok(
            tenant,
            TIMELINE.replace("start end", "start end liability"),
            {
                "scope": {"kind": "ORGANIZATION", "agent": "scout"},
                "range": _range(),
                "bucket": "HOUR",
            },
        )
    )["pnlTimeline"]
    assert sum(D(p["netImpact"]) for p in points) == D("0.20")
    assert sum(D(p["liability"]) for p in points) == D("5.00")
    for point in points:
        assert D(point["netImpact"]) == D(point["margin"])
    account = await ok(
        tenant,
        TIMELINE.replace("start end", "start end liability"),
        {"scope": {"kind": "ACCOUNT", "id": prepaid}, "range": _range(), "bucket": "DAY"},
    )
    assert {p["liability"] for p in account["pnlTimeline"]} == {None}
    await assert_no_drift(state, tenant.org.id)


async def test_margin_percent_on_a_loss_is_negative(tenant: Tenant, state: AppState) -> None:
    """Refunds larger than the period's payments: revenue is negative and so is margin %."""
    account = str(tenant.account_id)
    await write(tenant, SET_MARKUP, "setMarkup", {"percent": "20"})
    paid = await write(
        tenant,
        DEPOSIT,
        "deposit",
        {
            "idempotencyKey": key(),
            "accountId": account,
            "amount": "10.00",
            "currency": "USD",
            "occurredAt": rfc(ago(hours=6)),  # before the range
        },
    )
    await write(
        tenant,
        REFUND,
        "refund",
        {"idempotencyKey": key(), "entryId": paid["entry"]["id"], "amount": "8.00"},
    )
    await _usage(tenant, account, "1.00", 100)
    pnl = (await ok(tenant, ACCOUNT_PNL, {"id": account, "range": _range()}))["accountPnl"]
    # By hand: revenue 1.20 - 8.00 = -6.80; margin -6.80 - 1.00 = -7.80.
    assert (D(pnl["revenue"]), D(pnl["margin"])) == (D("-6.80"), D("-7.80"))
    assert D(pnl["marginPercent"]) == D("-114.7059")
    await assert_no_drift(state, tenant.org.id)


# --- names beside ids ---

DEPARTMENTS = """query($first: Int, $after: String) { departments(first: $first, after: $after) {
  nodes { id name } pageInfo { hasNextPage endCursor } } }"""
USERS = """query($first: Int, $after: String, $d: ID) {
  users(first: $first, after: $after, departmentId: $d) {
    nodes { id email name department { id name } } pageInfo { hasNextPage endCursor } } }"""
CREATE_DEPARTMENT = """mutation($input: DepartmentInput!) { createDepartment(input: $input) {
  id name } }"""


async def _department(tenant: Tenant, name: str) -> str:
    made: str = (await write(tenant, CREATE_DEPARTMENT, "createDepartment", {"name": name}))["id"]
    return made


async def _user(tenant: Tenant, email: str, name: str | None, department: str | None) -> str:
    made: str = (
        await write(
            tenant,
            CREATE_USER,
            "createUser",
            {"email": email, "name": name, "departmentId": department},
        )
    )["id"]
    return made


async def test_departments_and_users_are_listed_with_paging(
    tenant: Tenant, other_tenant: Tenant, state: AppState
) -> None:
    research = await _department(tenant, "Research")
    sales = await _department(tenant, "Sales")
    ada = await _user(tenant, "ada@example.com", "Ada", research)
    bob = await _user(tenant, "bob@example.com", None, research)
    cy = await _user(tenant, "cy@example.com", "Cy", sales)
    await _department(other_tenant, "Theirs")

    first = (await ok(tenant, DEPARTMENTS, {"first": 1}))["departments"]
    assert [d["name"] for d in first["nodes"]] == ["Research"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await ok(tenant, DEPARTMENTS, {"first": 5, "after": first["pageInfo"]["endCursor"]})
    assert [d["name"] for d in rest["departments"]["nodes"]] == ["Sales"]
    assert rest["departments"]["pageInfo"]["hasNextPage"] is False

    everyone = (await ok(tenant, USERS, {}))["users"]["nodes"]
    assert [u["id"] for u in everyone] == [ada, bob, cy]
    assert everyone[0]["department"] == {"id": research, "name": "Research"}
    pages = []
    after = None
    while True:
        page = (await ok(tenant, USERS, {"first": 1, "after": after, "d": research}))["users"]
        pages += [u["id"] for u in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == [ada, bob]
    # Another tenant's department answers as one that exists nowhere: nobody in it.
    assert (await ok(other_tenant, USERS, {"d": research}))["users"]["nodes"] == []
    assert (await ok(other_tenant, USERS, {"d": str(uuid.uuid4())}))["users"]["nodes"] == []
    assert [
        d["name"] for d in (await ok(other_tenant, DEPARTMENTS, {}))["departments"]["nodes"]
    ] == ["Theirs"]
    bad = await tenant.gql(USERS, {"d": "not-an-id"})
    assert bad["errors"][0]["extensions"]["code"] in {"NOT_FOUND", "VALIDATION_FAILED"}
    too_many = await tenant.gql(USERS, {"first": 100_000})
    assert too_many["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
    await assert_no_drift(state, tenant.org.id, other_tenant.org.id)


async def test_csv_chargeback_files_name_people_and_departments(
    tenant: Tenant, state: AppState
) -> None:
    research = await _department(tenant, "Research")
    ada = await _user(tenant, "ada@example.com", "=Ada", research)
    account = str(tenant.account_id)
    await _usage(tenant, account, "1.00", 100, userId=ada)
    await _usage(tenant, account, "0.50", 100)  # nobody's
    rows = await _csv(tenant, "usage", groupBy="department,user")
    header = list(rows[0])
    assert header[:6] == [
        "row_type",
        "department_id",
        "department_name",
        "user_id",
        "user_email",
        "user_name",
    ]
    data = {r["user_id"]: r for r in rows if r["row_type"] == "data"}
    assert data[ada]["department_name"] == "Research"
    assert (data[ada]["user_email"], data[ada]["user_name"]) == ("ada@example.com", "'=Ada")
    assert data[""]["user_email"] == "" and data[""]["department_name"] == ""
    ledger = await _csv(tenant, "ledger", columns="user_id,user_email,user_name,department_name")
    named = [r for r in ledger if r["row_type"] == "data" and r["user_id"] == ada]
    assert named and named[0]["user_email"] == "ada@example.com"
    assert named[0]["department_name"] == "Research"
    default = await _csv(tenant, "ledger")
    assert list(default[0]).index("user_email") == list(default[0]).index("user_id") + 1
    await assert_no_drift(state, tenant.org.id)


ALERTS = """query { alerts { nodes { stage message scope { kind id name } } } }"""
SET_BUDGET = """mutation($input: BudgetInput!) { setBudget(input: $input) { id } }"""


async def test_alerts_name_the_user_beside_the_id(tenant: Tenant, state: AppState) -> None:
    research = await _department(tenant, "Research")
    ada = await _user(tenant, "ada@example.com", "Ada Lovelace", research)
    for kind, ident in (("USER", ada), ("DEPARTMENT", research)):
        budget = await tenant.gql(
            SET_BUDGET,
            {
                "input": {
                    "scope": {"kind": kind, "id": ident},
                    "period": "MONTH",
                    "limit": "1.00",
                    "currency": "USD",
                    "hardCap": False,
                    "thresholds": [50],
                }
            },
        )
        assert "errors" not in budget, budget
    await _usage(tenant, str(tenant.account_id), "0.60", 100, userId=ada)
    alerts = (await ok(tenant, ALERTS, {}))["alerts"]["nodes"]
    by_kind = {a["scope"]["kind"]: a for a in alerts}
    user, department = by_kind["USER"], by_kind["DEPARTMENT"]
    assert user["scope"] == {"kind": "USER", "id": ada, "name": "Ada Lovelace <ada@example.com>"}
    assert f"user Ada Lovelace <ada@example.com> ({ada})" in user["message"]
    assert department["scope"]["name"] == "Research"
    assert f"department Research ({research})" in department["message"]
    await assert_no_drift(state, tenant.org.id)


def test_notifications_carry_the_name() -> None:
    record = AlertRecord(
        organization_id=uuid.uuid4(),
        id=uuid.uuid4(),
        budget_id=uuid.uuid4(),
        stage=50,
        period_start=ago(days=1),
        period_end=later(days=1),
        scope_kind="USER",
        scope_id=uuid.uuid4(),
        spent=D("0.60"),
        limit=D("1.00"),
        currency="USD",
        message="reached <50%> & more",
        raised_at=ago(minutes=1),
        scope_name="Ada <ada@example.com>",
    )
    assert facts(record)["scope"]["name"] == "Ada <ada@example.com>"
    outgoing = Outgoing(uuid.uuid4(), 1, record, "Org", ChannelKind.SLACK, "https://x", ())
    text = str(slack_payload(outgoing)["blocks"])
    assert "Ada &lt;ada@example.com&gt;" in text  # Slack's control characters escaped
    assert "reached &lt;50%&gt; &amp; more" in text
