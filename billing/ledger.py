"""Recording into the ledger: usage, payments, refunds, adjustments and fees, each exactly once.

Every operation follows one pattern: validate, build the entries, insert them with
``ON CONFLICT DO NOTHING`` on ``(organization_id, idempotency_key)``, and turn every key that
was already there into a replay (same request fingerprint) or ``IDEMPOTENCY_CONFLICT``.
A failure raises, and the caller's transaction rolls back: a failed request writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import (
    balance_repository,
    budgets,
    closed_months,
    drawdown,
    events,
    subscription_billing_repository,
    weights_repository,
)
from costgraph.billing import ledger_repository as repo
from costgraph.billing.commands import Limits, Payment, PlatformFee, Refund, UsageEvent
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.entries import Entry
from costgraph.billing.event_time import PAYMENT_HINT, require_backfill, require_live
from costgraph.billing.idempotency import replay_or_conflict, request_hash
from costgraph.billing.pools import CounterKey
from costgraph.billing.pricing import PreparedPricing, PricingRequest, prepare_pricing
from costgraph.billing.scopes import Attribution
from costgraph.billing.validation import require_key, require_metadata, validate_usage
from costgraph.billing.weights import Weights, raw_tokens, weigh
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import (
    AllowanceExhausted,
    CurrencyMismatch,
    IdempotencyConflict,
    InsufficientBalance,
    NotFound,
    RefundExceedsBalance,
    RefundExceedsPayment,
    ValidationFailed,
    join_path,
)
from costgraph.kernel.money import quantize_stored, require_currency, require_payment_amount
from costgraph.kernel.unit_of_work import emit
from costgraph.models import Account
from costgraph.models.ledger import EntryType

REFUNDABLE = frozenset({EntryType.DEPOSIT, EntryType.SUBSCRIPTION_PAYMENT})


async def _append(
    session: AsyncSession,
    entries: Sequence[Entry],
    paths: Sequence[str],
    *,
    prepaid: frozenset[uuid.UUID] = frozenset(),
    counters: Sequence[repo.CounterMove] = (),
    raised: repo.MovedCounters | None = None,
) -> list[Entry]:
    """Insert entries (unique keys); return them in order, replays marked as such.

    The accounts' balances move by what was written. An account in ``prepaid`` may not go
    below zero: that is ``ALLOWANCE_EXHAUSTED``, and the caller's transaction rolls back.
    An entry that already carries its money at the stored scale and the ``recorded_at`` the
    database gave it (see :func:`_record_usage`) is returned as it is. ``counters``: budget
    counters the insert raises too, if it writes an entry of one account (those it raised go
    into ``raised``; the caller raises the others).
    """
    accounts = {e.account_id for e in entries}
    moved: repo.MovedBalances = {}
    if len(accounts) == 1 and None not in accounts:  # one row lock: move it while inserting
        (account_id,) = accounts
        organization_id = entries[0].organization_id
        inserted, moved, counted = await repo.insert_entries_moving_balance(
            session, entries, organization_id, account_id in prepaid, counters
        )
        if raised is not None:
            raised.update(counted)
        unset = tuple(account for account, top_up in moved.items() if not top_up)
        if unset:  # their top-up evaluation has nothing to do
            emit(session, events.NoAutoTopUp(organization_id, unset))
    else:
        inserted = await repo.insert_entries(session, entries)
    return await _settle(session, entries, paths, inserted, prepaid, moved)


async def _append_pipelined(
    session: AsyncSession,
    chunks: Iterator[tuple[list[Entry], list[str]]],
    *,
    prepaid: frozenset[uuid.UUID],
) -> list[Entry]:
    """:func:`_append` for a large batch, one insert per chunk: the next chunk is built (by
    ``chunks``) here while the database inserts the one before (PostgreSQL and this process
    work at the same time). Same result, same transaction; an error while building waits
    for the statement in flight, then rolls everything back as usual."""
    connection = await repo.driver_connection(session)
    inserted: dict[str, datetime] = {}
    entries: list[Entry] = []
    paths: list[str] = []
    in_flight: asyncio.Task[dict[str, datetime]] | None = None
    try:
        for chunk, chunk_paths in chunks:
            if in_flight is not None:
                inserted.update(await in_flight)
                in_flight = None
            entries.extend(chunk)
            paths.extend(chunk_paths)
            in_flight = asyncio.ensure_future(repo.insert_on(connection, chunk))
            await asyncio.sleep(0)  # let it send the statement before building the next chunk
        if in_flight is not None:
            inserted.update(await in_flight)
            in_flight = None
    finally:
        if in_flight is not None:  # leave the connection idle for the rollback
            with contextlib.suppress(Exception):
                await in_flight
    return await _settle(session, entries, paths, inserted, prepaid, set())


async def _settle(
    session: AsyncSession,
    entries: Sequence[Entry],
    paths: Sequence[str],
    inserted: dict[str, datetime],
    prepaid: frozenset[uuid.UUID],
    moved: Collection[uuid.UUID],
) -> list[Entry]:
    """After the insert: replays told from conflicts, the result in order, balances moved."""
    pending = [e.idempotency_key for e in entries if e.idempotency_key not in inserted]
    existing = await repo.find_by_keys(session, pending) if pending else {}
    result: list[Entry] = []
    for entry, path in zip(entries, paths, strict=True):
        recorded_at = inserted.get(entry.idempotency_key)
        if recorded_at is not None:
            stored = entry.recorded_at == recorded_at  # built as stored: nothing to redo
            result.append(entry if stored else _as_stored(entry, recorded_at))
        else:
            field = join_path(path, "idempotencyKey")
            result.append(
                replay_or_conflict(existing[entry.idempotency_key], entry.request_hash, field)
            )
    written = [e for e in result if not e.replayed]
    if written:  # closed months are immutable (a replay of what was written before is not new)
        await closed_months.require_open(
            session,
            written[0].organization_id,
            (
                (e.occurred_at, path)
                for e, path in zip(result, paths, strict=True)
                if not e.replayed
            ),
            suffix="occurredAt",
        )
    await _move_balances(session, written, prepaid, moved)
    _announce(session, written)
    return result


def _announce(session: AsyncSession, written: Sequence[Entry]) -> None:
    """Tell the unit of work what was written (published after commit)."""
    if not written:
        return
    usage = tuple(e for e in written if e.type is EntryType.USAGE_CHARGE)
    if usage:
        emit(session, events.UsageRecorded(usage))
    accounts = tuple(
        dict.fromkeys(
            e.account_id
            for e in written
            if e.type is not EntryType.USAGE_CHARGE and e.account_id is not None
        )
    )
    if accounts:
        emit(session, events.BalancesChanged(written[0].organization_id, accounts))


async def _move_balances(
    session: AsyncSession,
    written: Sequence[Entry],
    prepaid: frozenset[uuid.UUID],
    moved: Collection[uuid.UUID],
) -> None:
    """Move the balances by what was written, except those the insert ``moved`` already."""
    deltas: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
    for entry in written:
        if entry.account_id is not None and entry.balance_delta:
            deltas[entry.account_id] += entry.balance_delta
    for account_id in moved:
        deltas.pop(account_id, None)
    if not deltas:
        return
    floored = {a for a, delta in deltas.items() if a in prepaid and delta < 0}
    refused = await balance_repository.move_balances(
        session, written[0].organization_id, deltas, floored
    )
    if refused is not None:
        account_id, balance = refused
        currency = next(e.currency for e in written if e.account_id == account_id)
        raise AllowanceExhausted(str(account_id), -deltas[account_id], balance, currency)


def _tokens_left(
    cycles: drawdown.Cycles, entries: Sequence[Entry], refused: AllowanceExhausted
) -> int | None:
    """What the allowance(s) the refused account's entries draw on had left before this
    write (None: none of them draws on an allowance)."""
    keys = {
        key
        for e in entries
        if str(e.account_id) == refused.account_id and (key := cycles.key_of(e)) is not None
    }
    if not keys:
        return None
    return sum(max(0, cycles.by_key[k].included - cycles.by_key[k].used) for k in keys)


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


def spend_of(entry: Entry) -> budgets.Spend:
    return budgets.Spend(
        attribution=Attribution(
            entry.organization_id,
            entry.customer_id,
            entry.account_id,
            entry.department_id,
            entry.user_id,
        ),
        occurred_at=entry.occurred_at,
        currency=entry.currency,
        ai_cost=entry.ai_cost,
        billed=entry.amount,
    )


#: Events per insert statement in a large batch (see :func:`_append_pipelined`).
PIPELINE_CHUNK = 250

_Unique = tuple[UsageEvent, bytes, str, repo.UsageAccount, uuid.UUID | None]


def _usage_entries(
    org: OrgContext,
    unique: Sequence[_Unique],
    pricing: PreparedPricing,
    now: datetime,
    weights: Weights,
    start: int = 0,
    stop: int | None = None,
) -> tuple[list[Entry], list[str]]:
    """The entries of ``unique[start:stop]`` (and their input paths), built as the database
    will hold them: money at the stored scale (as :meth:`PreparedPricing.priced` gives every
    amount) and the transaction's ``recorded_at``, so the insert needs no second copy; each
    weighed with the organisation's allowance ``weights`` (billing/weights.py)."""
    entries: list[Entry] = []
    paths: list[str] = []
    chosen = unique[start:stop]
    random = os.urandom(16 * len(chosen))  # the ids' randomness in one call, not one per id
    for index, ((event, fingerprint, path, account, department_id), priced) in enumerate(
        zip(chosen, pricing.priced(start, stop), strict=True)
    ):
        billed = priced.billed
        weighed = weigh(
            weights,
            event.provider,
            event.model,
            event.feature,
            raw_tokens(
                event.input_tokens,
                event.output_tokens,
                event.cached_input_tokens,
                event.reasoning_tokens,
            ),
            [(u.kind, u.quantity) for u in event.units],
        )
        entries.append(
            Entry(
                organization_id=org.id,
                id=uuid.UUID(bytes=random[16 * index : 16 * index + 16], version=4),
                type=EntryType.USAGE_CHARGE,
                account_id=account.id,
                customer_id=account.customer_id,
                occurred_at=event.occurred_at,
                currency=account.currency,
                amount=billed,
                balance_delta=-billed,
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
                cache_write_tokens=event.cache_write_tokens,
                markup_percent=priced.markup_percent,
                allowance_weight=weighed.weight,
                budgeted_tokens=weighed.budgeted_tokens,
                units=weighed.units,
                user_id=event.user_id,
                department_id=department_id,
                feature=event.feature,
                agent=event.agent,
                request_id=event.request_id,
                metadata=event.metadata,
                idempotency_key=event.idempotency_key,
                request_hash=fingerprint,
                recorded_at=now,
            )
        )
        paths.append(path)
    return entries, paths


async def record_usage(
    session: AsyncSession,
    org: OrgContext,
    event: UsageEvent,
    limits: Limits,
    *,
    enforce: bool = True,
    path: str = "input",
    settlement: budgets.Settlement | None = None,
) -> Entry:
    """Record one event; ``enforce=False`` charges budgets without refusing past a hard cap
    (with ``settlement``, only past the hold and the cap's tolerance: a reservation's actual
    usage); ``path``: where the event is in the request (errors name its fields under it)."""
    return (
        await _record_usage(
            session,
            org,
            [event],
            limits,
            single=True,
            enforce=enforce,
            root=path,
            settlement=settlement,
        )
    )[0]


async def record_usage_batch(
    session: AsyncSession, org: OrgContext, events: Sequence[UsageEvent], limits: Limits
) -> list[Entry]:
    if not events:
        raise ValidationFailed("a batch needs at least one event", "input")
    if len(events) > limits.max_batch_events:
        raise ValidationFailed(
            f"a batch holds at most {limits.max_batch_events} events (got {len(events)})", "input"
        )
    return await _record_usage(session, org, events, limits, single=False, enforce=True)


async def backfill_usage(
    session: AsyncSession, org: OrgContext, events: Sequence[UsageEvent], limits: Limits
) -> list[Entry]:
    """History older than the late-arrival window, at an org_admin's explicit request: like
    :func:`record_usage_batch` but reaching back ``backfill_max_age_days``. It is held to the
    same rules as any write: nothing in a closed month, no draw on an allowance cycle that is
    over (such usage is charged in full), and every hard cap enforced in the period the event
    lands in (billing/event_time.py)."""
    if not events:
        raise ValidationFailed("a batch needs at least one event", "input")
    if len(events) > limits.max_batch_events:
        raise ValidationFailed(
            f"a batch holds at most {limits.max_batch_events} events (got {len(events)})", "input"
        )
    return await _record_usage(
        session, org, events, limits, single=False, enforce=True, backfill=True
    )


async def _record_usage(
    session: AsyncSession,
    org: OrgContext,
    events: Sequence[UsageEvent],
    limits: Limits,
    *,
    single: bool,
    enforce: bool,
    backfill: bool = False,
    root: str = "input",
    settlement: budgets.Settlement | None = None,
) -> list[Entry]:
    paths = [root if single else f"{root}.{i}" for i in range(len(events))]
    now = utcnow()
    for event, path in zip(events, paths, strict=True):
        validate_usage(event, limits, path, now, backfill=backfill)
    fingerprints = [request_hash("usage", event) for event in events]

    # The same key twice in one batch: one entry if the bodies agree, else a conflict.
    first_index: dict[str, int] = {}
    for index, (event, fingerprint) in enumerate(zip(events, fingerprints, strict=True)):
        seen = first_index.setdefault(event.idempotency_key, index)
        if seen != index and fingerprints[seen] != fingerprint:
            raise IdempotencyConflict(
                event.idempotency_key, join_path(paths[index], "idempotencyKey")
            )

    parties = await repo.usage_parties(
        session,
        {e.account_id for e in events},
        {e.user_id for e in events if e.user_id is not None},
    )
    accounts = parties.accounts
    unique: list[_Unique] = []
    for index, (event, fingerprint, path) in enumerate(
        zip(events, fingerprints, paths, strict=True)
    ):
        if first_index[event.idempotency_key] != index:
            continue
        account = accounts.get(event.account_id)
        if account is None:
            raise NotFound("account", event.account_id, join_path(path, "accountId"))
        department_id = None
        if event.user_id is not None:
            if event.user_id not in parties.departments:
                raise NotFound("user", event.user_id, join_path(path, "userId"))
            department_id = parties.departments[event.user_id]
        unique.append((event, fingerprint, path, account, department_id))
    # One batch of catalog, rate and markup lookups for all events (never a query per event).
    pricing = await prepare_pricing(
        session,
        org.id,
        [PricingRequest(e, a.currency, a.customer_id, p) for e, _, p, a, _ in unique],
    )
    prepaid = (
        frozenset(a.id for a in accounts.values() if not a.postpaid) if enforce else frozenset()
    )
    weights = await weights_repository.weights_of(session, org.id)
    planned: list[budgets.PlannedCount] | None = None  # the counters of a single event
    raised: repo.MovedCounters = {}
    if len(unique) > PIPELINE_CHUNK and not any(parties.subscriptions.values()):
        chunks = (
            _usage_entries(
                org, unique, pricing, parties.now, weights, start, start + PIPELINE_CHUNK
            )
            for start in range(0, len(unique), PIPELINE_CHUNK)
        )
        written = await _append_pipelined(session, chunks, prepaid=prepaid)
        drawn: dict[CounterKey, int] = {}  # no subscription: no allowance
    else:
        entries, unique_paths = _usage_entries(org, unique, pricing, parties.now, weights)
        # Lock the allowance cycles first, then tell replays from new events, then draw: two
        # writers of one event cannot both draw on the allowance.
        cycles = await drawdown.lock_cycles(
            session, org.id, entries, parties.subscriptions, now=now
        )
        if cycles:
            known = await repo.known_keys(session, [e.idempotency_key for e in entries])
            fresh = [e for e in entries if e.idempotency_key not in known]
            charged, drawn = drawdown.draw(fresh, cycles)
            by_key = {e.idempotency_key: e for e in charged}
            entries = [by_key.get(e.idempotency_key, e) for e in entries]
        else:
            drawn = {}  # no allowance involved: every entry is charged in full to the balance
        if parties.has_budgets and len(entries) == 1:
            # One event: its counters are worked out now and raised by its insert, so the
            # balance and counter rows are locked by one statement, the last before commit.
            planned = await budgets.plan_spend(
                session,
                org,
                [spend_of(entries[0])],
                limits.zone,
                enforce=enforce,
                settlement=settlement,
                budgets=parties.budgets,
            )
        try:
            written = await _append(
                session,
                entries,
                unique_paths,
                prepaid=prepaid,
                counters=[
                    (p.budget.id, p.period[0], p.amount, p.cap)
                    for p in planned or ()
                    if not p.uncounted
                ],
                raised=raised,
            )
        except AllowanceExhausted as refused:  # say what the allowance had left
            raise refused.with_allowance(_tokens_left(cycles, entries, refused)) from None
    await drawdown.apply_draws(session, drawn)
    drawers = {e.account_id for e in written if not e.replayed and e.account_id is not None}
    await drawdown.tell_pool_members(session, org.id, drawn, drawers, now)
    # Budgets count what this call wrote, never replays; a refusal rolls the entries back.
    if planned is not None:
        if not written[0].replayed:  # the counters its insert did not raise, raised now
            await budgets.count_spend(session, org, planned, settlement=settlement, applied=raised)
    elif parties.has_budgets:  # (apply_spend does nothing for a tenant without budgets)
        spends = [spend_of(e) for e in written if not e.replayed]
        await budgets.apply_spend(
            session,
            org,
            spends,
            limits.zone,
            enforce=enforce,
            settlement=settlement,
            budgets=parties.budgets,
        )
    recorded = {e.idempotency_key: e for e in written}
    return [
        recorded[event.idempotency_key]
        if first_index[event.idempotency_key] == index
        else recorded[event.idempotency_key].as_replay()
        for index, event in enumerate(events)
    ]


async def record_corrections(
    session: AsyncSession, org: OrgContext, entries: Sequence[Entry], zone: ZoneInfo
) -> list[Entry]:
    """Correcting entries built by the domain (a reprice's ADJUSTMENTs of usage), appended
    like any other entry: the accounts' balances move by each ``balance_delta`` — a prepaid
    balance too, even below zero (the usage happened; the money is owed, and the account's
    next prepaid usage is refused until it is topped up) — and the budget counters of each
    entry's period move by its cost, without refusing (as a settlement's do)."""
    written = await _append(session, entries, [f"entries.{i}" for i in range(len(entries))])
    spends = [spend_of(e) for e in written if not e.replayed]
    changes = await budgets.apply_spend(session, org, spends, zone, enforce=False)
    if changes:  # not usage, so no usage notice: tell the budgets' watchers
        budget_ids = tuple(dict.fromkeys(c.budget.id for c in changes))
        emit(session, events.BudgetsChanged(org.id, budget_ids))
    return written


# --- money in and out ---


async def _record_payment(
    session: AsyncSession,
    org: OrgContext,
    payment: Payment,
    limits: Limits,
    entry_type: EntryType,
    history: bool = False,
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
        else _payment_time(payment.occurred_at, limits, history)
    )
    account = await _account(session, payment.account_id, "input.accountId")
    if payment.currency != account.currency:
        raise CurrencyMismatch(account.currency, payment.currency, "input.currency")
    balance_delta = Decimal(0) if entry_type is EntryType.SUBSCRIPTION_PAYMENT else payment.amount
    settles = None  # a payment of fees CostGraph bills settles them: not revenue twice
    if entry_type is EntryType.SUBSCRIPTION_PAYMENT:
        settles = await subscription_billing_repository.latest_fee(session, org.id, account.id)
    if entry_type is EntryType.WITHDRAWAL:
        balance_delta = -payment.amount
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
        related_entry_id=settles,
        description=payment.description,
        metadata=payment.metadata,
        idempotency_key=payment.idempotency_key,
        request_hash=fingerprint,
    )
    if entry_type is not EntryType.WITHDRAWAL:
        return (await _append(session, [entry], ["input"]))[0]
    try:  # never below zero, checked under the balance's row lock (one conditional UPDATE)
        return (await _append(session, [entry], ["input"], prepaid=frozenset({account.id})))[0]
    except AllowanceExhausted as refused:
        raise InsufficientBalance(
            str(account.id), payment.amount, refused.balance, account.currency
        ) from None


def _payment_time(occurred_at: datetime, limits: Limits, history: bool) -> datetime:
    """A payment's own date: within the late-arrival window, or (``history``: seeding past
    books, never a client's request) as far back as a backfill reaches."""
    if history:
        return require_backfill(occurred_at, "input.occurredAt", limits, utcnow())
    return require_live(occurred_at, "input.occurredAt", limits, utcnow(), PAYMENT_HINT)


async def deposit(
    session: AsyncSession,
    org: OrgContext,
    payment: Payment,
    limits: Limits,
    *,
    history: bool = False,
) -> Entry:
    """A top-up: money received that raises the account's prepaid balance."""
    return await _record_payment(session, org, payment, limits, EntryType.DEPOSIT, history)


async def record_subscription_payment(
    session: AsyncSession,
    org: OrgContext,
    payment: Payment,
    limits: Limits,
    *,
    history: bool = False,
) -> Entry:
    """A plan's fee received: revenue, no change to the prepaid balance."""
    return await _record_payment(
        session, org, payment, limits, EntryType.SUBSCRIPTION_PAYMENT, history
    )


async def withdraw(
    session: AsyncSession, org: OrgContext, payment: Payment, limits: Limits
) -> Entry:
    """Money paid back to the customer out of the account's prepaid balance (unspent top-ups
    taken out): a ``WITHDRAWAL`` entry moving the balance down by ``amount``.

    Never more than the balance holds — ``INSUFFICIENT_BALANCE``, nothing written — checked
    and moved in one conditional UPDATE under the balance's row lock, so concurrent
    withdrawals (in any number of processes) never overdraw; a postpaid account's credit
    cannot be withdrawn either. Idempotent by key like a deposit. In the P&L a withdrawal is
    money handed back: ``revenueBySource.withdrawals``, subtracted from revenue (received)
    like a refund, never revenue or cost of its own (billing/pnl_measures.py).
    """
    return await _record_payment(session, org, payment, limits, EntryType.WITHDRAWAL)


async def record_subscription_entries(
    session: AsyncSession, org: OrgContext, entries: Sequence[Entry]
) -> list[Entry]:
    """The subscription biller's entries (fees, credits, recognised revenue; built by
    billing/subscription_billing.py), appended like any other: unique keys, closed months
    refused. They move no balance."""
    if not entries:
        return []
    assert all(e.organization_id == org.id and not e.balance_delta for e in entries)
    paths = [f"subscription.{index}" for index in range(len(entries))]
    return await _append(session, entries, paths)


async def adjust(session: AsyncSession, org: OrgContext, payment: Payment, limits: Limits) -> Entry:
    """A signed correction of the account's balance; the way a mistake is undone."""
    return await _record_payment(session, org, payment, limits, EntryType.ADJUSTMENT)


async def refund(session: AsyncSession, org: OrgContext, request: Refund, limits: Limits) -> Entry:
    """Money returned against a deposit or subscription payment, never more than was paid;
    on a prepaid account, a deposit's refund never more than its balance has left (what was
    spent is gone: ``RefundExceedsBalance``, checked under the balance's row lock)."""
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
    assert original.account_id is not None  # deposits and payments land on an account
    account = await _account(session, original.account_id, "input.entryId")
    floored = frozenset() if account.postpaid else frozenset({account.id})
    try:
        return (await _append(session, [entry], ["input"], prepaid=floored))[0]
    except AllowanceExhausted as exhausted:
        raise RefundExceedsBalance(exhausted.balance, original.currency) from None


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
        else require_live(fee.occurred_at, "input.occurredAt", limits, utcnow(), PAYMENT_HINT),
        currency=fee.currency,
        amount=fee.amount,
        description=fee.description,
        idempotency_key=fee.idempotency_key,
        request_hash=fingerprint,
    )
    return (await _append(session, [entry], ["input"]))[0]
