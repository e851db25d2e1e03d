"""Budgets: configuration, status, and enforcement that holds under concurrency.

Enforcement runs in the writer's transaction: the ledger entries are inserted, then each
applicable budget's counter for the entries' period is raised by one conditional UPDATE
(``spent + reserved + amount <= limit`` for hard caps). A refusal raises, the transaction
rolls back, and the entries vanish with it: a rejected event writes nothing. Counters are
locked in budget-id order, so writers touching several budgets cannot deadlock.
"""

from __future__ import annotations

import enum
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import budget_repository as repo
from costgraph.billing import fx
from costgraph.billing.cost_formula import convert
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.periods import Period, window
from costgraph.billing.scopes import Attribution, Scope, ScopeKind
from costgraph.kernel.clock import format_rfc3339
from costgraph.kernel.errors import BudgetLimitReached, NotFound, ValidationFailed
from costgraph.kernel.money import require_currency
from costgraph.models import Account, Customer, Department, User
from costgraph.models.budget import Budget

DEFAULT_THRESHOLDS = (50, 75, 90, 100)


class Basis(enum.StrEnum):
    AI_COST = "AI_COST"
    BILLED_USAGE = "BILLED_USAGE"


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    scope: Scope
    period: Period
    limit: Decimal
    currency: str
    hard_cap: bool
    basis: Basis = Basis.AI_COST
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    custom_start: datetime | None = None
    custom_end: datetime | None = None

    @property
    def custom(self) -> tuple[datetime, datetime] | None:
        if self.custom_start is None or self.custom_end is None:
            return None
        return self.custom_start, self.custom_end


@dataclass(frozen=True, slots=True)
class Spend:
    """One entry's cost as budgets see it (both figures in ``currency``)."""

    attribution: Attribution
    occurred_at: datetime
    currency: str
    ai_cost: Decimal
    billed: Decimal

    def amount(self, basis: str) -> Decimal:
        return self.billed if basis == Basis.BILLED_USAGE else self.ai_cost


@dataclass(frozen=True, slots=True)
class CounterChange:
    """A counter before and after a write: what alerts look at to see thresholds crossed."""

    budget: Budget
    period_start: datetime
    period_end: datetime
    spent_before: Decimal
    spent_after: Decimal


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    budget: Budget
    period_start: datetime
    period_end: datetime
    spent: Decimal
    reserved: Decimal

    @property
    def remaining(self) -> Decimal:
        return max(Decimal(0), self.budget.limit_amount - self.spent - self.reserved)

    @property
    def percent_used(self) -> Decimal:
        return (self.spent * 100 / self.budget.limit_amount).quantize(Decimal("0.01"))

    @property
    def stages_reached(self) -> list[int]:
        return [
            t for t in self.budget.thresholds if self.spent * 100 >= self.budget.limit_amount * t
        ]


async def scope_exists(session: AsyncSession, scope: Scope) -> bool:
    found: dict[uuid.UUID, object]
    if scope.kind is ScopeKind.CUSTOMER:
        found = dict(await get_many(session, Customer, [scope.id]))
    elif scope.kind is ScopeKind.ACCOUNT:
        found = dict(await get_many(session, Account, [scope.id]))
    elif scope.kind is ScopeKind.DEPARTMENT:
        found = dict(await get_many(session, Department, [scope.id]))
    else:
        found = dict(await get_many(session, User, [scope.id]))
    return scope.id in found


async def require_scope(session: AsyncSession, org: OrgContext, scope: Scope, field: str) -> None:
    """The scoped object exists in the caller's organisation (or answers as unknown)."""
    if scope.kind is ScopeKind.ORGANIZATION:
        if scope.id != org.id:
            raise NotFound("organization", scope.id, field)
        return
    if not await scope_exists(session, scope):
        raise NotFound(scope.kind.value.lower(), scope.id, field)


def validate_spec(spec: BudgetSpec) -> None:
    if spec.limit <= 0:
        raise ValidationFailed("limit must be greater than zero", "input.limit")
    require_currency(spec.currency, "input.currency")
    thresholds = list(spec.thresholds)
    if not thresholds or any(t < 1 or t > 100 for t in thresholds):
        raise ValidationFailed("thresholds are percentages from 1 to 100", "input.thresholds")
    if thresholds != sorted(set(thresholds)):
        raise ValidationFailed("thresholds must be ascending without repeats", "input.thresholds")
    if spec.period is Period.CUSTOM:
        if spec.custom_start is None or spec.custom_end is None:
            raise ValidationFailed(
                "a CUSTOM period needs customStart and customEnd", "input.customStart"
            )
        if spec.custom_end <= spec.custom_start:
            raise ValidationFailed("customEnd must be after customStart", "input.customEnd")
    elif spec.custom_start is not None or spec.custom_end is not None:
        raise ValidationFailed(
            "customStart and customEnd go with a CUSTOM period only", "input.period"
        )


async def set_budget(session: AsyncSession, org: OrgContext, spec: BudgetSpec) -> Budget:
    """Create the budget of this scope, period and basis, or change its terms."""
    validate_spec(spec)
    await require_scope(session, org, spec.scope, "input.scope.id")
    budget = await repo.find_budget(session, spec.scope, spec.period.value, spec.basis.value)
    if budget is None:
        budget = Budget(
            organization_id=org.id,
            scope_kind=spec.scope.kind.value,
            scope_id=spec.scope.id,
            period=spec.period.value,
            basis=spec.basis.value,
        )
        session.add(budget)
    budget.limit_amount = spec.limit
    budget.currency = spec.currency
    budget.hard_cap = spec.hard_cap
    budget.thresholds = list(spec.thresholds)
    budget.custom_start, budget.custom_end = spec.custom_start, spec.custom_end
    await session.flush()
    return budget


def period_of(budget: Budget, at: datetime, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """The budget's window containing ``at``; None when a custom window does not cover it."""
    if budget.period == Period.CUSTOM:
        assert budget.custom_start is not None and budget.custom_end is not None
        if not budget.custom_start <= at < budget.custom_end:
            return None
        return budget.custom_start, budget.custom_end
    return window(Period(budget.period), at, zone)


async def status(
    session: AsyncSession, budget_id: uuid.UUID, now: datetime, zone: ZoneInfo
) -> BudgetStatus:
    budget = await repo.get_budget(session, budget_id)
    if budget is None:
        raise NotFound("budget", budget_id, "budgetId")
    return await status_of(session, budget, now, zone)


async def status_of(
    session: AsyncSession, budget: Budget, now: datetime, zone: ZoneInfo
) -> BudgetStatus:
    """:func:`status` of a budget already read."""
    span = period_of(budget, now, zone)
    if span is None:  # a custom window that is over or not begun: show the window itself
        assert budget.custom_start is not None and budget.custom_end is not None
        span = (budget.custom_start, budget.custom_end)
    spent, reserved = await repo.read_counter(session, budget.id, span[0])
    return BudgetStatus(budget, span[0], span[1], spent, reserved)


async def rates_for(
    session: AsyncSession, org: OrgContext, spends: Sequence[Spend], budgets: Sequence[Budget]
) -> fx.RateBook:
    """The dated rates to bring every spend into every budget's currency, in one query."""
    pairs = {(s.currency, b.currency) for s in spends for b in budgets if s.currency != b.currency}
    if not pairs:
        return fx.RateBook()
    times = [s.occurred_at for s in spends]
    return await fx.load_book(session, org.id, pairs, min(times), max(times))


def convert_for_budget(spend: Spend, budget: Budget, rates: fx.RateBook) -> Decimal:
    """The spend in the budget's currency, at the rate in force when it occurred."""
    amount = spend.amount(budget.basis)
    if spend.currency == budget.currency:
        return amount
    return convert(amount, rates.rate_at(spend.currency, budget.currency, spend.occurred_at))


async def apply_spend(
    session: AsyncSession,
    org: OrgContext,
    spends: Sequence[Spend],
    zone: ZoneInfo,
    *,
    enforce: bool = True,
) -> list[CounterChange]:
    """Raise every applicable budget's counter by the spends; refuse past a hard cap.

    ``enforce=False`` records without refusing (settling a call that has already happened).
    """
    if not spends:
        return []
    budgets = await repo.list_budgets(session, None)  # a handful per organisation
    if not budgets:
        return []
    rates = await rates_for(session, org, spends, budgets)
    totals: dict[tuple[uuid.UUID, datetime], Decimal] = defaultdict(Decimal)
    spans: dict[tuple[uuid.UUID, datetime], tuple[datetime, datetime]] = {}
    by_id = {b.id: b for b in budgets}
    for spend in spends:
        mine = {(s.kind.value, s.id) for s in spend.attribution.scopes()}
        for budget in budgets:
            if (budget.scope_kind, budget.scope_id) not in mine:
                continue
            span = period_of(budget, spend.occurred_at, zone)
            if span is None:
                continue
            key = (budget.id, span[0])
            totals[key] += convert_for_budget(spend, budget, rates)
            spans[key] = span
    changes: list[CounterChange] = []
    for key in sorted(totals):
        budget = by_id[key[0]]
        amount = totals[key]
        await repo.ensure_counter(session, org.id, budget.id, spans[key])
        cap = budget.limit_amount if (enforce and budget.hard_cap) else None
        after = await repo.add_to_counter(session, budget, key[1], spent=amount, cap=cap)
        if after is None:
            spent, reserved = await repo.read_counter(session, budget.id, key[1])
            raise BudgetLimitReached(
                str(budget.id),
                budget.limit_amount,
                budget.currency,
                spent + reserved,
                format_rfc3339(spans[key][1]),
            )
        changes.append(
            CounterChange(budget, spans[key][0], spans[key][1], after[0] - amount, after[0])
        )
    session.info.setdefault(COUNTER_CHANGES_KEY, []).extend(changes)
    return changes


#: ``session.info`` key: every counter raised in the session's transaction, for the alerts
#: evaluation that ``Context.writing()`` runs before commit (billing never imports alerts).
COUNTER_CHANGES_KEY = "costgraph.budget_counter_changes"


def take_counter_changes(session: AsyncSession) -> list[CounterChange]:
    """The counters this session's writes raised since the last call (and forget them)."""
    taken: list[CounterChange] = session.info.pop(COUNTER_CHANGES_KEY, [])
    return taken
