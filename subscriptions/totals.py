"""Running totals of a scope's usage over a period: one grouped SUM, per currency.

Amounts of different currencies are never added together: a scope whose accounts bill in
USD and EUR has two rows. The query runs in a tenant-bound session (the tenant filter of
:mod:`costgraph.models.scoping` applies on top of the explicit scope condition).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from costgraph.billing.periods import Period, window
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.models.ledger import EntryType, LedgerEntry

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
    return window(Period.MONTH, now or datetime.now(UTC), _UTC)


def _column(kind: ScopeKind) -> InstrumentedAttribute[Any]:
    columns: dict[ScopeKind, InstrumentedAttribute[Any]] = {
        ScopeKind.ORGANIZATION: LedgerEntry.organization_id,
        ScopeKind.CUSTOMER: LedgerEntry.customer_id,
        ScopeKind.ACCOUNT: LedgerEntry.account_id,
        ScopeKind.DEPARTMENT: LedgerEntry.department_id,
        ScopeKind.USER: LedgerEntry.user_id,
    }
    return columns[kind]


def _sum(column: InstrumentedAttribute[Any]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), 0)


async def period_totals(
    session: AsyncSession, scope: Scope, period: tuple[datetime, datetime]
) -> list[UsageTotals]:
    start, end = period
    statement = (
        select(
            LedgerEntry.currency,
            func.count(),
            _sum(LedgerEntry.input_tokens),
            _sum(LedgerEntry.output_tokens),
            _sum(LedgerEntry.cached_input_tokens),
            _sum(LedgerEntry.cache_write_tokens),
            _sum(LedgerEntry.reasoning_tokens),
            _sum(LedgerEntry.ai_cost),
            _sum(LedgerEntry.amount),
        )
        .where(
            LedgerEntry.type == EntryType.USAGE_CHARGE.value,
            LedgerEntry.occurred_at >= start,
            LedgerEntry.occurred_at < end,
            _column(scope.kind) == scope.id,
        )
        .group_by(LedgerEntry.currency)
        .order_by(LedgerEntry.currency)
    )
    rows = (await session.execute(statement)).all()
    return [
        UsageTotals(
            currency=row[0],
            entries=int(row[1]),
            input_tokens=int(row[2]),
            output_tokens=int(row[3]),
            cached_input_tokens=int(row[4]),
            cache_write_tokens=int(row[5]),
            reasoning_tokens=int(row[6]),
            ai_cost=Decimal(row[7]),
            billed=Decimal(row[8]),
        )
        for row in rows
    ]
