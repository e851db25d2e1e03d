"""The monthly summary agrees with itself and with the ledger: one sign convention, top-N
tables that add up to the totals (an "unattributed" row), a budget table whose columns never
overlap (measured on the rendered PDF), and only the budgets that existed in the month."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pypdfium2

from costgraph.app.state import AppState
from costgraph.billing.pnl_ranges import ReportLimits
from costgraph.billing.reports.pdf import render_pdf
from costgraph.billing.reports.summary import SummaryRequest, build_summary
from costgraph.kernel.clock import utcnow
from costgraph.models.scoping import bind_tenant
from tests.conftest import Tenant, raw_connection
from tests.dates import month, month_key, set_now
from tests.pnl_support import CREATE_USER, key, ok, write
from tests.verify_support import assert_no_drift

D = Decimal
LIMITS = ReportLimits(max_range_days=400, max_points=2_000, max_rows=1_000, max_usage_rows=10_000)
RECORD = """mutation($input: UsageEventInput!) { recordUsage(input: $input) {
  __typename ... on UserError { code message } } }"""
SET_BUDGET = """mutation($input: BudgetInput!) { setBudget(input: $input) { id } }"""
STAGES = "50%, 75%, 90%, 100%"


async def _usage(tenant: Tenant, at: datetime, cost: str, user: str | None = None) -> None:
    event: dict[str, Any] = {
        "idempotencyKey": key(),
        "accountId": str(tenant.account_id),
        "occurredAt": at.isoformat(),
        "provider": "openai",
        "model": "gpt-4o",
        "inputTokens": 100,
        "outputTokens": 10,
        "providerCost": cost,
        "providerCurrency": "USD",
    }
    if user is not None:
        event["userId"] = user
    result = (await ok(tenant, RECORD, {"input": event}))["recordUsage"]
    assert result["__typename"] == "UsageRecorded", result


async def _seed(tenant: Tenant) -> dict[str, Any]:
    """Mid-month (the clock set there): two users, usage without a user, and a budget past
    all four of its stages."""
    now = set_now(month(day=15, hour=12))
    ada = await write(tenant, CREATE_USER, "createUser", {"email": "ada@example.com", "name": "A"})
    bob = await write(tenant, CREATE_USER, "createUser", {"email": "bob@example.com"})
    await _usage(tenant, month(day=15, hour=9), "1.25", ada["id"])
    await _usage(tenant, month(day=15, hour=10), "0.75", bob["id"])
    await _usage(tenant, month(day=15, hour=11), "0.30")  # nobody's
    budget = await tenant.gql(
        SET_BUDGET,
        {
            "input": {
                "scope": {"kind": "ACCOUNT", "id": str(tenant.account_id)},
                "period": "MONTH",
                "limit": "0.40",
                "currency": "USD",
                "hardCap": False,
                "thresholds": [50, 75, 90, 100],
            }
        },
    )
    assert "errors" not in budget, budget
    await _usage(tenant, month(day=15, hour=11, minute=30), "0.45")  # past every stage
    return {"now": now, "ada": ada["id"], "bob": bob["id"]}


async def _summary(state: AppState, tenant: Tenant, when: datetime) -> Any:
    async with state.sessions() as session:
        bind_tenant(session.sync_session, tenant.org.id)
        return await build_summary(
            session,
            tenant.org,
            SummaryRequest(when.date().replace(day=1)),
            LIMITS,
            now=when,
            zone=ZoneInfo("UTC"),
        )


async def test_top_users_add_up_to_the_total_with_an_unattributed_row(
    state: AppState, tenant: Tenant, database_url: str
) -> None:
    seeded = await _seed(tenant)
    summary = await _summary(state, tenant, utcnow())
    async with raw_connection(database_url) as connection:
        ledger = await connection.fetchrow(
            """SELECT sum(ai_cost) AS cost, sum(ai_cost) FILTER (WHERE user_id IS NULL) AS nobody,
                      count(*) FILTER (WHERE user_id IS NULL) AS nobody_events
               FROM ledger_entries WHERE organization_id = $1 AND type = 'USAGE_CHARGE'""",
            tenant.org.id,
        )
    users = summary.users
    assert [r.label for r in users.rows] == ["ada@example.com", "bob@example.com"]
    assert users.rows[0].ident == seeded["ada"]
    assert users.unattributed is not None and users.rest is None
    # The unattributed row is the usage without a user, as a plain SUM finds it.
    assert users.unattributed.ai_cost == D(ledger["nobody"]) == D("0.75")
    assert users.unattributed.events == ledger["nobody_events"] == 2
    for column in ("ai_cost", "billed_usage", "events", "tokens"):
        shown = sum(getattr(r, column) for r in users.all_rows)
        assert shown == getattr(users.total, column), column
    assert users.total.ai_cost == summary.figures.ai_cost == D(ledger["cost"]) == D("2.75")
    # Models: every usage carries one, so no unattributed row, and the same total.
    assert summary.models.unattributed is None
    assert sum(r.ai_cost for r in summary.models.all_rows) == summary.figures.ai_cost
    # One sign convention: the statement's costs are the same positive figures; its lines
    # add up to revenue and margin.
    lines = {line.label: line for line in summary.pnl}
    assert lines["AI cost"].amount == summary.figures.ai_cost > 0
    assert lines["AI cost"].caption == "less AI cost"
    revenue = sum(line.signed for line in summary.pnl[:5])
    assert revenue == lines["Revenue"].amount == summary.figures.revenue
    margin = revenue + lines["AI cost"].signed + lines["platform fees"].signed
    assert margin == lines["Margin"].amount == summary.figures.margin
    await assert_no_drift(state, tenant.org.id)


def _text(pdf: bytes) -> str:
    document = pypdfium2.PdfDocument(pdf)
    try:
        return "\n".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()


def _boxes(pdf: bytes, needle: str) -> list[tuple[float, float, float, float]]:
    """Boxes (left, bottom, right, top) of every character of the first ``needle``."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        for page in document:
            text = page.get_textpage()
            searcher = text.search(needle)
            found = searcher.get_next()
            if found is not None:
                start, count = found
                return [text.get_charbox(i) for i in range(start, start + count)]
    finally:
        document.close()
    raise AssertionError(f"{needle!r} is not in the PDF")


async def test_pdf_one_sign_columns_apart_and_budgets_of_the_month(
    state: AppState, tenant: Tenant
) -> None:
    await _seed(tenant)
    summary = await _summary(state, tenant, utcnow())
    (line,) = summary.budgets
    assert line.stages_reached == (50, 75, 90, 100)
    pdf = render_pdf(summary)
    text = _text(pdf)
    assert "2.75 USD" in text and "-2.75" not in text  # AI cost: one sign, everywhere
    assert "less AI cost" in text and "Unattributed (no user)" in text
    # "% used" and "Stages": the percent's last character ends left of the stages' first.
    percent = f"{line.percent_used:.2f} %"
    used, stages = _boxes(pdf, percent), _boxes(pdf, STAGES)
    assert max(box[2] for box in used) < min(box[0] for box in stages)
    assert abs(used[0][1] - stages[0][1]) < 2  # the same row
    # The same through the route, as a user downloads it.
    response = await tenant.client.get(
        f"/reports/summary.pdf?month={month_key()}",
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert response.status_code == 200, response.text
    assert STAGES in _text(response.content)

    # Last month the budget did not exist yet: not listed, in the PDF or the workbook.
    before = await _summary(state, tenant, month(-1, day=20))
    assert before.budgets == ()
    assert "No budgets." in _text(render_pdf(before))
    workbook = await tenant.client.get(
        f"/reports/summary.xlsx?month={month_key(-1)}",
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert workbook.status_code == 200, workbook.text
    sheet = openpyxl.load_workbook(io.BytesIO(workbook.content))["Budgets"]
    assert [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)] == ["No budgets"]
    await assert_no_drift(state, tenant.org.id)


async def test_budget_table_never_overlaps_however_long_its_cells(
    state: AppState, tenant: Tenant
) -> None:
    """A long scope name and a large limit wrap inside their own cells."""
    await _seed(tenant)
    summary = await _summary(state, tenant, utcnow())
    (line,) = summary.budgets
    long = replace(
        line,
        scope="account " + "Very Long Account Name " * 4 + uuid.uuid4().hex,
        limit=D("123456789.12"),
        spent=D("987654321.98"),
        percent_used=D("800.00"),
    )
    pdf = render_pdf(replace(summary, budgets=(long,)))
    used, stages = _boxes(pdf, "800.00 %"), _boxes(pdf, STAGES)
    assert max(box[2] for box in used) < min(box[0] for box in stages)
    spent = _boxes(pdf, "987,654,321.98")
    assert max(box[2] for box in spent) < min(box[0] for box in used)
    await assert_no_drift(state, tenant.org.id)
