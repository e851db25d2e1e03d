"""SQL of budgets: lookups through the tenant-scoped ORM, counters through one conditional
UPDATE each (the atomic check that makes a hard cap hold across processes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing.scopes import Scope
from costgraph.models.budget import Budget, BudgetCounter, Reservation


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
) -> None:
    await session.execute(
        insert(BudgetCounter)
        .values(
            organization_id=organization_id,
            budget_id=budget_id,
            period_start=window[0],
            period_end=window[1],
        )
        .on_conflict_do_nothing()
    )


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
    session: AsyncSession, budget_id: uuid.UUID, period_start: datetime
) -> tuple[Decimal, Decimal]:
    row = (
        await session.execute(
            select(BudgetCounter.spent, BudgetCounter.reserved).where(
                BudgetCounter.budget_id == budget_id, BudgetCounter.period_start == period_start
            )
        )
    ).one_or_none()
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
