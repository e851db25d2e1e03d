"""A report as a file: the monthly summary (xlsx, PDF) or a saved template over one month (a
CSV, or the same export as xlsx or PDF)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing.directory import OrgContext
from costgraph.billing.exports import spec as exports
from costgraph.billing.exports.service import render_csv
from costgraph.billing.pnl_ranges import ReportLimits
from costgraph.billing.reports import custom, pdf, xlsx
from costgraph.billing.reports.months import format_month
from costgraph.billing.reports.summary import SummaryRequest, build_summary
from costgraph.billing.reports.templates import (
    ReportFormat,
    ReportKind,
    TemplateRecord,
    export_request,
)

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"


@dataclass(frozen=True, slots=True)
class ReportFile:
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What rendering needs besides the request: bounds, the clock, the budgets' zone."""

    report_limits: ReportLimits
    export_limits: exports.ExportLimits
    now: datetime
    zone: ZoneInfo


async def summary_file(
    session: AsyncSession,
    org: OrgContext,
    request: SummaryRequest,
    format: ReportFormat,
    context: RenderContext,
    *,
    customer_field: str = "customerId",
) -> ReportFile:
    summary = await build_summary(
        session,
        org,
        request,
        context.report_limits,
        now=context.now,
        zone=context.zone,
        customer_field=customer_field,
    )
    # Rendering is CPU work (a PDF takes about 0.1 s): off the event loop, so other requests
    # keep being answered meanwhile.
    if format is ReportFormat.PDF:
        content = await asyncio.to_thread(pdf.render_pdf, summary)
        return ReportFile(summary.filename("pdf"), pdf.CONTENT_TYPE, content)
    content = await asyncio.to_thread(xlsx.render_xlsx, summary)
    return ReportFile(summary.filename("xlsx"), xlsx.CONTENT_TYPE, content)


async def template_file(
    session: AsyncSession,
    org: OrgContext,
    template: TemplateRecord,
    month: date,
    context: RenderContext,
) -> ReportFile:
    """The template's file for ``month`` (a tenant-bound session)."""
    filename = template.filename(format_month(month))
    if template.kind is ReportKind.SUMMARY:
        request = SummaryRequest(month, template.customer_id())
        made = await summary_file(session, org, request, template.format, context)
        return ReportFile(filename, made.content_type, made.content)
    export = export_request(template.kind, template.filters, template.columns, month)
    if template.format is not ReportFormat.CSV:  # the same request as a document
        extension = template.format.extension
        table = await custom.build_table(
            session, org, export, context.export_limits, custom.row_limit(extension), context.now
        )
        content, content_type = await custom.render(table, extension)
        return ReportFile(filename, content_type, content)
    content = await render_csv(session, org, export, context.export_limits)
    return ReportFile(filename, CSV_CONTENT_TYPE, content)
