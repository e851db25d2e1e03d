"""Reservations: hold an estimated cost before an AI call, settle the actual usage after it.

``authorize`` raises each applicable budget's ``reserved`` under its cap (refused with
BUDGET_LIMIT_REACHED when it cannot fit); ``settle`` gives the hold back and records the
actual usage; ``release`` gives the hold back unused.

A settlement within its hold is always recorded: that room was reserved for it. Beyond its
hold — a stream's final cost can exceed its estimate, and the ledger must record what was
spent — it is recorded while each hard-capped budget's period stays within its limit plus
``Limits.settle_overage_tolerance_percent`` of it; past that it is refused with
OVERAGE_LIMIT naming the room left, and nothing is written. A period a settlement took over
its cap raises an OVERAGE alert, and refuses every authorisation and usage until it ends.

Holds left by a caller that crashed expire: every authorisation of the organisation expires
the overdue ones in the same statement before it counts what is held, and every other reader
(a cap checked by recordUsage, ``budgetStatus.reserved``) leaves out the ones past their
expiry that no authorisation has swept yet.

The authorisation's writes are one statement (``reservation_repository.reserve``) so that
concurrent authorisations of one budget queue only for as long as that statement runs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final, TypeAlias

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from costgraph.billing import budget_ledger, events, ledger
from costgraph.billing import budget_repository as repo
from costgraph.billing import reservation_repository as holds
from costgraph.billing.budgets import Settlement, Spend, budget_amount, period_of, rates_for
from costgraph.billing.commands import Limits, UsageEvent
from costgraph.billing.directory import OrgContext
from costgraph.billing.entries import Entry
from costgraph.billing.idempotency import request_hash
from costgraph.billing.pricing import price_one
from costgraph.billing.scopes import Attribution
from costgraph.billing.validation import validate_usage
from costgraph.kernel.clock import format_rfc3339
from costgraph.kernel.errors import (
    BudgetLimitReached,
    DomainError,
    IdempotencyConflict,
    NotFound,
    Unavailable,
    ValidationFailed,
)
from costgraph.kernel.unit_of_work import emit
from costgraph.models.budget import Budget, Reservation

#: Tries of one authorisation when the budgets change under it (each reloads them).
MAX_ATTEMPTS: Final = 4


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


#: The usage event's names of what an estimate carries, and this mutation's.
_ESTIMATE_NAMES: Final = (
    ("providerCurrency", "estimatedCostCurrency"),
    ("providerCost", "estimatedCost"),
    ("provider cost", "estimated cost"),
    ("inputTokens", "estimatedInputTokens"),
    ("outputTokens", "estimatedOutputTokens"),
)


def _validate_estimate(request: EstimateRequest, limits: Limits, now: datetime) -> UsageEvent:
    """The usage rules, refusals naming ``authorizeUsage``'s own fields (``estimatedCost``…),
    never the usage event's, which its caller cannot send; the estimate as that event."""
    usage = request.as_usage(now)
    try:
        validate_usage(usage, limits, "input")
    except ValidationFailed as exc:
        field, message = exc.field, exc.message
        for usage_name, estimate_name in _ESTIMATE_NAMES:
            message = message.replace(usage_name, estimate_name)
            if field == f"input.{usage_name}":
                field = f"input.{estimate_name}"
        raise ValidationFailed(message, field) from None
    return usage


@dataclass(frozen=True, slots=True)
class Held:
    """A reservation as the hold just wrote it: the row's columns, as a plain value (an ORM
    object's instrumented construction cost the hot path more than the rest of its result)."""

    organization_id: uuid.UUID
    id: uuid.UUID
    idempotency_key: str
    request_hash: bytes
    account_id: uuid.UUID
    user_id: uuid.UUID | None
    provider: str
    model: str
    currency: str
    ai_cost: Decimal
    billed: Decimal
    holds: list[dict[str, str]]
    state: str
    expires_at: datetime
    settled_entry_id: uuid.UUID | None
    created_at: datetime
    closed_at: datetime | None


#: What an authorisation answers: the row it replayed, or the one its hold wrote.
Authorized: TypeAlias = Reservation | Held


def held_budgets(reservation: Authorized) -> list[uuid.UUID]:
    """The budgets a reservation holds (or held) an amount on."""
    return [uuid.UUID(hold["budget_id"]) for hold in reservation.holds]


async def _release_holds(session: AsyncSession, reservation: Reservation) -> None:
    budgets = await repo.budgets_for_ids(session, held_budgets(reservation))
    for hold in sorted(
        reservation.holds, key=lambda h: (uuid.UUID(h["budget_id"]), h["period_start"])
    ):
        budget = budgets.get(uuid.UUID(hold["budget_id"]))
        if budget is not None:
            await repo.add_to_counter(
                session,
                budget,
                datetime.fromisoformat(hold["period_start"]),
                reserved=-Decimal(hold["amount"]),
                cap=None,
            )


@dataclass(frozen=True, slots=True)
class _Plan:
    """An authorisation worked out before anything is locked."""

    hold: holds.HoldRequest
    budgets: dict[uuid.UUID, Budget]
    spans: dict[uuid.UUID, tuple[datetime, datetime]]

    def windows(self) -> list[tuple[uuid.UUID, tuple[datetime, datetime]]]:
        """The budgets and periods the hold is on."""
        return [(h.budget_id, (h.period_start, h.period_end)) for h in self.hold.holds]

    def refused(self, refusal: holds.CapRefused) -> BudgetLimitReached:
        budget = self.budgets[refusal.budget_id]
        return BudgetLimitReached(
            str(budget.id),
            budget.limit_amount,
            budget.currency,
            refusal.held,
            format_rfc3339(self.spans[budget.id][1]),
        )

    def reservation(self, outcome: holds.HoldOutcome) -> Held:
        """The row the hold inserted (built from what was written)."""
        hold = self.hold
        return Held(
            organization_id=hold.organization_id,
            id=outcome.reservation_id,
            idempotency_key=hold.idempotency_key,
            request_hash=hold.request_hash,
            account_id=hold.account_id,
            user_id=hold.user_id,
            provider=hold.provider,
            model=hold.model,
            currency=hold.currency,
            ai_cost=hold.ai_cost,
            billed=hold.billed,
            holds=hold.holds_json(),
            state="HELD",
            expires_at=hold.expires_at,
            settled_entry_id=None,
            created_at=outcome.created_at,
            closed_at=None,
        )


async def _plan(
    session: AsyncSession,
    org: OrgContext,
    request: EstimateRequest,
    usage: UsageEvent,
    fingerprint: bytes,
    limits: Limits,
    now: datetime,
    *,
    fresh_budgets: bool,
) -> _Plan:
    """Price the estimate and work out the hold on every applicable budget (no locks)."""
    account = await holds.account_terms(session, org.id, request.account_id)
    if account is None:
        raise NotFound("account", request.account_id, "input.accountId")
    priced = await price_one(session, org.id, usage, account.currency, account.customer_id)
    department_id = None
    if request.user_id is not None:
        user = await holds.user_terms(session, org.id, request.user_id)
        if user is None:
            raise NotFound("user", request.user_id, "input.userId")
        department_id = user.department_id
    attribution = Attribution(
        org.id, account.customer_id, request.account_id, department_id, request.user_id
    )
    scopes = attribution.scopes()
    wanted = {(s.kind.value, s.id) for s in scopes}
    applicable = [
        b
        for b in await holds.organization_budgets(session, org.id, fresh=fresh_budgets)
        if b.scope in wanted
    ]
    budgets = [b.budget for b in applicable]
    spend = Spend(attribution, now, account.currency, priced.ai_cost, priced.billed)
    rates = await rates_for(session, org, [spend], budgets)
    zone = limits.zone
    counter_holds: list[holds.CounterHold] = []
    spans: dict[uuid.UUID, tuple[datetime, datetime]] = {}
    for budget in budgets:
        span = period_of(budget, now, zone)
        if span is None:
            continue
        amount = budget_amount(spend, budget, rates)
        if amount is None:
            continue  # no rate into the budget's currency: it cannot hold (fails open)
        if budget.hard_cap and amount > budget.limit_amount:
            raise ValidationFailed(
                f"the estimate ({amount} {budget.currency}) is more than budget {budget.id} "
                f"could ever allow ({budget.limit_amount} {budget.currency})",
                "input",
            )
        spans[budget.id] = span
        cap = budget.limit_amount if budget.hard_cap else None
        counter_holds.append(holds.CounterHold(budget.id, span[0], span[1], amount, cap))
    hold = holds.HoldRequest(
        organization_id=org.id,
        now=now,
        idempotency_key=request.idempotency_key,
        request_hash=fingerprint,
        account_id=request.account_id,
        user_id=request.user_id,
        provider=request.provider,
        model=request.model,
        currency=account.currency,
        ai_cost=priced.ai_cost,
        billed=priced.billed,
        expires_at=now + timedelta(seconds=limits.reservation_ttl_seconds),
        scopes=scopes,
        budget_versions=[b.version for b in applicable],
        holds=counter_holds,
    )
    return _Plan(hold, {b.id: b for b in budgets}, spans)


async def _replay(session: AsyncSession, key: str, fingerprint: bytes) -> Reservation | None:
    """The reservation already made with this key (a conflict if its request differed)."""
    existing = await repo.reservation_by_key(session, key)
    if existing is not None and existing.request_hash != fingerprint:
        raise IdempotencyConflict(key, "input.idempotencyKey")
    return existing


async def authorize(
    session: AsyncSession,
    org: OrgContext,
    request: EstimateRequest,
    limits: Limits,
    now: datetime,
    *,
    alone: bool = False,
) -> tuple[Authorized, bool]:
    """Hold the estimate against every applicable budget; ``(reservation, replayed)``.

    Lookups and pricing come first, through ``session``, outside any lock; then one statement
    replays the key or expires the organisation's overdue holds, raises every counter under
    its cap and inserts the reservation. With ``alone`` (the session has written nothing) that
    statement is a transaction of its own on the session's connection — one connection per
    authorisation, and the counters' locks last only as long as the statement runs: a
    transaction the lookups opened is ended first (they only read), and a counter still to be
    created is committed on its own before. Without, the statement joins the session's
    transaction.
    """
    usage = _validate_estimate(request, limits, now)
    fingerprint = request_hash("authorize", request)
    for attempt in range(MAX_ATTEMPTS):
        try:
            plan = await _plan(
                session, org, request, usage, fingerprint, limits, now, fresh_budgets=attempt > 0
            )
        except DomainError:
            # A retried request answers as before, whatever changed since (as it always has).
            existing = await _replay(session, request.idempotency_key, fingerprint)
            if existing is not None:
                return existing, True
            raise
        engine: AsyncEngine | None = None
        if alone:
            if session.in_transaction():
                await session.rollback()  # it only read: nothing stays locked or checked out
            bind = session.bind  # opening a missing counter: a short transaction of its own
            assert isinstance(bind, AsyncEngine)
            engine = bind
        # A counter the hold would create starts from the ledger's spend, not zero.
        await budget_ledger.open_counters(session, org.id, plan.windows(), engine)
        try:
            outcome = await holds.reserve(session, plan.hold, alone=alone)
        except holds.BudgetsChanged:
            continue  # a budget was set elsewhere since the copy was read: recompute
        except holds.KeyTaken:
            existing = await _replay(session, request.idempotency_key, fingerprint)
            if existing is not None:
                return existing, True
            continue
        except holds.CapRefused as refusal:
            raise plan.refused(refusal) from None
        if outcome.replayed:
            if outcome.request_hash != fingerprint:
                raise IdempotencyConflict(request.idempotency_key, "input.idempotencyKey")
            existing = await repo.reservation_by_key(session, request.idempotency_key)
            assert existing is not None  # reservations are never deleted
            return existing, True
        if outcome.expired:
            emit(session, events.HoldsExpired(org.id, outcome.expired))
        # The budgets of the holds just written: held_budgets() of the row, without
        # parsing back the ids its column spells out.
        emit(session, events.BudgetsChanged(org.id, tuple(h.budget_id for h in plan.hold.holds)))
        return plan.reservation(outcome), False
    raise Unavailable(
        "the budgets kept changing while this authorisation was worked out; retry it",
        reason="conflict",
    )


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
        entry = await ledger.record_usage(
            session, org, event, limits, enforce=False, path="input.usage"
        )
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
    # The writer guard before any counter is locked (a budget setter holding it waits for
    # counters; the order is the guard first, then counters).
    await repo.guard_writers(session, org.id)
    await _release_holds(session, reservation)
    settlement = Settlement(
        {
            (uuid.UUID(h["budget_id"]), datetime.fromisoformat(h["period_start"])): Decimal(
                h["amount"]
            )
            for h in reservation.holds
        },
        limits.settle_overage_tolerance_percent,
    )
    entry = await ledger.record_usage(
        session, org, event, limits, enforce=False, path="input.usage", settlement=settlement
    )
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
        emit(session, events.BudgetsChanged(org.id, tuple(held_budgets(reservation))))
    return reservation
