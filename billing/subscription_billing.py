"""Subscriptions that bill: each cycle's fee, plan changes, seats and cancellation, and the
revenue they bring, recognised month by month.

**What is written** (all through the ledger's write path, one transaction per request or
catch-up; none moves the prepaid balance — that is capacity the customer bought for usage,
and a fee never draws on it nor is refused for want of it):

- ``SUBSCRIPTION_FEE``: a cycle's fee, billed when the cycle starts (monthly: every month;
  annual: once a year, the plan's discounted annual fee), dated at the cycle's start; or the
  prorated rest of a cycle after an upgrade or seats added, dated when asked. The fee of a
  cycle is the subscription's fee plus, on pooled plans, ``seatFee`` (per seat and month) x
  seats x the cycle's months.
- ``SUBSCRIPTION_CREDIT``: the unused part of the fee credited on a plan change or seats
  removed, for the time left in the cycle (billing/fee_schedule.py: proration and rounding).
  A change takes effect when the allowance does (:func:`effective_from`): at once before any
  usage opened the running allowance cycle, else from the next one, since an opened cycle
  keeps the allowance it opened with; the old terms are paid for as long as they serve.
- ``REVENUE_RECOGNIZED`` / ``REVENUE_REVERSED``: what fees earn. Each billing cycle is cut in
  monthly pieces (its monthly cycles; one for monthly billing, twelve for annual); when a
  piece starts, its share of the cycle's fees net of credits is recognised (dated at the
  piece's start, or when a change inside it is written). A downgrade that credits more of a
  started month than it charges reverses the difference.

**Revenue** (billing/pnl_measures.py): a subscription's revenue is what it has earned,
``REVENUE_RECOGNIZED - REVENUE_REVERSED``. **Deferred revenue** is what was billed and not
yet earned: ``FEE - CREDIT - RECOGNIZED + REVERSED`` up to an instant, shown beside the P&L
(``deferredRevenue``), never in revenue nor in margin. An annual prepay therefore shows a
twelfth as revenue each month and the rest as deferred, falling month by month to zero.

**Payments are not revenue twice.** A ``SUBSCRIPTION_PAYMENT`` (``recordSubscriptionPayment``)
on an account whose subscription fees CostGraph bills is cash that settles those fees: it is
linked to the latest fee (``relatedEntryId``) and is not revenue again; a payment on an
account with no billed fee (a plan billed elsewhere) remains revenue when received, as
before. A refund reduces revenue only where its payment was revenue: the refund of a payment
settling billed fees gives cash back and leaves the fees earned as they are (a fee given up
is a credit), so revenue never loses what was never in it (billing/pnl_measures.py).

**Exactly once.** Every entry has a key derived from the subscription, the cycle and what it
is (``subscription:<id>:<cycle start>:fee``, ``…:recognise:<piece start>:<n>``, a change's
instant), and a catch-up runs under the account's subscription lock: two processes running
the catch-up loop at once, or a replay, write each entry once. The catch-up bills every due
cycle (also those that started while nothing ran) and recognises every started piece; it
runs when subscribing, before a change, and on a timer (``subscription_billing_interval_
seconds``; :mod:`costgraph.app.subscription_biller`). Entries that would fall in a closed
month are dated when written instead.

**Cancellation** takes effect at the period's end: ``ends_at`` becomes the running cycle's
end, no later cycle is billed, the allowance stays until then, and the billed fee keeps being
recognised over its cycle. A plan change keeps the cycle anchor (the subscription's start):
the subscription's terms change in place and the ledger keeps each change.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import balance_repository, events, ledger, plans_repository, tier_rules
from costgraph.billing import fee_schedule as schedule
from costgraph.billing import subscription_billing_repository as repo
from costgraph.billing.allowances import cycle_window
from costgraph.billing.closed_months import ended_months
from costgraph.billing.closed_months_repository import refused_among
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.entries import Entry
from costgraph.billing.idempotency import request_hash
from costgraph.billing.raw_connection import driver_connection
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import (
    CurrencyMismatch,
    NotFound,
    PlanLimit,
    ValidationFailed,
)
from costgraph.kernel.unit_of_work import emit
from costgraph.models import Account
from costgraph.models.ledger import EntryType
from costgraph.models.pricing import AccountSubscription, Plan

FEE = EntryType.SUBSCRIPTION_FEE
CREDIT = EntryType.SUBSCRIPTION_CREDIT
RECOGNIZED = EntryType.REVENUE_RECOGNIZED
REVERSED = EntryType.REVENUE_REVERSED
MAX_SEATS = 100_000


@dataclass(frozen=True, slots=True)
class _New:
    """An entry to write, before it is built."""

    type: EntryType
    key: str
    amount: Decimal
    occurred_at: datetime
    cycle: schedule.Cycle
    service_start: datetime
    reason: str
    description: str


def cycle_fee(sub: AccountSubscription, plan: Plan | None, seats: int | None = None) -> Decimal:
    """A whole cycle's fee: the subscription's fee plus, on a pooled plan, the seat fee (per
    seat and month) x seats x the cycle's months. Every subscription of a pool pays for its
    own seats (each seat adds to the pool's capacity, billing/pools.py); only the team
    subscription has a base fee (a member's ``fee`` is 0)."""
    return sub.fee + seat_part(sub, plan, sub.seats if seats is None else seats)


def seat_part(sub: AccountSubscription, plan: Plan | None, seats: int) -> Decimal:
    if plan is None or plan.seat_fee is None or not plan.pooled:
        return Decimal(0)
    return plan.seat_fee * seats * schedule.MONTHS_PER_CYCLE[sub.billing]


def _is_team(sub: AccountSubscription) -> bool:
    pool_id = getattr(sub, "pool_id", None)
    return pool_id is None or pool_id == sub.id


def _key(sub: AccountSubscription, cycle: schedule.Cycle, what: str) -> str:
    return f"subscription:{sub.id}:{cycle.start.isoformat()}:{what}"


async def _plan(session: AsyncSession, plan_id: uuid.UUID) -> Plan | None:
    return await repo.plan_by_id(session, plan_id)


# --- the catch-up ---


async def bill_account(
    session: AsyncSession, org: OrgContext, account_id: uuid.UUID, now: datetime | None = None
) -> list[Entry]:
    """Bill every due cycle and recognise every started month of the account's
    subscriptions (idempotent; takes the account's subscription lock)."""
    now = now or utcnow()
    await plans_repository.lock_account(session, org.id, account_id)
    written: list[Entry] = []
    for sub in await repo.of_account(session, account_id):
        written += await _settle(session, org, sub, now, [])
    return written


async def billed(
    session: AsyncSession, org: OrgContext, subscribing: Awaitable[AccountSubscription]
) -> AccountSubscription:
    """A new subscription (``subscribing``: e.g. ``plans.subscribe_account(...)``), its first
    cycle billed in the same transaction."""
    row = await subscribing
    await bill_account(session, org, row.account_id)
    return row


async def _settle(
    session: AsyncSession,
    org: OrgContext,
    sub: AccountSubscription,
    now: datetime,
    changes: list[_New],
) -> list[Entry]:
    """Write ``changes`` (a plan change's or seats' charges), every missing cycle fee, and
    the recognition every started piece is owed. The caller holds the account's lock."""
    rows = await repo.fee_rows(session, org.id, sub.account_id, sub.id)
    keys = {r.idempotency_key for r in rows}
    plan = await _plan(session, sub.plan_id)
    new: list[_New] = []
    for cycle in schedule.due_cycles(sub.starts_at, sub.billing, now, sub.ends_at):
        key = _key(sub, cycle, "fee")
        if key in keys:
            continue
        months = "annual" if sub.billing == "ANNUAL" else "monthly"
        new.append(
            _New(
                FEE,
                key,
                cycle_fee(sub, plan),
                cycle.start,
                cycle,
                cycle.start,
                "cycle",
                f"{sub.plan_code}: {months} fee, {_day(cycle.start)} to {_day(cycle.end)}",
            )
        )
    new += changes
    new += _recognitions(sub, rows, new, now)
    if not new:
        return []
    entries = await _build(session, org, sub, new, now)
    return await ledger.record_subscription_entries(session, org, entries)


def _recognitions(
    sub: AccountSubscription, rows: list[repo.FeeRow], new: list[_New], now: datetime
) -> list[_New]:
    charges: dict[datetime, list[schedule.Charge]] = defaultdict(list)
    recognised: dict[tuple[datetime, datetime], list[Decimal]] = defaultdict(list)
    for row in rows:
        if row.type in (FEE.value, CREDIT.value):
            sign = 1 if row.type == FEE.value else -1
            charges[row.cycle_start].append(schedule.Charge(row.amount, sign, row.service_start))
        else:
            sign = 1 if row.type == RECOGNIZED.value else -1
            recognised[(row.cycle_start, row.service_start)].append(sign * row.amount)
    cycles: dict[datetime, schedule.Cycle] = {}
    for item in new:
        sign = 1 if item.type is FEE else -1
        charges[item.cycle.start].append(schedule.Charge(item.amount, sign, item.service_start))
        cycles[item.cycle.start] = item.cycle
    result: list[_New] = []
    for cycle_start in sorted(charges):
        cycle = cycles.get(cycle_start) or schedule.cycle_at(
            sub.starts_at, sub.billing, cycle_start
        )
        of_cycle = charges[cycle_start]
        earned = schedule.earned_per_piece(cycle, of_cycle, sub.currency)
        for piece, owed in zip(cycle.pieces(), earned, strict=True):
            if piece[0] > now:
                break
            done = recognised.get((cycle_start, piece[0]), [])
            delta = owed - sum(done, Decimal(0))
            if delta == 0:
                continue
            kind = RECOGNIZED if delta > 0 else REVERSED
            result.append(
                _New(
                    kind,
                    _key(sub, cycle, f"recognise:{piece[0].isoformat()}:{len(done)}"),
                    abs(delta),
                    min(schedule.recognition_time(piece, of_cycle), now),
                    cycle,
                    piece[0],
                    "recognition",
                    f"{sub.plan_code}: fees earned, month from {_day(piece[0])}",
                )
            )
    return result


async def _build(
    session: AsyncSession,
    org: OrgContext,
    sub: AccountSubscription,
    new: Sequence[_New],
    now: datetime,
) -> list[Entry]:
    account = (await get_many(session, Account, [sub.account_id]))[sub.account_id]
    closed = await _closed_months(session, org.id, [n.occurred_at for n in new], now)
    entries = []
    for item in new:
        occurred_at = item.occurred_at
        if _month(occurred_at) in closed:
            occurred_at = now  # the books of that month are closed: dated when written
        metadata: dict[str, Any] = {
            "subscriptionId": str(sub.id),
            "planCode": sub.plan_code,
            "billing": sub.billing,
            "anchor": sub.starts_at.isoformat(),
            "cycleStart": item.cycle.start.isoformat(),
            "cycleEnd": item.cycle.end.isoformat(),
            "serviceStart": item.service_start.isoformat(),
            "reason": item.reason,
        }
        fingerprint = request_hash(
            item.type.value, {"key": item.key, "amount": item.amount, "metadata": metadata}
        )
        entries.append(
            Entry(
                organization_id=org.id,
                id=uuid.uuid4(),
                type=item.type,
                account_id=account.id,
                customer_id=account.customer_id,
                occurred_at=occurred_at,
                currency=sub.currency,
                amount=item.amount,
                description=item.description,
                metadata=metadata,
                idempotency_key=item.key,
                request_hash=fingerprint,
            )
        )
    return entries


def _month(at: datetime) -> datetime:
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def _closed_months(
    session: AsyncSession, organization_id: uuid.UUID, dates: list[datetime], now: datetime
) -> set[datetime]:
    months = ended_months(((d, "") for d in dates), now)
    if not months:
        return set()
    connection = await driver_connection(session)
    # The months the ledger refuses (closed, or left open behind a closed one).
    return {_month(m) for m in await refused_among(connection, organization_id, sorted(months))}


def _day(at: datetime) -> str:
    return at.date().isoformat()


# --- changes asked for ---


async def _subscription_in_force(
    session: AsyncSession,
    org: OrgContext,
    account_id: uuid.UUID,
    now: datetime,
    field: str = "input.accountId",
) -> AccountSubscription:
    account = (await get_many(session, Account, [account_id])).get(account_id)
    if account is None:
        raise NotFound("account", account_id, field)
    await plans_repository.lock_account(session, org.id, account_id)
    sub = await repo.in_force(session, account_id, now)
    if sub is None:
        raise NotFound("subscription", account_id, field)
    return sub


async def effective_from(
    session: AsyncSession, sub: AccountSubscription, now: datetime
) -> datetime:
    """When a change of plan or seats made at ``now`` takes effect on the allowance: at once,
    unless usage has already opened the running allowance cycle, which keeps the allowance it
    opened with (billing/allowances.py) — then at that cycle's end. The fee follows the
    allowance: the old terms are paid for as long as they serve, so nothing is credited or
    charged for that part of the cycle."""
    pooled = sub.pool_id is not None
    holder = sub.pool_id if pooled else sub.account_id
    assert holder is not None
    anchor = sub.starts_at
    if pooled and sub.pool_id != sub.id:
        team = await session.get(AccountSubscription, (sub.organization_id, sub.pool_id))
        anchor = team.starts_at if team is not None else anchor
    if now < anchor:
        return now
    start, end = cycle_window(anchor, now)
    opened = await balance_repository.allowance_used(session, holder, start, pooled=pooled)
    return now if opened is None else end


def _prorated_pair(
    sub: AccountSubscription,
    cycle: schedule.Cycle,
    now: datetime,
    credit: Decimal,
    charge: Decimal,
    what: str,
    description: str,
    effective: datetime | None = None,
) -> list[_New]:
    """The credit of the old terms and the charge of the new for the time left in the cycle
    from ``effective`` (default ``now``; see :func:`effective_from`). Both serve from then:
    they are recognised in the months from ``effective`` on, so a month the old terms still
    serve keeps the revenue of the old terms (written now, dated now)."""
    start = now if effective is None else max(now, effective)
    left = schedule.time_left(cycle, start) if start < cycle.end else Fraction(0)
    stamp = now.isoformat()
    pair = []
    for kind, whole in ((CREDIT, credit), (FEE, charge)):
        amount = schedule.prorate(whole, left, sub.currency)
        if amount == 0:
            continue
        label = "credit" if kind is CREDIT else "charge"
        pair.append(
            _New(
                kind,
                _key(sub, cycle, f"{what}:{stamp}:{label}"),
                amount,
                now,
                cycle,
                start,
                what,
                f"{description} ({label} for the rest of the cycle to {_day(cycle.end)})",
            )
        )
    return pair


async def change_plan(
    session: AsyncSession,
    org: OrgContext,
    account_id: uuid.UUID,
    plan_code: str,
    billing: str | None = None,
) -> tuple[AccountSubscription, list[Entry]]:
    """Move the account's subscription to another plan now, in the running cycle: the old
    fee's unused part is credited and the new fee charged for the time left (both prorated,
    see billing/fee_schedule.py); later cycles bill the new fee. The cycle anchor stays, and
    the running cycle keeps the allowance it opened with (billing/allowances.py).

    Under the customer's lock (then the account's), like subscribing: the new plan's tier
    rules hold (``PLAN_LIMIT``: accounts per customer, seats). Between pooled (team) plans the
    whole team moves: the team subscription (the pool) is changed, and every member drawing
    on the pool moves with it, so no member is left on a plan its team is not on; a member
    cannot move alone. Between a pooled and an unpooled plan the allowance's holder changes
    (an account's own or a team's pool): that is a new subscription (``subscribeAccount``),
    refused here."""
    now = utcnow()
    plan = await plans_repository.plan_by_code(session, plan_code)
    if plan is None:
        raise NotFound("plan", plan_code[:64], "input.planCode")
    account = (await get_many(session, Account, [account_id])).get(account_id)
    if account is None:
        raise NotFound("account", account_id, "input.accountId")
    await tier_rules.lock(session, org.id, account.customer_id)  # the customer, then the account
    sub = await _subscription_in_force(session, org, account_id, now)
    if sub.cancelled_at is not None:
        raise ValidationFailed(
            "the subscription is cancelled (it ends at its period's end): subscribe again",
            "input.accountId",
        )
    if billing is not None and billing != sub.billing:
        raise ValidationFailed(
            "a plan change keeps the billing cycle; change it at renewal by subscribing again",
            "input.billing",
        )
    if plan.id == sub.plan_id:
        raise ValidationFailed(f"the account is already on plan {plan.code!r}", "input.planCode")
    if plan.currency != sub.currency:
        raise CurrencyMismatch(sub.currency, plan.currency, "input.planCode")
    fee = plan.monthly_fee if sub.billing == "MONTHLY" else plan.annual_fee
    if fee is None:
        raise ValidationFailed(f"plan {plan.code!r} has no annual price", "input.planCode")
    old_plan = await _plan(session, sub.plan_id)
    if bool(plan.pooled) != bool(getattr(old_plan, "pooled", False)):
        raise ValidationFailed(
            "moving between a pooled (team) plan and an unpooled one changes whose allowance "
            "the account draws on: subscribe it to the new plan instead (subscribeAccount)",
            "input.planCode",
        )
    members: list[AccountSubscription] = []
    if plan.pooled:
        if not _is_team(sub):
            raise ValidationFailed(
                "the account draws on its team's pool: change the plan of the team's "
                "subscription, and the whole team moves",
                "input.accountId",
            )
        other = await plans_repository.team_subscription(session, account.customer_id, plan.id, now)
        if other is not None:
            raise ValidationFailed(
                f"the customer has a team on plan {plan.code!r} already: move the accounts "
                "to that team (subscribeAccount)",
                "input.planCode",
            )
        members = list(await plans_repository.pool_member_subscriptions(session, sub.id, now))
    await tier_rules.require_room_to_subscribe(session, account.customer_id, plan, "input.planCode")
    tier_rules.require_seats(plan, sub.seats, "input.planCode")
    written = await _settle(session, org, sub, now, [])  # the running cycle is billed first
    cycle = schedule.cycle_at(sub.starts_at, sub.billing, now)
    old_total = cycle_fee(sub, old_plan)
    new_total = fee + seat_part(sub, plan, sub.seats)
    changes = _prorated_pair(
        sub,
        cycle,
        now,
        old_total,
        new_total,
        "plan",
        f"{sub.plan_code} to {plan.code}",
        await effective_from(session, sub, now),
    )
    terms = {
        "plan_id": plan.id,
        "plan_code": plan.code,
        "included_tokens": plan.included_tokens,
        "priority_class": plan.priority_class,
    }
    sub = await repo.change_terms(session, sub.id, fee=fee, **terms)
    written += await _settle(session, org, sub, now, changes)
    for member in members:  # the team's members move with it, their seats prorated
        written += await _move_member(session, org, member, old_plan, plan, now, terms)
    moved = (sub.account_id, *(m.account_id for m in members))
    emit(session, events.AllowanceChanged(org.id, tuple(dict.fromkeys(moved))))
    return sub, written


async def _move_member(
    session: AsyncSession,
    org: OrgContext,
    member: AccountSubscription,
    old_plan: Plan | None,
    plan: Plan,
    now: datetime,
    terms: dict[str, Any],
) -> list[Entry]:
    """A member of a team moving plan with it: its seats' fee prorated like the team's (the
    caller holds the customer's lock; the member's account is locked here)."""
    await plans_repository.lock_account(session, org.id, member.account_id)
    if member.starts_at > now:  # joins later: nothing billed yet
        await plans_repository.move_subscriptions(session, [member.id], **terms)
        return []
    written = await _settle(session, org, member, now, [])
    cycle = schedule.cycle_at(member.starts_at, member.billing, now)
    old, new = seat_part(member, old_plan, member.seats), seat_part(member, plan, member.seats)
    what = f"{member.plan_code} to {plan.code}: team seats"
    effective = await effective_from(session, member, now)
    changes = _prorated_pair(member, cycle, now, old, new, "plan", what, effective)
    member = await repo.change_terms(session, member.id, **terms)
    return written + await _settle(session, org, member, now, changes)


async def cancel_subscription(
    session: AsyncSession, org: OrgContext, account_id: uuid.UUID, field: str = "accountId"
) -> AccountSubscription:
    """Cancel at the period's end: no later cycle is billed; the allowance and the running
    cycle's paid service stay until then. ``field`` names the account argument in errors."""
    now = utcnow()
    sub = await _subscription_in_force(session, org, account_id, now, field)
    if sub.cancelled_at is not None:
        raise ValidationFailed("the subscription is cancelled already", field)
    await _settle(session, org, sub, now, [])
    end = schedule.cycle_at(sub.starts_at, sub.billing, now).end
    if sub.ends_at is not None and sub.ends_at < end:
        end = sub.ends_at
    return await repo.change_terms(session, sub.id, ends_at=end, cancelled_at=now)


async def set_seats(
    session: AsyncSession, org: OrgContext, account_id: uuid.UUID, seats: int
) -> tuple[AccountSubscription, list[Entry]]:
    """Change a team subscription's seats now: seats added are charged and seats removed
    credited at the plan's seat fee for the time left in the cycle. The same count again
    changes nothing (a retry is safe)."""
    if seats < 1 or seats > MAX_SEATS:
        raise ValidationFailed(f"seats must be 1 to {MAX_SEATS}", "input.seats")
    now = utcnow()
    sub = await _subscription_in_force(session, org, account_id, now)
    plan = await _plan(session, sub.plan_id)
    if plan is None or not plan.pooled or not _is_team(sub):
        raise ValidationFailed(
            "seats are sold on pooled (team) plans, on the team's subscription",
            "input.accountId",
        )
    if sub.cancelled_at is not None:
        raise ValidationFailed("the subscription is cancelled", "input.accountId")
    if plan.seats is not None and seats > plan.seats:
        raise PlanLimit(
            plan.code, "seats", plan.seats, f"allows {plan.seats} seat(s)", "input.seats"
        )
    if seats == sub.seats:
        return sub, []
    written = await _settle(session, org, sub, now, [])
    cycle = schedule.cycle_at(sub.starts_at, sub.billing, now)
    old, new = seat_part(sub, plan, sub.seats), seat_part(sub, plan, seats)
    changes = _prorated_pair(
        sub,
        cycle,
        now,
        max(old - new, Decimal(0)),
        max(new - old, Decimal(0)),
        f"seats-{sub.seats}-to-{seats}",
        f"{sub.plan_code}: seats {sub.seats} to {seats}",
        await effective_from(session, sub, now),
    )
    sub = await repo.change_terms(session, sub.id, seats=seats)
    written += await _settle(session, org, sub, now, changes)
    emit(session, events.AllowanceChanged(org.id, (sub.account_id,)))
    return sub, written
