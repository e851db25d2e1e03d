"""An export from request to bytes: :func:`prepare` checks everything and reads what is
small, before a byte is written; :meth:`PreparedExport.csv_chunks` writes the file.

The ledger export streams: its entries are read from a cursor while the file is written.
Usage and P&L answers are bounded (the P&L settings' row and point limits) and are read
whole by :func:`prepare` with the same domain queries as the GraphQL fields, so a failure of
theirs (too many rows) is a typed error, not a broken download. A currency without a rate
to the requested one is no failure: usage rows of it stay in its own currency (as the
``usage`` query answers), and the P&L adds its rows (per period) in its own currency after
the converted ones; the reconciliation rows total each currency apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import liabilities, pnl, usage_analytics
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.exports import queries
from costgraph.billing.exports.columns import NAMES, Column, Kind
from costgraph.billing.exports.csv_writer import TableWriter
from costgraph.billing.exports.spec import (
    DIMENSION_COLUMNS,
    ExportLimits,
    ExportRequest,
    FieldNames,
    ReportKind,
    check,
    query_names,
    resolve_columns,
)
from costgraph.billing.ledger_repository import driver_connection
from costgraph.billing.pnl import Scope, ScopeKind
from costgraph.billing.pnl_measures import Figures
from costgraph.billing.usage_analytics import UsageDimension, UsageFilter
from costgraph.models import Account, Customer, Department, User


@dataclass(frozen=True, slots=True)
class PreparedExport:
    organization: OrgContext
    request: ExportRequest
    columns: tuple[Column, ...]
    limits: ExportLimits
    #: Usage and P&L: the rows, values in column order (the ledger streams instead).
    rows: tuple[tuple[Any, ...], ...] = ()
    #: The currency totals fall back to when no row carries one.
    currency: str = ""
    #: P&L: the exact totals of the P&L query, by currency and column.
    exact: dict[str, dict[str, Decimal]] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return self.request.filename

    async def csv_chunks(self, session: AsyncSession) -> AsyncIterator[bytes]:
        """The file: header, rows (the ledger's a chunk at a time), reconciliation.

        ``session`` must be bound to the organisation and stay open while iterating."""
        writer = TableWriter(self.columns)
        writer.header()
        if self.request.report is ReportKind.LEDGER:
            connection = await driver_connection(session)
            statement = queries.ledger_statement(self.organization.id, self.request, self.columns)
            async for rows in queries.stream_ledger(connection, statement, self.limits.chunk_rows):
                writer.write(rows)
                yield writer.take()
        else:
            writer.write(self.rows)
        writer.reconciliation(self.currency, self.exact)
        yield writer.take()


async def prepare(
    session: AsyncSession,
    org: OrgContext,
    request: ExportRequest,
    limits: ExportLimits,
    names: FieldNames = query_names,
) -> PreparedExport:
    """Check the request (raising ``ValidationFailed`` or ``NotFound`` naming the field; an id
    of another organisation answers as a missing one) and read usage or P&L."""
    request = check(request, limits, names)
    columns = resolve_columns(request, names)
    connection = await driver_connection(session)
    await queries.require_owned(connection, org.id, request.filters, names)
    if request.report is ReportKind.LEDGER:
        return PreparedExport(org, request, columns, limits, currency=org.reporting_currency)
    if request.report is ReportKind.USAGE:
        return await _usage(session, org, request, columns, limits)
    return await _pnl(session, org, request, columns, limits)


async def render_csv(
    session: AsyncSession, org: OrgContext, request: ExportRequest, limits: ExportLimits
) -> bytes:
    """The whole file at once (for small exports: attachments, saved templates)."""
    prepared = await prepare(session, org, request, limits)
    return b"".join([chunk async for chunk in prepared.csv_chunks(session)])


#: Export column -> the figure it shows, where the names differ.
_FIGURES = {"allowance_usage": "covered_usage"}


def _figure(figures: Figures, name: str) -> Any:
    if name == "revenue_basis":
        return figures.basis.name
    return getattr(figures, _FIGURES.get(name, name))


async def _usage(
    session: AsyncSession,
    org: OrgContext,
    request: ExportRequest,
    columns: Sequence[Column],
    limits: ExportLimits,
) -> PreparedExport:
    wanted = request.filters
    rows = await usage_analytics.usage(
        session,
        org,
        request.start,
        request.end,
        [UsageDimension(d.upper()) for d in request.group_by],
        request.bucket,
        UsageFilter(
            account_id=wanted.account_id,
            customer_id=wanted.customer_id,
            department_id=wanted.department_id,
            user_id=wanted.user_id,
            provider=wanted.provider,
            model=wanted.model,
            feature=wanted.feature,
            agent=wanted.agent,
        ),
        request.currency,
        limits.report_limits(),
    )
    by_column = {column: dimension for dimension, column in DIMENSION_COLUMNS.items()}
    names = await _names(session, rows, columns)

    def value(row: usage_analytics.UsageRow, column: Column) -> Any:
        if column.name == "bucket_start":
            return row.bucket
        if column.name in by_column and by_column[column.name] in row.key:
            return row.key[by_column[column.name]]
        if column.name in names:
            dimension, found = names[column.name]
            return found.get(row.key.get(dimension))
        return _figure(row.figures, column.name)

    currency = request.currency or org.reporting_currency
    table = tuple(tuple(value(row, c) for c in columns) for row in rows)
    return PreparedExport(org, request, tuple(columns), limits, table, currency)


async def _objects(session: AsyncSession, dimension: str, ids: set[Any]) -> dict[Any, Any]:
    """The directory objects a dimension's ids name (customers, accounts, departments, users)."""
    if dimension == "customer":
        return dict(await get_many(session, Customer, ids))
    if dimension == "account":
        return dict(await get_many(session, Account, ids))
    if dimension == "department":
        return dict(await get_many(session, Department, ids))
    return dict(await get_many(session, User, ids))


async def _names(
    session: AsyncSession,
    rows: Sequence[usage_analytics.UsageRow],
    columns: Sequence[Column],
) -> dict[str, tuple[str, dict[Any, Any]]]:
    """For each name column chosen: its dimension and the name per id in ``rows`` (one
    query per directory table)."""
    chosen = {c.name for c in columns}
    by_column = {column: dimension for dimension, column in DIMENSION_COLUMNS.items()}
    found: dict[str, tuple[str, dict[Any, Any]]] = {}
    for id_column, pairs in NAMES.items():
        wanted = [(column.name, attribute) for column, attribute in pairs if column.name in chosen]
        if not wanted:
            continue
        dimension = by_column[id_column]
        ids = {row.key[dimension] for row in rows if row.key.get(dimension) is not None}
        objects = await _objects(session, dimension, ids)
        for name, attribute in wanted:
            found[name] = (
                dimension,
                {ident: getattr(item, attribute) for ident, item in objects.items()},
            )
    return found


async def _pnl(
    session: AsyncSession,
    org: OrgContext,
    request: ExportRequest,
    columns: Sequence[Column],
    limits: ExportLimits,
) -> PreparedExport:
    wanted = request.filters
    if wanted.account_id is not None:
        scope = Scope(ScopeKind.ACCOUNT, wanted.account_id, wanted.agent)
    elif wanted.customer_id is not None:
        scope = Scope(ScopeKind.CUSTOMER, wanted.customer_id, wanted.agent)
    else:
        scope = Scope(ScopeKind.ORGANIZATION, agent=wanted.agent)
    report_limits = limits.report_limits()
    report = await pnl.open_report(
        session, org, scope, request.start, request.end, request.currency, report_limits
    )
    totaled = await pnl.summarize(session, report)
    totals = totaled.figures
    # A currency without a rate to the report's: its rows follow, in its own money.
    gaps = {pair.base for pair in totaled.missing}
    liability = None
    if scope.kind is ScopeKind.ORGANIZATION:  # as the P&L: an account's is not attributed
        found = await liabilities.summary(
            session, org, report.start, report.end, report.currency, scope.agent
        )
        liability = found.total
    if request.bucket is None:
        periods = [(report.start, report.end, totals, liability)]
        periods += [
            (report.start, report.end, f, None) for f in totaled.by_currency if f.currency in gaps
        ]
    else:
        points = await pnl.timeline(session, report, request.bucket, report_limits)
        periods = [(p.start, p.end, p.figures, p.liability) for p in points]
        periods += [
            (p.start, p.end, f, None) for p in points for f in p.by_currency if f.currency in gaps
        ]

    def value(start: Any, end: Any, figures: Figures, owed: Decimal | None, column: Column) -> Any:
        if column.name == "period_start":
            return start
        if column.name == "period_end":
            return end
        if column.name == "liability":
            return owed
        return _figure(figures, column.name)

    table = tuple(tuple(value(*period, c) for c in columns) for period in periods)
    sums: dict[str, Decimal] = {
        c.name: _figure(totals, c.name)
        for c in columns
        if c.kind is Kind.MONEY and c.name != "liability"
    }
    if liability is not None and any(c.name == "liability" for c in columns):
        sums["liability"] = liability
    exact = {report.currency: sums}
    for own in totaled.by_currency:
        if own.currency in gaps:
            exact[own.currency] = {
                c.name: _figure(own, c.name)
                for c in columns
                if c.kind is Kind.MONEY and c.name != "liability"
            }
    return PreparedExport(org, request, tuple(columns), limits, table, report.currency, exact)
