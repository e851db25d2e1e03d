"""Currencies degrade per currency, never for the whole organisation; platform rates ship.

- ``setBudget`` refuses a currency with no rate path (RATE_MISSING naming the pair), and a
  budget currency never makes usage fail;
- a rate missing later leaves the budget "cannot evaluate" (budgetStatus) with one
  RATE_MISSING alert, and usage goes on;
- a currency without a rate is a panel of its own in every P&L and usage view (``byCurrency``,
  ``missingRates``), in the exports and the monthly summary — never an error;
- one rule converts everything: each entry at the rate in force at its own time;
- ``costgraph migrate`` ships dated platform rates (ECB reference rates and their USD crosses)
  so a new EUR or GBP organisation records usage at once, and the platform P&L converts every
  organisation with them.

Shared-database tests use organisation-owned rates only (a platform rate would change every
other test's world); the shipped rates are tested in a database of their own.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal as D
from typing import Any

import asyncpg
import httpx
import openpyxl
import pypdfium2
import pytest
from sqlalchemy.engine import make_url

from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.billing.rates_loader import load_platform_rates, parse_rates, rates_text
from costgraph.kernel.clock import utcnow
from costgraph.kernel.database_url import plain_url
from tests.alerts_support import ALERTS
from tests.conftest import Tenant, app_state, make_tenant
from tests.dates import ago, clock_environment, rfc
from tests.pnl_support import (
    CREATE_ACCOUNT,
    LIABILITY,
    SET_RATE,
    SUBSCRIPTION,
    error_code,
    key,
    ok,
    usage_event,
    write,
)
from tests.verify_support import assert_no_drift

SET_BUDGET = """mutation($input: BudgetInput!) { setBudget(input: $input) { id currency } }"""
STATUS = """query($id: ID!) { budgetStatus(budgetId: $id) {
  spent canEvaluate uncounted { currency amount } missingRates { base quote } } }"""
BUDGETS = """{ budgets { id } }"""
PNL_PANELS = """query($range: DateRange!, $currency: CurrencyCode) {
  organizationPnl(range: $range, currency: $currency) { currency aiCost eventCount
    missingRates { base quote }
    byCurrency { currency aiCost eventCount missingRates { base } byModel { aiCost } }
    byModel { aiCost }
    liabilityEstimates { total missingRates { base quote } } } }"""
CUSTOMER_PANELS = """query($id: ID!, $range: DateRange!) { customerPnl(customerId: $id,
  range: $range) { aiCost missingRates { base quote } byCurrency { currency aiCost } } }"""
ACCOUNT_PANELS = """query($id: ID!, $range: DateRange!, $currency: CurrencyCode) {
  accountPnl(accountId: $id, range: $range, currency: $currency) {
    currency aiCost missingRates { base quote } byCurrency { currency aiCost } } }"""
TIMELINE_PANELS = """query($range: DateRange!) {
  pnlTimeline(scope: {kind: ORGANIZATION}, range: $range, bucket: DAY) {
    aiCost missingRates { base quote } byCurrency { currency aiCost } } }"""
USAGE_PANELS = """query($range: DateRange!, $currency: CurrencyCode) {
  usage(range: $range, groupBy: [MODEL], currency: $currency) {
    model currency aiCost events missingRates { base quote } } }"""
FORECAST = """query { forecast(scope: {kind: ORGANIZATION}) {
  currency spent note missingRates { base quote } } }"""
KPIS = """query($range: DateRange!) { payerKpis(range: $range) {
  currency aiCost activePayers missingRates { base quote }
  byCurrency { currency aiCost activePayers } } }"""
RATES = """query($at: DateTime) { exchangeRates(at: $at) { base quote rate scope source } }"""
PLATFORM = """query($range: DateRange!) { platformPnl(range: $range) {
  currency totals { aiCost } missingRates { base quote }
  organizations { organization { id } aiCost missingRates { base } } } }"""

GBP_MISSING = [{"base": "GBP", "quote": "USD"}]


async def org_rate(tenant: Tenant, base: str, quote: str, rate: str, since: datetime) -> None:
    await write(
        tenant,
        SET_RATE,
        "setExchangeRate",
        {"base": base, "quote": quote, "rate": rate, "effectiveFrom": rfc(since)},
    )


async def account(tenant: Tenant, currency: str) -> str:
    created = await write(
        tenant,
        CREATE_ACCOUNT,
        "createAccount",
        {
            "customerId": str(tenant.customer_id),
            "name": currency,
            "postpaid": True,
            "currency": currency,
        },
    )
    ident: str = created["id"]
    return ident


def org_budget(tenant: Tenant, currency: str, limit: str = "1000") -> dict[str, Any]:
    return {
        "input": {
            "scope": {"kind": "ORGANIZATION", "id": str(tenant.org.id)},
            "period": "MONTH",
            "limit": limit,
            "currency": currency,
            "hardCap": True,
        }
    }


# --- budgets ---


async def test_a_budget_currency_without_a_rate_path_is_refused(
    tenant: Tenant, state: AppState
) -> None:
    for currency in ("JPY", "XAU"):
        body = await tenant.gql(SET_BUDGET, org_budget(tenant, currency))
        assert error_code(body) == "RATE_MISSING"
        (error,) = body["errors"]
        assert f"USD->{currency}" in error["message"]
        assert error["extensions"]["field"] == "input.currency"
    assert (await ok(tenant, BUDGETS, {}))["budgets"] == []  # nothing written
    # Usage of the organisation is untouched by the refused budgets.
    await usage_event(tenant, str(tenant.account_id), rfc(ago(minutes=5)), "1.00", "USD")
    # With a rate (the inverse works too), the same budget is accepted.
    await org_rate(tenant, "JPY", "USD", "0.0066", ago(days=40))
    saved = await ok(tenant, SET_BUDGET, org_budget(tenant, "JPY"))
    assert saved["setBudget"]["currency"] == "JPY"
    await assert_no_drift(state, tenant.org.id)


async def test_an_account_budget_needs_only_its_accounts_currency(
    tenant: Tenant, state: AppState
) -> None:
    euros = await account(tenant, "EUR")
    scoped = {
        "input": {
            "scope": {"kind": "ACCOUNT", "id": euros},
            "period": "MONTH",
            "limit": "10",
            "currency": "EUR",
            "hardCap": True,
        }
    }
    assert "errors" not in await tenant.gql(SET_BUDGET, scoped)  # no USD->EUR rate needed
    scoped["input"]["currency"] = "GBP"
    body = await tenant.gql(SET_BUDGET, scoped)
    assert error_code(body) == "RATE_MISSING"
    assert "EUR->GBP" in body["errors"][0]["message"]
    await assert_no_drift(state, tenant.org.id)


async def test_a_rate_missing_later_leaves_the_budget_unevaluated(
    tenant: Tenant, state: AppState
) -> None:
    await org_rate(tenant, "USD", "JPY", "150", ago(days=40))
    budget = (await ok(tenant, SET_BUDGET, org_budget(tenant, "JPY", "1000")))["setBudget"]
    pounds = await account(tenant, "GBP")  # created after the budget: no GBP->JPY rate
    await usage_event(tenant, str(tenant.account_id), rfc(ago(minutes=3)), "2.00", "USD")
    # Usage in GBP is never refused for the budget's want of a rate, even far over its cap.
    for cost in ("1.00", "50.00"):
        await usage_event(tenant, pounds, rfc(ago(minutes=2)), cost, "GBP")
    status = (await ok(tenant, STATUS, {"id": budget["id"]}))["budgetStatus"]
    assert D(status["spent"]) == D("300")  # 2.00 USD at 150; the GBP is not counted
    assert status["canEvaluate"] is False
    assert [(u["currency"], D(u["amount"])) for u in status["uncounted"]] == [("GBP", D("51.00"))]
    assert status["missingRates"] == [{"base": "GBP", "quote": "JPY"}]
    # One RATE_MISSING alert for the budget and period, however many writes.
    alerts = await ok(tenant, ALERTS, {"filter": {"kind": "RATE_MISSING"}})
    (alert,) = alerts["alerts"]["nodes"]
    assert alert["code"] == "BUDGET_RATE_MISSING"
    assert alert["budgetId"] == budget["id"]
    assert "GBP->JPY" in alert["message"]
    # The cap still holds over what it can count: 8.00 USD more is 1200 JPY > 1000.
    body = await tenant.gql(
        """mutation($input: UsageEventInput!) { recordUsage(input: $input) {
          __typename ... on UserError { code } } }""",
        {
            "input": {
                "idempotencyKey": key(),
                "accountId": str(tenant.account_id),
                "occurredAt": rfc(ago(minutes=1)),
                "provider": "openai",
                "model": "gpt-4o",
                "inputTokens": 1,
                "outputTokens": 1,
                "providerCost": "8.00",
                "providerCurrency": "USD",
            }
        },
    )
    assert body["data"]["recordUsage"]["code"] == "BUDGET_LIMIT_REACHED"
    await assert_no_drift(state, tenant.org.id)


# --- views: one currency without a rate never fails the organisation ---


async def test_one_gbp_account_without_a_rate_breaks_no_view(
    tenant: Tenant, state: AppState
) -> None:
    pounds = await account(tenant, "GBP")
    at = ago(minutes=30)
    await usage_event(tenant, str(tenant.account_id), rfc(at), "4.00", "USD")
    await usage_event(tenant, pounds, rfc(at), "2.00", "GBP")
    await write(
        tenant,
        SUBSCRIPTION,
        "recordSubscriptionPayment",
        {
            "idempotencyKey": key(),
            "accountId": pounds,
            "amount": "10.00",
            "currency": "GBP",
            "occurredAt": rfc(at),
        },
    )
    await write(
        tenant,
        LIABILITY,
        "recordLiabilityEstimate",
        {"idempotencyKey": key(), "agent": "a", "amount": "3", "currency": "GBP"},
    )
    span = {"start": rfc(at - timedelta(hours=1)), "end": rfc(at + timedelta(hours=1))}

    found = (await ok(tenant, PNL_PANELS, {"range": span}))["organizationPnl"]
    assert (found["currency"], D(found["aiCost"]), found["eventCount"]) == ("USD", D("4.00"), 1)
    assert found["missingRates"] == GBP_MISSING
    panels = {p["currency"]: p for p in found["byCurrency"]}
    assert (D(panels["GBP"]["aiCost"]), panels["GBP"]["eventCount"]) == (D("2.00"), 1)
    assert D(panels["USD"]["aiCost"]) == D("4.00")
    assert [D(m["aiCost"]) for m in panels["GBP"]["byModel"]] == [D("2.00")]
    assert panels["GBP"]["missingRates"] == []
    assert sum(D(m["aiCost"]) for m in found["byModel"]) == D("4.00")
    assert found["liabilityEstimates"]["missingRates"] == GBP_MISSING
    assert D(found["liabilityEstimates"]["total"]) == 0

    customer = await ok(tenant, CUSTOMER_PANELS, {"id": str(tenant.customer_id), "range": span})
    assert D(customer["customerPnl"]["aiCost"]) == D("4.00")
    assert customer["customerPnl"]["missingRates"] == GBP_MISSING

    alone = (await ok(tenant, ACCOUNT_PANELS, {"id": pounds, "range": span}))["accountPnl"]
    assert (D(alone["aiCost"]), alone["missingRates"]) == (0, GBP_MISSING)
    assert alone["byCurrency"] == [{"currency": "GBP", "aiCost": "2.000000000000"}]
    own = await ok(tenant, ACCOUNT_PANELS, {"id": pounds, "range": span, "currency": "GBP"})
    assert (D(own["accountPnl"]["aiCost"]), own["accountPnl"]["missingRates"]) == (D("2.00"), [])

    points = (await ok(tenant, TIMELINE_PANELS, {"range": span}))["pnlTimeline"]
    assert sum(D(p["aiCost"]) for p in points) == D("4.00")
    assert all(p["missingRates"] == GBP_MISSING for p in points)
    gbp = [D(c["aiCost"]) for p in points for c in p["byCurrency"] if c["currency"] == "GBP"]
    assert sum(gbp) == D("2.00")

    rows = (await ok(tenant, USAGE_PANELS, {"range": span}))["usage"]
    assert [(r["currency"], D(r["aiCost"]), r["missingRates"]) for r in rows] == [
        ("USD", D("4.00"), []),
        ("GBP", D("2.00"), GBP_MISSING),
    ]

    forecast = (await ok(tenant, FORECAST, {}))["forecast"]
    assert forecast["missingRates"] == GBP_MISSING
    assert "GBP" in forecast["note"]

    kpis = (await ok(tenant, KPIS, {"range": span}))["payerKpis"]
    assert (D(kpis["aiCost"]), kpis["missingRates"]) == (D("4.00"), GBP_MISSING)
    by = {p["currency"]: p for p in kpis["byCurrency"]}
    assert (D(by["GBP"]["aiCost"]), by["GBP"]["activePayers"]) == (D("2.00"), 1)

    headers = {"Authorization": f"Bearer {tenant.token}"}
    params = {"start": span["start"], "end": span["end"]}
    usage_csv = await tenant.client.get(
        "/exports/usage.csv", params={**params, "groupBy": "model"}, headers=headers
    )
    assert usage_csv.status_code == 200, usage_csv.text
    data = [r for r in csv.DictReader(io.StringIO(usage_csv.text)) if r["row_type"] == "data"]
    assert sorted((r["currency"], D(r["ai_cost"])) for r in data) == [
        ("GBP", D("2.00")),
        ("USD", D("4.00")),
    ]
    pnl_csv = await tenant.client.get("/exports/pnl.csv", params=params, headers=headers)
    assert pnl_csv.status_code == 200, pnl_csv.text
    table = list(csv.DictReader(io.StringIO(pnl_csv.text)))
    data = [r for r in table if r["row_type"] == "data"]
    assert sorted((r["currency"], D(r["ai_cost"])) for r in data) == [
        ("GBP", D("2.00")),
        ("USD", D("4.00")),
    ]
    exact = {r["currency"]: D(r["ai_cost"]) for r in table if r["row_type"] == "total_unrounded"}
    assert exact == {"GBP": D("2.00"), "USD": D("4.00")}

    month = f"{at:%Y-%m}"
    xlsx = await tenant.client.get(f"/reports/summary.xlsx?month={month}", headers=headers)
    assert xlsx.status_code == 200, xlsx.text
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content))["Summary"]
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert any(r[0] == "Not converted (no rate: GBP->USD)" for r in cells), cells
    gbp_cost = next(r for r in cells if r[0] == "AI cost in GBP")
    assert (D(str(gbp_cost[1])), gbp_cost[2]) == (D("2"), "GBP")
    pdf = await tenant.client.get(f"/reports/summary.pdf?month={month}", headers=headers)
    assert pdf.status_code == 200, pdf.text
    document = pypdfium2.PdfDocument(pdf.content)
    try:
        text = "\n".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()
    assert "No exchange rate GBP->USD" in text
    assert "2.00 GBP" in text
    await assert_no_drift(state, tenant.org.id)


# --- one rule: each entry at the rate in force at its own time ---


async def test_every_view_converts_each_entry_at_its_own_rate(
    tenant: Tenant, state: AppState
) -> None:
    """EUR usage on both sides of a rate change an hour ago: P&L, usage, timeline, KPIs,
    the budget counter, the forecast and the CSV give the same 23.00 USD (10 at 1.10 and
    10 at 1.20). The forecast once converted a whole day at its midnight rate (22.00)."""
    euros = await account(tenant, "EUR")
    change = ago(minutes=35)
    await org_rate(tenant, "EUR", "USD", "1.10", ago(days=3))
    await org_rate(tenant, "EUR", "USD", "1.20", change)
    await ok(tenant, SET_BUDGET, org_budget(tenant, "USD", "100"))
    first, second = ago(minutes=50), ago(minutes=20)
    for when in (first, second):
        await usage_event(tenant, euros, rfc(when), "10.00", "EUR")
    span = {"start": rfc(first - timedelta(hours=1)), "end": rfc(second + timedelta(hours=1))}
    want = D("23.00")

    found = (await ok(tenant, PNL_PANELS, {"range": span}))["organizationPnl"]
    assert (D(found["aiCost"]), found["missingRates"]) == (want, [])
    rows = (await ok(tenant, USAGE_PANELS, {"range": span}))["usage"]
    assert sum(D(r["aiCost"]) for r in rows) == want
    points = (await ok(tenant, TIMELINE_PANELS, {"range": span}))["pnlTimeline"]
    assert sum(D(p["aiCost"]) for p in points) == want
    assert D((await ok(tenant, KPIS, {"range": span}))["payerKpis"]["aiCost"]) == want

    month_start = utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    in_period = D("11.00") * (first >= month_start) + D("12.00") * (second >= month_start)
    budgets = (await ok(tenant, "{ budgets { id } }", {}))["budgets"]
    status = (await ok(tenant, STATUS, {"id": budgets[0]["id"]}))["budgetStatus"]
    assert D(status["spent"]) == in_period
    forecast = (await ok(tenant, FORECAST, {}))["forecast"]
    assert D(forecast["spent"]) == in_period
    assert forecast["missingRates"] == []

    response = await tenant.client.get(
        "/exports/pnl.csv",
        params={"start": span["start"], "end": span["end"]},
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    table = list(csv.DictReader(io.StringIO(response.text)))
    (row,) = [r for r in table if r["row_type"] == "data"]
    assert (row["currency"], D(row["ai_cost"])) == ("USD", want)
    await assert_no_drift(state, tenant.org.id)


# --- shipped platform rates, in a database of their own ---


def test_the_shipped_rates_file_names_its_source() -> None:
    rates = parse_rates(rates_text())
    pairs = {(r.base, r.quote) for r in rates}
    for quote in ("USD", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK"):
        assert ("EUR", quote) in pairs
    for quote in ("GBP", "JPY", "CHF", "CAD", "AUD", "SEK"):
        assert ("USD", quote) in pairs
    assert all("ECB euro foreign exchange reference rates of" in r.source for r in rates)
    latest = max(r.effective_from for r in rates)
    assert [r.rate for r in rates if (r.base, r.quote, r.effective_from) == ("EUR", "USD", latest)]


@dataclass
class Shipped:
    state: AppState
    client: httpx.AsyncClient


@pytest.fixture(scope="module")
async def shipped(server_url: str, settings: Settings) -> AsyncIterator[Shipped]:
    """A database migrated by ``costgraph migrate`` (which loads the platform rates), and an
    app of its own over it."""
    name = f"costgraph_rates_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain_url(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    environment = dict(
        os.environ,
        COSTGRAPH_DATABASE_URL=url,
        COSTGRAPH_DATA_DIR=str(settings.data_dir),
        **clock_environment(),
    )
    migrated = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "costgraph.app.cli", "migrate"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    added = len(parse_rates(rates_text()))
    assert f"platform exchange rates: {added} exchange rates added" in migrated.stdout
    application = create_app(settings.model_copy(update={"database_url": url}), url)
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                yield Shipped(app_state(application), http)
    finally:
        admin = await asyncpg.connect(plain_url(server_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _tenant_in(shipped: Shipped, mint: Any, currency: str) -> Tenant:
    return await make_tenant(shipped.state, shipped.client, mint, currency=currency)


async def test_new_eur_and_gbp_organisations_record_usage_at_once(
    shipped: Shipped, mint: Any
) -> None:
    latest = max(r.effective_from for r in parse_rates(rates_text()))
    for currency in ("EUR", "GBP"):
        tenant = await _tenant_in(shipped, mint, currency)
        recorded = await usage_event(
            tenant, str(tenant.account_id), rfc(ago(minutes=1)), "10", "USD"
        )
        rates = (await ok(tenant, RATES, {}))["exchangeRates"]
        usd = next(r for r in rates if {r["base"], r["quote"]} == {"USD", currency})
        assert usd["scope"] == "PLATFORM"
        assert f"reference rates of {latest:%Y-%m-%d}" in usd["source"]
        rate = D(usd["rate"]) if usd["base"] == "USD" else 1 / D(usd["rate"])
        assert abs(D(recorded["entry"]["aiCost"]) - D(10) * rate) < D("0.000001")
        await assert_no_drift(shipped.state, tenant.org.id)


async def test_loading_the_rates_again_adds_nothing(shipped: Shipped) -> None:
    async with shipped.state.sessions() as session, session.begin():
        report = await load_platform_rates(session)
    assert (report.added, report.unchanged, report.kept) == (0, len(parse_rates(rates_text())), [])


async def test_the_platform_converts_every_organisation_with_its_rates(
    shipped: Shipped, mint: Any
) -> None:
    """Two EUR organisations with rates of their own (0.92 and 0.95): each one's P&L uses its
    own; the platform's converts both at the one platform rate, and a third organisation's
    account in a currency without a platform rate (XAU) is left out, for it alone."""
    at = ago(minutes=10)
    span = {"start": rfc(at - timedelta(hours=1)), "end": rfc(at + timedelta(hours=1))}
    firsts = []
    for own in ("0.92", "0.95"):
        tenant = await _tenant_in(shipped, mint, "EUR")
        await org_rate(tenant, "EUR", "USD", own, ago(days=1))
        await usage_event(tenant, str(tenant.account_id), rfc(at), "10.00", "EUR")
        mine = await ok(tenant, PNL_PANELS, {"range": span, "currency": "USD"})
        assert D(mine["organizationPnl"]["aiCost"]) == D("10.00") * D(own)
        firsts.append(tenant)
    gold = await _tenant_in(shipped, mint, "USD")
    vault = await account(gold, "XAU")
    await usage_event(gold, vault, rfc(at), "1", "XAU")
    admin = mint(None, ["platform_admin"])
    body = await firsts[0].gql(PLATFORM, {"range": span}, token=admin)
    assert "errors" not in body, body
    platform = body["data"]["platformPnl"]
    rates = await firsts[0].gql(RATES, {"at": rfc(at)}, token=admin)
    euro = next(
        r for r in rates["data"]["exchangeRates"] if (r["base"], r["quote"]) == ("EUR", "USD")
    )
    assert euro["scope"] == "PLATFORM"
    want = D("10.00") * D(euro["rate"])
    rows = {o["organization"]["id"]: o for o in platform["organizations"]}
    for tenant in firsts:
        assert D(rows[str(tenant.org.id)]["aiCost"]) == want
    assert rows[str(gold.org.id)]["missingRates"] == [{"base": "XAU"}]
    assert {"base": "XAU", "quote": "USD"} in platform["missingRates"]
    assert D(platform["totals"]["aiCost"]) == sum(D(o["aiCost"]) for o in rows.values())
    await assert_no_drift(shipped.state, *(t.org.id for t in [*firsts, gold]))
