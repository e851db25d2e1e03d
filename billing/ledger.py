"""Recording into the ledger: usage, payments, refunds, adjustments and fees, each exactly once.

Every operation follows one pattern: validate, build the entries, insert them with
``ON CONFLICT DO NOTHING`` on ``(organization_id, idempotency_key)``, and turn every key that
was already there into a replay (same request fingerprint) or ``IDEMPOTENCY_CONFLICT``.
A failure raises, and the caller's transaction rolls back: a failed request writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import ledger_repository as repo
from costgraph.billing.clock import require_event_time, utcnow
from costgraph.billing.commands import Limits, Payment, PlatformFee, Refund, UsageEvent
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.entries import Entry
from costgraph.billing.errors import (
    CurrencyMismatch,
    IdempotencyConflict,
    NotFound,
    RefundExceedsPayment,
    ValidationFailed,
    join_path,
)
from costgraph.billing.idempotency import replay_or_conflict, request_hash
from costgraph.billing.money import quantize_stored, require_currency, require_payment_amount
from costgraph.billing.pricing import price_usage
from costgraph.billing.validation import require_key, require_metadata, validate_usage
from costgraph.models import Account, User
from costgraph.models.ledger import EntryType

REFUNDABLE = frozenset({EntryType.DEPOSIT, EntryType.SUBSCRIPTION_PAYMENT})


async def _append(
    session: AsyncSession, entries: Sequence[Entry], paths: Sequence[str]
) -> list[Entry]:
    """Insert entries (unique keys); return them in order, replays marked as such."""
    inserted = await repo.insert_entries(session, entries)
    pending = [e.idempotency_key for e in entries if e.idempotency_key not in inserted]
    existing = await repo.find_by_keys(session, pending) if pending else {}
    result: list[Entry] = []
    for entry, path in zip(entries, paths, strict=True):
        recorded_at = inserted.get(entry.idempotency_key)
        if recorded_at is not None:
            result.append(_as_stored(entry, recorded_at))
        else:
            field = join_path(path, "idempotencyKey")
            result.append(
                replay_or_conflict(existing[entry.idempotency_key], entry.request_hash, field)
            )
    return result


def _as_stored(entry: Entry, recorded_at: datetime) -> Entry:
    """The entry as the database now holds it: money at the stored scale, its record time."""
    return replace(
        entry,
        recorded_at=recorded_at,
        amount=quantize_stored(entry.amount),
        balance_delta=quantize_stored(entry.balance_delta),
        ai_cost=quantize_stored(entry.ai_cost),
        provider_cost=None if entry.provider_cost is None else quantize_stored(entry.provider_cost),
        fx_rate=None if entry.fx_rate is None else quantize_stored(entry.fx_rate),
    )


async def _existing(session: AsyncSession, key: str, fingerprint: bytes) -> Entry | None:
    found = (await repo.find_by_keys(session, [key])).get(key)
    return None if found is None else replay_or_conflict(found, fingerprint, "input.idempotencyKey")


async def _account(session: AsyncSession, account_id: uuid.UUID, field: str) -> Account:
    account = (await get_many(session, Account, [account_id])).get(account_id)
    if account is None:
        raise NotFound("account", account_id, field)
    return account


# --- usage ---


async def record_usage(
    session: AsyncSession, org: OrgContext, event: UsageEvent, limits: Limits
) -> Entry:
    return (await _record_usage(session, org, [event], limits, single=True))[0]


async def record_usage_batch(
    session: AsyncSession, org: OrgContext, events: Sequence[UsageEvent], limits: Limits
) -> list[Entry]:
    if not events:
        raise ValidationFailed("a batch needs at least one event", "input")
    if len(events) > limits.max_batch_events:
        raise ValidationFailed(
            f"a batch holds at most {limits.max_batch_events} events (got {len(events)})", "input"
        )
    return await _record_usage(session, org, events, limits, single=False)


async def _record_usage(
    session: AsyncSession,
    org: OrgContext,
    events: Sequence[UsageEvent],
    limits: Limits,
    *,
    single: bool,
) -> list[Entry]:
    paths = ["input" if single else f"input.{i}" for i in range(len(events))]
    for event, path in zip(events, paths, strict=True):
        validate_usage(event, limits, path)
    fingerprints = [request_hash("usage", event) for event in events]

    # The same key twice in one batch: one entry if the bodies agree, else a conflict.
    first_index: dict[str, int] = {}
    for index, (event, fingerprint) in enumerate(zip(events, fingerprints, strict=True)):
        seen = first_index.setdefault(event.idempotency_key, index)
        if seen != index and fingerprints[seen] != fingerprint:
            raise IdempotencyConflict(
                event.idempotency_key, join_path(paths[index], "idempotencyKey")
            )

    accounts = await get_many(session, Account, {e.account_id for e in events})
    users = await get_many(session, User, {e.user_id for e in events if e.user_id is not None})
    entries: list[Entry] = []
    unique_paths: list[str] = []
    for index, (event, fingerprint, path) in enumerate(
        zip(events, fingerprints, paths, strict=True)
    ):
        if first_index[event.idempotency_key] != index:
            continue
        account = accounts.get(event.account_id)
        if account is None:
            raise NotFound("account", event.account_id, join_path(path, "accountId"))
        user = None if event.user_id is None else users.get(event.user_id)
        if event.user_id is not None and user is None:
            raise NotFound("user", event.user_id, join_path(path, "userId"))
        priced = price_usage(event, account.currency, path)
        entries.append(
            Entry(
                organization_id=org.id,
                id=uuid.uuid4(),
                type=EntryType.USAGE_CHARGE,
                account_id=account.id,
                customer_id=account.customer_id,
                occurred_at=event.occurred_at,
                currency=account.currency,
                amount=priced.billed,
                balance_delta=-priced.billed,
                ai_cost=priced.ai_cost,
                provider_cost=priced.provider_cost,
                provider_currency=priced.provider_currency,
                fx_rate=priced.fx_rate,
                price_version_id=priced.price_version_id,
                caller_priced=priced.caller_priced,
                provider=event.provider,
                model=event.model,
                input_tokens=event.input_tokens,
                output_tokens=event.output_tokens,
                cached_input_tokens=event.cached_input_tokens,
                reasoning_tokens=event.reasoning_tokens,
                units=[{"kind": u.kind, "quantity": format(u.quantity, "f")} for u in event.units]
                or None,
                user_id=event.user_id,
                department_id=None if user is None else user.department_id,
                feature=event.feature,
                agent=event.agent,
                request_id=event.request_id,
                metadata=event.metadata,
                idempotency_key=event.idempotency_key,
                request_hash=fingerprint,
            )
        )
        unique_paths.append(path)
    recorded = {e.idempotency_key: e for e in await _append(session, entries, unique_paths)}
    return [
        recorded[event.idempotency_key]
        if first_index[event.idempotency_key] == index
        else recorded[event.idempotency_key].as_replay()
        for index, event in enumerate(events)
    ]


# --- money in and out ---


async def _record_payment(
    session: AsyncSession,
    org: OrgContext,
    payment: Payment,
    limits: Limits,
    entry_type: EntryType,
) -> Entry:
    require_key(payment.idempotency_key, limits, "input")
    fingerprint = request_hash(entry_type.value, payment)
    if (replay := await _existing(session, payment.idempotency_key, fingerprint)) is not None:
        return replay
    require_currency(payment.currency, "input.currency")
    signed = entry_type is EntryType.ADJUSTMENT
    require_payment_amount(payment.amount, payment.currency, "input.amount", allow_negative=signed)
    require_metadata(payment.metadata, limits, "input")
    occurred_at = (
        utcnow()
        if payment.occurred_at is None
        else require_event_time(payment.occurred_at, "input.occurredAt")
    )
    account = await _account(session, payment.account_id, "input.accountId")
    if payment.currency != account.currency:
        raise CurrencyMismatch(account.currency, payment.currency, "input.currency")
    balance_delta = Decimal(0) if entry_type is EntryType.SUBSCRIPTION_PAYMENT else payment.amount
    entry = Entry(
        organization_id=org.id,
        id=uuid.uuid4(),
        type=entry_type,
        account_id=account.id,
        customer_id=account.customer_id,
        occurred_at=occurred_at,
        currency=account.currency,
        amount=payment.amount,
        balance_delta=balance_delta,
        description=payment.description,
        metadata=payment.metadata,
        idempotency_key=payment.idempotency_key,
        request_hash=fingerprint,
    )
    return (await _append(session, [entry], ["input"]))[0]


async def deposit(
    session: AsyncSession, org: OrgContext, payment: Payment, limits: Limits
) -> Entry:
    """A top-up: money received that raises the account's prepaid balance."""
    return await _record_payment(session, org, payment, limits, EntryType.DEPOSIT)


async def record_subscription_payment(
    session: AsyncSession, org: OrgContext, payment: Payment, limits: Limits
) -> Entry:
    """A plan's fee received: revenue, no change to the prepaid balance."""
    return await _record_payment(session, org, payment, limits, EntryType.SUBSCRIPTION_PAYMENT)


async def adjust(session: AsyncSession, org: OrgContext, payment: Payment, limits: Limits) -> Entry:
    """A signed correction of the account's balance; the way a mistake is undone."""
    return await _record_payment(session, org, payment, limits, EntryType.ADJUSTMENT)


async def refund(session: AsyncSession, org: OrgContext, request: Refund, limits: Limits) -> Entry:
    """Money returned against a deposit or subscription payment, never more than was paid."""
    require_key(request.idempotency_key, limits, "input")
    fingerprint = request_hash("REFUND", request)
    if (replay := await _existing(session, request.idempotency_key, fingerprint)) is not None:
        return replay
    if request.reason is not None and len(request.reason) > 2_000:
        raise ValidationFailed("reason is limited to 2000 characters", "input.reason")
    original = await repo.get_entry(session, request.entry_id)
    if original is None:
        raise NotFound("ledger entry", request.entry_id, "input.entryId")
    if original.type not in REFUNDABLE:
        raise ValidationFailed(
            "only deposits and subscription payments can be refunded", "input.entryId"
        )
    require_payment_amount(request.amount, original.currency, "input.amount")
    await repo.lock_for_refund(session, org.id, original.id)
    refundable = original.amount - await repo.refunded_total(session, original.id)
    if request.amount > refundable:
        raise RefundExceedsPayment(refundable, original.currency)
    entry = Entry(
        organization_id=org.id,
        id=uuid.uuid4(),
        type=EntryType.REFUND,
        account_id=original.account_id,
        customer_id=original.customer_id,
        occurred_at=utcnow(),
        currency=original.currency,
        amount=request.amount,
        balance_delta=-request.amount if original.type is EntryType.DEPOSIT else Decimal(0),
        related_entry_id=original.id,
        description=request.reason,
        idempotency_key=request.idempotency_key,
        request_hash=fingerprint,
    )
    return (await _append(session, [entry], ["input"]))[0]


async def record_platform_fee(
    session: AsyncSession, org: OrgContext, fee: PlatformFee, limits: Limits
) -> Entry:
    """A cost of running the business (e.g. a payment processor's fee), not the customer's."""
    require_key(fee.idempotency_key, limits, "input")
    fingerprint = request_hash(EntryType.PLATFORM_FEE.value, fee)
    if (replay := await _existing(session, fee.idempotency_key, fingerprint)) is not None:
        return replay
    require_currency(fee.currency, "input.currency")
    require_payment_amount(fee.amount, fee.currency, "input.amount")
    account = (
        None
        if fee.account_id is None
        else await _account(session, fee.account_id, "input.accountId")
    )
    if account is not None and fee.currency != account.currency:
        raise CurrencyMismatch(account.currency, fee.currency, "input.currency")
    entry = Entry(
        organization_id=org.id,
        id=uuid.uuid4(),
        type=EntryType.PLATFORM_FEE,
        account_id=None if account is None else account.id,
        customer_id=None if account is None else account.customer_id,
        occurred_at=utcnow()
        if fee.occurred_at is None
        else require_event_time(fee.occurred_at, "input.occurredAt"),
        currency=fee.currency,
        amount=fee.amount,
        description=fee.description,
        idempotency_key=fee.idempotency_key,
        request_hash=fingerprint,
    )
    return (await _append(session, [entry], ["input"]))[0]
