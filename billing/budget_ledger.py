"""A budget's spend as the ledger has it: where every budget counter starts.

A counter holds its period's whole spend — the usage of the budget's scope dated in the
period (``USAGE_CHARGE`` entries and the corrections written against them, as forecasts count
usage), on the budget's basis, each entry converted into the budget's currency at the rate in
force at its own instant, exactly as :func:`costgraph.billing.budgets.apply_spend` counts a
write — from the moment the budget exists, whenever a period's counter is first needed: the
current one when the budget is set, a new period's at its first write, a past one's when a
late or backfilled event lands there.

Who counts what, so that nothing is missed or counted twice:

- ``setBudget`` recounts the current period (:func:`recount`) after taking the writer guard
  EXCLUSIVE (``budget_repository.lock_out_writers``, migration 0011): the writers that could
  not see the budget have all committed, and the count sees their entries; every writer after
  it reads the budgets under the guard and sees it.
- A writer raising a counter that does not exist yet creates it (:func:`open_counter`), sets
  it to the ledger's spend less its own amount (its own entries are in the ledger it reads),
  then adds that amount. Creating the row keeps it locked: a concurrent writer of the same
  period waits for it, finds it, and adds only its own (its uncommitted entries were not in
  the count).
- An authorisation creates the counters it is about to hold on the same way, in a short
  transaction of its own (:func:`open_counters`), since its hold statement would create a
  missing one at zero. Counters are never deleted, so each process remembers the ones it has
  seen.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from costgraph.billing import budget_repository as repo
from costgraph.billing import fx
from costgraph.billing.cost_formula import convert
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.billing.tenant_cache import TtlCache
from costgraph.models.budget import Budget
from costgraph.models.scoping import TenantSession, bind_tenant

Window = tuple[datetime, datetime]

#: (organisation, budget, period start) of counters known to exist (committed; never deleted).
KNOWN_COUNTERS: TtlCache[tuple[uuid.UUID, uuid.UUID, datetime], bool] = TtlCache(
    "budget_counters", ttl=3_600.0, max_entries=100_000
)


@dataclass(frozen=True, slots=True)
class Count:
    """A period's spend as a budget counts it, and what it could not count for want of a
    rate into its currency (per entry currency, on its basis)."""

    spent: Decimal = Decimal(0)
    uncounted: tuple[tuple[str, Decimal], ...] = ()

    def less(self, own: Count) -> Count:
        """This count without ``own`` (a writer's own entries, which it adds itself)."""
        gaps = dict(self.uncounted)
        for currency, amount in own.uncounted:
            gaps[currency] = gaps.get(currency, Decimal(0)) - amount
        return Count(self.spent - own.spent, tuple(sorted((c, a) for c, a in gaps.items() if a)))


def basis_amount(budget: Budget, ai_cost: Decimal, billed: Decimal) -> Decimal:
    return billed if budget.basis == "BILLED_USAGE" else ai_cost


def in_budget_currency(
    budget: Budget,
    currency: str,
    ai_cost: Decimal,
    billed: Decimal,
    at: datetime,
    rates: fx.RateBook,
) -> Decimal | None:
    """One entry's spend as ``budget`` counts it: its basis, in its currency at the rate in
    force at ``at``; None when no rate was in force then (the budget cannot count it)."""
    amount = basis_amount(budget, ai_cost, billed)
    if currency == budget.currency:
        return amount
    rate = rates.find(currency, budget.currency, at)
    return None if rate is None else convert(amount, rate)


async def ledger_count(
    session: AsyncSession, organization_id: uuid.UUID, budget: Budget, window: Window
) -> Count:
    """The budget's spend over ``window`` summed from the ledger (what this transaction sees).

    Entries in the budget's currency are summed by the database; entries in other currencies
    (rare: a budget in another currency than its accounts') are converted one by one.
    """
    scope = Scope(ScopeKind(budget.scope_kind), budget.scope_id)
    spent = Decimal(0)
    foreign: list[str] = []
    for currency, ai_cost, billed in await repo.usage_by_currency(
        session, organization_id, scope, window[0], window[1]
    ):
        if currency == budget.currency:
            spent += basis_amount(budget, ai_cost, billed)
        else:
            foreign.append(currency)
    if not foreign:
        return Count(spent)
    rows = await repo.usage_entries(session, organization_id, scope, window[0], window[1], foreign)
    times = [row[0] for row in rows]
    rates = await fx.load_book(
        session, organization_id, {(c, budget.currency) for c in foreign}, min(times), max(times)
    )
    gaps: dict[str, Decimal] = defaultdict(Decimal)
    for at, currency, ai_cost, billed in rows:
        amount = in_budget_currency(budget, currency, ai_cost, billed, at, rates)
        if amount is None:
            gaps[currency] += basis_amount(budget, ai_cost, billed)
        else:
            spent += amount
    return Count(spent, tuple(sorted((c, a) for c, a in gaps.items() if a)))


async def open_counter(
    session: AsyncSession,
    organization_id: uuid.UUID,
    budget: Budget,
    window: Window,
    *,
    own: Count = Count(),
) -> None:
    """Make sure the period's counter exists; one this call creates starts at the ledger's
    count less ``own`` (what the caller adds next for its own entries, already in the ledger
    it reads)."""
    if await repo.ensure_counter(session, organization_id, budget.id, window):
        count = (await ledger_count(session, organization_id, budget, window)).less(own)
        await repo.set_count(session, budget.id, window[0], count.spent, count.uncounted)


async def recount(
    session: AsyncSession, organization_id: uuid.UUID, budget: Budget, window: Window
) -> Count:
    """Set the period's counter (created if missing) to the ledger's count; the count.

    Only under the writer guard held EXCLUSIVE: no writer can be adding its own meanwhile.
    """
    await repo.ensure_counter(session, organization_id, budget.id, window)
    count = await ledger_count(session, organization_id, budget, window)
    await repo.set_count(session, budget.id, window[0], count.spent, count.uncounted)
    return count


async def open_counters(
    session: AsyncSession,
    organization_id: uuid.UUID,
    wanted: Sequence[tuple[uuid.UUID, Window]],
    engine: AsyncEngine | None = None,
) -> None:
    """Create (seeded) the counters of these budgets and periods that do not exist yet.

    With ``engine``, in a transaction of its own, committed before this returns; without, in
    the session's. The budgets are read share-locked, so their terms cannot change under the
    count.
    """
    missing = [
        (budget_id, window)
        for budget_id, window in wanted
        if KNOWN_COUNTERS.get((organization_id, budget_id, window[0])) is None
    ]
    if not missing:
        return
    if engine is None:
        await _open(session, organization_id, missing)
        return
    async with AsyncSession(engine, sync_session_class=TenantSession) as own:
        bind_tenant(own.sync_session, organization_id)
        async with own.begin():
            await _open(own, organization_id, missing)
    for budget_id, window in missing:
        KNOWN_COUNTERS.put((organization_id, budget_id, window[0]), True)


async def _open(
    session: AsyncSession,
    organization_id: uuid.UUID,
    missing: Sequence[tuple[uuid.UUID, Window]],
) -> None:
    for budget_id, window in sorted(missing):
        budget = await repo.lock_budget(session, budget_id)
        if budget is not None:
            await open_counter(session, organization_id, budget, window)
