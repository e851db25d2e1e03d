"""CSV exports: the request and the signed download link."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry

from costgraph.billing.exports.spec import ReportKind
from costgraph.billing.pnl_ranges import TimeBucket
from costgraph.billing.reports.templates import ReportFormat
from costgraph.billing.usage_analytics import UsageDimension
from costgraph.models.ledger import EntryType
from costgraph.schema import pnl as _pnl  # noqa: F401  registers TimeBucket, UsageDimension
from costgraph.schema import reports as _reports  # noqa: F401  registers ReportFormat
from costgraph.schema import types as _types  # noqa: F401  registers EntryType
from costgraph.schema.inputs import DateRange
from costgraph.schema.results import NotFound, ValidationFailed
from costgraph.schema.scalars import CurrencyCode

strawberry.enum(
    ReportKind,
    name="ExportReport",
    description="LEDGER: entries; USAGE: usage grouped (and bucketed); PNL: P&L (per bucket).",
)


@strawberry.input(description="Filters an export understands (P&L: accountId, customerId, agent).")
class ExportFilter:
    account_id: strawberry.ID | None = None
    customer_id: strawberry.ID | None = None
    user_id: strawberry.ID | None = None
    department_id: strawberry.ID | None = None
    provider: str | None = None
    model: str | None = None
    feature: str | None = None
    agent: str | None = None
    types: list[EntryType] | None = strawberry.field(default=None, description="LEDGER only.")


@strawberry.input
class ExportInput:
    report: ReportKind
    range: DateRange
    columns: list[str] | None = strawberry.field(
        default=None, description="Column names, in order; omitted: the report's defaults."
    )
    filter: ExportFilter | None = None
    group_by: list[UsageDimension] | None = strawberry.field(
        default=None, description="USAGE only."
    )
    bucket: TimeBucket | None = strawberry.field(default=None, description="USAGE and PNL.")
    currency: CurrencyCode | None = strawberry.field(
        default=None, description="USAGE and PNL: the reporting currency."
    )
    format: ReportFormat | None = strawberry.field(
        default=None,
        description="CSV (default, streamed), XLSX or PDF: the same rows, filters and grouping "
        "as a document with its totals.",
    )


@strawberry.type(description="A download URL that works without the bearer header, briefly.")
class ExportLink:
    url: str
    expires_at: dt.datetime
    filename: str


ExportLinkResult = Annotated[
    ExportLink | ValidationFailed | NotFound, strawberry.union("ExportLinkResult")
]
