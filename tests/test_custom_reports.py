"""Custom reports as xlsx and PDF: any range, the CSV export's filters and grouping, savable
as templates; each file opened (openpyxl, pypdfium2) and its figures compared with an
independent SUM over the ledger."""

from __future__ import annotations

import io
import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import openpyxl
import pypdfium2

from costgraph.app.state import AppState
from tests import dates
from tests.conftest import Tenant, raw_connection
from tests.test_forecast import _event, record
from tests.test_report_templates import RUN, _local, save
from tests.verify_support import assert_no_drift

MODELS = ("gpt-4o-mini", "gpt-4o")
FEATURES = ("chat", "search")


async def _seed(state: AppState, tenant: Tenant) -> tuple[datetime, datetime]:
    """Forty priced calls over last month (two models, two features); its range."""
    start, end = dates.month(-1), dates.month(0)
    rng = random.Random(7)
    events = [
        _event(
            tenant,
            start + timedelta(days=rng.randrange(27), hours=rng.randrange(24)),
            Decimal(rng.randrange(1, 900_000)) / Decimal(1_000_000),
            model=MODELS[i % 2],
            feature=FEATURES[(i // 2) % 2],
        )
        for i in range(40)
    ]
    await record(state, tenant, events)
    return start, end


async def _sums(
    database_url: str, tenant: Tenant, start: datetime, end: datetime, feature: str | None = None
) -> dict[str, tuple[Decimal, Decimal, int]]:
    """Per model: SUM(ai_cost), SUM(amount) and the count of usage charges, straight from SQL."""
    async with raw_connection(database_url) as connection:
        rows = await connection.fetch(
            """SELECT model, sum(ai_cost), sum(amount), count(*) FROM ledger_entries
               WHERE organization_id = $1 AND type = 'USAGE_CHARGE'
                 AND occurred_at >= $2 AND occurred_at < $3
                 AND ($4::text IS NULL OR feature = $4)
               GROUP BY model""",
            tenant.org.id,
            start,
            end,
            feature,
        )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def _sheet_rows(content: bytes) -> list[list[Any]]:
    book = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    return [list(row) for row in book["Report"].iter_rows(values_only=True)]


def _table(rows: list[list[Any]], first: str) -> tuple[list[str], list[list[Any]]]:
    """The header row (its first cell ``first``) and the rows after it."""
    at = next(i for i, r in enumerate(rows) if r and r[0] == first)
    return [str(c) for c in rows[at] if c is not None], rows[at + 1 :]


async def _get(tenant: Tenant, path: str, params: dict[str, str]) -> Any:
    return await tenant.client.get(
        f"{path}?{urlencode(params)}", headers={"Authorization": f"Bearer {tenant.token}"}
    )


def _pdf_text(content: bytes) -> str:
    document = pypdfium2.PdfDocument(content)
    return "\n".join(page.get_textpage().get_text_range() for page in document)


async def test_usage_grouped_by_model_as_xlsx_matches_the_ledger(
    state: AppState, tenant: Tenant, database_url: str
) -> None:
    start, end = await _seed(state, tenant)
    params = {"start": dates.rfc(start), "end": dates.rfc(end), "groupBy": "model"}
    response = await _get(tenant, "/exports/usage.xlsx", params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert response.headers["content-disposition"].endswith('.xlsx"')
    header, body = _table(_sheet_rows(response.content), "row_type")
    assert header[:5] == ["row_type", "model", "currency", "events", "input_tokens"]
    data = {r[1]: r for r in body if r and r[0] == "data"}
    assert set(data) == set(MODELS)
    truth = await _sums(database_url, tenant, start, end)
    ai, billed = header.index("ai_cost"), header.index("billed_usage")
    for model, (ai_cost, amount, count) in truth.items():
        row = data[model]
        assert row[header.index("events")] == count
        assert Decimal(str(row[ai])) == _cents(ai_cost)
        assert Decimal(str(row[billed])) == _cents(amount)
    totals = {r[0]: r for r in body if r and str(r[0]).startswith("total_")}
    exact = sum((t[0] for t in truth.values()), Decimal(0))
    assert totals["total_unrounded"][header.index("currency")] == "USD"
    assert Decimal(totals["total_unrounded"][ai]) == exact
    assert Decimal(str(totals["total_rounded"][ai])) == sum(
        (_cents(t[0]) for t in truth.values()), Decimal(0)
    )


async def test_a_filtered_ledger_as_pdf_matches_the_ledger(
    state: AppState, tenant: Tenant, database_url: str
) -> None:
    start, end = await _seed(state, tenant)
    params = {
        "start": dates.rfc(start),
        "end": dates.rfc(end),
        "feature": "chat",
        "columns": "occurred_at,model,feature,ai_cost,amount",
    }
    response = await _get(tenant, "/exports/ledger.pdf", params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    text = _pdf_text(response.content)
    truth = await _sums(database_url, tenant, start, end, "chat")
    assert "feature" in text and "chat" in text and "search" not in text
    ai_cost = sum((t[0] for t in truth.values()), Decimal(0))
    amount = sum((t[1] for t in truth.values()), Decimal(0))
    line = next(x for x in text.splitlines() if x.startswith("total_unrounded"))
    figures = [Decimal(x) for x in line.split()[1:] if x != "USD"]
    assert figures == [ai_cost, amount], line
    assert sum(1 for x in text.splitlines() if "gpt-4o" in x and " chat " in f" {x} ") == sum(
        t[2] for t in truth.values()
    )
    await assert_no_drift(state, tenant.org.id)


async def test_pnl_pdf_and_a_bad_format(state: AppState, tenant: Tenant, database_url: str) -> None:
    start, end = await _seed(state, tenant)
    params = {"start": dates.rfc(start), "end": dates.rfc(end), "columns": "ai_cost,billed_usage"}
    response = await _get(tenant, "/exports/pnl.pdf", params)
    assert response.status_code == 200, response.text
    truth = await _sums(database_url, tenant, start, end)
    ai_cost = sum((t[0] for t in truth.values()), Decimal(0))
    line = next(x for x in _pdf_text(response.content).splitlines() if "total_unrounded" in x)
    figures = [Decimal(x) for x in line.split()[1:] if x != "USD"]
    assert figures[0] == ai_cost, line
    refused = await _get(tenant, "/exports/usage.docx", params)
    assert refused.status_code in (400, 422)
    assert refused.json()["errors"][0]["extensions"]["field"] == "format"
    # The same checks as the CSV: another tenant's id answers as a missing one.
    missing = await _get(tenant, "/exports/usage.xlsx", {**params, "accountId": str(start)})
    assert missing.status_code in (400, 404)


async def test_templates_save_and_run_xlsx_and_pdf(
    state: AppState, tenant: Tenant, database_url: str
) -> None:
    start, end = await _seed(state, tenant)
    month = dates.month_key(-1)
    made = await save(
        tenant,
        name="Models",
        kind="USAGE",
        format="XLSX",
        filters={"groupBy": ["MODEL"], "feature": "search"},
    )
    assert made["__typename"] == "ReportTemplateSaved", made
    body = await tenant.gql(RUN, {"id": made["template"]["id"], "month": month})
    download = body["data"]["runReportTemplate"]
    assert download["filename"] == f"Models-{month}.xlsx"
    fetched = await tenant.client.get(_local(download["url"]))
    assert fetched.status_code == 200, fetched.text
    header, rows = _table(_sheet_rows(fetched.content), "row_type")
    truth = await _sums(database_url, tenant, start, end, "search")
    data = {r[1]: r for r in rows if r and r[0] == "data"}
    for model, (ai_cost, _, count) in truth.items():
        assert data[model][header.index("events")] == count
        assert Decimal(str(data[model][header.index("ai_cost")])) == _cents(ai_cost)
    ledger = await save(tenant, name="Ledger", kind="LEDGER", format="PDF")
    body = await tenant.gql(RUN, {"id": ledger["template"]["id"], "month": month})
    pdf = await tenant.client.get(_local(body["data"]["runReportTemplate"]["url"]))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert "total_unrounded" in _pdf_text(pdf.content)
