"""Saved report templates, their runs as download links, and the summary's file formats."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry

import costgraph.schema.pnl  # noqa: F401 - registers TimeBucket and UsageDimension first
from costgraph.billing.pnl_ranges import TimeBucket
from costgraph.billing.reports.templates import ReportFormat, ReportKind, TemplateRecord
from costgraph.billing.usage_analytics import UsageDimension
from costgraph.schema.results import NotFound, ValidationFailed
from costgraph.schema.scalars import CurrencyCode
from costgraph.schema.types import LedgerEntryType

strawberry.enum(
    ReportKind,
    name="ReportKind",
    description="LEDGER, USAGE and PNL are the CSV exports; SUMMARY is the monthly summary "
    "(totals, P&L, top models and users, budgets, a chart).",
)
strawberry.enum(
    ReportFormat,
    name="ReportFormat",
    description="CSV for LEDGER, USAGE and PNL; XLSX or PDF for SUMMARY.",
)


@strawberry.input(description="What a template reports on. SUMMARY takes customerId only.")
class ReportTemplateFiltersInput:
    customer_id: strawberry.ID | None = None
    account_id: strawberry.ID | None = None
    user_id: strawberry.ID | None = None
    department_id: strawberry.ID | None = None
    provider: str | None = None
    model: str | None = None
    feature: str | None = None
    agent: str | None = None
    types: list[LedgerEntryType] | None = strawberry.field(
        default=None, description="LEDGER: entry types."
    )
    group_by: list[UsageDimension] | None = strawberry.field(
        default=None, description="USAGE: the grouping."
    )
    bucket: TimeBucket | None = strawberry.field(default=None, description="USAGE and PNL.")
    currency: CurrencyCode | None = strawberry.field(
        default=None, description="USAGE and PNL: the reporting currency."
    )


@strawberry.input
class ReportTemplateInput:
    id: strawberry.ID | None = strawberry.field(
        default=None, description="Given: replace this template; omitted: a new one."
    )
    name: str = strawberry.field(description="Unique in the organisation.")
    kind: ReportKind
    format: ReportFormat
    filters: ReportTemplateFiltersInput | None = None
    columns: list[str] | None = strawberry.field(
        default=None, description="Columns in order (the CSV export's names); none: defaults."
    )
    schedule_channel_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Deliver last month's file to this EMAIL, WEBHOOK, SLACK or TEAMS channel "
        "on the first of every month (UTC); omitted: on demand only.",
    )


@strawberry.type(description="A saved filter, in the CSV export's query-string spelling.")
class ReportFilter:
    name: str
    value: str


@strawberry.type(description="A saved report: run on demand, or monthly to a channel.")
class ReportTemplate:
    id: strawberry.ID
    name: str
    kind: ReportKind
    format: ReportFormat
    filters: list[ReportFilter]
    columns: list[str]
    schedule_channel_id: strawberry.ID | None
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, record: TemplateRecord) -> ReportTemplate:
        return cls(
            id=strawberry.ID(str(record.id)),
            name=record.name,
            kind=record.kind,
            format=record.format,
            filters=[ReportFilter(name=k, value=v) for k, v in sorted(record.filters.items())],
            columns=list(record.columns),
            schedule_channel_id=None
            if record.channel_id is None
            else strawberry.ID(str(record.channel_id)),
            created_by=record.created_by,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


@strawberry.type
class ReportTemplateSaved:
    template: ReportTemplate


@strawberry.type
class ReportTemplateDeleted:
    id: strawberry.ID


@strawberry.type(description="A short-lived signed link to one run's file.")
class ReportDownload:
    url: str = strawberry.field(description="GET it without a token; it expires at expiresAt.")
    expires_at: dt.datetime
    filename: str
    month: str = strawberry.field(description="The month reported, YYYY-MM (UTC).")


SaveReportTemplateResult = Annotated[
    ReportTemplateSaved | ValidationFailed | NotFound,
    strawberry.union("SaveReportTemplateResult"),
]
DeleteReportTemplateResult = Annotated[
    ReportTemplateDeleted | NotFound, strawberry.union("DeleteReportTemplateResult")
]
RunReportTemplateResult = Annotated[
    ReportDownload | ValidationFailed | NotFound, strawberry.union("RunReportTemplateResult")
]
