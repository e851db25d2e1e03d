"""Mutation results: the success type, or a typed error with a stable ``code``."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from typing import Annotated

import strawberry

from costgraph.billing.entries import Entry
from costgraph.kernel.errors import ErrorCode as DomainErrorCode
from costgraph.schema import priority
from costgraph.schema.scalars import CurrencyCode
from costgraph.schema.types import Info, LedgerEntry

strawberry.enum(DomainErrorCode, name="ErrorCode")
ErrorCode = DomainErrorCode


@strawberry.interface(description="An expected failure the client can act on.")
class UserError:
    code: ErrorCode
    message: str
    field: str | None = strawberry.field(
        default=None, description="Path of the offending input, e.g. input.3.inputTokens."
    )


@strawberry.type
class ValidationFailed(UserError):
    pass


@strawberry.type(description="Missing, or not the caller's: both answer the same.")
class NotFound(UserError):
    pass


@strawberry.type
class IdempotencyConflict(UserError):
    key: str


@strawberry.type
class CurrencyMismatch(UserError):
    expected: str
    got: str


@strawberry.type
class RateMissing(UserError):
    base: str
    quote: str


@strawberry.type
class PriceMissing(UserError):
    provider: str
    model: str


@strawberry.type(
    description="Refused: a hard-capped budget would be exceeded. Nothing was written."
)
class BudgetLimitReached(UserError):
    budget_id: strawberry.ID
    limit: decimal.Decimal
    currency: CurrencyCode
    spent: decimal.Decimal = strawberry.field(description="Spent and held in the period.")
    resets_at: dt.datetime


@strawberry.type(
    description="Refused: a prepaid account has no allowance or balance left. Nothing was written."
)
class AllowanceExhausted(UserError):
    account_id: strawberry.ID
    needed: decimal.Decimal
    balance: decimal.Decimal
    tokens_left: int | None = strawberry.field(
        default=None,
        description="Budgeted tokens the allowance had left before this usage (fewer than it "
        "consumes); null: no plan allowance to draw on.",
    )


@strawberry.type(
    description="Refused: the entry is dated in a month whose books are closed "
    "(monthlyCloses); closed months are immutable. Nothing was written."
)
class PeriodClosed(UserError):
    month: dt.datetime = strawberry.field(description="The start of the closed month (UTC).")


@strawberry.type(
    description="Refused: a settlement beyond its hold would take a hard-capped budget's "
    "period past its limit plus the tolerance for settlements "
    "(COSTGRAPH_SETTLE_OVERAGE_TOLERANCE_PERCENT). Nothing was written; the reservation is "
    "still held."
)
class OverageLimit(UserError):
    budget_id: strawberry.ID
    limit: decimal.Decimal
    currency: CurrencyCode
    tolerance_percent: decimal.Decimal = strawberry.field(
        description="How far past the limit a settlement may take the period, in percent."
    )
    hold: decimal.Decimal = strawberry.field(description="What the reservation held on it.")
    room: decimal.Decimal = strawberry.field(
        description="The most this settlement may record on the budget (its hold included)."
    )


@strawberry.type(
    description="Refused: a tier rule of the plan (e.g. Creator's single account per customer, "
    "or its most seats). Nothing was written."
)
class PlanLimit(UserError):
    plan_code: str
    rule: str = strawberry.field(description="The plan's rule: maxAccountsPerCustomer or seats.")
    limit: int


@strawberry.type(description="An entry written now, or the original one when this was a replay.")
class LedgerEntryRecorded:
    entry: LedgerEntry
    replayed: bool


@strawberry.type
class UsageRecorded:
    entry: LedgerEntry
    replayed: bool

    @strawberry.field(description=priority.DESCRIPTION)
    async def priority_class(self, info: Info) -> priority.PriorityClass:
        assert self.entry.account_id is not None  # usage always lands on an account
        return await priority.priority_class_of(info, self.entry.account_id)


def _batch_entries(root: UsageBatchRecorded) -> list[LedgerEntry]:
    # Built when asked for: most batch writers select only the counts.
    return [LedgerEntry.of(entry) for entry in root.recorded_entries]


@strawberry.type
class UsageBatchRecorded:
    entries: list[LedgerEntry] = strawberry.field(resolver=_batch_entries)
    recorded: int = strawberry.field(description="Entries written by this call.")
    replayed: int = strawberry.field(description="Events that replayed an earlier write.")
    recorded_entries: strawberry.Private[Sequence[Entry]] = ()


LedgerEntryResult = Annotated[
    LedgerEntryRecorded
    | ValidationFailed
    | NotFound
    | IdempotencyConflict
    | CurrencyMismatch
    | PeriodClosed,
    strawberry.union("LedgerEntryResult"),
]
RecordUsageResult = Annotated[
    UsageRecorded
    | BudgetLimitReached
    | AllowanceExhausted
    | ValidationFailed
    | NotFound
    | IdempotencyConflict
    | PriceMissing
    | RateMissing
    | PeriodClosed
    | OverageLimit,
    strawberry.union("RecordUsageResult"),
]
RecordUsageBatchResult = Annotated[
    UsageBatchRecorded
    | BudgetLimitReached
    | AllowanceExhausted
    | ValidationFailed
    | NotFound
    | IdempotencyConflict
    | PriceMissing
    | RateMissing
    | PeriodClosed,
    strawberry.union("RecordUsageBatchResult"),
]
