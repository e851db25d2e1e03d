"""The monthly summary as a PDF (reportlab's platypus), with a vector bar chart drawn by
reportlab's own graphics (no plotting library, no raster image).

Money is shown rounded with its ISO 4217 code (``1,234.57 USD``); the reconciliation table
adds the unrounded totals. The standard PDF fonts cover Latin-1: other characters of a name
show as a placeholder glyph (the xlsx carries every character).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from costgraph.billing.reports.months import format_month
from costgraph.billing.reports.presentation import rounded, shown, stamp, unrounded
from costgraph.billing.reports.summary import MonthlySummary, RankedTable

CONTENT_TYPE = "application/pdf"
_AI_COST = colors.HexColor("#4C78A8")
_BILLED = colors.HexColor("#F58518")

_TABLE_STYLE = TableStyle(
    [
        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
        ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
        ("ALIGN", (1, 1), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
    ]
)


_FACTS_STYLE = TableStyle(
    [
        ("FONTNAME", (0, 0), (0, -1), "Helvetica-Bold"),
        ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
        ("TOPPADDING", (0, 0), (-1, -1), 1),
    ]
)


def _para(text: str, style: Any) -> Paragraph:
    return Paragraph(escape(text), style)


def _table(
    rows: Sequence[Sequence[str]], widths: Sequence[float] | None = None, *, header: bool = True
) -> Table:
    table = Table(
        [list(r) for r in rows], colWidths=widths, hAlign="LEFT", repeatRows=1 if header else 0
    )
    table.setStyle(_TABLE_STYLE if header else _FACTS_STYLE)
    return table


def _ranked(table: RankedTable, titles: tuple[str, str], currency: str) -> Table:
    """The top rows, the rest, the unattributed usage and the total they add up to."""
    body: list[list[str]] = [[*titles, "Events", "Tokens", "AI cost", "Billed usage"]]
    for row in (*table.all_rows, table.total):
        body.append(
            [
                row.label[:40],
                row.detail[:20],
                f"{row.events:,}",
                f"{row.tokens:,}",
                shown(row.ai_cost, currency),
                shown(row.billed_usage, currency),
            ]
        )
    result = _table(body, [52 * mm, 26 * mm, 18 * mm, 24 * mm, 30 * mm, 30 * mm])
    result.setStyle(
        TableStyle(
            [
                ("ALIGN", (1, 0), (1, -1), "LEFT"),
                ("ALIGN", (2, 0), (-1, 0), "RIGHT"),
                ("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold"),
                ("LINEABOVE", (0, -1), (-1, -1), 0.5, colors.black),
            ]
        )
    )
    return result


#: Budget table columns (A4 less 15 mm margins: 180 mm). Every cell is a Paragraph, which
#: wraps inside its own column: a long scope, a large amount or four stages take another
#: line, never the neighbour's space. "% used" is right-aligned and "Stages" left-aligned,
#: with the cells' padding between them.
_BUDGET_WIDTHS = [44 * mm, 18 * mm, 29 * mm, 29 * mm, 22 * mm, 38 * mm]
_BUDGET_STYLE = TableStyle(
    [
        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 4),
        ("RIGHTPADDING", (0, 0), (-1, -1), 4),
        ("LEFTPADDING", (5, 0), (5, -1), 12),  # a clear gap after "% used"
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
    ]
)
_RIGHT = (False, False, True, True, True, False)


def _budgets(summary: MonthlySummary, small: Any) -> Table:
    left = ParagraphStyle("budget-cell", parent=small, fontSize=8, leading=10)
    right = ParagraphStyle("budget-number", parent=left, alignment=TA_RIGHT)
    bold = {
        flag: ParagraphStyle(f"budget-head-{flag}", parent=right if flag else left)
        for flag in (False, True)
    }
    for style in bold.values():
        style.fontName = "Helvetica-Bold"
    header = ["Scope", "Period", "Limit", "Spent", "% used", "Stages"]
    body: list[list[Any]] = [[Paragraph(t, bold[r]) for t, r in zip(header, _RIGHT, strict=True)]]
    for b in summary.budgets:
        texts = [
            b.scope,
            b.period,
            shown(b.limit, b.currency),
            shown(b.spent, b.currency),
            f"{b.percent_used:.2f} %",
            ", ".join(f"{s}%" for s in b.stages_reached) or "-",
        ]
        body.append(
            [Paragraph(escape(t), right if r else left) for t, r in zip(texts, _RIGHT, strict=True)]
        )
    table = Table(body, colWidths=_BUDGET_WIDTHS, hAlign="LEFT", repeatRows=1)
    table.setStyle(_BUDGET_STYLE)
    return table


def _chart(summary: MonthlySummary) -> Drawing:
    width, height = 170 * mm, 70 * mm
    drawing = Drawing(width, height)
    chart = VerticalBarChart()
    chart.x, chart.y = 12 * mm, 12 * mm
    chart.width, chart.height = width - 20 * mm, height - 24 * mm
    currency = summary.currency
    # Drawing coordinates are floats; the values are already rounded for presentation.
    chart.data = [
        [float(rounded(p.ai_cost, currency)) for p in summary.daily] or [0.0],
        [float(rounded(p.billed_usage, currency)) for p in summary.daily] or [0.0],
    ]
    chart.categoryAxis.categoryNames = [f"{p.day.day}" for p in summary.daily] or [""]
    chart.categoryAxis.labels.fontSize = 6
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.bars[0].fillColor = _AI_COST
    chart.bars[1].fillColor = _BILLED
    chart.barSpacing = 0.5
    drawing.add(chart)
    legend = Legend()
    legend.x, legend.y = 14 * mm, height - 4 * mm
    legend.fontSize = 7
    legend.columnMaximum = 1
    legend.deltax = 30 * mm
    legend.colorNamePairs = [(_AI_COST, f"AI cost ({currency})"), (_BILLED, "Billed usage")]
    drawing.add(legend)
    drawing.add(String(width - 10 * mm, 2 * mm, "day (UTC)", fontSize=7, textAnchor="end"))
    return drawing


def _unconverted(summary: MonthlySummary, style: Any) -> list[Any]:
    """A currency without a rate into the summary's: not in the totals, shown in its own
    money (nothing when every currency converted)."""
    if not summary.missing:
        return []
    pairs = ", ".join(str(pair) for pair in summary.missing)
    rows = [["Not converted", "Revenue", "AI cost", "Billed usage"]]
    rows += [
        [
            own.currency,
            shown(own.revenue, own.currency),
            shown(own.ai_cost, own.currency),
            shown(own.billed_usage, own.currency),
        ]
        for own in summary.unconverted
    ]
    return [
        _para(f"No exchange rate {pairs}: these amounts are not in the totals above.", style),
        _table(rows, [35 * mm, 40 * mm, 40 * mm, 40 * mm]),
    ]


def render_pdf(summary: MonthlySummary) -> bytes:
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=summary.title,
        author="CostGraph",
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
    )
    styles = getSampleStyleSheet()
    heading, small = styles["Heading2"], styles["BodyText"]
    heading.keepWithNext = 1  # a table's title stays on its table's page
    currency = summary.currency
    figures = summary.figures
    story: list[Any] = [
        _para(summary.title, styles["Title"]),
        _table(
            [
                ["Organisation", summary.organization.name],
                ["Customer", summary.customer or "(whole organisation)"],
                ["Month", format_month(summary.month)],
                ["Period (UTC)", f"{stamp(summary.start)} to {stamp(summary.end)}"],
                ["Currency", currency],
                ["Generated at", stamp(summary.generated_at)],
            ],
            header=False,
        ),
        Spacer(1, 4 * mm),
        _para("Totals", heading),
        _table(
            [
                ["Measure", "Value"],
                ["Revenue", shown(figures.revenue, currency)],
                ["AI cost", shown(figures.ai_cost, currency)],
                ["Billed usage", shown(figures.billed_usage, currency)],
                ["Margin", shown(figures.margin, currency)],
                [
                    "Margin %",
                    "-" if figures.margin_percent is None else f"{figures.margin_percent:.2f} %",
                ],
                ["Usage events", f"{figures.events:,}"],
                ["Tokens", f"{figures.tokens:,}"],
            ],
            [60 * mm, 45 * mm],
        ),
        *_unconverted(summary, small),
        Spacer(1, 3 * mm),
        _chart(summary),
        _para("Profit and loss", heading),
        _para("Costs are positive amounts throughout; lines marked less are subtracted.", small),
        _table(
            [
                ["Line", "Amount"],
                *([line.caption, shown(line.amount, currency)] for line in summary.pnl),
            ],
            [60 * mm, 45 * mm],
        ),
        _para("Top models", heading),
        _ranked(summary.models, ("Model", "Provider"), currency),
        _para("Top users", heading),
        _ranked(summary.users, ("User", "Name"), currency),
        _para("Budget status", heading),
    ]
    if summary.budgets:
        story.append(_budgets(summary, small))
    else:
        story.append(_para("No budgets.", small))
    story += [
        _para("Reconciliation", heading),
        _para(
            f"Amounts above are rounded to the {currency} minor unit, half-to-even; "
            "the unrounded totals (12 decimal places) are:",
            small,
        ),
        _table(
            [
                ["Measure", "Unrounded", "Rounded"],
                ["Revenue", unrounded(figures.revenue), shown(figures.revenue, currency)],
                ["AI cost", unrounded(figures.ai_cost), shown(figures.ai_cost, currency)],
                [
                    "Billed usage",
                    unrounded(figures.billed_usage),
                    shown(figures.billed_usage, currency),
                ],
                ["Margin", unrounded(figures.margin), shown(figures.margin, currency)],
            ],
            [40 * mm, 55 * mm, 40 * mm],
        ),
    ]
    document.build(story)
    return buffer.getvalue()
