"""SQL of plans and account subscriptions (tenant tables: the tenant filter applies)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.models.pricing import AccountSubscription, Plan


async def upsert_plan(
    session: AsyncSession,
    organization_id: uuid.UUID,
    code: str,
    name: str,
    monthly_fee: Decimal,
    annual_fee: Decimal | None,
    currency: str,
    included_tokens: int,
    seats: int | None,
) -> Plan:
    values = {
        "name": name,
        "monthly_fee": monthly_fee,
        "annual_fee": annual_fee,
        "currency": currency,
        "included_tokens": included_tokens,
        "seats": seats,
    }
    statement = (
        insert(Plan)
        .values(organization_id=organization_id, code=code, **values)
        .on_conflict_do_update(
            index_elements=["organization_id", "code"],
            set_={**values, "updated_at": func.now()},
        )
        .returning(Plan.id)
    )
    plan_id = (await session.execute(statement)).scalar_one()
    row = await session.get(Plan, (organization_id, plan_id), populate_existing=True)
    assert row is not None
    return row


async def plan_by_code(session: AsyncSession, code: str) -> Plan | None:
    return await session.scalar(select(Plan).where(Plan.code == code))


async def list_plans(session: AsyncSession) -> Sequence[Plan]:
    return (await session.scalars(select(Plan).order_by(Plan.monthly_fee, Plan.code))).all()


async def lock_account(
    session: AsyncSession, organization_id: uuid.UUID, account_id: uuid.UUID
) -> None:
    """Serialise subscription changes of one account."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"subscription:{organization_id}:{account_id}"},
    )


async def current_subscription(
    session: AsyncSession, account_id: uuid.UUID
) -> AccountSubscription | None:
    return await session.scalar(
        select(AccountSubscription).where(
            AccountSubscription.account_id == account_id, AccountSubscription.ends_at.is_(None)
        )
    )


async def end_subscription(session: AsyncSession, subscription_id: uuid.UUID, at: datetime) -> None:
    await session.execute(
        update(AccountSubscription)
        .where(AccountSubscription.id == subscription_id)
        .values(ends_at=at)
    )


async def add_subscription(session: AsyncSession, row: AccountSubscription) -> AccountSubscription:
    session.add(row)
    await session.flush()
    await session.refresh(row, ["created_at"])
    return row


async def subscriptions_of(
    session: AsyncSession, account_id: uuid.UUID
) -> Sequence[AccountSubscription]:
    rows = await session.scalars(
        select(AccountSubscription)
        .where(AccountSubscription.account_id == account_id)
        .order_by(AccountSubscription.starts_at)
    )
    return rows.all()
