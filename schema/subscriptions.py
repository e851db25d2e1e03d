"""Types of the live feeds: usage updates for widgets, and alerts as they are raised."""

from __future__ import annotations

import datetime as dt
import decimal

import strawberry

from costgraph.schema.alerts import Alert  # the one Alert type; alertRaised streams it
from costgraph.schema.scalars import CurrencyCode
from costgraph.schema.scopes import BudgetScopeKind
from costgraph.subscriptions import feeds, totals

strawberry.enum(
    feeds.UpdateKind,
    name="UsageUpdateKind",
    description="Why an update was sent: SNAPSHOT first, then EVENT; INTERRUPTED and RESUMED "
    "around an outage of the live path (RESUMED totals are re-read, so nothing is lost).",
)
UsageUpdateKind = feeds.UpdateKind


def _id(value: object) -> strawberry.ID | None:
    return None if value is None else strawberry.ID(str(value))


@strawberry.type(description="Usage of one scope in one currency over the current period.")
class UsageTotals:
    currency: CurrencyCode
    events: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    total_tokens: int
    ai_cost: decimal.Decimal = strawberry.field(description="Provider cost, in `currency`.")
    billed_usage: decimal.Decimal = strawberry.field(description="AI cost with markup.")

    @classmethod
    def of(cls, row: totals.UsageTotals) -> UsageTotals:
        return cls(
            currency=CurrencyCode(row.currency),
            events=row.entries,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cached_input_tokens=row.cached_input_tokens,
            cache_write_tokens=row.cache_write_tokens,
            reasoning_tokens=row.reasoning_tokens,
            total_tokens=row.total_tokens,
            ai_cost=row.ai_cost,
            billed_usage=row.billed,
        )


@strawberry.type(description="Usage just recorded: one attribution's share of one write.")
class UsageChange:
    entry_id: strawberry.ID = strawberry.field(description="The newest ledger entry included.")
    account_id: strawberry.ID | None
    customer_id: strawberry.ID | None
    department_id: strawberry.ID | None
    user_id: strawberry.ID | None
    currency: CurrencyCode
    events: int
    total_tokens: int
    ai_cost: decimal.Decimal
    billed_usage: decimal.Decimal
    occurred_at: dt.datetime
    published_at: dt.datetime = strawberry.field(description="When the write was announced.")

    @classmethod
    def of(cls, change: feeds.UsageChange) -> UsageChange:
        delta = change.delta
        return cls(
            entry_id=strawberry.ID(str(delta.entry_id)),
            account_id=_id(delta.account_id),
            customer_id=_id(delta.customer_id),
            department_id=_id(delta.department_id),
            user_id=_id(delta.user_id),
            currency=CurrencyCode(delta.currency),
            events=delta.entries,
            total_tokens=delta.total_tokens,
            ai_cost=delta.ai_cost,
            billed_usage=delta.billed,
            occurred_at=delta.occurred_at,
            published_at=change.published_at,
        )


@strawberry.type(description="Running totals of a scope for the current period (UTC month).")
class UsageUpdate:
    kind: UsageUpdateKind
    scope_kind: BudgetScopeKind
    scope_id: strawberry.ID
    period_start: dt.datetime
    period_end: dt.datetime
    totals: list[UsageTotals] = strawberry.field(description="One row per currency.")
    event: UsageChange | None = strawberry.field(
        description="The newest event included (none for SNAPSHOT, INTERRUPTED, RESUMED)."
    )
    events_included: int = strawberry.field(
        description="Ledger entries included since the previous update (bursts are coalesced)."
    )

    @classmethod
    def of(cls, update: feeds.UsageUpdate) -> UsageUpdate:
        start, end = update.period
        return cls(
            kind=update.kind,
            scope_kind=update.scope.kind,
            scope_id=strawberry.ID(str(update.scope.id)),
            period_start=start,
            period_end=end,
            totals=[UsageTotals.of(row) for row in update.totals],
            event=None if update.change is None else UsageChange.of(update.change),
            events_included=update.entries,
        )


__all__ = ["Alert", "UsageChange", "UsageTotals", "UsageUpdate", "UsageUpdateKind"]
