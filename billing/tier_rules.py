"""Tier rules a plan enforces on a customer's accounts: ``PLAN_LIMIT`` (:class:`PlanLimit`).

``maxAccountsPerCustomer`` (Creator: 1; NULL: unlimited) caps the accounts of a customer that
has a subscription to the plan, in force now or later. All the customer's accounts count,
subscribed or not: Creator is for an individual with a single account. It is checked

- when an account subscribes to the plan: the customer may not already have more accounts
  than the plan allows;
- when an account is created under a customer: one more account may not exceed the
  strictest maximum among the plans its accounts are on.

A plan's seats (the most a subscription may have) are held the same way, by
:func:`require_seats`.

Both paths take a transaction-scoped advisory lock on the customer before counting
(:func:`lock`); the write transaction is READ COMMITTED, so every statement after the lock
sees what the previous holder committed, and two servers creating or subscribing a
customer's accounts at once are serialised: the count is exact. Lock order: the customer,
then an account (``plans_repository.lock_account``). Plan changes of other slices
(``changePlan``) call :func:`require_room_to_subscribe` under the same lock.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import plans_repository as repo
from costgraph.kernel.errors import PlanLimit
from costgraph.models.pricing import Plan

MAX_ACCOUNTS = "maxAccountsPerCustomer"
SEATS = "seats"


async def lock(session: AsyncSession, organization_id: uuid.UUID, customer_id: uuid.UUID) -> None:
    await repo.lock_customer(session, organization_id, customer_id)


async def require_room_to_subscribe(
    session: AsyncSession, customer_id: uuid.UUID, plan: Plan, field: str
) -> None:
    """An account of the customer may move onto ``plan`` (call under :func:`lock`)."""
    limit = plan.max_accounts_per_customer
    if limit is None:
        return
    accounts = await repo.count_accounts(session, customer_id)
    if accounts > limit:
        raise PlanLimit(
            plan.code,
            MAX_ACCOUNTS,
            limit,
            f"allows {_accounts(limit)} per customer and this customer has {accounts}",
            field,
        )


async def require_room_for_account(
    session: AsyncSession, customer_id: uuid.UUID, at: datetime, field: str
) -> None:
    """The customer may have one more account (call under :func:`lock`)."""
    strictest = await repo.strictest_account_limit(session, customer_id, at)
    if strictest is None:
        return
    code, limit = strictest
    accounts = await repo.count_accounts(session, customer_id)
    if accounts + 1 > limit:
        raise PlanLimit(
            code,
            MAX_ACCOUNTS,
            limit,
            f"allows {_accounts(limit)} per customer and this customer, on it, has {accounts}",
            field,
        )


def require_seats(plan: Plan, seats: int, field: str) -> None:
    if plan.seats is not None and seats > plan.seats:
        raise PlanLimit(
            plan.code,
            SEATS,
            plan.seats,
            f"allows at most {plan.seats} seats per subscription, not {seats}",
            field,
        )


def _accounts(count: int) -> str:
    return "1 account" if count == 1 else f"{count} accounts"
