"""SQL of auto-top-up settings (``auto_top_ups``) and their crossings."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing.raw_connection import driver_connection, plain_uuid
from costgraph.models.top_ups import AutoTopUp

#: Each enabled setting of the accounts whose state (balance below the threshold or not)
#: disagrees with its flag (a request outstanding or not) flips: below and armed -> a request
#: (``requests`` + 1), at or above and disarmed -> re-armed. State-based, so a crossing a
#: write could not see (e.g. the setting made on another instance meanwhile) is caught by
#: the next evaluation. The balance row is locked by the caller (it moved it, or
#: :func:`lock_balance`), so evaluations of one account are serialised.
_EVALUATE_SQL = (
    "UPDATE auto_top_ups t SET "
    "requested_at = CASE WHEN coalesce(b.balance, 0) < t.threshold THEN $3::timestamptz "
    "ELSE NULL END, "
    "requests = t.requests + CASE WHEN coalesce(b.balance, 0) < t.threshold THEN 1 ELSE 0 END "
    "FROM unnest($2::uuid[]) AS w(account_id) "
    "LEFT JOIN account_balances b ON b.organization_id = $1 AND b.account_id = w.account_id "
    "WHERE t.organization_id = $1 AND t.account_id = w.account_id AND t.enabled "
    "AND (coalesce(b.balance, 0) < t.threshold) = (t.requested_at IS NULL) "
    "RETURNING t.account_id, coalesce(b.balance, 0), t.threshold, t.amount, t.currency, "
    "t.requests, t.requested_at IS NOT NULL"
)


async def evaluate(
    session: AsyncSession,
    organization_id: uuid.UUID,
    account_ids: Sequence[uuid.UUID],
    now: datetime,
) -> list[tuple[uuid.UUID, Decimal, Decimal, Decimal, str, int, bool]]:
    """Flip the settings whose state changed; per flip ``(account, balance, threshold,
    amount, currency, request number, requested)`` (``requested`` False: re-armed)."""
    connection = await driver_connection(session)
    rows = await connection.fetch(_EVALUATE_SQL, organization_id, sorted(set(account_ids)), now)
    return [(plain_uuid(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


async def lock_balance(
    session: AsyncSession, organization_id: uuid.UUID, account_id: uuid.UUID, enabled: bool
) -> None:
    """Take the account's balance row lock (creating the row), as a writer moving it does,
    and set its ``auto_top_up`` flag to ``enabled`` (migration 0021): one statement, the row
    locked until commit by the update."""
    connection = await driver_connection(session)
    await connection.execute(
        "INSERT INTO account_balances (organization_id, account_id, balance, auto_top_up) "
        "VALUES ($1, $2, 0, $3) ON CONFLICT (organization_id, account_id) "
        "DO UPDATE SET auto_top_up = EXCLUDED.auto_top_up",
        organization_id,
        account_id,
        enabled,
    )


async def upsert(session: AsyncSession, values: dict[str, Any]) -> AutoTopUp:
    """Create or change an account's setting; turning it off re-arms it."""
    changes = {k: values[k] for k in ("enabled", "threshold", "amount", "currency")}
    statement = (
        insert(AutoTopUp)
        .values(**values)
        .on_conflict_do_update(
            index_elements=["organization_id", "account_id"],
            set_={
                **changes,
                "requested_at": None if not values["enabled"] else AutoTopUp.requested_at,
                "updated_at": values["updated_at"],
            },
        )
        .returning(AutoTopUp)
        .execution_options(populate_existing=True)
    )
    row: AutoTopUp = (await session.scalars(statement)).one()
    return row


async def get(session: AsyncSession, account_id: uuid.UUID) -> AutoTopUp | None:
    found: AutoTopUp | None = await session.scalar(
        select(AutoTopUp).where(AutoTopUp.account_id == account_id)
    )
    return found


async def enabled_for(session: AsyncSession, account_id: uuid.UUID) -> bool:
    enabled: bool | None = await session.scalar(
        select(AutoTopUp.enabled).where(AutoTopUp.account_id == account_id)
    )
    return bool(enabled)
