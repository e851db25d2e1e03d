"""SQL of the exports: whose ids the filters name, and the ledger's entries streamed from a
server-side cursor (asyncpg), a chunk of rows at a time, so memory stays flat however many
entries the range holds. Usage and P&L reuse their own domain queries (see service.py)."""

# SQL text here is assembled from the constant column table only; every value is a bind
# parameter.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from costgraph.billing import pnl_repository
from costgraph.billing.exports.columns import LEDGER, Column, Kind
from costgraph.billing.exports.spec import ExportFilters, ExportRequest
from costgraph.kernel.errors import NotFound

#: Filter -> (ledger column, owner table kind or None for a tag).
_LEDGER_FILTERS: tuple[tuple[str, str, str | None], ...] = (
    ("account_id", "account_id", "account"),
    ("customer_id", "customer_id", "customer"),
    ("user_id", "user_id", "user"),
    ("department_id", "department_id", "department"),
    ("provider", "provider", None),
    ("model", "model", None),
    ("feature", "feature", None),
    ("agent", "agent", None),
)


async def require_owned(
    connection: Any,
    organization_id: uuid.UUID,
    filters: ExportFilters,
    names: Callable[[str], str],
) -> None:
    """Each id filter names this organisation's object; another tenant's answers exactly as
    a missing one (``NOT_FOUND``)."""
    for attribute, _, kind in _LEDGER_FILTERS:
        ident = getattr(filters, attribute)
        if kind is None or ident is None:
            continue
        if not await pnl_repository.owned(connection, kind, organization_id, ident):
            raise NotFound(kind, ident, names(f"{kind}Id"))


#: Name columns: (directory table, the entry's id column, the table's column).
_NAMED: dict[str, tuple[str, str, str]] = {
    "account_name": ("accounts", "account_id", "name"),
    "customer_name": ("customers", "customer_id", "name"),
    "user_email": ("users", "user_id", "email"),
    "user_name": ("users", "user_id", "name"),
    "department_name": ("departments", "department_id", "name"),
}


def _select(column: Column) -> str:
    """The column's SQL; ids and JSON arrive as text (PostgreSQL formats them faster than
    Python's ``str(UUID)``). A name is looked up by primary key per row (a scalar subquery:
    the entries stream in index order, which a join could make the planner sort first)."""
    assert column.name in LEDGER  # names come from the constant table only
    if column.name in _NAMED:
        table, ident, attribute = _NAMED[column.name]
        return (
            f"(SELECT n.{attribute} FROM {table} n "
            f"WHERE n.organization_id = e.organization_id AND n.id = e.{ident})"
        )
    if column.name == "metadata" or column.kind is Kind.ID:
        return f"e.{column.name}::text"
    return f"e.{column.name}"


def ledger_statement(
    organization_id: uuid.UUID, request: ExportRequest, columns: Sequence[Column]
) -> tuple[str, list[Any]]:
    """The entries of ``[start, end)`` matching the filters, oldest first (``occurred_at``,
    then ``id``: the organisation's index order), the columns in the given order."""
    args: list[Any] = [organization_id, request.start, request.end]
    where = ["e.organization_id = $1", "e.occurred_at >= $2", "e.occurred_at < $3"]
    for attribute, column, _ in _LEDGER_FILTERS:
        value = getattr(request.filters, attribute)
        if value is not None:
            args.append(value)
            where.append(f"e.{column} = ${len(args)}")
    if request.filters.types:
        args.append(list(request.filters.types))
        where.append(f"e.type = ANY(${len(args)}::text[])")
    selected = ", ".join(_select(c) for c in columns)
    sql = (
        f"SELECT {selected} FROM ledger_entries e WHERE {' AND '.join(where)} "
        "ORDER BY e.occurred_at, e.id"
    )
    return sql, args


async def stream_ledger(
    connection: Any, statement: tuple[str, list[Any]], chunk_rows: int
) -> AsyncIterator[list[Any]]:
    """The statement's rows, ``chunk_rows`` at a time, from a cursor in one read-only
    REPEATABLE READ transaction (one consistent picture of the ledger)."""
    sql, args = statement
    if connection.is_in_transaction():
        async for rows in _chunks(connection, sql, args, chunk_rows):
            yield rows
        return
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        async for rows in _chunks(connection, sql, args, chunk_rows):
            yield rows


async def _chunks(
    connection: Any, sql: str, args: list[Any], chunk_rows: int
) -> AsyncIterator[list[Any]]:
    """Each fetch is sent before the previous chunk is handed on, so PostgreSQL reads the
    next rows while this process writes the current ones."""
    cursor = await connection.cursor(sql, *args)
    pending = asyncio.ensure_future(cursor.fetch(chunk_rows))
    try:
        while rows := await pending:
            pending = asyncio.ensure_future(cursor.fetch(chunk_rows))
            await asyncio.sleep(0)  # let the fetch go out before the chunk is formatted
            yield rows
    finally:
        # The reader stopped early (a client went away): let the fetch in flight finish, so
        # the connection goes back to the pool idle, not mid-statement.
        with contextlib.suppress(Exception):
            await pending
