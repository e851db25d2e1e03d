"""SQL of budgets: lookups through the tenant-scoped ORM, counters through one conditional
UPDATE each (the atomic check that makes a hard cap hold across processes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.billing.usage_series_repository import usage_conditions
from costgraph.models.budget import Budget, BudgetCounter, Reservation
from costgraph.models.directory import Account
from costgraph.models.ledger import LedgerEntry


def budget_of_row(row: Mapping[str, Any], organization_id: uuid.UUID | None = None) -> Budget:
    """A detached :class:`Budget` from a plain row of ``budgets`` (asyncpg, outside the ORM),
    of ``organization_id`` or, when None, of the row's own ``organization_id``."""
    return Budget(
        organization_id=row["organization_id"] if organization_id is None else organization_id,
        id=row["id"],
        scope_kind=row["scope_kind"],
        scope_id=row["scope_id"],
        period=row["period"],
        custom_start=row["custom_start"],
        custom_end=row["custom_end"],
        limit_amount=row["limit_amount"],
        currency=row["currency"],
        basis=row["basis"],
        hard_cap=row["hard_cap"],
        thresholds=list(row["thresholds"]),
        created_at=row["created_at"],
    )


async def budgets_for_scopes(session: AsyncSession, scopes: Iterable[Scope]) -> list[Budget]:
    """The tenant's budgets on any of these scopes, in id order.

    An organisation has a handful of budgets, so all of them are read (one index range on the
    tenant) and matched here: a batch touches hundreds of scopes, and an OR of hundreds of
    pairs costs more to build and plan than the rows cost to read.
    """
    pairs = {(s.kind.value, s.id) for s in scopes}
    if not pairs:
        return []
    rows = await session.scalars(select(Budget).order_by(Budget.id))
    return [b for b in rows if (b.scope_kind, b.scope_id) in pairs]


async def get_budget(session: AsyncSession, budget_id: uuid.UUID) -> Budget | None:
    return await session.scalar(select(Budget).where(Budget.id == budget_id))


async def list_budgets(session: AsyncSession, scope: Scope | None) -> Sequence[Budget]:
    statement = select(Budget).order_by(Budget.created_at, Budget.id)
    if scope is not None:
        statement = statement.where(
            Budget.scope_kind == scope.kind.value, Budget.scope_id == scope.id
        )
    return (await session.scalars(statement)).all()


async def find_budget(
    session: AsyncSession, scope: Scope, period: str, basis: str
) -> Budget | None:
    return await session.scalar(
        select(Budget).where(
            Budget.scope_kind == scope.kind.value,
            Budget.scope_id == scope.id,
            Budget.period == period,
            Budget.basis == basis,
        )
    )


async def ensure_counter(
    session: AsyncSession,
    organization_id: uuid.UUID,
    budget_id: uuid.UUID,
    window: tuple[datetime, datetime],
) -> bool:
    """Create the period's counter at zero unless it exists; True when this call created it
    (the row stays locked by this transaction: whoever else would create it waits)."""
    created = await session.execute(
        insert(BudgetCounter)
        .values(
            organization_id=organization_id,
            budget_id=budget_id,
            period_start=window[0],
            period_end=window[1],
        )
        .on_conflict_do_nothing()
        .returning(BudgetCounter.budget_id)
    )
    return created.first() is not None


async def add_to_counter(
    session: AsyncSession,
    budget: Budget,
    period_start: datetime,
    *,
    spent: Decimal = Decimal(0),
    reserved: Decimal = Decimal(0),
    cap: Decimal | None,
) -> tuple[Decimal, Decimal] | None:
    """Add to a counter; with a cap, only if ``spent + reserved`` stays within it.

    Returns the new ``(spent, reserved)``, or None when the cap refused the change. The
    UPDATE takes the row lock, so concurrent writers queue on it and each sees the last
    committed value: no lost update, no overshoot.
    """
    statement = (
        update(BudgetCounter)
        .where(
            BudgetCounter.budget_id == budget.id,
            BudgetCounter.period_start == period_start,
        )
        .values(spent=BudgetCounter.spent + spent, reserved=BudgetCounter.reserved + reserved)
        .returning(BudgetCounter.spent, BudgetCounter.reserved)
        .execution_options(synchronize_session=False)
    )
    if cap is not None:
        statement = statement.where(
            BudgetCounter.spent + BudgetCounter.reserved + spent + reserved <= cap
        )
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else (row[0], row[1])


async def read_counter(
    session: AsyncSession, budget_id: uuid.UUID, period_start: datetime, *, lock: bool = False
) -> tuple[Decimal, Decimal]:
    """``(spent, reserved)``; ``lock``: the row locked until commit."""
    statement = select(BudgetCounter.spent, BudgetCounter.reserved).where(
        BudgetCounter.budget_id == budget_id, BudgetCounter.period_start == period_start
    )
    if lock:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).one_or_none()
    return (Decimal(0), Decimal(0)) if row is None else (row[0], row[1])


async def reservation_by_key(session: AsyncSession, key: str) -> Reservation | None:
    return await session.scalar(select(Reservation).where(Reservation.idempotency_key == key))


async def lock_reservation(session: AsyncSession, reservation_id: uuid.UUID) -> Reservation | None:
    return await session.scalar(
        select(Reservation).where(Reservation.id == reservation_id).with_for_update()
    )


async def budgets_for_ids(
    session: AsyncSession, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Budget]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = await session.scalars(select(Budget).where(Budget.id.in_(wanted)))
    return {row.id: row for row in rows}


# --- the guard between budget setters and ledger writers (migration 0011) ---


async def lock_out_writers(session: AsyncSession, organization_id: uuid.UUID) -> None:
    """Take the organisation's writer guard EXCLUSIVE until commit: wait for its ledger
    writers in flight to commit, and make those after wait (a budget setter, before it reads
    the ledger)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(budget_guard_key(:org))"), {"org": organization_id}
    )


async def guard_writers(session: AsyncSession, organization_id: uuid.UUID) -> bool:
    """A ledger writer's share of the guard, until commit; True when budgets exist."""
    found = await session.scalar(
        text("SELECT budget_writers_guard(:org)"), {"org": organization_id}
    )
    return bool(found)


async def budgets_for_writer(session: AsyncSession, organization_id: uuid.UUID) -> list[Budget]:
    """Every budget of the organisation, read under the writer's share of the guard: one
    statement, the lock taken before the read's snapshot."""
    statement = select(Budget).from_statement(
        text("SELECT * FROM budgets_for_writer(:org)").bindparams(org=organization_id)
    )
    return list((await session.scalars(statement)).all())


# --- counters seeded from the ledger ---


async def usage_by_currency(
    session: AsyncSession, organization_id: uuid.UUID, scope: Scope, start: datetime, end: datetime
) -> list[tuple[str, Decimal, Decimal]]:
    """``(currency, ai_cost, billed)`` of the scope's usage over ``[start, end)``."""
    rows = await session.execute(
        select(LedgerEntry.currency, func.sum(LedgerEntry.ai_cost), func.sum(LedgerEntry.amount))
        .where(*usage_conditions(organization_id, scope, start, end))
        .group_by(LedgerEntry.currency)
    )
    return [(row[0], row[1] or Decimal(0), row[2] or Decimal(0)) for row in rows]


async def usage_entries(
    session: AsyncSession,
    organization_id: uuid.UUID,
    scope: Scope,
    start: datetime,
    end: datetime,
    currencies: Sequence[str],
) -> list[tuple[datetime, str, Decimal, Decimal]]:
    """``(occurred_at, currency, ai_cost, billed)`` of each usage entry in these currencies
    (each is converted at its own instant's rate, as it was counted)."""
    rows = await session.execute(
        select(
            LedgerEntry.occurred_at, LedgerEntry.currency, LedgerEntry.ai_cost, LedgerEntry.amount
        ).where(
            *usage_conditions(organization_id, scope, start, end),
            LedgerEntry.currency.in_(list(currencies)),
        )
    )
    return [(row[0], row[1], row[2], row[3]) for row in rows]


async def set_count(
    session: AsyncSession,
    budget_id: uuid.UUID,
    period_start: datetime,
    spent: Decimal,
    uncounted: Sequence[tuple[str, Decimal]],
) -> None:
    """Set a counter's spend and uncounted spend (the ledger's count); holds stay as they are."""
    await session.execute(
        update(BudgetCounter)
        .where(BudgetCounter.budget_id == budget_id, BudgetCounter.period_start == period_start)
        .values(spent=spent, uncounted={c: format(a, "f") for c, a in uncounted})
        .execution_options(synchronize_session=False)
    )


async def counter_windows(
    session: AsyncSession, budget_id: uuid.UUID
) -> list[tuple[datetime, datetime]]:
    """Every period a counter of the budget exists for, locked, oldest first."""
    rows = await session.execute(
        select(BudgetCounter.period_start, BudgetCounter.period_end)
        .where(BudgetCounter.budget_id == budget_id)
        .order_by(BudgetCounter.period_start)
        .with_for_update()
    )
    return [(row[0], row[1]) for row in rows]


async def lock_budget(session: AsyncSession, budget_id: uuid.UUID) -> Budget | None:
    """The budget as committed, its row shared-locked until commit (its terms cannot change
    meanwhile)."""
    return await session.scalar(
        select(Budget)
        .where(Budget.id == budget_id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )


# --- holds past their expiry that no authorisation has swept yet ---

_EXPIRED_HOLDS_SQL = text(
    "SELECT coalesce(sum((h ->> 'amount')::numeric), 0)"
    " FROM reservations r, jsonb_array_elements(r.holds) AS h"
    " WHERE r.organization_id = :org AND r.state = 'HELD' AND r.expires_at <= :now"
    " AND (h ->> 'budget_id')::uuid = :budget"
    " AND (h ->> 'period_start')::timestamptz = :start"
)


async def expired_holds(
    session: AsyncSession,
    organization_id: uuid.UUID,
    budget_id: uuid.UUID,
    period_start: datetime,
    now: datetime,
) -> Decimal:
    """What a counter's ``reserved`` still carries for reservations already past their
    expiry (given back only when an authorisation sweeps them): never counted as held."""
    found = await session.scalar(
        _EXPIRED_HOLDS_SQL,
        {"org": organization_id, "now": now, "budget": budget_id, "start": period_start},
    )
    return Decimal(found or 0)


# --- spend a budget could not count (no rate into its currency) ---


async def note_uncounted(
    session: AsyncSession,
    budget_id: uuid.UUID,
    period_start: datetime,
    amounts: Sequence[tuple[str, Decimal]],
) -> None:
    """Add to the counter's ``uncounted`` spend, per entry currency (exact, as text)."""
    for currency, amount in amounts:
        await session.execute(
            text(
                "UPDATE budget_counters SET uncounted = uncounted || jsonb_build_object("
                "CAST(:currency AS text), (COALESCE((uncounted ->> CAST(:currency AS text))"
                "::numeric, 0) + CAST(:amount AS numeric))::text) "
                "WHERE budget_id = :budget AND period_start = :start"
            ),
            {"currency": currency, "amount": amount, "budget": budget_id, "start": period_start},
        )


async def read_uncounted(
    session: AsyncSession, budget_id: uuid.UUID, period_start: datetime
) -> dict[str, Decimal]:
    """The period's spend its budget could not count, per entry currency."""
    found = await session.scalar(
        select(BudgetCounter.uncounted).where(
            BudgetCounter.budget_id == budget_id, BudgetCounter.period_start == period_start
        )
    )
    return {currency: Decimal(amount) for currency, amount in sorted((found or {}).items())}


async def scope_account_currencies(session: AsyncSession, scope: Scope) -> set[str]:
    """The currencies of the accounts whose spend a budget of ``scope`` counts: the account's
    own, a customer's accounts', every account of the organisation for anything wider."""
    statement = select(Account.currency).distinct()
    if scope.kind is ScopeKind.ACCOUNT:
        statement = statement.where(Account.id == scope.id)
    elif scope.kind is ScopeKind.CUSTOMER:
        statement = statement.where(Account.customer_id == scope.id)
    return {currency.strip() for currency in await session.scalars(statement)}
