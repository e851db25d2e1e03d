"""Running totals of a scope's usage over a period, per currency, from the hourly rollups.

What is counted is unchanged: ``USAGE_CHARGE`` entries of the scope in ``[start, end)``
(a correction written by a reprice is not a usage charge here). Amounts of different
currencies are never added together: a scope whose accounts bill in USD and EUR has two rows.

Why not a plain grouped SUM over the ledger: a live update re-reads the totals, and that SUM
walks every entry of the month, so each update cost more as the month filled up. The
rollups (:mod:`costgraph.billing.rollups`) already hold exact hourly sums per organisation,
account (with its customer) and user (with its department); one statement adds, in one
snapshot:

- the rollup rows of the whole hours of the period;
- **the tail**: entries of those hours the rollup job has not reached (not visible in its
  high-water mark, found among the newest pages through the BRIN index on ``txid``);
- minus the reprice corrections of those hours. The rollups count a correction as usage
  (P&L does), these totals do not; corrections are only written by a reprice, which leaves
  its run (with its range) in ``reprice_runs`` in the same transaction, so the ledger is
  only read for them inside the span of the runs overlapping the period — with none, not
  at all;
- the raw ledger for partial hours at the edges of the period (a calendar month has none).

Rollup rows count ``USAGE_CHARGE`` entries as ``events`` and carry every entry's tokens;
only usage charges carry tokens (payments, fees and corrections have none), so the sums are
those of a plain SUM over the scope's usage charges. A currency appears when the period
holds at least one usage charge in it (``HAVING``), exactly like the grouped SUM.

The cost of a read grows with the hours and rollup rows of the period and the entries not
yet rolled up (the job runs every second or so), not with the number of entries.
Every statement names the tenant's organisation itself; the session's tenant is required.
"""

# SQL text here is assembled from constant names only; every value is a bind parameter.
# ruff: noqa: S608

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing.periods import Period, window
from costgraph.billing.pnl_measures import USAGE_SQL
from costgraph.billing.pnl_repository import MARK_SQL, ceil_hour, floor_hour
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.kernel.clock import utcnow
from costgraph.models.scoping import TenantNotBound, bound_tenant

_UTC = ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class UsageTotals:
    currency: str
    entries: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    ai_cost: Decimal
    billed: Decimal

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cached_input_tokens
            + self.cache_write_tokens
            + self.reasoning_tokens
        )


def current_period(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The calendar month (UTC) containing ``now``, as ``[start, end)``."""
    return window(Period.MONTH, now or utcnow(), _UTC)


#: Per scope kind: the smallest rollup table holding it, and the scope's column in both the
#: table and the ledger (None: the organisation itself).
_ROLLUPS: dict[ScopeKind, tuple[str, str | None]] = {
    ScopeKind.ORGANIZATION: ("rollup_org_hourly", None),
    ScopeKind.CUSTOMER: ("rollup_account_hourly", "customer_id"),
    ScopeKind.ACCOUNT: ("rollup_account_hourly", "account_id"),
    ScopeKind.DEPARTMENT: ("rollup_user_hourly", "department_id"),
    ScopeKind.USER: ("rollup_user_hourly", "user_id"),
}

_TOKENS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
#: The columns every branch yields, in this order.
_COLUMNS = ("currency", "events", *_TOKENS, "ai_cost", "billed")

# $1 organisation, $2/$3 the whole hours [ws, we), $4 the scope's id (when it has a column),
# then the period's [start, end) (with edges): $4/$5, or $5/$6 after a scope id.

_TAIL_COLUMNS = ", ".join(
    [
        "organization_id",
        "occurred_at",
        "currency",
        "type",
        "related_entry_id",
        "ai_cost",
        "amount",
        "txid",
        *_TOKENS,
        *sorted({column for _, column in _ROLLUPS.values() if column is not None}),
    ]
)


def _scope_condition(alias: str, column: str | None) -> list[str]:
    return [] if column is None else [f"{alias}.{column} = $4"]


def _rolled(table: str, column: str | None) -> str:
    where = ["r.organization_id = $1", "r.bucket >= $2", "r.bucket < $3"]
    where += _scope_condition("r", column)
    values = ", ".join(["r.currency", "r.events", *(f"r.{t}" for t in _TOKENS)])
    return f"SELECT {values}, r.ai_cost, r.billed_usage FROM {table} r WHERE {' AND '.join(where)}"


def _tail(column: str | None) -> str:
    """Entries of the whole hours not visible in the mark, counted as the rollups count them.

    The inner query holds only ``txid >= xmin(mark)`` and the period's start (which prunes
    older partitions) behind ``OFFSET 0``, so that its index is the BRIN on ``txid`` (as in
    :mod:`costgraph.billing.pnl_repository`). The end stays outside: with both bounds, a
    generic plan takes the pair for a narrow range and adds a scan of a time index over the
    whole month (a cost that grows with the month's entries, the one this module avoids).
    """
    inner = (
        f"SELECT {_TAIL_COLUMNS} FROM ledger_entries WHERE occurred_at >= $2 "
        f"AND txid >= txid_snapshot_xmin({MARK_SQL}) OFFSET 0"
    )
    where = [
        "e.organization_id = $1",
        "e.occurred_at < $3",
        f"NOT txid_visible_in_snapshot(e.txid, {MARK_SQL})",
    ]
    where += _scope_condition("e", column)
    values = ", ".join(
        [
            "e.currency",
            "CASE WHEN e.type = 'USAGE_CHARGE' THEN 1 ELSE 0 END",
            *(f"e.{t}" for t in _TOKENS),
            f"CASE WHEN {USAGE_SQL} THEN e.ai_cost ELSE 0 END",
            f"CASE WHEN {USAGE_SQL} THEN e.amount ELSE 0 END",
        ]
    )
    return f"SELECT {values} FROM ({inner}) e WHERE {' AND '.join(where)}"


def _corrections(column: str | None) -> str:
    """Reprice corrections of the whole hours, negated. Read only inside the span of the
    reprice runs whose ranges overlap the hours (two one-off subqueries, so the span bounds
    the index scan): with none, the bounds are NULL and the scan returns at once."""
    runs = (
        "FROM reprice_runs p WHERE p.organization_id = $1 AND p.range_start < $3 "
        "AND p.range_end > $2"
    )
    where = [
        "e.organization_id = $1",
        *_scope_condition("e", column),
        f"e.occurred_at >= (SELECT min(greatest(p.range_start, $2)) {runs})",
        f"e.occurred_at < (SELECT max(least(p.range_end, $3)) {runs})",
        "e.type = 'ADJUSTMENT'",
        "e.related_entry_id IS NOT NULL",
    ]
    values = ", ".join(["e.currency", "0", *(f"-e.{t}" for t in _TOKENS)])
    return (
        f"SELECT {values}, -e.ai_cost, -e.amount FROM ledger_entries e WHERE {' AND '.join(where)}"
    )


def _edges(column: str | None) -> str:
    """Usage charges of the partial hours ``[start, ws)`` and ``[we, end)``."""
    start, end = ("$4", "$5") if column is None else ("$5", "$6")
    where = [
        "e.organization_id = $1",
        "e.type = 'USAGE_CHARGE'",
        f"((e.occurred_at >= {start} AND e.occurred_at < $2) OR (e.occurred_at >= $3 "
        f"AND e.occurred_at < {end}))",
        *_scope_condition("e", column),
    ]
    values = ", ".join(["e.currency", "1", *(f"e.{t}" for t in _TOKENS)])
    return f"SELECT {values}, e.ai_cost, e.amount FROM ledger_entries e WHERE {' AND '.join(where)}"


def _statement(table: str, column: str | None, *, edges: bool) -> str:
    branches = [_rolled(table, column), _tail(column), _corrections(column)]
    if edges:
        branches.append(_edges(column))
    named = ", ".join(_COLUMNS)
    sums = ", ".join(f"sum(u.{name})" for name in _COLUMNS[1:])
    union = " UNION ALL ".join(branches)
    return (
        f"SELECT u.currency, {sums} FROM ({union}) AS u({named}) "
        "GROUP BY u.currency HAVING sum(u.events) > 0 ORDER BY u.currency"
    )


#: (scope kind, with edges) -> statement; built once (asyncpg prepares each text once per
#: connection).
STATEMENTS: dict[tuple[ScopeKind, bool], str] = {
    (kind, edges): _statement(table, column, edges=edges)
    for kind, (table, column) in _ROLLUPS.items()
    for edges in (False, True)
}


#: The read's transaction settings (``LOCAL``: they end with it). The tail must be found
#: through the BRIN on ``txid`` among the newest pages; while the month's partition has no
#: statistics yet (a new month, a new database) the planner would rather scan all of it, a
#: cost that grows with the month again. No parallel workers or JIT for a few hundred rows.
SETTINGS = (
    "SET LOCAL enable_seqscan = off; SET LOCAL max_parallel_workers_per_gather = 0; "
    "SET LOCAL jit = off"
)


def whole_hours(period: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    """The whole hours ``[ws, we)`` inside ``period`` (empty, ``ws == we``, if none)."""
    start, end = period
    ws, we = ceil_hour(start), floor_hour(end)
    return (ws, we) if ws < we else (start, start)


def _totals(record: Any) -> UsageTotals:
    return UsageTotals(
        currency=record[0],
        entries=int(record[1]),
        input_tokens=int(record[2]),
        output_tokens=int(record[3]),
        cached_input_tokens=int(record[4]),
        cache_write_tokens=int(record[5]),
        reasoning_tokens=int(record[6]),
        ai_cost=Decimal(record[7]),
        billed=Decimal(record[8]),
    )


async def period_totals(
    session: AsyncSession, scope: Scope, period: tuple[datetime, datetime]
) -> list[UsageTotals]:
    """The scope's usage totals over ``period``, one row per currency, ordered by currency.
    ``session`` must be bound to a tenant; a scope of another organisation has no rows. Meant
    for a reading session of its own (see :data:`SETTINGS`, which last to its transaction's
    end)."""
    organization_id = bound_tenant(session.sync_session)
    if organization_id is None:
        raise TenantNotBound("live totals read outside a tenant-bound session")
    if scope.kind is ScopeKind.ORGANIZATION and scope.id != organization_id:
        return []
    start, end = period
    ws, we = whole_hours(period)
    edges = (start, end) != (ws, we)
    scope_id: uuid.UUID | None = None if _ROLLUPS[scope.kind][1] is None else scope.id
    arguments: list[Any] = [organization_id, ws, we]
    if scope_id is not None:
        arguments.append(scope_id)
    if edges:
        arguments += [start, end]
    statement = STATEMENTS[(scope.kind, edges)]
    connection = await _driver(session)
    if connection.is_in_transaction():
        await connection.execute(SETTINGS)
        records = await connection.fetch(statement, *arguments)
    else:
        # A transaction of its own, begun with its settings in one round trip (a live update
        # costs three, as the plain SUM did); the session never saw it begin or end.
        await connection.execute(f"BEGIN READ ONLY; {SETTINGS}")
        try:
            records = await connection.fetch(statement, *arguments)
        finally:
            if connection.is_in_transaction():
                await connection.execute("ROLLBACK")
    return [_totals(record) for record in records]


async def _driver(session: AsyncSession) -> Any:
    """The asyncpg connection under the session, in a transaction only if the session had
    already begun one there (see :func:`costgraph.billing.raw_connection.driver_connection`,
    which begins it)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection
