"""Monthly summaries: the xlsx read back with openpyxl, the PDF rendered with pypdfium2, both
checked against the P&L GraphQL fields; rounding, ISO codes, formula escaping, and the GET
route's authorisation and bad input."""

from __future__ import annotations

import io
import uuid
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import openpyxl
import pypdfium2
import pytest

from costgraph.billing.directory import OrgContext
from costgraph.billing.pnl_measures import Figures, Totals
from costgraph.billing.reports.months import (
    month_range,
    next_month,
    parse_month,
    previous_month,
)
from costgraph.billing.reports.pdf import render_pdf
from costgraph.billing.reports.presentation import number_format, rounded, safe_text, shown
from costgraph.billing.reports.summary import (
    LineRole,
    MonthlySummary,
    PnLLine,
    RankedRow,
    RankedTable,
)
from costgraph.billing.reports.xlsx import render_xlsx
from costgraph.kernel.errors import ValidationFailed
from tests.conftest import Tenant
from tests.dates import month, month_key, rfc
from tests.pnl_support import (
    CREATE_CUSTOMER,
    CREATE_USER,
    ORG_PNL,
    ok,
    usage_event,
    write,
)

#: The month before last (computed at import: the session's start).
MONTH = month_key(-2)
RANGE = {"start": rfc(month(-2)), "end": rfc(month(-1))}
EVIL_NAME = '=HYPERLINK("http://x","y")'
EVIL_CUSTOMER = "+Customer; -1"


# --- pure parts ---


def test_months() -> None:
    assert parse_month("2026-01") == date(2026, 1, 1)
    assert previous_month(date(2026, 1, 1)) == date(2025, 12, 1)
    assert next_month(date(2026, 12, 1)) == date(2027, 1, 1)
    assert month_range(date(2026, 2, 1)) == (
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    for bad in ("2026-13", "2026-1", "26-01", "1999-12", ""):
        with pytest.raises(ValidationFailed):
            parse_month(bad)


def test_rounding_is_half_to_even_in_the_minor_unit() -> None:
    assert rounded(Decimal("0.125"), "USD") == Decimal("0.12")
    assert rounded(Decimal("0.135"), "USD") == Decimal("0.14")
    assert rounded(Decimal("2.5"), "JPY") == Decimal("2")
    assert rounded(Decimal("0.0125"), "BHD") == Decimal("0.012")
    assert shown(Decimal("1234.565"), "USD") == "1,234.56 USD"
    assert number_format("USD") == "#,##0.00" and number_format("JPY") == "#,##0"


def test_text_cells_are_escaped() -> None:
    for text in ("=1+1", "+1", "-1", "@SUM(A1)"):
        assert safe_text(text) == "'" + text
    assert safe_text("plain") == "plain"


def _synthetic(currency: str) -> MonthlySummary:
    totals = Totals()
    totals.ai_cost = Decimal("1234.5")
    totals.platform_fees = Decimal("0.25")
    figures = Figures.of(totals, currency)  # no revenue: margin -1234.75, margin % none
    org = OrgContext(uuid.uuid4(), "acme", "@Acme", currency)
    return MonthlySummary(
        organization=org,
        customer=None,
        month=date(2026, 10, 1),
        start=datetime(2026, 10, 1, tzinfo=UTC),
        end=datetime(2026, 11, 1, tzinfo=UTC),
        currency=currency,
        generated_at=datetime(2026, 11, 1, tzinfo=UTC),
        figures=figures,
        pnl=(PnLLine("Margin", figures.margin, LineRole.TOTAL),),
        models=RankedTable((), None, None, RankedRow("Total", "", 0, 0, Decimal(0), Decimal(0))),
        users=RankedTable((), None, None, RankedRow("Total", "", 0, 0, Decimal(0), Decimal(0))),
        budgets=(),
        daily=(),
    )


def test_xlsx_of_a_loss_in_a_currency_without_decimals() -> None:
    book = openpyxl.load_workbook(io.BytesIO(render_xlsx(_synthetic("JPY"))))
    rows = _cells(book["Summary"])
    assert _row(rows, "Organisation")[1] == "'@Acme"  # escaped text
    margin = _row(rows, "Margin")
    assert margin[1] == -1235 and margin[2] == "JPY"  # -1234.75, no minor unit
    assert book["Summary"].cell(row=rows.index(margin) + 1, column=2).number_format == "#,##0"
    assert _row(rows, "Margin %")[1] is None  # no revenue
    # The exact figure is text with its sign, not an escaped formula.
    exact = [r for r in rows if r[0] == "Margin" and isinstance(r[1], str)]
    assert exact[0][1] == "-1234.750000000000" and exact[0][2] == -1235
    document = pypdfium2.PdfDocument(render_pdf(_synthetic("JPY")))
    try:
        text = "".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()
    assert "-1,235 JPY" in text and "-1234.750000000000" in text


# --- the files, from a tenant's month of usage ---


async def _seed(tenant: Tenant) -> dict[str, Any]:
    """Two users, two models, costs whose cents need rounding; one customer with a name a
    spreadsheet would run."""
    user = await write(
        tenant,
        CREATE_USER,
        "createUser",
        {"email": f"u{uuid.uuid4().hex[:8]}@example.com", "name": EVIL_NAME},
    )
    other = await write(
        tenant, CREATE_USER, "createUser", {"email": f"v{uuid.uuid4().hex[:8]}@example.com"}
    )
    account = str(tenant.account_id)
    await usage_event(tenant, account, rfc(month(-2, 5, 10)), "0.125", "USD", userId=user["id"])
    await usage_event(
        tenant,
        account,
        rfc(month(-2, 6, 10)),
        "1.3351",
        "USD",
        userId=user["id"],
        model="gpt-4o-mini",
    )
    await usage_event(tenant, account, rfc(month(-2, 20, 10)), "0.2049", "USD", userId=other["id"])
    await usage_event(tenant, account, rfc(month(-1, 2, 10)), "5", "USD")  # next month
    customer = await write(tenant, CREATE_CUSTOMER, "createCustomer", {"name": EVIL_CUSTOMER})
    pnl = (await ok(tenant, ORG_PNL, {"range": RANGE}))["organizationPnl"]
    return {"user": user, "customer": customer, "pnl": pnl}


async def _get(tenant: Tenant, path: str, token: str | None = None) -> Any:
    return await tenant.client.get(
        path, headers={"Authorization": f"Bearer {token or tenant.token}"}
    )


def _cells(sheet: Any) -> list[list[Any]]:
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def _row(rows: list[list[Any]], label: str) -> list[Any]:
    return next(r for r in rows if r and r[0] == label)


async def test_xlsx_summary_matches_the_pnl(tenant: Tenant) -> None:
    seeded = await _seed(tenant)
    pnl = seeded["pnl"]
    response = await _get(tenant, f"/reports/summary.xlsx?month={MONTH}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert "attachment" in response.headers["content-disposition"]
    content = response.content
    book = openpyxl.load_workbook(io.BytesIO(content))
    assert book.sheetnames == ["Summary", "Top models", "Top users", "Budgets", "Daily"]
    summary = _cells(book["Summary"])
    assert _row(summary, "Organisation")[1] == tenant.org.name
    assert _row(summary, "Month")[1] == MONTH
    assert _row(summary, "Currency")[1] == "USD"
    # Rounded once, half-to-even, with the ISO code beside; the unrounded total reconciles.
    revenue = _row(summary, "Revenue")
    assert Decimal(str(revenue[1])) == rounded(Decimal(pnl["revenue"]), "USD")
    assert revenue[2] == "USD"
    reconciliation = [r for r in summary if r and r[0] == "AI cost" and isinstance(r[1], str)]
    assert reconciliation, summary
    assert reconciliation[0][1] == pnl["aiCost"]  # the exact 12-place figure
    assert Decimal(str(reconciliation[0][2])) == rounded(Decimal(pnl["aiCost"]), "USD")
    assert Decimal(pnl["aiCost"]) == Decimal("1.665")
    # One sign convention: a cost is positive in the statement too ("less AI cost").
    assert Decimal(str(_row(summary, "less AI cost")[1])) == Decimal("1.66")
    assert _row(summary, "Usage events")[1] == pnl["eventCount"] == 3
    margin = _row(summary, "Margin %")[1]
    assert isinstance(margin, float | int)  # a number, not text
    assert Decimal(str(margin)) == Decimal(pnl["marginPercent"]).normalize()
    # Top models: both, largest first; numbers are numbers, text is text.
    models = _cells(book["Top models"])
    assert [r[0] for r in models[1:3]] == ["gpt-4o-mini", "gpt-4o"]
    assert Decimal(str(models[1][4])) == Decimal("1.34") and models[1][5] == "USD"
    assert _row(models, "Total (unrounded)")[4] == pnl["aiCost"]
    # The user whose name is a formula: escaped, stored as text, never as a formula.
    users = _cells(book["Top users"])
    assert any(r[1] == "'" + EVIL_NAME for r in users), users
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
    # Every day of the month, and a native chart over them.
    daily = _cells(book["Daily"])
    assert len(daily) == 1 + 31
    assert sum(Decimal(str(r[1])) for r in daily[1:]) == Decimal(
        "1.66"
    )  # 0.12 (half-to-even) + 1.34 + 0.20
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        charts = [n for n in archive.namelist() if n.startswith("xl/charts/chart")]
        assert charts
        assert b"<c:barChart>" in archive.read(charts[0])


async def test_pdf_summary_renders_with_totals(tenant: Tenant) -> None:
    seeded = await _seed(tenant)
    pnl = seeded["pnl"]
    response = await _get(tenant, f"/reports/summary.pdf?month={MONTH}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    document = pypdfium2.PdfDocument(response.content)
    try:
        pages = len(document)
        assert 1 <= pages <= 3
        image = document[0].render(scale=1).to_pil()
        assert image.width > 500 and image.height > 700
        # Not blank: the chart and the text put dark pixels on the first page.
        assert image.convert("L").getextrema()[0] < 100
        text = "\n".join(document[i].get_textpage().get_text_range() for i in range(pages))
    finally:
        document.close()
    assert tenant.org.name in text
    assert f"usage summary {MONTH}" in text
    assert f"{rounded(Decimal(pnl['revenue']), 'USD')} USD" in text
    assert "1.66 USD" in text  # AI cost 1.665, half-to-even
    assert pnl["aiCost"] in text  # the reconciliation's unrounded figure
    assert "gpt-4o-mini" in text and "Top users" in text and "Budget status" in text


async def test_customer_summary_and_another_tenants_customer(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    seeded = await _seed(tenant)
    customer = seeded["customer"]["id"]
    mine = await _get(tenant, f"/reports/summary.xlsx?month={MONTH}&customerId={customer}")
    assert mine.status_code == 200, mine.text
    book = openpyxl.load_workbook(io.BytesIO(mine.content))
    assert _row(_cells(book["Summary"]), "Customer")[1] == "'" + EVIL_CUSTOMER
    # Another tenant's customer answers exactly as one that exists nowhere.
    theirs = await _get(other_tenant, f"/reports/summary.pdf?month={MONTH}&customerId={customer}")
    nowhere = uuid.uuid4()
    missing = await _get(other_tenant, f"/reports/summary.pdf?month={MONTH}&customerId={nowhere}")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["errors"][0]["extensions"] == {"code": "NOT_FOUND", "field": "customerId"}
    assert theirs.json()["errors"][0]["message"].replace(customer, "X") == missing.json()["errors"][
        0
    ]["message"].replace(str(nowhere), "X")


async def test_summary_route_authorisation_and_bad_input(tenant: Tenant) -> None:
    path = f"/reports/summary.xlsx?month={MONTH}"
    anonymous = await tenant.client.get(path)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    forged = await _get(tenant, path, token="not-a-token")
    assert forged.status_code == 401
    member = await _get(tenant, path, token=tenant.token_for(roles=["member"]))
    assert member.status_code == 403
    assert member.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    viewer = await _get(tenant, path, token=tenant.token_for(roles=["finance_viewer"]))
    assert viewer.status_code == 200
    for query, field in (("month=2026-13", "month"), ("", "month")):
        bad = await _get(tenant, f"/reports/summary.pdf?{query}")
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["extensions"] == {
            "code": "VALIDATION_FAILED",
            "field": field,
        }
    unknown = await _get(tenant, f"/reports/summary.csv?month={MONTH}")
    assert unknown.status_code == 404
