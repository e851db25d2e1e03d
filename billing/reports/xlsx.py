"""The monthly summary as an Excel workbook (XlsxWriter), with a native column chart.

Sheets: ``Summary`` (who, when, the P&L, reconciliation, the chart), ``Top models``,
``Top users``, ``Budgets`` and ``Daily`` (the chart's data). Money cells are numbers rounded to
the currency's minor unit (XlsxWriter writes a ``Decimal`` as its shortest decimal text, so
no float is involved) with a number format of that many digits, and the ISO 4217 code in the
column beside; the unrounded totals are text, as a spreadsheet number would lose digits.
Every text cell is written as a string (never parsed as a formula) and escaped besides.
"""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import xlsxwriter

from costgraph.billing.reports.months import format_month
from costgraph.billing.reports.presentation import (
    number_format,
    rounded,
    safe_text,
    stamp,
    unrounded,
)
from costgraph.billing.reports.summary import MonthlySummary, RankedTable

CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class _Sheet:
    """One worksheet written row by row, every cell through a typed writer."""

    def __init__(self, book: Any, name: str, formats: dict[str, Any], currency: str) -> None:
        self.sheet = book.add_worksheet(name)
        self.formats = formats
        self.currency = currency
        self.row = 0

    def text(self, col: int, value: str, style: str | None = None) -> None:
        self.sheet.write_string(self.row, col, safe_text(value), self.formats.get(style or ""))

    def money(self, col: int, amount: Decimal, currency: str | None = None) -> None:
        code = currency or self.currency
        self.sheet.write_number(self.row, col, rounded(amount, code), self.formats[f"money:{code}"])
        self.sheet.write_string(self.row, col + 1, code)

    def exact(self, col: int, amount: Decimal) -> None:
        """An unrounded amount as text (a spreadsheet number would lose digits). Written as
        is: digits made here, so a leading minus is a sign, not a formula to escape."""
        self.sheet.write_string(self.row, col, unrounded(amount))

    def integer(self, col: int, value: int) -> None:
        self.sheet.write_number(self.row, col, value, self.formats["integer"])

    def header(self, *titles: str) -> None:
        for col, title in enumerate(titles):
            self.text(col, title, "header")
        self.row += 1

    def pairs(self, items: list[tuple[str, str]]) -> None:
        for label, value in items:
            self.text(0, label, "label")
            self.text(1, value)
            self.row += 1

    def skip(self, rows: int = 1) -> None:
        self.row += rows


def _formats(book: Any, currencies: set[str]) -> dict[str, Any]:
    formats: dict[str, Any] = {
        "": None,
        "title": book.add_format({"bold": True, "font_size": 14}),
        "header": book.add_format({"bold": True, "bottom": 1}),
        "label": book.add_format({"bold": True}),
        "integer": book.add_format({"num_format": "#,##0"}),
        "date": book.add_format({"num_format": "yyyy-mm-dd"}),
        "percent": book.add_format({"num_format": "0.00"}),
    }
    for code in currencies:
        formats[f"money:{code}"] = book.add_format({"num_format": number_format(code)})
    return formats


def _summary_sheet(book: Any, formats: dict[str, Any], summary: MonthlySummary) -> _Sheet:
    sheet = _Sheet(book, "Summary", formats, summary.currency)
    sheet.text(0, summary.title, "title")
    sheet.skip(2)
    sheet.pairs(
        [
            ("Organisation", summary.organization.name),
            ("Customer", summary.customer or "(whole organisation)"),
            ("Month", format_month(summary.month)),
            ("Period (UTC)", f"{stamp(summary.start)} to {stamp(summary.end)}"),
            ("Currency", summary.currency),
            ("Generated at", stamp(summary.generated_at)),
        ]
    )
    sheet.skip()
    sheet.header("Profit and loss", "Amount", "Currency")
    for line in summary.pnl:  # costs positive, as everywhere: "less" says what subtracts
        sheet.text(0, line.caption)
        sheet.money(1, line.amount)
        sheet.skip()
    figures = summary.figures
    sheet.text(0, "Margin %")
    if figures.margin_percent is not None:  # none when there is no revenue
        sheet.sheet.write_number(sheet.row, 1, figures.margin_percent, formats["percent"])
    sheet.skip()
    sheet.text(0, "Usage events")
    sheet.integer(1, figures.events)
    sheet.skip()
    sheet.text(0, "Tokens")
    sheet.integer(1, figures.tokens)
    sheet.skip(2)
    if summary.missing:  # a currency without a rate: not in the figures, shown in its own money
        pairs = ", ".join(str(pair) for pair in summary.missing)
        sheet.header(f"Not converted (no rate: {pairs})", "Amount", "Currency")
        for own in summary.unconverted:
            for label, amount in (
                ("Revenue", own.revenue),
                ("AI cost", own.ai_cost),
                ("Billed usage", own.billed_usage),
            ):
                sheet.text(0, f"{label} in {own.currency}")
                sheet.money(1, amount, own.currency)
                sheet.skip()
        sheet.skip()
    sheet.header("Reconciliation", "Unrounded", "Rounded", "Currency")
    for label, amount in _reconciliation(summary):
        sheet.text(0, label)
        sheet.exact(1, amount)
        sheet.money(2, amount)
        sheet.skip()
    sheet.sheet.set_column(0, 0, 34)
    sheet.sheet.set_column(1, 3, 20)
    return sheet


def _reconciliation(summary: MonthlySummary) -> list[tuple[str, Decimal]]:
    figures = summary.figures
    return [
        ("Revenue", figures.revenue),
        ("AI cost", figures.ai_cost),
        ("Billed usage", figures.billed_usage),
        ("Platform fees", figures.platform_fees),
        ("Margin", figures.margin),
        ("AI cost, models table", sum((r.ai_cost for r in summary.models.all_rows), Decimal(0))),
        ("AI cost, users table", sum((r.ai_cost for r in summary.users.all_rows), Decimal(0))),
    ]


def _ranked_sheet(
    book: Any,
    formats: dict[str, Any],
    summary: MonthlySummary,
    name: str,
    titles: tuple[str, str],
    table: RankedTable,
) -> None:
    """The top rows, the rest, the unattributed usage, then the total they add up to."""
    sheet = _Sheet(book, name, formats, summary.currency)
    sheet.header(
        *titles, "Events", "Tokens", "AI cost", "Currency", "Billed usage", "Currency", "Id"
    )
    for row in table.all_rows:
        sheet.text(0, row.label)
        sheet.text(1, row.detail)
        sheet.integer(2, row.events)
        sheet.integer(3, row.tokens)
        sheet.money(4, row.ai_cost)
        sheet.money(6, row.billed_usage)
        sheet.text(8, row.ident)
        sheet.skip()
    total = table.total
    sheet.text(0, "Total (rounded)", "label")
    sheet.integer(2, total.events)
    sheet.integer(3, total.tokens)
    sheet.money(4, total.ai_cost)
    sheet.money(6, total.billed_usage)
    sheet.skip()
    sheet.text(0, "Total (unrounded)", "label")
    sheet.exact(4, total.ai_cost)
    sheet.text(5, summary.currency)
    sheet.exact(6, total.billed_usage)
    sheet.text(7, summary.currency)
    sheet.sheet.set_column(0, 1, 30)
    sheet.sheet.set_column(2, 7, 14)
    sheet.sheet.set_column(8, 8, 38)


def _budget_sheet(book: Any, formats: dict[str, Any], summary: MonthlySummary) -> None:
    sheet = _Sheet(book, "Budgets", formats, summary.currency)
    sheet.header(
        "Scope",
        "Period",
        "Basis",
        "Hard cap",
        "Limit",
        "Currency",
        "Spent",
        "Currency",
        "% used",
        "Stages reached",
        "Period start",
        "Period end",
        "Scope id",
    )
    for line in summary.budgets:
        sheet.text(0, line.scope)
        sheet.text(1, line.period)
        sheet.text(2, line.basis)
        sheet.text(3, "yes" if line.hard_cap else "no")
        sheet.money(4, line.limit, line.currency)
        sheet.money(6, line.spent, line.currency)
        sheet.sheet.write_number(sheet.row, 8, line.percent_used, formats["percent"])
        sheet.text(9, ", ".join(f"{s}%" for s in line.stages_reached))
        sheet.text(10, stamp(line.period_start))
        sheet.text(11, stamp(line.period_end))
        sheet.text(12, line.scope_id)
        sheet.skip()
    if not summary.budgets:
        sheet.text(0, "No budgets")
    sheet.sheet.set_column(0, 0, 34)
    sheet.sheet.set_column(1, 11, 14)
    sheet.sheet.set_column(12, 12, 38)


def _daily_sheet(book: Any, formats: dict[str, Any], summary: MonthlySummary) -> int:
    sheet = _Sheet(book, "Daily", formats, summary.currency)
    sheet.header("Day (UTC)", "AI cost", "Currency", "Billed usage", "Currency")
    for point in summary.daily:
        sheet.sheet.write_datetime(sheet.row, 0, point.day, formats["date"])
        sheet.money(1, point.ai_cost)
        sheet.money(3, point.billed_usage)
        sheet.skip()
    sheet.sheet.set_column(0, 4, 14)
    return len(summary.daily)


def _chart(book: Any, summary_sheet: _Sheet, days: int, currency: str) -> None:
    chart = book.add_chart({"type": "column"})
    for col, name in ((1, "AI cost"), (3, "Billed usage")):
        chart.add_series(
            {
                "name": name,
                "categories": ["Daily", 1, 0, days, 0],
                "values": ["Daily", 1, col, days, col],
            }
        )
    chart.set_title({"name": "Daily AI cost and billed usage"})
    chart.set_y_axis({"name": currency})
    chart.set_x_axis({"name": "Day (UTC)", "date_axis": True, "num_format": "dd"})
    chart.set_size({"width": 720, "height": 320})
    summary_sheet.sheet.insert_chart(summary_sheet.row + 1, 0, chart)


def render_xlsx(summary: MonthlySummary) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(
        buffer,
        {
            "in_memory": True,
            # Text is text: never turned into a formula, a URL or a number.
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
        },
    )
    book.set_properties({"title": summary.title, "author": "CostGraph"})
    currencies = {summary.currency} | {b.currency for b in summary.budgets}
    currencies |= {f.currency for f in summary.unconverted}
    formats = _formats(book, currencies)
    front = _summary_sheet(book, formats, summary)
    _ranked_sheet(book, formats, summary, "Top models", ("Model", "Provider"), summary.models)
    _ranked_sheet(book, formats, summary, "Top users", ("User", "Name"), summary.users)
    _budget_sheet(book, formats, summary)
    days = _daily_sheet(book, formats, summary)
    _chart(book, front, days, summary.currency)
    book.close()
    return buffer.getvalue()
