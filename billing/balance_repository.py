"""SQL of account balances and allowance counters (see :mod:`costgraph.models.balance`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.models.balance import AccountBalance, AllowanceCounter
from costgraph.models.pricing import AccountSubscription


async def add_to_balance(
    session: AsyncSession,
    organization_id: uuid.UUID,
    account_id: uuid.UUID,
    delta: Decimal,
    *,
    floor: Decimal | None,
) -> Decimal | None:
    """Add ``delta``; with a floor, only if the balance stays at or above it.

    Returns the new balance, or None when the floor refused it (the row lock taken by the
    UPDATE makes check and spend one step across processes).
    """
    await session.execute(
        insert(AccountBalance)
        .values(organization_id=organization_id, account_id=account_id, balance=0)
        .on_conflict_do_nothing()
    )
    statement = (
        update(AccountBalance)
        .where(AccountBalance.account_id == account_id)
        .values(balance=AccountBalance.balance + delta)
        .returning(AccountBalance.balance)
        .execution_options(synchronize_session=False)
    )
    if floor is not None:
        statement = statement.where(AccountBalance.balance + delta >= floor)
    value: Decimal | None = await session.scalar(statement)
    return value


async def balances(
    session: AsyncSession, account_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Decimal]:
    wanted = list(set(account_ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(AccountBalance.account_id, AccountBalance.balance).where(
            AccountBalance.account_id.in_(wanted)
        )
    )
    return {row[0]: row[1] for row in rows}


async def subscriptions_of(
    session: AsyncSession, account_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[AccountSubscription]]:
    wanted = list(set(account_ids))
    found: dict[uuid.UUID, list[AccountSubscription]] = {a: [] for a in wanted}
    if not wanted:
        return found
    rows = await session.scalars(
        select(AccountSubscription)
        .where(AccountSubscription.account_id.in_(wanted))
        .order_by(AccountSubscription.starts_at)
    )
    for row in rows:
        found[row.account_id].append(row)
    return found


def in_force(subscriptions: list[AccountSubscription], at: datetime) -> AccountSubscription | None:
    current = None
    for subscription in subscriptions:
        if subscription.starts_at <= at and (
            subscription.ends_at is None or at < subscription.ends_at
        ):
            current = subscription
    return current


async def lock_allowance(
    session: AsyncSession,
    organization_id: uuid.UUID,
    account_id: uuid.UUID,
    cycle: tuple[datetime, datetime],
    included_tokens: int,
) -> int:
    """Lock the cycle's counter (creating it) and return the tokens already used."""
    await session.execute(
        insert(AllowanceCounter)
        .values(
            organization_id=organization_id,
            account_id=account_id,
            cycle_start=cycle[0],
            cycle_end=cycle[1],
            included_tokens=included_tokens,
        )
        .on_conflict_do_nothing()
    )
    used: int = (
        await session.scalar(
            select(AllowanceCounter.used_tokens)
            .where(
                AllowanceCounter.account_id == account_id, AllowanceCounter.cycle_start == cycle[0]
            )
            .with_for_update()
        )
        or 0
    )
    return used


async def draw_allowance(
    session: AsyncSession, account_id: uuid.UUID, cycle_start: datetime, tokens: int
) -> None:
    await session.execute(
        update(AllowanceCounter)
        .where(
            AllowanceCounter.account_id == account_id, AllowanceCounter.cycle_start == cycle_start
        )
        .values(used_tokens=AllowanceCounter.used_tokens + tokens)
        .execution_options(synchronize_session=False)
    )


async def allowance_used(
    session: AsyncSession, account_id: uuid.UUID, cycle_start: datetime
) -> int:
    used: int | None = await session.scalar(
        select(AllowanceCounter.used_tokens).where(
            AllowanceCounter.account_id == account_id, AllowanceCounter.cycle_start == cycle_start
        )
    )
    return used or 0
