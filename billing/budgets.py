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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import budget_ledger, events, fx
from costgraph.billing import budget_repository as repo
from costgraph.billing.budget_currencies import require_rate_path
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.periods import Period, window
from costgraph.billing.scopes import Attribution, Scope, ScopeKind
from costgraph.kernel.clock import format_rfc3339, utcnow
from costgraph.kernel.errors import (
    BudgetLimitReached,
    NotFound,
    OverageLimit,
    ValidationFailed,
)
from costgraph.kernel.money import require_currency
from costgraph.kernel.unit_of_work import emit
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
    #: Spend the write could not count for want of a rate into the budget's currency, per
    #: entry currency (on the budget's basis): the budget cannot evaluate this period.
    uncounted: tuple[tuple[str, Decimal], ...] = ()


@dataclass(frozen=True, slots=True)
class TermsChange:
    """A budget created or given new terms: its current period's spend (recounted from the
    ledger) under the new terms, and the stages its spend had reached under the old ones."""

    budget: Budget
    period_start: datetime
    period_end: datetime
    spent: Decimal
    #: Empty for a new budget.
    reached_before: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Settlement:
    """A reservation's actual usage: what it held per ``(budget, period start)``, and how far
    beyond a hard cap a settlement past its hold may go (percent of the limit)."""

    holds: dict[tuple[uuid.UUID, datetime], Decimal]
    tolerance_percent: Decimal


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    budget: Budget
    period_start: datetime
    period_end: datetime
    spent: Decimal
    reserved: Decimal
    #: Spend of the period not counted for want of a rate, per entry currency.
    uncounted: tuple[tuple[str, Decimal], ...] = ()

    @property
    def can_evaluate(self) -> bool:
        """False when some of the period's spend could not be brought into the budget's
        currency: ``spent`` and the stages then leave that spend out."""
        return not self.uncounted

    @property
    def remaining(self) -> Decimal:
        return max(Decimal(0), self.budget.limit_amount - self.spent - self.reserved)

    @property
    def percent_used(self) -> Decimal:
        return (self.spent * 100 / self.budget.limit_amount).quantize(Decimal("0.01"))

    @property
    def stages_reached(self) -> list[int]:
        return list(reached(self.budget, self.spent))


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


def _terms(budget: Budget) -> tuple[object, ...]:
    return (
        budget.limit_amount,
        budget.currency,
        budget.hard_cap,
        tuple(budget.thresholds),
        budget.custom_start,
        budget.custom_end,
    )


def reached(budget: Budget, spent: Decimal) -> tuple[int, ...]:
    """The thresholds (percent) ``spent`` has reached under the budget's terms."""
    return tuple(t for t in budget.thresholds if spent * 100 >= budget.limit_amount * t)


async def set_budget(
    session: AsyncSession, org: OrgContext, spec: BudgetSpec, *, zone: ZoneInfo | None = None
) -> Budget:
    """Create the budget of this scope, period and basis, or change its terms.

    The current period's counter is then recounted from the ledger — a budget set mid-period
    starts from what the period has already spent — with the organisation's ledger writers
    locked out meanwhile, so none is missed (:mod:`costgraph.billing.budget_ledger`). New
    terms are a new ``terms_version``: the stages follow the new limit (the alerts evaluate
    the :class:`TermsChange`, see :mod:`costgraph.alerts.rules`). ``zone``: where periods
    reset (``Limits.zone``).
    """
    validate_spec(spec)
    await require_scope(session, org, spec.scope, "input.scope.id")
    now = utcnow()
    await require_rate_path(session, org, spec.scope, spec.currency, now)
    zone = zone or ZoneInfo("UTC")
    await repo.lock_out_writers(session, org.id)  # before anything is read of the ledger
    budget = await repo.find_budget(session, spec.scope, spec.period.value, spec.basis.value)
    previous: tuple[object, ...] | None = None
    reached_before: tuple[int, ...] = ()
    if budget is None:
        budget = Budget(
            organization_id=org.id,
            scope_kind=spec.scope.kind.value,
            scope_id=spec.scope.id,
            period=spec.period.value,
            basis=spec.basis.value,
            terms_version=1,
            created_at=now,  # business time: reports list the budgets of a month by it
        )
        session.add(budget)
    else:
        previous = _terms(budget)
        spent, _ = await repo.read_counter(session, budget.id, current_window(budget, now, zone)[0])
        reached_before = reached(budget, spent)
    budget.limit_amount = spec.limit
    budget.currency = spec.currency
    budget.hard_cap = spec.hard_cap
    budget.thresholds = list(spec.thresholds)
    budget.custom_start, budget.custom_end = spec.custom_start, spec.custom_end
    changed = previous != _terms(budget)
    if previous is not None and changed:
        budget.terms_version += 1
    await session.flush()
    span = current_window(budget, now, zone)
    windows = {span}
    if previous is not None and previous[1] != budget.currency:  # every count is in it
        windows.update(await repo.counter_windows(session, budget.id))
    for counted in sorted(windows):
        count = await budget_ledger.recount(session, org.id, budget, counted)
        if counted == span and changed:
            change = TermsChange(budget, span[0], span[1], count.spent, reached_before)
            emit(session, events.BudgetTermsSet((change,)))
    emit(session, events.BudgetsChanged(org.id, (budget.id,), terms=True))
    return budget


def current_window(budget: Budget, now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The budget's period containing ``now``; a custom window that is over or not begun:
    the window itself."""
    span = period_of(budget, now, zone)
    if span is None:
        assert budget.custom_start is not None and budget.custom_end is not None
        span = (budget.custom_start, budget.custom_end)
    return span


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
    """:func:`status` of a budget already read. Holds past their expiry are not held,
    whether an authorisation has swept them yet or not."""
    span = current_window(budget, now, zone)
    spent, reserved = await repo.read_counter(session, budget.id, span[0])
    if reserved:
        reserved -= await repo.expired_holds(
            session, budget.organization_id, budget.id, span[0], now
        )
    uncounted = tuple((await repo.read_uncounted(session, budget.id, span[0])).items())
    return BudgetStatus(budget, span[0], span[1], spent, reserved, uncounted)


async def rates_for(
    session: AsyncSession, org: OrgContext, spends: Sequence[Spend], budgets: Sequence[Budget]
) -> fx.RateBook:
    """The dated rates to bring every spend into every budget's currency, in one query."""
    pairs = {(s.currency, b.currency) for s in spends for b in budgets if s.currency != b.currency}
    if not pairs:
        return fx.RateBook()
    times = [s.occurred_at for s in spends]
    return await fx.load_book(session, org.id, pairs, min(times), max(times))


def budget_amount(spend: Spend, budget: Budget, rates: fx.RateBook) -> Decimal | None:
    """The spend in the budget's currency, at the rate in force when it occurred; None when
    no rate was in force then (the budget cannot evaluate it)."""
    return budget_ledger.in_budget_currency(
        budget, spend.currency, spend.ai_cost, spend.billed, spend.occurred_at, rates
    )


@dataclass(frozen=True, slots=True)
class PlannedCount:
    """What a write adds to one budget counter (one budget, one period), worked out before
    the write: the amount on the budget's basis and in its currency, the spend it could not
    count (per entry currency) and the cap ``spent + reserved`` may reach (None: no check)."""

    budget: Budget
    period: tuple[datetime, datetime]
    amount: Decimal
    uncounted: tuple[tuple[str, Decimal], ...]
    cap: Decimal | None

    @property
    def key(self) -> tuple[uuid.UUID, datetime]:
        return self.budget.id, self.period[0]


async def apply_spend(
    session: AsyncSession,
    org: OrgContext,
    spends: Sequence[Spend],
    zone: ZoneInfo,
    *,
    enforce: bool = True,
    settlement: Settlement | None = None,
    budgets: Sequence[Budget] | None = None,
) -> list[CounterChange]:
    """Raise every applicable budget's counter by the spends; refuse past a hard cap.

    ``enforce=False`` records without refusing (a correction of usage already recorded).
    With ``settlement`` (a reservation's actual usage), a hard cap refuses only what goes
    beyond the hold by more than the cap's tolerance (``OVERAGE_LIMIT``). A counter not
    created yet starts from the ledger's spend in its period (:mod:`budget_ledger`). Holds
    past their expiry never count against a cap, swept or not. ``budgets``: the
    organisation's budgets, already read under the writer guard (None: read them here).
    """
    planned = await plan_spend(
        session, org, spends, zone, enforce=enforce, settlement=settlement, budgets=budgets
    )
    return await count_spend(session, org, planned, settlement=settlement)


async def plan_spend(
    session: AsyncSession,
    org: OrgContext,
    spends: Sequence[Spend],
    zone: ZoneInfo,
    *,
    enforce: bool = True,
    settlement: Settlement | None = None,
    budgets: Sequence[Budget] | None = None,
) -> list[PlannedCount]:
    """The counters the spends raise and by how much, in (budget, period) order; reads no
    counter, so a writer can work it out before it takes any row lock."""
    if not spends:
        return []
    if budgets is None:
        # Read under the writer guard: a budget set meanwhile counted these entries, or is seen.
        budgets = await repo.budgets_for_writer(session, org.id)  # a handful per organisation
    if not budgets:
        return []
    rates = await rates_for(session, org, spends, budgets)
    totals: dict[tuple[uuid.UUID, datetime], Decimal] = defaultdict(Decimal)
    spans: dict[tuple[uuid.UUID, datetime], tuple[datetime, datetime]] = {}
    uncounted: dict[tuple[uuid.UUID, datetime], dict[str, Decimal]] = {}
    #: The periods with a spend the budget could count (0.00 included).
    counted: set[tuple[uuid.UUID, datetime]] = set()
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
            spans[key] = span
            amount = budget_amount(spend, budget, rates)
            if amount is None:  # no rate: this budget cannot count it (see README, Budgets)
                gap = uncounted.setdefault(key, defaultdict(Decimal))
                gap[spend.currency] += spend.amount(budget.basis)
                totals[key] += 0
                continue
            totals[key] += amount
            counted.add(key)
    planned: list[PlannedCount] = []
    for key in sorted(totals):
        budget = by_id[key[0]]
        amount = totals[key]
        # Fails open for the spend it cannot count: nothing counted refuses nothing.
        cap = _cap(budget, key, amount, enforce, settlement) if key in counted else None
        gaps = tuple(sorted(uncounted.get(key, {}).items()))
        planned.append(PlannedCount(budget, spans[key], amount, gaps, cap))
    return planned


async def count_spend(
    session: AsyncSession,
    org: OrgContext,
    planned: Sequence[PlannedCount],
    *,
    settlement: Settlement | None = None,
    applied: Mapping[tuple[uuid.UUID, datetime], tuple[Decimal, Decimal]] | None = None,
) -> list[CounterChange]:
    """Raise the planned counters, refusing past a hard cap; announce the changes.

    ``applied``: the counters the write's own statement already raised (the new
    ``(spent, reserved)`` per key; see ``ledger_repository.insert_entries_moving_balance``):
    only announced. Any other (its row missing, or refused by the cap in that statement) is
    raised here, one statement at a time, as it always was.
    """
    changes: list[CounterChange] = []
    now = utcnow()
    for plan in planned:
        budget, key, amount = (plan.budget, plan.key, plan.amount)
        gaps, cap = plan.uncounted, plan.cap
        after = None if applied is None else applied.get(key)
        if after is None:
            await budget_ledger.open_counter(
                session, org.id, budget, plan.period, own=budget_ledger.Count(amount, gaps)
            )
            if gaps:
                await repo.note_uncounted(session, budget.id, key[1], gaps)
            after = await repo.add_to_counter(session, budget, key[1], spent=amount, cap=cap)
        if after is None and cap is not None:
            after = await _add_past_expired_holds(session, org, budget, key[1], amount, cap, now)
        if after is None:
            spent, reserved = await repo.read_counter(session, budget.id, key[1])
            held = spent + reserved - await repo.expired_holds(session, org.id, *key, now)
            if settlement is not None:
                raise OverageLimit(
                    str(budget.id),
                    budget.limit_amount,
                    budget.currency,
                    settlement.tolerance_percent,
                    settlement.holds.get(key, Decimal(0)),
                    max(Decimal(0), cap - held) if cap is not None else Decimal(0),
                )
            raise BudgetLimitReached(
                str(budget.id),
                budget.limit_amount,
                budget.currency,
                held,
                format_rfc3339(plan.period[1]),
            )
        changes.append(
            CounterChange(budget, plan.period[0], plan.period[1], after[0] - amount, after[0], gaps)
        )
    if changes:  # for the alert evaluation the unit of work runs before commit
        emit(session, events.BudgetCountersRaised(tuple(changes)))
    return changes


def _cap(
    budget: Budget,
    key: tuple[uuid.UUID, datetime],
    amount: Decimal,
    enforce: bool,
    settlement: Settlement | None,
) -> Decimal | None:
    """What ``spent + reserved`` may reach after adding ``amount`` (None: no check).

    A usage of 0.00 is checked too: past its limit a hard cap refuses every usage of the
    period, as it refuses an authorisation of 0.00."""
    if not budget.hard_cap:
        return None
    if settlement is not None:
        if amount <= settlement.holds.get(key, Decimal(0)):
            return None  # within its hold: that room was reserved for it
        return budget.limit_amount * (1 + settlement.tolerance_percent / 100)
    return budget.limit_amount if enforce else None


async def _add_past_expired_holds(
    session: AsyncSession,
    org: OrgContext,
    budget: Budget,
    period_start: datetime,
    amount: Decimal,
    cap: Decimal,
    now: datetime,
) -> tuple[Decimal, Decimal] | None:
    """The cap refused: try again without the holds already past their expiry that no
    authorisation has swept yet. Read under the counter's lock, so a sweep cannot give them
    back in between (it would wait, then give back what this no longer counts)."""
    await repo.read_counter(session, budget.id, period_start, lock=True)
    expired = await repo.expired_holds(session, org.id, budget.id, period_start, now)
    if not expired:
        return None
    return await repo.add_to_counter(session, budget, period_start, spent=amount, cap=cap + expired)
