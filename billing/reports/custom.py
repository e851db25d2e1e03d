"""Custom reports as xlsx and PDF: any range, the CSV export's filters, grouping and columns.

One path: the request is the CSV export's (:mod:`costgraph.billing.exports.spec`), checked and
read by the export's own :func:`~costgraph.billing.exports.service.prepare` (the ledger's rows
by the export's own statement and cursor); only the rendering differs. The renderers take a
:class:`CustomTable` — the columns, the rows, and per currency the rounded and exact totals of
every money column, as the CSV's reconciliation rows — and write:

- **xlsx** (XlsxWriter): one sheet, what was asked (range, filters, grouping), a header row
  (``row_type`` first, as in the CSV), the rows (money as numbers rounded to the currency's
  minor unit with its code beside, counts as numbers, instants and ids as text, text cells
  escaped against formulas), then per
  currency the rows ``total_rounded`` (the sum of the rounded cells) and ``total_unrounded``
  (the exact sum, as text);
- **PDF** (reportlab): the same on landscape A4 pages, text cells cut to 40 characters.

A document holds at most :data:`MAX_XLSX_ROWS` / :data:`MAX_PDF_ROWS` rows (the CSV streams
any number): beyond, VALIDATION_FAILED on ``end`` asks for a shorter range or the CSV.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from xml.sax.saxutils import escape

import xlsxwriter
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing.directory import OrgContext
from costgraph.billing.exports import queries
from costgraph.billing.exports.columns import DATA, ROW_TYPE, Column, Kind
from costgraph.billing.exports.rounding import ZERO, exact_sum
from costgraph.billing.exports.service import PreparedExport, prepare
from costgraph.billing.exports.spec import ExportLimits, ExportRequest, FieldNames, query_names
from costgraph.billing.ledger_repository import driver_connection
from costgraph.billing.reports.presentation import (
    number_format,
    rounded,
    safe_text,
    stamp,
    unrounded,
)
from costgraph.kernel.errors import ValidationFailed
from costgraph.kernel.money import format_decimal, minor_unit

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PDF_CONTENT_TYPE = "application/pdf"
MAX_XLSX_ROWS = 200_000
MAX_PDF_ROWS = 5_000
_TEXT_WIDTH = 40


@dataclass(frozen=True, slots=True)
class Totals:
    """One currency's totals per money column: the sum of the rounded cells, the exact sum."""

    currency: str
    rounded: dict[str, Decimal]
    exact: dict[str, Decimal]


@dataclass(frozen=True, slots=True)
class CustomTable:
    title: str
    organization: str
    request: ExportRequest
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    totals: tuple[Totals, ...]
    generated_at: datetime

    def facts(self) -> list[tuple[str, str]]:
        r = self.request
        found = [
            ("Organisation", self.organization),
            ("Range (UTC)", f"{stamp(r.start)} to {stamp(r.end)}"),
        ]
        for name, value in r.filters.given().items():
            found.append((name, ",".join(value) if isinstance(value, tuple) else str(value)))
        if r.group_by:
            found.append(("Grouped by", ", ".join(r.group_by)))
        if r.bucket is not None:
            found.append(("Bucket", r.bucket.value))
        if r.currency is not None:
            found.append(("Currency", r.currency))
        found.append(("Rows", f"{len(self.rows):,}"))
        found.append(("Generated at", stamp(self.generated_at)))
        return found


def totals_of(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    fallback: str,
    exact: Mapping[str, Mapping[str, Decimal]] | None = None,
) -> tuple[Totals, ...]:
    """Per currency (or ``fallback`` when no row has one) and money column: the rounded and
    exact sums; ``exact`` overrides the exact ones (the P&L query's own totals)."""
    position = {c.name: i for i, c in enumerate(columns)}
    money = [(c.name, i, position[c.currency]) for i, c in enumerate(columns) if c.currency]
    if not money:
        return ()
    rounded_sums: dict[str, dict[str, Decimal]] = {}
    exact_sums: dict[str, dict[str, Decimal]] = {}
    for row in rows:
        for name, i, ci in money:
            amount, code = row[i], row[ci]
            if amount is None or code is None:
                continue
            cell = _round(amount, code)
            r = rounded_sums.setdefault(code, {})
            e = exact_sums.setdefault(code, {})
            r[name] = exact_sum(r.get(name, ZERO), cell)
            e[name] = exact_sum(e.get(name, ZERO), amount)
    found = []
    for code in sorted(exact_sums) or [fallback]:
        exact_row = {name: exact_sums.get(code, {}).get(name, ZERO) for name, _, _ in money}
        exact_row.update((exact or {}).get(code, {}))
        rounded_row = {name: rounded_sums.get(code, {}).get(name, ZERO) for name, _, _ in money}
        found.append(Totals(code, rounded_row, exact_row))
    return tuple(found)


def _round(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_unit(currency)), ROUND_HALF_EVEN) + ZERO


async def _rows(
    session: AsyncSession, prepared: PreparedExport, limit: int
) -> tuple[tuple[Any, ...], ...]:
    """The prepared rows; the ledger's read by the CSV export's own statement and cursor."""
    if prepared.rows or prepared.request.report.value != "ledger":
        rows = prepared.rows
    else:
        connection = await driver_connection(session)
        statement = queries.ledger_statement(
            prepared.organization.id, prepared.request, prepared.columns
        )
        found: list[tuple[Any, ...]] = []
        async for chunk in queries.stream_ledger(connection, statement, prepared.limits.chunk_rows):
            found.extend(tuple(row) for row in chunk)
            if len(found) > limit:
                break
        rows = tuple(found)
    if len(rows) > limit:
        raise ValidationFailed(
            f"this report holds more than {limit:,} rows, too many for one document; narrow "
            "the range or the filters, or export CSV",
            "end",
        )
    return rows


async def build_table(
    session: AsyncSession,
    org: OrgContext,
    request: ExportRequest,
    limits: ExportLimits,
    limit: int,
    now: datetime,
    names: FieldNames = query_names,
) -> CustomTable:
    prepared = await prepare(session, org, request, limits, names)
    rows = await _rows(session, prepared, limit)
    checked = prepared.request
    title = f"CostGraph {checked.report.value} report"
    return CustomTable(
        title=title,
        organization=org.name,
        request=checked,
        columns=prepared.columns,
        rows=rows,
        totals=totals_of(prepared.columns, rows, prepared.currency, prepared.exact),
        generated_at=now,
    )


# --- xlsx ---


def render_xlsx(table: CustomTable) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet("Report")
    bold = book.add_format({"bold": True})
    header = book.add_format({"bold": True, "bottom": 1})
    integer = book.add_format({"num_format": "#,##0"})
    money: dict[str, Any] = {}

    def money_format(code: str) -> Any:
        if code not in money:
            money[code] = book.add_format({"num_format": number_format(code)})
        return money[code]

    sheet.write_string(0, 0, table.title, book.add_format({"bold": True, "font_size": 14}))
    row = 2
    for label, value in table.facts():
        sheet.write_string(row, 0, safe_text(label), bold)
        sheet.write_string(row, 1, safe_text(value))
        row += 1
    row += 1
    position = {c.name: i for i, c in enumerate(table.columns)}
    sheet.write_string(row, 0, ROW_TYPE, header)
    for col, column in enumerate(table.columns, start=1):
        sheet.write_string(row, col, column.name, header)
    first_data = row + 1
    for values in table.rows:
        row += 1
        sheet.write_string(row, 0, DATA)
        for col, column in enumerate(table.columns, start=1):
            value = values[col - 1]
            if value is None:
                continue
            if column.kind is Kind.MONEY and column.currency is not None:
                code = values[position[column.currency]] or ""
                sheet.write_number(row, col, rounded(value, code), money_format(code))
            elif column.kind is Kind.INTEGER:
                sheet.write_number(row, col, int(value), integer)
            elif column.kind is Kind.TIMESTAMP:
                sheet.write_string(row, col, stamp(value))
            elif column.kind is Kind.DECIMAL:
                sheet.write_string(row, col, format_decimal(value))
            elif column.kind is Kind.TEXT:
                sheet.write_string(row, col, safe_text(str(value)))
            else:
                sheet.write_string(row, col, str(value))
    row += 1
    for totals in table.totals:
        for label, sums, exact in (
            ("total_rounded", totals.rounded, False),
            ("total_unrounded", totals.exact, True),
        ):
            row += 1
            sheet.write_string(row, 0, label, bold)
            for name, amount in sums.items():
                col = position[name] + 1
                currency_col = position[table.columns[col - 1].currency or name] + 1
                if exact:
                    sheet.write_string(row, col, unrounded(amount))
                else:
                    sheet.write_number(
                        row, col, rounded(amount, totals.currency), money_format(totals.currency)
                    )
                sheet.write_string(row, currency_col, totals.currency)
    if table.rows:
        sheet.autofilter(first_data - 1, 0, first_data + len(table.rows) - 1, len(table.columns))
    sheet.freeze_panes(first_data, 0)
    sheet.set_column(0, len(table.columns), 16)
    book.close()
    return buffer.getvalue()


# --- PDF ---

_STYLE = TableStyle(
    [
        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
        ("FONTSIZE", (0, 0), (-1, -1), 6),
        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
        ("TOPPADDING", (0, 0), (-1, -1), 1),
        ("LEFTPADDING", (0, 0), (-1, -1), 2),
        ("RIGHTPADDING", (0, 0), (-1, -1), 2),
    ]
)


def _cell(column: Column, value: Any, currency: str | None) -> str:
    if value is None:
        return ""
    if column.kind is Kind.MONEY:
        return f"{rounded(value, currency or ''):,.{minor_unit(currency or 'XXX')}f}"
    if column.kind is Kind.INTEGER:
        return f"{int(value):,}"
    if column.kind is Kind.TIMESTAMP:
        return stamp(value)
    if column.kind is Kind.DECIMAL:
        return format_decimal(value)
    text = str(value)
    return text if len(text) <= _TEXT_WIDTH else text[: _TEXT_WIDTH - 1] + "…"


def render_pdf(table: CustomTable) -> bytes:
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=landscape(A4),
        title=table.title,
        author="CostGraph",
        leftMargin=10 * mm,
        rightMargin=10 * mm,
        topMargin=10 * mm,
        bottomMargin=10 * mm,
    )
    styles = getSampleStyleSheet()
    facts = Table([list(pair) for pair in table.facts()], hAlign="LEFT")
    facts.setStyle(TableStyle([("FONTSIZE", (0, 0), (-1, -1), 8)]))
    position = {c.name: i for i, c in enumerate(table.columns)}
    body: list[list[str]] = [[ROW_TYPE, *(c.name for c in table.columns)]]
    for values in table.rows:
        body.append(
            [
                DATA,
                *(
                    _cell(c, values[i], values[position[c.currency]] if c.currency else None)
                    for i, c in enumerate(table.columns)
                ),
            ]
        )
    for totals in table.totals:
        for label, sums, exact in (
            ("total_rounded", totals.rounded, False),
            ("total_unrounded", totals.exact, True),
        ):
            line = [label] + [""] * len(table.columns)
            for name, amount in sums.items():
                column = table.columns[position[name]]
                line[position[name] + 1] = (
                    unrounded(amount) if exact else _cell(column, amount, totals.currency)
                )
                if column.currency is not None:
                    line[position[column.currency] + 1] = totals.currency
            body.append(line)
    grid = Table(body, hAlign="LEFT", repeatRows=1)
    grid.setStyle(_STYLE)
    document.build(
        [Paragraph(escape(table.title), styles["Title"]), facts, Spacer(1, 4 * mm), grid]
    )
    return buffer.getvalue()


async def render(table: CustomTable, format: str) -> tuple[bytes, str]:
    """``format`` ``xlsx`` or ``pdf``: the bytes and their content type (rendered off the
    event loop: a large document is seconds of CPU)."""
    if format == "pdf":
        return await asyncio.to_thread(render_pdf, table), PDF_CONTENT_TYPE
    return await asyncio.to_thread(render_xlsx, table), XLSX_CONTENT_TYPE


def row_limit(format: str) -> int:
    return MAX_PDF_ROWS if format == "pdf" else MAX_XLSX_ROWS


def filename(request: ExportRequest, format: str) -> str:
    return request.filename.removesuffix(".csv") + f".{format}"


__all__ = [
    "CustomTable",
    "Totals",
    "build_table",
    "filename",
    "render",
    "render_pdf",
    "render_xlsx",
    "row_limit",
    "totals_of",
]
