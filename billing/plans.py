"""Plans (what an organisation sells its customers) and account subscriptions.

A plan has a monthly fee, an optional annual fee (its discount against twelve monthly fees
is derived, not stored), an included token allowance per billing cycle, and seats. Its tier
rules are data on it, so an operator defines more tiers with ``setPlan``: the most accounts a
customer may have on it (:mod:`costgraph.billing.tier_rules`), a priority class for the
caller's scheduler (copied onto the subscription like the fee), whether it is pooled (one
allowance for a customer's team, :mod:`costgraph.billing.pools`) and a fee per seat. Plans
belong to an organisation; :data:`STARTER_PLANS` (Creator, Pro, Atelier) are the ones the
demo seeds. ``subscribe_account`` puts an account on a plan from a date, ending the plan it
was on; the fee and allowance are copied onto the subscription, so a later change of the
plan applies to new subscriptions only. Money actually received for a subscription is a
``SUBSCRIPTION_PAYMENT`` ledger entry (``recordSubscriptionPayment`` or the Stripe webhook):
revenue, while top-ups are ``DEPOSIT`` entries.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import budget_repository, events, tier_rules
from costgraph.billing import plans_repository as repo
from costgraph.billing.catalog import require_effective_date
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.validation import INT8_MAX
from costgraph.kernel.clock import format_rfc3339, utcnow
from costgraph.kernel.errors import CurrencyMismatch, NotFound, ValidationFailed
from costgraph.kernel.money import decimal_places, minor_unit, require_currency
from costgraph.kernel.unit_of_work import emit
from costgraph.models import Account
from costgraph.models.pricing import AccountSubscription, Plan

_CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class BillingCycle(enum.StrEnum):
    MONTHLY = "MONTHLY"
    ANNUAL = "ANNUAL"


class PriorityClass(enum.StrEnum):
    """How the caller's scheduler should queue an account's AI work (a tier rule)."""

    STANDARD = "STANDARD"
    PRIORITY = "PRIORITY"


INT4_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class PlanSpec:
    """A plan and its tier rules. ``seats``: the most seats a subscription may have (None: no
    limit); ``max_accounts_per_customer``: None is unlimited; ``pooled``: a team plan, whose
    subscribers of one customer share one allowance of ``included_tokens`` per seat
    (:mod:`costgraph.billing.pools`); ``seat_fee``: per seat and monthly cycle, pooled plans
    only."""

    code: str
    name: str
    monthly_fee: Decimal
    currency: str
    included_tokens: int
    annual_fee: Decimal | None = None
    seats: int | None = None
    max_accounts_per_customer: int | None = None
    priority_class: PriorityClass = PriorityClass.STANDARD
    pooled: bool = False
    seat_fee: Decimal | None = None


#: The starter tiers the demo seeds (an organisation sets its own with ``setPlan``): Creator
#: for an individual (one account), Pro with a larger allowance, unlimited accounts and
#: priority, Atelier for teams (a base fee plus a fee per seat, 10M tokens per seat pooled
#: across the team's accounts: three seats cost 149 + 3 x 39 = 266 a month for 30M tokens).
#: Annual prepay is about two months cheaper than twelve monthly fees.
STARTER_PLANS = (
    PlanSpec(
        "creator",
        "Creator",
        Decimal("19.00"),
        "USD",
        2_000_000,
        Decimal("190.00"),
        seats=1,
        max_accounts_per_customer=1,
    ),
    PlanSpec(
        "pro",
        "Pro",
        Decimal("49.00"),
        "USD",
        10_000_000,
        Decimal("490.00"),
        seats=1,
        priority_class=PriorityClass.PRIORITY,
    ),
    PlanSpec(
        "atelier",
        "Atelier",
        Decimal("149.00"),
        "USD",
        10_000_000,
        Decimal("1490.00"),
        seats=25,
        priority_class=PriorityClass.PRIORITY,
        pooled=True,
        seat_fee=Decimal("39.00"),
    ),
)


def annual_discount_percent(monthly_fee: Decimal, annual_fee: Decimal | None) -> Decimal | None:
    """How much cheaper a year is than twelve months, in percent (2 places, half-to-even)."""
    if annual_fee is None or monthly_fee == 0:
        return None
    full = monthly_fee * 12
    return ((full - annual_fee) / full * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def _require_fee(value: Decimal, currency: str, field: str) -> Decimal:
    if not value.is_finite() or value < 0:
        raise ValidationFailed("a fee must be zero or more", field)
    places = minor_unit(currency)
    if decimal_places(value.normalize()) > places:
        raise ValidationFailed(f"{currency} amounts have at most {places} decimal places", field)
    return value


async def set_plan(session: AsyncSession, org: OrgContext, spec: PlanSpec) -> Plan:
    """Create the plan with this code, or change it (existing subscriptions keep their terms)."""
    if not _CODE_RE.fullmatch(spec.code):
        raise ValidationFailed(
            "code must be 1 to 64 lower-case letters, digits, '-' or '_'", "input.code"
        )
    name = spec.name.strip()
    if not name or len(name) > 200:
        raise ValidationFailed("must be 1 to 200 characters", "input.name")
    require_currency(spec.currency, "input.currency")
    _require_fee(spec.monthly_fee, spec.currency, "input.monthlyFee")
    if spec.annual_fee is not None:
        _require_fee(spec.annual_fee, spec.currency, "input.annualFee")
    if spec.included_tokens < 0 or spec.included_tokens > INT8_MAX:
        raise ValidationFailed(
            "the included allowance must be zero or more tokens", "input.includedTokens"
        )
    if spec.seats is not None and not 1 <= spec.seats <= INT4_MAX:
        raise ValidationFailed("seats must be at least 1", "input.seats")
    if spec.max_accounts_per_customer is not None and not (
        1 <= spec.max_accounts_per_customer <= INT4_MAX
    ):
        raise ValidationFailed(
            "must be at least 1 (omit it for unlimited accounts)", "input.maxAccountsPerCustomer"
        )
    if spec.seat_fee is not None:
        if not spec.pooled:
            raise ValidationFailed("a seat fee applies to pooled plans only", "input.seatFee")
        _require_fee(spec.seat_fee, spec.currency, "input.seatFee")
    rules = {
        "max_accounts_per_customer": spec.max_accounts_per_customer,
        "priority_class": spec.priority_class.value,
        "pooled": spec.pooled,
        "seat_fee": spec.seat_fee,
    }
    return await repo.upsert_plan(
        session,
        org.id,
        spec.code,
        name,
        spec.monthly_fee,
        spec.annual_fee,
        spec.currency,
        spec.included_tokens,
        spec.seats,
        rules,
    )


async def plans(session: AsyncSession) -> list[Plan]:
    return list(await repo.list_plans(session))


async def current_subscription(
    session: AsyncSession, account_id: uuid.UUID
) -> AccountSubscription | None:
    return await repo.current_subscription(session, account_id)


async def subscribe_account(
    session: AsyncSession,
    org: OrgContext,
    account_id: uuid.UUID,
    plan_code: str,
    billing: BillingCycle,
    starts_at: datetime | None = None,
    seats: int | None = None,
) -> AccountSubscription:
    """Put the account on the plan from ``starts_at`` (default now), ending its current plan.

    On a pooled plan the account opens its customer's team subscription (with ``seats``,
    default 1) or joins the one in force (:mod:`costgraph.billing.pools`). Tier rules refuse
    with ``PLAN_LIMIT`` (:mod:`costgraph.billing.tier_rules`).
    """
    account = (await get_many(session, Account, [account_id])).get(account_id)
    if account is None:
        raise NotFound("account", account_id, "input.accountId")
    plan = await repo.plan_by_code(session, plan_code)
    if plan is None:
        raise NotFound("plan", plan_code[:64], "input.planCode")
    if plan.currency != account.currency:
        raise CurrencyMismatch(account.currency, plan.currency, "input.planCode")
    fee = plan.monthly_fee if billing is BillingCycle.MONTHLY else plan.annual_fee
    if fee is None:
        raise ValidationFailed(f"plan {plan.code!r} has no annual price", "input.billing")
    start = utcnow() if starts_at is None else require_effective_date(starts_at, "input.startsAt")
    if seats is not None:
        if not 1 <= seats <= INT4_MAX:
            raise ValidationFailed("seats must be at least 1", "input.seats")
        if seats > 1 and not plan.pooled:
            raise ValidationFailed(
                f"plan {plan.code!r} is not pooled: it has one seat per account", "input.seats"
            )
        tier_rules.require_seats(plan, seats, "input.seats")
    # The writer guard first (migration 0020): usage writers in flight commit before the
    # checks below read, and those after read this subscription.
    await budget_repository.lock_out_writers(session, org.id)
    await tier_rules.lock(session, org.id, account.customer_id)  # the customer, then the account
    await repo.lock_account(session, org.id, account.id)
    current = await repo.current_subscription(session, account.id)
    if current is not None:
        if current.starts_at >= start:
            raise ValidationFailed(
                "the account's current subscription starts at or after that date", "input.startsAt"
            )
        if current.pool_id == current.id and await repo.pool_members(session, current.id, start):
            raise ValidationFailed(
                "the account holds its team's pooled subscription, which other accounts still "
                "draw on: move them to another plan first",
                "input.accountId",
            )
    await _require_no_usage_since(session, org.id, account.id, start)
    await tier_rules.require_room_to_subscribe(session, account.customer_id, plan, "input.planCode")
    if current is not None:
        await repo.end_subscription(session, current.id, start)
    team = None
    if plan.pooled:
        team = await repo.team_subscription(session, account.customer_id, plan.id, start)
        if team is not None and team.starts_at > start:
            raise ValidationFailed(
                f"the customer's team subscription to {plan.code!r} starts at "
                f"{format_rfc3339(team.starts_at)}: join it from then",
                "input.startsAt",
            )
    emit(session, events.AllowanceChanged(org.id, (account.id,)))
    ident = uuid.uuid4()
    return await repo.add_subscription(
        session,
        AccountSubscription(
            organization_id=org.id,
            id=ident,
            account_id=account.id,
            plan_id=plan.id,
            plan_code=plan.code,
            billing=billing.value,
            # A member of a team has no base fee: the team subscription carries it (its seats
            # are the member's own, paid per seat).
            fee=fee if team is None else Decimal(0),
            currency=plan.currency,
            included_tokens=plan.included_tokens if team is None else team.included_tokens,
            starts_at=start,
            seats=1 if seats is None else seats,
            priority_class=plan.priority_class,
            pool_id=None if not plan.pooled else ident if team is None else team.id,
        ),
    )


async def _require_no_usage_since(
    session: AsyncSession, organization_id: uuid.UUID, account_id: uuid.UUID, start: datetime
) -> None:
    """Refuse a start at or before usage already recorded on the account.

    Usage is charged when it is written, under the terms then in force: without a plan it
    drew on no allowance, under the old plan on that plan's counter. A subscription starting
    before it would claim that usage for its own cycles (``costgraph verify`` recomputes each
    entry's draw from the subscription in force when it occurred), yet no counter of its was
    ever drawn, while its fee is billed from the start. So the earliest start is just after
    the account's latest usage; covering older usage with an allowance is a credit, made
    explicitly (``adjust``).

    Ordered against usage writers by the organisation's writer guard, which the caller holds
    exclusive: a usage write reads the account's subscriptions under its share of the guard
    (migration 0020) and keeps it until it commits, so every write in flight has committed
    by now and is seen here, and every later one sees this subscription (every usage entry
    is written by ``ledger._record_usage``, which reads them so).
    """
    latest = await repo.latest_usage_since(session, organization_id, account_id, start)
    if latest is not None:
        raise ValidationFailed(
            f"usage is already recorded on the account at {format_rfc3339(latest)}, charged "
            "under the terms then in force: a subscription may start after the account's "
            "latest usage only",
            "input.startsAt",
        )


async def priority_class(
    session: AsyncSession, account_id: uuid.UUID, at: datetime
) -> PriorityClass:
    """The priority class of the account's plan at ``at`` (STANDARD without a plan)."""
    found = await repo.current_priority_class(session, account_id, at)
    return PriorityClass.STANDARD if found is None else PriorityClass(found)
