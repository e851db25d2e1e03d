"""SQL of subscription billing: a subscription's fee entries, the subscriptions a catch-up
round looks at, term changes, and the deferred revenue of a scope."""

# SQL text here is assembled from constant names only; every value is a bind parameter.
# ruff: noqa: S608

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing.raw_connection import driver_connection
from costgraph.models.ledger import EntryType
from costgraph.models.pricing import AccountSubscription, Plan

FEE_TYPES = (
    EntryType.SUBSCRIPTION_FEE.value,
    EntryType.SUBSCRIPTION_CREDIT.value,
    EntryType.REVENUE_RECOGNIZED.value,
    EntryType.REVENUE_REVERSED.value,
)
#: Per fee type, its sign in deferred revenue (billed and not yet earned).
DEFERRED_SIGN = {
    EntryType.SUBSCRIPTION_FEE.value: 1,
    EntryType.SUBSCRIPTION_CREDIT.value: -1,
    EntryType.REVENUE_RECOGNIZED.value: -1,
    EntryType.REVENUE_REVERSED.value: 1,
}
_DEFERRED_SQL = (
    "CASE e.type WHEN 'SUBSCRIPTION_FEE' THEN e.amount WHEN 'SUBSCRIPTION_CREDIT' THEN -e.amount "
    "WHEN 'REVENUE_RECOGNIZED' THEN -e.amount WHEN 'REVENUE_REVERSED' THEN e.amount ELSE 0 END"
)


@dataclass(frozen=True, slots=True)
class FeeRow:
    """One fee-type entry of a subscription, as the biller and the verifier read it."""

    id: uuid.UUID
    type: str
    amount: Decimal
    occurred_at: datetime
    cycle_start: datetime
    #: Fees and credits: where their service starts. Recognitions: their piece's start.
    service_start: datetime
    idempotency_key: str


def _fee_row(row: Any) -> FeeRow:
    return FeeRow(
        row["id"],
        row["type"],
        row["amount"],
        row["occurred_at"],
        datetime.fromisoformat(row["cycle_start"]),
        datetime.fromisoformat(row["service_start"]),
        row["idempotency_key"],
    )


_FEES_SQL = f"""
SELECT e.id, e.type, e.amount, e.occurred_at, e.idempotency_key,
       e.metadata->>'cycleStart' AS cycle_start, e.metadata->>'serviceStart' AS service_start
FROM ledger_entries e
WHERE e.organization_id = $1 AND e.account_id = $2
  AND e.type IN ({", ".join(f"'{t}'" for t in FEE_TYPES)})
  AND e.metadata->>'subscriptionId' = $3
ORDER BY e.occurred_at, e.recorded_at, e.id
"""


async def fee_rows(
    session: AsyncSession,
    organization_id: uuid.UUID,
    account_id: uuid.UUID,
    subscription_id: uuid.UUID,
) -> list[FeeRow]:
    connection = await driver_connection(session)
    rows = await connection.fetch(_FEES_SQL, organization_id, account_id, str(subscription_id))
    return [_fee_row(r) for r in rows]


_ALL_FEES_SQL = f"""
SELECT e.organization_id, e.account_id, e.currency, e.metadata->>'subscriptionId' AS sub,
       e.metadata->>'billing' AS billing, e.metadata->>'anchor' AS anchor,
       e.id, e.type, e.amount, e.occurred_at, e.idempotency_key,
       e.metadata->>'cycleStart' AS cycle_start, e.metadata->>'serviceStart' AS service_start
FROM ledger_entries e
WHERE e.type IN ({", ".join(f"'{t}'" for t in FEE_TYPES)}) {{org}}
ORDER BY e.organization_id, sub, e.occurred_at, e.id
"""


async def all_fee_rows(connection: Any, organization_id: uuid.UUID | None) -> list[Any]:
    """Every fee-type entry (of one organisation, or all): the verifier's read."""
    if organization_id is None:
        return list(await connection.fetch(_ALL_FEES_SQL.format(org="")))
    sql = _ALL_FEES_SQL.format(org="AND e.organization_id = $1")
    return list(await connection.fetch(sql, organization_id))


async def subscription(
    session: AsyncSession, subscription_id: uuid.UUID
) -> AccountSubscription | None:
    return await session.scalar(
        select(AccountSubscription).where(AccountSubscription.id == subscription_id)
    )


async def in_force(
    session: AsyncSession, account_id: uuid.UUID, at: datetime
) -> AccountSubscription | None:
    """The account's subscription in force at ``at`` (the one that started last)."""
    return await session.scalar(
        select(AccountSubscription)
        .where(
            AccountSubscription.account_id == account_id,
            AccountSubscription.starts_at <= at,
            (AccountSubscription.ends_at.is_(None)) | (AccountSubscription.ends_at > at),
        )
        .order_by(AccountSubscription.starts_at.desc())
        .limit(1)
    )


async def of_account(session: AsyncSession, account_id: uuid.UUID) -> Sequence[AccountSubscription]:
    rows = await session.scalars(
        select(AccountSubscription)
        .where(AccountSubscription.account_id == account_id)
        .order_by(AccountSubscription.starts_at)
    )
    return rows.all()


async def change_terms(
    session: AsyncSession, subscription_id: uuid.UUID, **values: Any
) -> AccountSubscription:
    await session.execute(
        update(AccountSubscription)
        .where(AccountSubscription.id == subscription_id)
        .values(**values)
    )
    row = await session.scalar(
        select(AccountSubscription)
        .where(AccountSubscription.id == subscription_id)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


_ACTIVE_SQL = """
SELECT s.organization_id, s.account_id
FROM account_subscriptions s
WHERE s.starts_at <= $1 AND (s.ends_at IS NULL OR s.ends_at > $2) {org}
GROUP BY s.organization_id, s.account_id
ORDER BY s.organization_id, s.account_id
"""


async def billable_accounts(
    session: AsyncSession, now: datetime, since: datetime, organization_id: uuid.UUID | None
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(organisation, account) of every subscription started by ``now`` and running after
    ``since`` (a platform session: every tenant's)."""
    connection = await driver_connection(session)
    if organization_id is None:
        rows = await connection.fetch(_ACTIVE_SQL.format(org=""), now, since)
    else:
        sql = _ACTIVE_SQL.format(org="AND s.organization_id = $3")
        rows = await connection.fetch(sql, now, since, organization_id)
    return [(r[0], r[1]) for r in rows]


_DEFERRED_BALANCE_SQL = f"""
SELECT e.currency, coalesce(sum({_DEFERRED_SQL}), 0) AS deferred
FROM ledger_entries e
WHERE e.organization_id = $1 AND e.occurred_at < $2
  AND e.type IN ({", ".join(f"'{t}'" for t in FEE_TYPES)}) {{scope}}
GROUP BY e.currency
ORDER BY e.currency
"""


async def deferred_balances(
    session: AsyncSession,
    organization_id: uuid.UUID,
    at: datetime,
    account_id: uuid.UUID | None = None,
    customer_id: uuid.UUID | None = None,
) -> dict[str, Decimal]:
    """Per currency: fees billed and not yet earned by ``at`` (a plain SUM over the ledger)."""
    connection = await driver_connection(session)
    args: list[Any] = [organization_id, at]
    scope = ""
    if account_id is not None:
        args.append(account_id)
        scope = f"AND e.account_id = ${len(args)}"
    elif customer_id is not None:
        args.append(customer_id)
        scope = f"AND e.customer_id = ${len(args)}"
    rows = await connection.fetch(_DEFERRED_BALANCE_SQL.format(scope=scope), *args)
    return {r["currency"]: r["deferred"] for r in rows}


async def latest_fee(
    session: AsyncSession, organization_id: uuid.UUID, account_id: uuid.UUID
) -> uuid.UUID | None:
    """The account's latest ``SUBSCRIPTION_FEE`` (a subscription payment settles it)."""
    connection = await driver_connection(session)
    found: uuid.UUID | None = await connection.fetchval(
        "SELECT e.id FROM ledger_entries e WHERE e.organization_id = $1 AND e.account_id = $2 "
        "AND e.type = 'SUBSCRIPTION_FEE' ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1",
        organization_id,
        account_id,
    )
    return found


async def plan_by_id(session: AsyncSession, plan_id: uuid.UUID) -> Plan | None:
    return await session.scalar(select(Plan).where(Plan.id == plan_id))
