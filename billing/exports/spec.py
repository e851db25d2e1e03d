"""What an export asks for, parsed and checked: the report, a range, filters and columns.

The same request has two spellings: the query string of ``GET /exports/{report}.csv`` (also
a signed link's and a saved template's: :func:`parse_params` and
:meth:`ExportRequest.to_params`) and GraphQL's ``ExportInput``. Every check names the field in
the caller's own spelling (a :data:`FieldNames` map), so an error points at what was written.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from costgraph.billing.exports import columns as cols
from costgraph.billing.pnl_ranges import ReportLimits, TimeBucket, require_points
from costgraph.billing.usage_analytics import UsageDimension
from costgraph.billing.validation import TAG_MAX
from costgraph.kernel.clock import parse_rfc3339
from costgraph.kernel.errors import NotFound, ValidationFailed
from costgraph.kernel.money import require_currency
from costgraph.models.ledger import EntryType


class ReportKind(enum.StrEnum):
    LEDGER = "ledger"
    USAGE = "usage"
    PNL = "pnl"


#: The formats ``/exports`` offers: CSV streamed, xlsx and PDF documents of the same request
#: (:mod:`costgraph.billing.reports.custom`).
FORMATS = ("csv", "xlsx", "pdf")

#: Logical name -> the caller's field path. The query string uses the names themselves.
FieldNames = Callable[[str], str]


def query_names(name: str) -> str:
    return name


_ID_FILTERS = ("accountId", "customerId", "userId", "departmentId")
_TAG_FILTERS = ("provider", "model", "feature", "agent")
#: Filters each report understands (a P&L is scoped to an account or a customer, or an agent).
_FILTERS: dict[ReportKind, frozenset[str]] = {
    ReportKind.LEDGER: frozenset((*_ID_FILTERS, *_TAG_FILTERS, "types")),
    ReportKind.USAGE: frozenset((*_ID_FILTERS, *_TAG_FILTERS)),
    ReportKind.PNL: frozenset(("accountId", "customerId", "agent")),
}
_PARAMS = frozenset(
    ("start", "end", "columns", "groupBy", "bucket", "currency", *_ID_FILTERS, *_TAG_FILTERS)
) | {"types"}


@dataclass(frozen=True, slots=True)
class ExportFilters:
    account_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    provider: str | None = None
    model: str | None = None
    feature: str | None = None
    agent: str | None = None
    #: Ledger entry types (``USAGE_CHARGE``, ``DEPOSIT``...); empty: every type.
    types: tuple[str, ...] = ()

    def given(self) -> dict[str, Any]:
        """The filters set, by their query-string names."""
        values = {
            "accountId": self.account_id,
            "customerId": self.customer_id,
            "userId": self.user_id,
            "departmentId": self.department_id,
            "provider": self.provider,
            "model": self.model,
            "feature": self.feature,
            "agent": self.agent,
            "types": self.types or None,
        }
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True, slots=True)
class ExportRequest:
    report: ReportKind
    start: datetime
    end: datetime
    #: Empty: the report's default columns.
    columns: tuple[str, ...] = ()
    filters: ExportFilters = field(default_factory=ExportFilters)
    #: Usage only: dimensions to group by (``model``, ``user``...).
    group_by: tuple[str, ...] = ()
    #: Usage and P&L: one row per UTC bucket.
    bucket: TimeBucket | None = None
    #: Usage and P&L: the reporting currency (default: the organisation's).
    currency: str | None = None

    def to_params(self) -> dict[str, str]:
        """The query-string form; :func:`parse_params` reads it back to an equal request."""
        params = {"start": _rfc3339(self.start), "end": _rfc3339(self.end)}
        if self.columns:
            params["columns"] = ",".join(self.columns)
        for name, value in self.filters.given().items():
            params[name] = ",".join(value) if name == "types" else str(value)
        if self.group_by:
            params["groupBy"] = ",".join(self.group_by)
        if self.bucket is not None:
            params["bucket"] = self.bucket.value
        if self.currency is not None:
            params["currency"] = self.currency
        return params

    @property
    def filename(self) -> str:
        return f"{self.report.value}-{self.start:%Y%m%dT%H%M%SZ}-{self.end:%Y%m%dT%H%M%SZ}.csv"


@dataclass(frozen=True, slots=True)
class ExportLimits:
    """Operator-set bounds (``COSTGRAPH_EXPORT_*``)."""

    max_range_days: int = 400
    #: Ledger rows fetched from the cursor and written per chunk of the response.
    chunk_rows: int = 5_000
    #: Usage/P&L buckets and usage rows, as for the GraphQL fields.
    max_points: int = 2_000
    max_usage_rows: int = 10_000

    @classmethod
    def of(cls, settings: Any) -> ExportLimits:
        return cls(
            max_range_days=settings.export_max_range_days,
            chunk_rows=settings.export_chunk_rows,
            max_points=settings.pnl_max_points,
            max_usage_rows=settings.pnl_max_usage_rows,
        )

    def report_limits(self) -> ReportLimits:
        return ReportLimits(
            max_range_days=self.max_range_days,
            max_points=self.max_points,
            max_usage_rows=self.max_usage_rows,
        )


def _rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",")) if text else ()


def _time(params: Mapping[str, str], name: str) -> datetime:
    text = params.get(name)
    if not text:
        raise ValidationFailed(f"{name} is required (RFC 3339, e.g. 2026-01-01T00:00:00Z)", name)
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise ValidationFailed(str(exc), name) from None


def _uuid(text: str, kind: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound(kind, text[:64], name) from None


def parse_report(name: str) -> ReportKind:
    try:
        return ReportKind(name)
    except ValueError:
        raise NotFound("report", name[:40], "report") from None


def parse_params(report: str, params: Mapping[str, str]) -> ExportRequest:
    """The query-string form to a request. Only the syntax is checked here; the rest by
    :func:`check`, and the ids' owner by :func:`~costgraph.billing.exports.service.prepare`."""
    kind = parse_report(report)
    for name in params:
        if name not in _PARAMS:
            raise ValidationFailed(f"unknown parameter {name[:40]!r}", name[:40])
    ids = {
        name: _uuid(params[name], name.removesuffix("Id"), name)
        for name in _ID_FILTERS
        if params.get(name) is not None
    }
    bucket = params.get("bucket")
    try:
        time_bucket = None if bucket is None else TimeBucket(bucket.upper())
    except ValueError:
        raise ValidationFailed(
            f"bucket must be one of {', '.join(b.value for b in TimeBucket)}", "bucket"
        ) from None
    if "columns" in params and not params["columns"]:
        raise ValidationFailed("columns names at least one column", "columns")
    return ExportRequest(
        report=kind,
        start=_time(params, "start"),
        end=_time(params, "end"),
        columns=_list(params["columns"]) if "columns" in params else (),
        filters=ExportFilters(
            account_id=ids.get("accountId"),
            customer_id=ids.get("customerId"),
            user_id=ids.get("userId"),
            department_id=ids.get("departmentId"),
            provider=params.get("provider"),
            model=params.get("model"),
            feature=params.get("feature"),
            agent=params.get("agent"),
            types=_list(params.get("types", "")),
        ),
        group_by=_list(params.get("groupBy", "")),
        bucket=time_bucket,
        currency=params.get("currency"),
    )


def check(
    request: ExportRequest,
    limits: ExportLimits,
    names: FieldNames = query_names,
) -> ExportRequest:
    """Every check that needs no database; the request with its range in UTC. Raises
    ``ValidationFailed`` naming the field."""
    _check_range(request, limits, names)
    request = replace(request, start=request.start.astimezone(UTC), end=request.end.astimezone(UTC))
    allowed = _FILTERS[request.report]
    for name in request.filters.given():
        if name not in allowed:
            raise ValidationFailed(
                f"the {request.report.value} export does not filter by {name}", names(name)
            )
    for name in _TAG_FILTERS:
        value = getattr(request.filters, name)
        if value is not None and not 0 < len(value) <= TAG_MAX:
            raise ValidationFailed(f"must be 1 to {TAG_MAX} characters", names(name))
    scoped_twice = (
        request.filters.account_id is not None and request.filters.customer_id is not None
    )
    if scoped_twice and request.report is ReportKind.PNL:
        raise ValidationFailed("a P&L is scoped to an account or a customer", names("customerId"))
    valid_types = {t.value for t in EntryType}
    for value in request.filters.types:
        if value not in valid_types:
            raise ValidationFailed(
                f"{value[:40]!r} is not an entry type; types: {', '.join(sorted(valid_types))}",
                names("types"),
            )
    _check_grouping(request, limits, names)
    if request.currency is not None:
        if request.report is ReportKind.LEDGER:
            raise ValidationFailed(
                "the ledger export keeps each entry's own currency", names("currency")
            )
        require_currency(request.currency, names("currency"))
    resolve_columns(request, names)
    return request


def _check_range(request: ExportRequest, limits: ExportLimits, names: FieldNames) -> None:
    if request.start.tzinfo is None or request.end.tzinfo is None:
        raise ValidationFailed("range bounds must carry a time zone", names("start"))
    if request.end <= request.start:
        raise ValidationFailed("end must be after start", names("end"))
    if request.end - request.start > timedelta(days=limits.max_range_days):
        raise ValidationFailed(
            f"an export covers at most {limits.max_range_days} days", names("end")
        )


def _check_grouping(request: ExportRequest, limits: ExportLimits, names: FieldNames) -> None:
    if request.group_by and request.report is not ReportKind.USAGE:
        raise ValidationFailed("only the usage export groups", names("groupBy"))
    dimensions = {d.dimension for d in UsageDimension}
    for value in request.group_by:
        if value not in dimensions:
            raise ValidationFailed(
                f"{value[:40]!r} is not a dimension; dimensions: {', '.join(sorted(dimensions))}",
                names("groupBy"),
            )
    if len(set(request.group_by)) != len(request.group_by):
        raise ValidationFailed("a dimension is named twice", names("groupBy"))
    if request.bucket is not None:
        if request.report is ReportKind.LEDGER:
            raise ValidationFailed("the ledger export lists entries, not buckets", names("bucket"))
        require_points(
            request.start, request.end, request.bucket, limits.report_limits(), names("bucket")
        )


#: Usage dimension -> its column.
DIMENSION_COLUMNS = {
    "model": "model",
    "provider": "provider",
    "customer": "customer_id",
    "account": "account_id",
    "department": "department_id",
    "user": "user_id",
    "feature": "feature",
    "agent": "agent",
}


def offered(request: ExportRequest) -> dict[str, cols.Column]:
    """The columns this request may choose from, in their default order."""
    if request.report is ReportKind.LEDGER:
        return cols.LEDGER
    if request.report is ReportKind.PNL:
        return cols.PNL
    table: dict[str, cols.Column] = {}
    if request.bucket is not None:
        table[cols.BUCKET_START.name] = cols.BUCKET_START
    for dimension in request.group_by:
        column = cols.USAGE_DIMENSIONS[DIMENSION_COLUMNS[dimension]]
        table[column.name] = column
        for named, _ in cols.NAMES.get(column.name, ()):
            table[named.name] = named
    table.update(cols.USAGE_MEASURES)
    return table


def default_columns_for(request: ExportRequest) -> tuple[str, ...]:
    if request.report is ReportKind.LEDGER:
        return cols.LEDGER_DEFAULT
    return tuple(offered(request))


def default_columns(report: ReportKind | str) -> tuple[str, ...]:
    """The columns written when none are chosen (usage: also a column per ``groupBy``
    dimension and ``bucket_start`` with a bucket, first)."""
    kind = ReportKind(report)
    if kind is ReportKind.LEDGER:
        return cols.LEDGER_DEFAULT
    return tuple(cols.PNL if kind is ReportKind.PNL else cols.USAGE_MEASURES)


def resolve_columns(
    request: ExportRequest, names: FieldNames = query_names
) -> tuple[cols.Column, ...]:
    """The columns written after ``row_type``: chosen (or default), with currencies added."""
    table = offered(request)
    chosen = request.columns or default_columns_for(request)
    for name in chosen:
        if name not in table:
            raise ValidationFailed(
                f"no column {name[:40]!r} in this export; columns: {', '.join(table)}",
                names("columns"),
            )
    if len(set(chosen)) != len(chosen):
        raise ValidationFailed("a column is named twice", names("columns"))
    return cols.with_currencies(chosen, table)


def columns_of(report: ReportKind | str) -> tuple[str, ...]:
    """Every column name the report can offer (usage: with every dimension and a bucket)."""
    kind = ReportKind(report)
    if kind is ReportKind.LEDGER:
        return tuple(cols.LEDGER)
    if kind is ReportKind.PNL:
        return tuple(cols.PNL)
    names = [named.name for pairs in cols.NAMES.values() for named, _ in pairs]
    return (cols.BUCKET_START.name, *cols.USAGE_DIMENSIONS, *names, *cols.USAGE_MEASURES)
