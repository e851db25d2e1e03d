"""SQL of plans and account subscriptions (tenant tables: the tenant filter applies)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.models import Account, EntryType, LedgerEntry
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
    rules: Mapping[str, object] | None = None,
) -> Plan:
    """``rules``: the tier rules' columns (``max_accounts_per_customer``, ``priority_class``,
    ``pooled``, ``seat_fee``)."""
    values = {
        "name": name,
        "monthly_fee": monthly_fee,
        "annual_fee": annual_fee,
        "currency": currency,
        "included_tokens": included_tokens,
        "seats": seats,
        **(rules or {}),
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


async def latest_usage_since(
    session: AsyncSession, organization_id: uuid.UUID, account_id: uuid.UUID, since: datetime
) -> datetime | None:
    """When the account's latest usage charge dated at or after ``since`` occurred (None:
    there is none). Read by the ``(organization_id, account_id, occurred_at)`` index."""
    found: datetime | None = await session.scalar(
        select(func.max(LedgerEntry.occurred_at)).where(
            LedgerEntry.organization_id == organization_id,
            LedgerEntry.account_id == account_id,
            LedgerEntry.type == EntryType.USAGE_CHARGE.value,
            LedgerEntry.occurred_at >= since,
        )
    )
    return found


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


# --- tier rules and pools (see costgraph.billing.tier_rules and costgraph.billing.pools) ---


async def lock_customer(
    session: AsyncSession, organization_id: uuid.UUID, customer_id: uuid.UUID
) -> None:
    """Serialise what a customer's tier rules count (its accounts, its pools) across
    processes; taken before any account's lock."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"customer-tier:{organization_id}:{customer_id}"},
    )


async def count_accounts(session: AsyncSession, customer_id: uuid.UUID) -> int:
    counted: int = (
        await session.scalar(
            select(func.count()).select_from(Account).where(Account.customer_id == customer_id)
        )
        or 0
    )
    return counted


async def strictest_account_limit(
    session: AsyncSession, customer_id: uuid.UUID, at: datetime
) -> tuple[str, int] | None:
    """The plan (code, maximum) with the fewest accounts per customer among the plans the
    customer's accounts are on at ``at`` or later; None: no such limit."""
    row = (
        await session.execute(
            select(Plan.code, Plan.max_accounts_per_customer)
            .join(AccountSubscription, AccountSubscription.plan_id == Plan.id)
            .join(Account, Account.id == AccountSubscription.account_id)
            .where(
                Account.customer_id == customer_id,
                Plan.max_accounts_per_customer.is_not(None),
                (AccountSubscription.ends_at.is_(None)) | (AccountSubscription.ends_at > at),
            )
            .order_by(Plan.max_accounts_per_customer, Plan.code)
            .limit(1)
        )
    ).first()
    if row is None or row[1] is None:
        return None
    return row[0], row[1]


async def team_subscription(
    session: AsyncSession, customer_id: uuid.UUID, plan_id: uuid.UUID, at: datetime
) -> AccountSubscription | None:
    """The customer's pool on this plan in force at ``at`` or later (the earliest)."""
    return await session.scalar(
        select(AccountSubscription)
        .join(Account, Account.id == AccountSubscription.account_id)
        .where(
            Account.customer_id == customer_id,
            AccountSubscription.plan_id == plan_id,
            AccountSubscription.pool_id == AccountSubscription.id,
            (AccountSubscription.ends_at.is_(None)) | (AccountSubscription.ends_at > at),
        )
        .order_by(AccountSubscription.starts_at)
        .limit(1)
    )


async def pool_members(session: AsyncSession, pool_id: uuid.UUID, at: datetime) -> int:
    """Accounts other than the team subscription's own drawing on the pool at ``at`` or
    later."""
    counted: int = (
        await session.scalar(
            select(func.count(func.distinct(AccountSubscription.account_id))).where(
                AccountSubscription.pool_id == pool_id,
                AccountSubscription.id != pool_id,
                (AccountSubscription.ends_at.is_(None)) | (AccountSubscription.ends_at > at),
            )
        )
        or 0
    )
    return counted


async def pool_member_subscriptions(
    session: AsyncSession, pool_id: uuid.UUID, at: datetime
) -> Sequence[AccountSubscription]:
    """The subscriptions other than the team subscription drawing on the pool at ``at`` or
    later."""
    rows = await session.scalars(
        select(AccountSubscription)
        .where(
            AccountSubscription.pool_id == pool_id,
            AccountSubscription.id != pool_id,
            (AccountSubscription.ends_at.is_(None)) | (AccountSubscription.ends_at > at),
        )
        .order_by(AccountSubscription.account_id)
    )
    return rows.all()


async def move_subscriptions(
    session: AsyncSession, subscription_ids: Sequence[uuid.UUID], **values: object
) -> None:
    """Give these subscriptions new terms in place (a team moving plan with its pool)."""
    if subscription_ids:
        await session.execute(
            update(AccountSubscription)
            .where(AccountSubscription.id.in_(list(subscription_ids)))
            .values(**values)
            .execution_options(synchronize_session=False)
        )


async def current_priority_class(
    session: AsyncSession, account_id: uuid.UUID, at: datetime
) -> str | None:
    """The priority class of the account's subscription in force at ``at`` (None: none)."""
    return await session.scalar(
        select(AccountSubscription.priority_class)
        .where(
            AccountSubscription.account_id == account_id,
            AccountSubscription.starts_at <= at,
            (AccountSubscription.ends_at.is_(None)) | (AccountSubscription.ends_at > at),
        )
        .order_by(AccountSubscription.starts_at.desc())
        .limit(1)
    )
