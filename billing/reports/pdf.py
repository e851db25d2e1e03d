"""The monthly summary as a PDF (reportlab's platypus), with a vector bar chart drawn by
reportlab's own graphics (no plotting library, no raster image).

Money is shown rounded with its ISO 4217 code (``1,234.57 USD``); the reconciliation table
adds the unrounded totals. The standard PDF fonts cover Latin-1: other characters of a name
show as a placeholder glyph (the xlsx carries every character).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from costgraph.billing.reports.months import format_month
from costgraph.billing.reports.presentation import rounded, shown, stamp, unrounded
from costgraph.billing.reports.summary import MonthlySummary, RankedRow

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


def _ranked(rows: tuple[RankedRow, ...], total: tuple[Decimal, Decimal], currency: str) -> Table:
    body: list[list[str]] = [["", "", "Events", "Tokens", "AI cost", "Billed usage"]]
    for row in rows:
        body.append(
            [
                row.label[:48],
                row.detail[:24],
                f"{row.events:,}",
                f"{row.tokens:,}",
                shown(row.ai_cost, currency),
                shown(row.billed_usage, currency),
            ]
        )
    body.append(
        ["Total, all rows", "", "", "", shown(total[0], currency), shown(total[1], currency)]
    )
    return _table(body, [55 * mm, 25 * mm, 18 * mm, 22 * mm, 30 * mm, 30 * mm])


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
        Spacer(1, 3 * mm),
        _chart(summary),
        _para("Profit and loss", heading),
        _table(
            [
                ["Line", "Amount"],
                *([line.label, shown(line.amount, currency)] for line in summary.pnl),
            ],
            [60 * mm, 45 * mm],
        ),
        _para("Top models", heading),
        _ranked(summary.models, summary.models_total, currency),
        _para("Top users", heading),
        _ranked(summary.users, summary.users_total, currency),
        _para("Budget status", heading),
    ]
    if summary.budgets:
        story.append(
            _table(
                [
                    ["Scope", "Period", "Limit", "Spent", "% used", "Stages"],
                    *(
                        [
                            b.scope[:40],
                            b.period,
                            shown(b.limit, b.currency),
                            shown(b.spent, b.currency),
                            f"{b.percent_used} %",
                            ", ".join(f"{s}%" for s in b.stages_reached) or "-",
                        ]
                        for b in summary.budgets
                    ),
                ],
                [55 * mm, 20 * mm, 30 * mm, 30 * mm, 20 * mm, 25 * mm],
            )
        )
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
