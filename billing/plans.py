"""Plans (what an organisation sells its customers) and account subscriptions.

A plan has a monthly fee, an optional annual fee (its discount against twelve monthly fees
is derived, not stored), an included token allowance per billing cycle, and seats. Plans
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

from costgraph.billing import events
from costgraph.billing import plans_repository as repo
from costgraph.billing.catalog import require_effective_date
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.validation import INT8_MAX
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import CurrencyMismatch, NotFound, ValidationFailed
from costgraph.kernel.money import decimal_places, minor_unit, require_currency
from costgraph.kernel.unit_of_work import emit
from costgraph.models import Account
from costgraph.models.pricing import AccountSubscription, Plan

_CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class BillingCycle(enum.StrEnum):
    MONTHLY = "MONTHLY"
    ANNUAL = "ANNUAL"


@dataclass(frozen=True, slots=True)
class PlanSpec:
    code: str
    name: str
    monthly_fee: Decimal
    currency: str
    included_tokens: int
    annual_fee: Decimal | None = None
    seats: int | None = None


#: The starter tiers the demo seeds (an organisation sets its own with ``setPlan``).
STARTER_PLANS = (
    PlanSpec("creator", "Creator", Decimal("19.00"), "USD", 2_000_000, Decimal("190.00"), 1),
    PlanSpec("pro", "Pro", Decimal("49.00"), "USD", 10_000_000, Decimal("490.00"), 5),
    PlanSpec("atelier", "Atelier", Decimal("199.00"), "USD", 50_000_000, Decimal("1990.00"), 25),
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
    if spec.seats is not None and spec.seats < 1:
        raise ValidationFailed("seats must be at least 1", "input.seats")
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
) -> AccountSubscription:
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
    await repo.lock_account(session, org.id, account.id)
    current = await repo.current_subscription(session, account.id)
    if current is not None:
        if current.starts_at >= start:
            raise ValidationFailed(
                "the account's current subscription starts at or after that date", "input.startsAt"
            )
        await repo.end_subscription(session, current.id, start)
    emit(session, events.AllowanceChanged(org.id, (account.id,)))
    return await repo.add_subscription(
        session,
        AccountSubscription(
            organization_id=org.id,
            account_id=account.id,
            plan_id=plan.id,
            plan_code=plan.code,
            billing=billing.value,
            fee=fee,
            currency=plan.currency,
            included_tokens=plan.included_tokens,
            starts_at=start,
        ),
    )
