"""`costgraph demo`: a realistic tenant with 90 days of usage. Running it again adds nothing:
every object is found by its natural key and every entry has a deterministic idempotency key.

The tenant is a creative AI studio selling the starter tiers (billing/plans.py): one customer
on Creator, two on Pro, a team of three accounts on Atelier (pooled, five seats), and one
paying as it goes in euros. Subscriptions started about three and a half months before the
demo's day (dated from the business clock, never a calendar date) and are billed like any
other (fees, recognised month by month). Usage mixes text models with heavier steps (video,
voiceover, images) that the allowance weighs (billing/weights.py), so AI cost is a real share
of revenue. The history is a backfill: usage in an allowance cycle already over when it is
written is charged in full (billing/drawdown.py), only the running cycle draws on the plans.
"""

from __future__ import annotations

import functools
import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import (
    allowance_weights,
    directory,
    fx,
    ledger,
    markup,
    plans,
    subscription_billing,
    top_ups,
)
from costgraph.billing.catalog_loader import load_starter_catalog
from costgraph.billing.commands import Limits, Payment, UnitUsage, UsageEvent
from costgraph.billing.directory import OrgContext
from costgraph.billing.entries import Entry
from costgraph.billing.weights import Dimension, WeightSpec
from costgraph.kernel.clock import utcnow
from costgraph.kernel.unit_of_work import UnitOfWork, Units
from costgraph.models import Account, Customer, Department, Organization, User

DEMO_SLUG = "demo"
DAYS = 90

#: (provider, model) of the demo's usage: priced by the starter catalog at each event's time
#: (one is a dated snapshot that the catalog knows as an alias).
MODELS = (
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o-2024-08-06"),
    ("anthropic", "claude-3-5-haiku"),
    ("anthropic", "claude-sonnet-4"),
    ("google", "gemini-2.0-flash"),
)
#: (external id, name, postpaid, account currency): one customer pays in euros.
CUSTOMERS = (
    ("acme", "Acme Robotics", False, "USD"),
    ("globex", "Globex Media", False, "USD"),
    ("initech", "Initech Support", True, "USD"),
    ("umbrella", "Umbrella Health", False, "USD"),
    ("lumiere", "Lumière Studio", False, "EUR"),
)
#: Illustrative demo rates (not market data), fixed so a second run adds nothing.
DEMO_RATES = (("USD", "EUR", Decimal("0.92"), datetime(2025, 1, 1, tzinfo=UTC)),)
#: Markup: 20 % by default, 15 % for Acme, 30 % on one premium model.
DEMO_MARKUPS: tuple[tuple[str | None, str | None, str | None, Decimal], ...] = (
    (None, None, None, Decimal("20")),
    ("acme", None, None, Decimal("15")),
    (None, "anthropic", "claude-sonnet-4", Decimal("30")),
)
#: Which starter plan each customer is on (Lumière, in euros, pays as it goes: no plan).
DEMO_PLANS = {"acme": "pro", "globex": "creator", "initech": "atelier", "umbrella": "pro"}
#: The Atelier team's other accounts (each joins the team's pool with a seat of its own).
TEAM_ACCOUNTS = {"initech": ("Initech Sales", "Initech Research")}
#: Seats of the team subscription: with its two member accounts, five seats (149 + 5 x 39).
TEAM_SEATS = 3
#: Subscriptions started this long before the demo's day.
SUBSCRIBED_DAYS = 105
#: Top-ups a prepaid customer makes each month (in its account's currency).
DEPOSITS = {
    "acme": Decimal("200.00"),
    "globex": Decimal("130.00"),
    "umbrella": Decimal("80.00"),
    "lumiere": Decimal("70.00"),
}
#: The customer whose integrator tops up automatically: (threshold, amount).
AUTO_TOP_UP = ("globex", Decimal("25.00"), Decimal("90.00"))
#: The allowance catalog: heavy steps consume more budgeted tokens (billing/weights.py).
DEMO_WEIGHTS = (
    WeightSpec(Dimension.MODEL, "claude-sonnet-4", Decimal(3), "anthropic"),
    WeightSpec(Dimension.MODEL, "gpt-4o-2024-08-06", Decimal(2), "openai"),
    WeightSpec(Dimension.UNIT, "VIDEO_SECOND", Decimal(10000)),
    WeightSpec(Dimension.UNIT, "CHARACTER", Decimal(10)),
    WeightSpec(Dimension.UNIT, "IMAGE", Decimal(4000)),
)
#: Heavier steps of the studio's pipeline: (feature, provider, model, unit kind, quantities).
MEDIA_STEPS = (
    ("video", "runway", "gen4_turbo", "VIDEO_SECOND", (15, 30)),
    ("voiceover", "elevenlabs", "eleven_multilingual_v2", "CHARACTER", (3000, 9000)),
    ("thumbnail", "blackforestlabs", "flux-pro-1.1", "IMAGE", (3, 8)),
)
#: The share of events that are such a step.
MEDIA_SHARE = 0.55
DEPARTMENTS = ("Engineering", "Support", "Marketing")
USERS = (
    ("ada@demo.example", "Ada", "Engineering"),
    ("linus@demo.example", "Linus", "Engineering"),
    ("grace@demo.example", "Grace", "Support"),
    ("ken@demo.example", "Ken", "Support"),
    ("hedy@demo.example", "Hedy", "Marketing"),
)
FEATURES = ("chat", "summarise", "search", "draft-reply")
AGENTS = ("triage-bot", "writer", "researcher")
#: Monday..Sunday: weekdays busy, weekends quiet.
WEEKLY_RHYTHM = (1.0, 1.1, 1.15, 1.1, 0.95, 0.35, 0.25)


@dataclass(frozen=True)
class DemoSummary:
    organization: OrgContext
    accounts: int
    usage_events: int
    written: int


async def _get_or_create_org(unit: UnitOfWork) -> OrgContext:
    session = unit.session
    org = await session.scalar(select(Organization).where(Organization.slug == DEMO_SLUG))
    if org is None:
        org = await directory.create_organization(session, "Demo Studio", DEMO_SLUG, "USD")
    return OrgContext.of(org)


async def _directory(session: AsyncSession, org: OrgContext) -> tuple[list[Account], list[User]]:
    accounts: list[Account] = []
    for external_id, name, postpaid, currency in CUSTOMERS:
        customer = await session.scalar(select(Customer).where(Customer.external_id == external_id))
        if customer is None:
            customer = await directory.create_customer(session, org, name, external_id)
        for account_name in (f"{name} main", *TEAM_ACCOUNTS.get(external_id, ())):
            account = await session.scalar(
                select(Account).where(
                    Account.customer_id == customer.id, Account.name == account_name
                )
            )
            if account is None:
                account = await directory.create_account(
                    session, org, customer.id, account_name, postpaid, currency
                )
            accounts.append(account)
    departments: dict[str, uuid.UUID] = {}
    for name in DEPARTMENTS:
        department = await session.scalar(select(Department).where(Department.name == name))
        if department is None:
            department = await directory.create_department(session, org, name)
        departments[name] = department.id
    users: list[User] = []
    for email, name, department_name in USERS:
        user = await session.scalar(select(User).where(User.email == email))
        if user is None:
            user = await directory.create_user(
                session, org, email, name, departments[department_name]
            )
        users.append(user)
    return accounts, users


def _usage(accounts: list[Account], users: list[User], end: datetime) -> list[UsageEvent]:
    rng = random.Random(20260101)  # noqa: S311 - demo data, not security
    start = (end - timedelta(days=DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
    events: list[UsageEvent] = []
    for day in range(DAYS):
        date = start + timedelta(days=day)
        trend = 1 + 0.6 * day / DAYS
        count = max(1, int(40 * WEEKLY_RHYTHM[date.weekday()] * trend * rng.uniform(0.85, 1.15)))
        for n in range(count):
            # Office hours peak around 14:00 UTC.
            hour = min(23, max(0, int(rng.gauss(14, 3.5))))
            occurred = date + timedelta(
                hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60)
            )
            if occurred >= end:
                continue
            provider, model = MODELS[min(len(MODELS) - 1, int(rng.expovariate(0.9)))]
            # Long contexts: scripts, briefs and transcripts go in with every request.
            input_tokens = int(rng.lognormvariate(10.5, 0.7))
            output_tokens = int(rng.lognormvariate(7.7, 0.7))
            feature = FEATURES[rng.randrange(len(FEATURES))]
            units: tuple[UnitUsage, ...] = ()
            if rng.random() < MEDIA_SHARE:
                feature, provider, model, kind, (low, high) = MEDIA_STEPS[
                    rng.randrange(len(MEDIA_STEPS))
                ]
                units = (UnitUsage(kind, Decimal(rng.randint(low, high))),)
                input_tokens = output_tokens = 0
            user = users[rng.randrange(len(users))]
            events.append(
                UsageEvent(
                    idempotency_key=f"demo-usage-{day:03d}-{n:04d}",
                    account_id=accounts[math.floor(rng.random() ** 1.6 * len(accounts))].id,
                    occurred_at=occurred,
                    provider=provider,
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    units=units,
                    user_id=user.id,
                    feature=feature,
                    agent=AGENTS[rng.randrange(len(AGENTS))] if rng.random() < 0.4 else None,
                    request_id=f"req-{day:03d}-{n:04d}",
                )
            )
    return events


async def _pricing(session: AsyncSession, org: OrgContext) -> None:
    """Rates, markup rules, the starter plans and the allowance weights; each found first."""
    rates = {(r.base, r.quote, r.effective_from) for r in await fx.exchange_rates(session, org.id)}
    for base, quote, rate, since in DEMO_RATES:
        if (base, quote, since) not in rates:
            await fx.set_exchange_rate(session, org.id, base, quote, rate, since, "demo")
    customers = {c.external_id: c.id for c in await session.scalars(select(Customer))}
    for external_id, provider, model, percent in DEMO_MARKUPS:
        customer_id = None if external_id is None else customers[external_id]
        await markup.set_markup(session, org, percent, customer_id, provider, model)
    for spec in plans.STARTER_PLANS:
        await plans.set_plan(session, org, spec)
    for weight in DEMO_WEIGHTS:
        await allowance_weights.set_weight(session, org, weight)


async def _subscriptions(unit: UnitOfWork, accounts: list[Account], end: datetime) -> int:
    """Each customer's plan from ``SUBSCRIBED_DAYS`` before ``end`` (the team's main account
    first: it opens the pool, its other accounts join it), then every cycle billed since."""
    session, org = unit.session, unit.org
    customers = {c.id: c.external_id for c in await session.scalars(select(Customer))}
    since = end - timedelta(days=SUBSCRIBED_DAYS)
    written = 0
    for account in accounts:
        code = DEMO_PLANS.get(customers[account.customer_id] or "")
        if code is None:
            continue
        if await plans.current_subscription(session, account.id) is None:
            spec = next(p for p in plans.STARTER_PLANS if p.code == code)
            opens_pool = spec.pooled and account.name.endswith(" main")
            await plans.subscribe_account(
                session,
                org,
                account.id,
                code,
                plans.BillingCycle.MONTHLY,
                since,
                seats=TEAM_SEATS if opens_pool else None,
            )
        billed = await subscription_billing.bill_account(session, org, account.id)
        written += sum(1 for e in billed if not e.replayed)
    return written


async def _auto_top_up(unit: UnitOfWork, accounts: list[Account]) -> None:
    session = unit.session
    external_id, threshold, amount = AUTO_TOP_UP
    customer = await session.scalar(select(Customer).where(Customer.external_id == external_id))
    account = next(a for a in accounts if customer is not None and a.customer_id == customer.id)
    if await top_ups.auto_top_up(session, account.id) is None:
        spec = top_ups.AutoTopUpSpec(account.id, True, threshold, amount)
        await top_ups.set_auto_top_up(session, unit.org, spec)


async def seed_demo(units: Units, limits: Limits, now: datetime | None = None) -> DemoSummary:
    """Seed the demo organisation, each step a unit of work (as every writer)."""
    # Anchored to midnight so a second run regenerates exactly the same events.
    end = (now or utcnow()).replace(hour=0, minute=0, second=0, microsecond=0)
    org = await units.run(None, _get_or_create_org)

    async def catalog(unit: UnitOfWork) -> None:
        # The platform's exchange rates are loaded by `costgraph demo` as by `migrate` and
        # `serve` (app/pricing_setup.py); the demo's own currencies have organisation rates.
        await load_starter_catalog(unit.session)

    await units.run(None, catalog)

    async def setup(unit: UnitOfWork) -> tuple[list[Account], list[User]]:
        accounts, users = await _directory(unit.session, unit.org)
        await _pricing(unit.session, unit.org)
        return accounts, users

    accounts, users = await units.run(org, setup)
    written = await units.run(org, lambda unit: _subscriptions(unit, accounts, end))
    # Money first: prepaid accounts draw their usage from these top-ups.
    written += await units.run(org, lambda unit: _payments(unit, accounts, end, limits))
    events = _usage(accounts, users, end)
    for index in range(0, len(events), limits.max_batch_events):
        batch = events[index : index + limits.max_batch_events]
        # 90 days of history: older than the late-arrival window, so a backfill.
        entries = await units.run(org, functools.partial(_backfill, events=batch, limits=limits))
        written += sum(1 for e in entries if not e.replayed)
    await units.run(org, lambda unit: _auto_top_up(unit, accounts))
    return DemoSummary(org, len(accounts), len(events), written)


async def _backfill(unit: UnitOfWork, events: list[UsageEvent], limits: Limits) -> list[Entry]:
    return await ledger.backfill_usage(unit.session, unit.org, events, limits)


async def _payments(
    unit: UnitOfWork, accounts: list[Account], end: datetime, limits: Limits
) -> int:
    """Monthly top-ups of the prepaid accounts (postpaid ones are invoiced: their fees are
    billed by their subscription)."""
    session, org = unit.session, unit.org
    customers = {c.id: c.external_id for c in await session.scalars(select(Customer))}
    written = 0
    for account in accounts:
        amount = DEPOSITS.get(customers[account.customer_id] or "")
        if account.postpaid or amount is None:
            continue
        for month in range(3):
            first = end - timedelta(days=DAYS - 5 - 30 * month)  # the 5th, 35th, 65th day
            entry = await ledger.deposit(
                session,
                org,
                Payment(
                    idempotency_key=f"demo-payment-{account.id}-{month}",
                    account_id=account.id,
                    amount=amount,
                    currency=account.currency,
                    occurred_at=first,
                    metadata={"payment_id": f"pay_demo_{month}_{str(account.id)[:8]}"},
                ),
                limits,
                history=True,  # past books, seeded by an operator
            )
            written += 0 if entry.replayed else 1
    return written
