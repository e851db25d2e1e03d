"""Budgets, their live status, and reservations."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Annotated

import strawberry

from costgraph.billing.budgets import Basis
from costgraph.billing.budgets import BudgetStatus as StatusModel
from costgraph.billing.periods import Period
from costgraph.billing.reservations import Held
from costgraph.models.budget import Budget as BudgetRow
from costgraph.models.budget import Reservation as ReservationRow
from costgraph.schema import fast_inputs, priority
from costgraph.schema.currencies import CurrencyAmount, CurrencyPair
from costgraph.schema.inputs import UsageEventInput
from costgraph.schema.results import (
    BudgetLimitReached,
    IdempotencyConflict,
    NotFound,
    PriceMissing,
    RateMissing,
    ValidationFailed,
)
from costgraph.schema.scalars import CurrencyCode
from costgraph.schema.scopes import BudgetScopeInput, BudgetScopeKind
from costgraph.schema.types import Info

strawberry.enum(Period, name="BudgetPeriod")
BudgetPeriod = Period
strawberry.enum(Basis, name="BudgetBasis", description="AI_COST (provider cost) or BILLED_USAGE.")
BudgetBasis = Basis


@strawberry.type
class BudgetScope:
    kind: BudgetScopeKind
    id: strawberry.ID
    name: str | None = strawberry.field(
        default=None,
        description="On alerts: the scope's name when raised (a user's `Name <email>` or "
        "email, a department's, customer's or account's name).",
    )


@strawberry.type(description="A limit on spend for one scope and period.")
class Budget:
    id: strawberry.ID
    scope: BudgetScope
    period: BudgetPeriod
    custom_start: dt.datetime | None
    custom_end: dt.datetime | None
    limit: decimal.Decimal
    currency: CurrencyCode
    basis: BudgetBasis
    hard_cap: bool
    thresholds: list[int]

    @classmethod
    def of(cls, row: BudgetRow) -> Budget:
        return cls(
            id=strawberry.ID(str(row.id)),
            scope=BudgetScope(
                kind=BudgetScopeKind(row.scope_kind), id=strawberry.ID(str(row.scope_id))
            ),
            period=Period(row.period),
            custom_start=row.custom_start,
            custom_end=row.custom_end,
            limit=row.limit_amount,
            currency=CurrencyCode(row.currency),
            basis=Basis(row.basis),
            hard_cap=row.hard_cap,
            thresholds=list(row.thresholds),
        )


@strawberry.type(description="Where a budget stands in its current period.")
class BudgetStatus:
    budget: Budget
    period_start: dt.datetime
    resets_at: dt.datetime
    spent: decimal.Decimal
    reserved: decimal.Decimal = strawberry.field(description="Held by open reservations.")
    remaining: decimal.Decimal
    percent_used: decimal.Decimal
    stages_reached: list[int]
    can_evaluate: bool = strawberry.field(
        description="False when some of the period's spend has no rate into the budget's "
        "currency: `spent`, `percentUsed` and the stages leave it out (see `uncounted`), and "
        "a hard cap holds only over the spend it can count (it fails open for the rest, for "
        "this budget only). A RATE_MISSING alert says so once per period."
    )
    uncounted: list[CurrencyAmount] = strawberry.field(
        description="The period's spend not counted for want of a rate, per entry currency."
    )
    missing_rates: list[CurrencyPair] = strawberry.field(
        description="The pairs (entry currency -> budget currency) that had no rate."
    )

    @classmethod
    def of(cls, status: StatusModel) -> BudgetStatus:
        currency = status.budget.currency.strip()
        return cls(
            can_evaluate=status.can_evaluate,
            uncounted=[
                CurrencyAmount(currency=CurrencyCode(c), amount=a) for c, a in status.uncounted
            ],
            missing_rates=[
                CurrencyPair(base=CurrencyCode(c), quote=CurrencyCode(currency))
                for c, _ in status.uncounted
            ],
            budget=Budget.of(status.budget),
            period_start=status.period_start,
            resets_at=status.period_end,
            spent=status.spent,
            reserved=status.reserved,
            remaining=status.remaining,
            percent_used=status.percent_used,
            stages_reached=status.stages_reached,
        )


@strawberry.input
class BudgetInput:
    scope: BudgetScopeInput
    period: BudgetPeriod
    limit: decimal.Decimal
    currency: CurrencyCode
    hard_cap: bool
    custom_start: dt.datetime | None = None
    custom_end: dt.datetime | None = None
    basis: BudgetBasis = Basis.AI_COST
    thresholds: list[int] | None = strawberry.field(
        default=None, description="Percent; default [50, 75, 90, 100]."
    )


@strawberry.type(description="An estimated cost held against budgets before an AI call.")
class Reservation:
    id: strawberry.ID
    idempotency_key: str
    account_id: strawberry.ID
    state: str
    ai_cost: decimal.Decimal
    billed: decimal.Decimal
    currency: CurrencyCode
    expires_at: dt.datetime
    settled_entry_id: strawberry.ID | None

    @classmethod
    def of(cls, row: ReservationRow | Held) -> Reservation:
        return cls(
            id=strawberry.ID(str(row.id)),
            idempotency_key=row.idempotency_key,
            account_id=strawberry.ID(str(row.account_id)),
            state=row.state,
            ai_cost=row.ai_cost,
            billed=row.billed,
            currency=CurrencyCode(row.currency),
            expires_at=row.expires_at,
            settled_entry_id=None
            if row.settled_entry_id is None
            else strawberry.ID(str(row.settled_entry_id)),
        )


@strawberry.input(description="Reserve before an AI call.")
class AuthorizeUsageInput:
    idempotency_key: str
    account_id: strawberry.ID
    provider: str
    model: str
    user_id: strawberry.ID | None = None
    estimated_input_tokens: int | None = 0
    estimated_output_tokens: int | None = 0
    feature: str | None = None
    agent: str | None = None
    estimated_cost: decimal.Decimal | None = strawberry.field(
        default=None, description="The caller's own estimate, overriding the catalog."
    )
    estimated_cost_currency: CurrencyCode | None = None


# The hot path's inputs: built without strawberry's per-value conversion (same objects).
fast_inputs.install(AuthorizeUsageInput)


@strawberry.input(description="The actual usage of a reservation.")
class SettleUsageInput:
    reservation_id: strawberry.ID
    usage: UsageEventInput


fast_inputs.install(SettleUsageInput)


@strawberry.type
class UsageAuthorized:
    reservation: Reservation
    replayed: bool

    @strawberry.field(description=priority.DESCRIPTION)
    async def priority_class(self, info: Info) -> priority.PriorityClass:
        return await priority.priority_class_of(info, self.reservation.account_id)


AuthorizeUsageResult = Annotated[
    UsageAuthorized
    | BudgetLimitReached
    | ValidationFailed
    | NotFound
    | IdempotencyConflict
    | PriceMissing
    | RateMissing,
    strawberry.union("AuthorizeUsageResult"),
]
