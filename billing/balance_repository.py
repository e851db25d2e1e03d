"""SQL of account balances and allowance counters (see :mod:`costgraph.models.balance`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from costgraph.billing.pools import PoolTerm
from costgraph.billing.raw_connection import driver_connection
from costgraph.models.balance import AccountBalance, AllowanceCounter, PoolAllowanceCounter
from costgraph.models.pricing import AccountSubscription

_Term = TypeVar("_Term", AccountSubscription, "SubscriptionTerm")
_CounterTable = type[AllowanceCounter] | type[PoolAllowanceCounter]


_ENSURE_BALANCES_SQL = (
    "INSERT INTO account_balances (organization_id, account_id, balance) "
    "SELECT $1, a, 0 FROM unnest($2::uuid[]) AS a ON CONFLICT DO NOTHING"
)
_MOVE_ONE_SQL = (
    "UPDATE account_balances SET balance = balance + $3 "
    "WHERE organization_id = $1 AND account_id = $2 AND (NOT $4 OR balance + $3 >= 0) "
    "RETURNING balance"
)
_LOCK_BALANCES_SQL = (
    "SELECT account_id, balance FROM account_balances "
    "WHERE organization_id = $1 AND account_id = ANY($2::uuid[]) ORDER BY account_id FOR UPDATE"
)
_MOVE_MANY_SQL = (
    "UPDATE account_balances b SET balance = b.balance + d.delta "
    "FROM unnest($2::uuid[], $3::numeric[]) AS d(account_id, delta) "
    "WHERE b.organization_id = $1 AND b.account_id = d.account_id"
)


async def move_balances(
    session: AsyncSession,
    organization_id: uuid.UUID,
    deltas: Mapping[uuid.UUID, Decimal],
    floored: Iterable[uuid.UUID],
) -> tuple[uuid.UUID, Decimal] | None:
    """Add each account's delta; an account in ``floored`` may not end below zero.

    All or nothing: returns ``(account, its balance)`` for the first account (in id order)
    whose floor refused, having changed nothing; else None. Row locks are taken in account-id
    order, so writers moving several balances cannot deadlock; with one account the
    conditional UPDATE is check, lock and write in one statement.
    """
    connection = await driver_connection(session)
    floors = set(floored)
    accounts = sorted(deltas)
    if len(accounts) == 1:
        account = accounts[0]
        args = (organization_id, account, deltas[account], account in floors)
        moved = await connection.fetchval(_MOVE_ONE_SQL, *args)
        if moved is None:  # no balance row yet, or the floor refused
            await connection.execute(_ENSURE_BALANCES_SQL, organization_id, accounts)
            moved = await connection.fetchval(_MOVE_ONE_SQL, *args)
        if moved is None:
            balance = await connection.fetchval(
                "SELECT balance FROM account_balances WHERE organization_id = $1 "
                "AND account_id = $2",
                organization_id,
                account,
            )
            return account, balance
        return None
    locked = dict(await connection.fetch(_LOCK_BALANCES_SQL, organization_id, accounts))
    if len(locked) < len(accounts):
        await connection.execute(_ENSURE_BALANCES_SQL, organization_id, accounts)
        locked = dict(await connection.fetch(_LOCK_BALANCES_SQL, organization_id, accounts))
    for account in accounts:
        if account in floors and locked[account] < deltas[account].copy_negate():  # exact
            return account, locked[account]
    await connection.execute(
        _MOVE_MANY_SQL, organization_id, accounts, [deltas[a] for a in accounts]
    )
    return None


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


@dataclass(frozen=True, slots=True)
class SubscriptionTerm:
    """What drawing on an allowance needs of a subscription."""

    account_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime | None
    included_tokens: int
    #: The team subscription whose pooled allowance it draws on (:mod:`~costgraph.billing.pools`).
    pool_id: uuid.UUID | None = None


async def subscription_terms(
    session: AsyncSession, organization_id: uuid.UUID, account_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[SubscriptionTerm]]:
    """Like :func:`subscriptions_of`, in one raw statement (the usage write path), under the
    writer's share of the organisation's guard (migration 0020; subscribing takes it
    exclusive)."""
    wanted = list(set(account_ids))
    found: dict[uuid.UUID, list[SubscriptionTerm]] = {a: [] for a in wanted}
    if not wanted:
        return found
    connection = await driver_connection(session)
    rows = await connection.fetch(
        "SELECT account_id, starts_at, ends_at, included_tokens, pool_id "
        "FROM subscriptions_for_writer($1, $2::uuid[]) ORDER BY starts_at",
        organization_id,
        wanted,
    )
    for row in rows:
        found[row[0]].append(SubscriptionTerm(*row))
    return found


def in_force(subscriptions: Sequence[_Term], at: datetime) -> _Term | None:
    current = None
    for subscription in subscriptions:
        if subscription.starts_at <= at and (
            subscription.ends_at is None or at < subscription.ends_at
        ):
            current = subscription
    return current


def _counters(pooled: bool) -> tuple[_CounterTable, InstrumentedAttribute[uuid.UUID]]:
    """The allowance counters and the column naming their holder: an account's, or with
    ``pooled`` a pool's (the team subscription, :mod:`costgraph.billing.pools`)."""
    if pooled:
        return PoolAllowanceCounter, PoolAllowanceCounter.pool_id
    return AllowanceCounter, AllowanceCounter.account_id


async def lock_allowance(
    session: AsyncSession,
    organization_id: uuid.UUID,
    holder_id: uuid.UUID,
    cycle: tuple[datetime, datetime],
    included_tokens: int,
    *,
    pooled: bool,
) -> tuple[int, int] | None:
    """Lock the cycle's counter of the account, or with ``pooled`` of the pool (creating it
    with ``included_tokens``, the plan's allowance or the pool's capacity now) and return its
    (used, included): a cycle keeps the allowance it opened with, whatever plan change
    follows (:mod:`costgraph.billing.allowances`, :mod:`costgraph.billing.pools`). With
    ``included_tokens`` 0 no counter is created: None when the cycle has not opened."""
    table, holder = _counters(pooled)
    if included_tokens > 0:
        await session.execute(
            insert(table)
            .values(
                {
                    "organization_id": organization_id,
                    holder.key: holder_id,
                    "cycle_start": cycle[0],
                    "cycle_end": cycle[1],
                    "included_tokens": included_tokens,
                }
            )
            .on_conflict_do_nothing()
        )
    row = (
        await session.execute(
            select(table.used_tokens, table.included_tokens)
            .where(holder == holder_id, table.cycle_start == cycle[0])
            .with_for_update()
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def draw_allowance(
    session: AsyncSession,
    holder_id: uuid.UUID,
    cycle_start: datetime,
    tokens: int,
    *,
    pooled: bool,
) -> None:
    """Add ``tokens`` to the used tokens of the account's (with ``pooled``, the pool's) counter."""
    table, holder = _counters(pooled)
    await session.execute(
        update(table)
        .where(holder == holder_id, table.cycle_start == cycle_start)
        .values(used_tokens=table.used_tokens + tokens)
        .execution_options(synchronize_session=False)
    )


async def allowance_used(
    session: AsyncSession, holder_id: uuid.UUID, cycle_start: datetime, *, pooled: bool
) -> tuple[int, int] | None:
    """The account's (with ``pooled``, the pool's) (used, included) this cycle; None: no usage
    has opened the cycle yet."""
    table, holder = _counters(pooled)
    row = (
        await session.execute(
            select(table.used_tokens, table.included_tokens).where(
                holder == holder_id, table.cycle_start == cycle_start
            )
        )
    ).first()
    return None if row is None else (row[0], row[1])


# --- pooled allowances (see :mod:`costgraph.billing.pools`) ---


async def pool_terms(
    session: AsyncSession,
    organization_id: uuid.UUID,
    pool_ids: Iterable[uuid.UUID],
    now: datetime,
) -> dict[uuid.UUID, PoolTerm]:
    """The team subscriptions of these pools, with the seats of all the pool's subscriptions
    in force at ``now``."""
    wanted = list(set(pool_ids))
    if not wanted:
        return {}
    connection = await driver_connection(session)
    rows = await connection.fetch(
        "SELECT p.id, p.starts_at, p.ends_at, p.included_tokens, "
        "(SELECT coalesce(sum(m.seats), 0) FROM account_subscriptions m "
        "WHERE m.organization_id = p.organization_id AND m.pool_id = p.id "
        "AND m.starts_at <= $3 AND (m.ends_at IS NULL OR m.ends_at > $3)) "
        "FROM account_subscriptions p WHERE p.organization_id = $1 AND p.id = ANY($2::uuid[])",
        organization_id,
        wanted,
        now,
    )
    return {row[0]: PoolTerm(row[0], row[1], row[2], row[3], int(row[4])) for row in rows}


async def pool_accounts(
    session: AsyncSession, organization_id: uuid.UUID, pool_ids: Iterable[uuid.UUID], at: datetime
) -> list[uuid.UUID]:
    """The accounts drawing on these pools at ``at`` (the team's and its members'), sorted."""
    connection = await driver_connection(session)
    rows = await connection.fetch(
        "SELECT DISTINCT account_id FROM account_subscriptions "
        "WHERE organization_id = $1 AND pool_id = ANY($2::uuid[]) AND starts_at <= $3 "
        "AND (ends_at IS NULL OR ends_at > $3) ORDER BY account_id",
        organization_id,
        list(pool_ids),
        at,
    )
    return [row[0] for row in rows]
