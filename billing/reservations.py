"""Reservations: hold an estimated cost before an AI call, settle the actual usage after it.

``reserve`` raises each applicable budget's ``reserved`` under its cap (refused with
BUDGET_LIMIT_REACHED when it cannot fit); ``settle`` gives the hold back and records the
actual usage, which is charged even past a cap — the call has already happened and its cost
is real; ``release`` gives the hold back unused. Holds left by a caller that crashed expire:
any later reservation of the organisation sweeps them first, so they stop counting.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import budget_repository as repo
from costgraph.billing import ledger
from costgraph.billing.budgets import Spend, convert_for_budget, period_of, rates_for
from costgraph.billing.clock import format_rfc3339
from costgraph.billing.commands import Limits, UsageEvent
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.entries import Entry
from costgraph.billing.errors import (
    BudgetLimitReached,
    IdempotencyConflict,
    NotFound,
    ValidationFailed,
)
from costgraph.billing.idempotency import request_hash
from costgraph.billing.pricing import price_one
from costgraph.billing.scopes import Attribution
from costgraph.billing.validation import validate_usage
from costgraph.models import Account, User
from costgraph.models.budget import Reservation


@dataclass(frozen=True, slots=True)
class EstimateRequest:
    """What an AI call is expected to use; priced like usage, at the time of the request."""

    idempotency_key: str
    account_id: uuid.UUID
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    user_id: uuid.UUID | None = None
    feature: str | None = None
    agent: str | None = None
    estimated_cost: Decimal | None = None
    estimated_cost_currency: str | None = None

    def as_usage(self, now: datetime) -> UsageEvent:
        return UsageEvent(
            idempotency_key=self.idempotency_key,
            account_id=self.account_id,
            occurred_at=now,
            provider=self.provider,
            model=self.model,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            user_id=self.user_id,
            feature=self.feature,
            agent=self.agent,
            provider_cost=self.estimated_cost,
            provider_currency=self.estimated_cost_currency,
        )


async def _release_holds(session: AsyncSession, reservation: Reservation) -> None:
    budgets = await repo.budgets_for_ids(
        session, [uuid.UUID(h["budget_id"]) for h in reservation.holds]
    )
    for hold in reservation.holds:
        budget = budgets.get(uuid.UUID(hold["budget_id"]))
        if budget is not None:
            await repo.add_to_counter(
                session,
                budget,
                datetime.fromisoformat(hold["period_start"]),
                reserved=-Decimal(hold["amount"]),
                cap=None,
            )


async def sweep_expired(session: AsyncSession, now: datetime) -> int:
    expired = await repo.lock_expired(session, now)
    for reservation in expired:
        await _release_holds(session, reservation)
        reservation.state = "EXPIRED"
        reservation.closed_at = now
    await session.flush()
    return len(expired)


async def authorize(
    session: AsyncSession,
    org: OrgContext,
    request: EstimateRequest,
    limits: Limits,
    now: datetime,
) -> tuple[Reservation, bool]:
    """Hold the estimate against every applicable budget; ``(reservation, replayed)``."""
    validate_usage(request.as_usage(now), limits, "input")
    fingerprint = request_hash("authorize", request)
    existing = await repo.reservation_by_key(session, request.idempotency_key)
    if existing is not None:
        if existing.request_hash != fingerprint:
            raise IdempotencyConflict(request.idempotency_key, "input.idempotencyKey")
        return existing, True
    await sweep_expired(session, now)
    account = (await get_many(session, Account, [request.account_id])).get(request.account_id)
    if account is None:
        raise NotFound("account", request.account_id, "input.accountId")
    priced = await price_one(
        session, org.id, request.as_usage(now), account.currency, account.customer_id
    )
    user = None
    if request.user_id is not None:
        user = (await get_many(session, User, [request.user_id])).get(request.user_id)
        if user is None:
            raise NotFound("user", request.user_id, "input.userId")
    attribution = Attribution(
        org.id,
        account.customer_id,
        account.id,
        None if user is None else user.department_id,
        request.user_id,
    )
    spend = Spend(attribution, now, account.currency, priced.ai_cost, priced.billed)
    zone = limits.zone
    budgets = await repo.budgets_for_scopes(session, attribution.scopes())
    rates = await rates_for(session, org, [spend], budgets)
    holds: list[dict[str, str]] = []
    for budget in budgets:
        span = period_of(budget, now, zone)
        if span is None:
            continue
        amount = convert_for_budget(spend, budget, rates)
        if budget.hard_cap and amount > budget.limit_amount:
            raise ValidationFailed(
                f"the estimate ({amount} {budget.currency}) is more than budget {budget.id} "
                f"could ever allow ({budget.limit_amount} {budget.currency})",
                "input",
            )
        await repo.ensure_counter(session, org.id, budget.id, span)
        cap = budget.limit_amount if budget.hard_cap else None
        if await repo.add_to_counter(session, budget, span[0], reserved=amount, cap=cap) is None:
            spent, reserved = await repo.read_counter(session, budget.id, span[0])
            raise BudgetLimitReached(
                str(budget.id),
                budget.limit_amount,
                budget.currency,
                spent + reserved,
                format_rfc3339(span[1]),
            )
        holds.append(
            {
                "budget_id": str(budget.id),
                "period_start": span[0].isoformat(),
                "amount": str(amount),
            }
        )
    reservation = Reservation(
        organization_id=org.id,
        idempotency_key=request.idempotency_key,
        request_hash=fingerprint,
        account_id=account.id,
        user_id=request.user_id,
        provider=request.provider,
        model=request.model,
        currency=account.currency,
        ai_cost=priced.ai_cost,
        billed=priced.billed,
        holds=holds,
        expires_at=now + timedelta(seconds=limits.reservation_ttl_seconds),
    )
    session.add(reservation)
    await session.flush()
    return reservation, False


async def settle(
    session: AsyncSession,
    org: OrgContext,
    reservation_id: uuid.UUID,
    event: UsageEvent,
    limits: Limits,
    now: datetime,
) -> Entry:
    reservation = await repo.lock_reservation(session, reservation_id)
    if reservation is None:
        raise NotFound("reservation", reservation_id, "input.reservationId")
    if reservation.state == "SETTLED":
        # A retry of the same settlement replays; anything else is a second settlement.
        entry = await ledger.record_usage(session, org, event, limits, enforce=False)
        if not entry.replayed or entry.id != reservation.settled_entry_id:
            raise ValidationFailed("this reservation is already settled", "input.reservationId")
        return entry
    if reservation.state != "HELD" or reservation.expires_at <= now:
        state = "expired" if reservation.state == "HELD" else reservation.state.lower()
        raise ValidationFailed(
            f"this reservation is {state}; record the usage with recordUsage",
            "input.reservationId",
        )
    if event.account_id != reservation.account_id:
        raise ValidationFailed("usage must land on the reserved account", "input.usage.accountId")
    await _release_holds(session, reservation)
    entry = await ledger.record_usage(session, org, event, limits, enforce=False)
    reservation.state = "SETTLED"
    reservation.settled_entry_id = entry.id
    reservation.closed_at = now
    await session.flush()
    return entry


async def release(
    session: AsyncSession, org: OrgContext, reservation_id: uuid.UUID, now: datetime
) -> Reservation:
    reservation = await repo.lock_reservation(session, reservation_id)
    if reservation is None:
        raise NotFound("reservation", reservation_id, "id")
    if reservation.state == "SETTLED":
        raise ValidationFailed("a settled reservation cannot be released", "id")
    if reservation.state == "HELD":
        await _release_holds(session, reservation)
        reservation.state = "RELEASED" if reservation.expires_at > now else "EXPIRED"
        reservation.closed_at = now
        await session.flush()
    return reservation
