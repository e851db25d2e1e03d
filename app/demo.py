"""`costgraph demo`: a realistic tenant with 90 days of usage. Running it again adds nothing:
every object is found by its natural key and every entry has a deterministic idempotency key."""

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

from costgraph.billing import directory, fx, ledger, markup, plans
from costgraph.billing.catalog_loader import load_starter_catalog
from costgraph.billing.commands import Limits, Payment, UsageEvent
from costgraph.billing.directory import OrgContext
from costgraph.billing.entries import Entry
from costgraph.billing.rates_loader import load_platform_rates
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
#: Which starter plan each customer is on.
DEMO_PLANS = {"acme": "pro", "globex": "creator", "initech": "atelier", "umbrella": "pro"}
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
        account = await session.scalar(select(Account).where(Account.customer_id == customer.id))
        if account is None:
            account = await directory.create_account(
                session, org, customer.id, f"{name} main", postpaid, currency
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
            input_tokens = int(rng.lognormvariate(7.0, 0.8))
            output_tokens = int(rng.lognormvariate(5.8, 0.7))
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
                    user_id=user.id,
                    feature=FEATURES[rng.randrange(len(FEATURES))],
                    agent=AGENTS[rng.randrange(len(AGENTS))] if rng.random() < 0.4 else None,
                    request_id=f"req-{day:03d}-{n:04d}",
                )
            )
    return events


async def _pricing(session: AsyncSession, org: OrgContext, accounts: list[Account]) -> None:
    """Rates, markup rules, the starter plans and a plan per USD customer; each found first."""
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
    by_customer = {a.customer_id: a for a in accounts}
    for external_id, code in DEMO_PLANS.items():
        account = by_customer[customers[external_id]]
        if await plans.current_subscription(session, account.id) is None:
            since = datetime(2025, 1, 1, tzinfo=UTC)
            await plans.subscribe_account(
                session, org, account.id, code, plans.BillingCycle.MONTHLY, since
            )


async def seed_demo(units: Units, limits: Limits, now: datetime | None = None) -> DemoSummary:
    """Seed the demo organisation, each step a unit of work (as every writer)."""
    # Anchored to midnight so a second run regenerates exactly the same events.
    end = (now or utcnow()).replace(hour=0, minute=0, second=0, microsecond=0)
    org = await units.run(None, _get_or_create_org)

    async def catalog(unit: UnitOfWork) -> None:
        await load_starter_catalog(unit.session)
        await load_platform_rates(unit.session)

    await units.run(None, catalog)

    async def setup(unit: UnitOfWork) -> tuple[list[Account], list[User]]:
        accounts, users = await _directory(unit.session, unit.org)
        await _pricing(unit.session, unit.org, accounts)
        return accounts, users

    accounts, users = await units.run(org, setup)
    # Money first: prepaid accounts draw their usage from these top-ups.
    written = await units.run(org, lambda unit: _payments(unit, accounts, end, limits))
    events = _usage(accounts, users, end)
    for index in range(0, len(events), limits.max_batch_events):
        batch = events[index : index + limits.max_batch_events]
        # 90 days of history: older than the late-arrival window, so a backfill.
        entries = await units.run(org, functools.partial(_backfill, events=batch, limits=limits))
        written += sum(1 for e in entries if not e.replayed)
    return DemoSummary(org, len(accounts), len(events), written)


async def _backfill(unit: UnitOfWork, events: list[UsageEvent], limits: Limits) -> list[Entry]:
    return await ledger.backfill_usage(unit.session, unit.org, events, limits)


async def _payments(
    unit: UnitOfWork, accounts: list[Account], end: datetime, limits: Limits
) -> int:
    session, org = unit.session, unit.org
    written = 0
    for account in accounts:
        for month in range(3):
            first = end - timedelta(days=DAYS) + timedelta(days=30 * month)
            kind = ledger.record_subscription_payment if account.postpaid else ledger.deposit
            entry = await kind(
                session,
                org,
                Payment(
                    idempotency_key=f"demo-payment-{account.id}-{month}",
                    account_id=account.id,
                    amount=Decimal("49.00") if account.postpaid else Decimal("100.00"),
                    currency=account.currency,
                    occurred_at=first,
                    metadata={"payment_id": f"pay_demo_{month}_{str(account.id)[:8]}"},
                ),
                limits,
                history=True,  # past books, seeded by an operator
            )
            written += 0 if entry.replayed else 1
    return written
