"""The users view and the period's KPIs.

Per user and per customer: spend (billed usage) and AI cost in the range, the last activity
up to the range's end, and a status — ``ACTIVE`` (entries in the range), ``IDLE`` (earlier
entries only) or ``NEVER``. Customers also carry revenue, margin and their accounts' prepaid
balances (one per currency, as the accounts hold them). A user's ledger is the ``ledger``
query filtered by ``userId``.

KPIs of a range, per customer:

- **active payers**: customers who paid in the range — subscription payments, top-ups or
  postpaid usage billed beyond the plan's allowance (the money this P&L counts as
  revenue) above zero;
- **new payers**: active payers who had paid nothing before the range;
- **ARPU**: the organisation's revenue over the range / active payers;
- **average cost to serve**: AI cost over the range / customers with usage in it.

Money is converted into the requested currency entry by entry (:mod:`costgraph.billing.fx`).
A currency without a rate is left out of the figures — customers whose only money is in it
included — and named in ``missing``; the KPIs of each entry currency, in its own money, are
in ``by_currency``.

Segments (:mod:`costgraph.billing.segments`) filter all three: new or returning payers and a
balance band. Each row says which payer segment it is in and its balance in the view's
currency; a users row also lists the accounts the user spends through and whether the
user's integration access (an OAuth client acting for them) is active. KPIs of a segment
count its customers' money only (entries without a customer are left out).
"""

from __future__ import annotations

import enum
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import pnl_conversion as conversion
from costgraph.billing import pnl_repository as repo
from costgraph.billing.cost_formula import EXACT
from costgraph.billing.directory import OrgContext
from costgraph.billing.fx import CurrencyPair
from costgraph.billing.ledger_repository import driver_connection
from costgraph.billing.pnl_measures import Figures, RevenueBasis, Totals
from costgraph.billing.segments import (
    NO_ACCESS,
    AccountBalanceRow,
    Converter,
    IntegrationAccess,
    PayerSegment,
    Segment,
    account_balances,
    integration_access,
    payer_segment,
    user_accounts,
)
from costgraph.kernel.clock import EARLIEST_EVENT
from costgraph.kernel.money import QUANTUM
from costgraph.models import Account, AccountBalance, Customer, User


class ActivityStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    IDLE = "IDLE"
    NEVER = "NEVER"


@dataclass(frozen=True, slots=True)
class Balance:
    currency: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class UserActivity:
    user: User
    figures: Figures
    last_activity_at: datetime | None
    status: ActivityStatus
    payer: PayerSegment | None = None
    #: The accounts the user spends through, balances now, in their own currencies.
    accounts: tuple[AccountBalanceRow, ...] = ()
    #: Their sum in the view's currency (None: no account, or a currency without a rate).
    balance: Decimal | None = None
    integration: IntegrationAccess = NO_ACCESS


@dataclass(frozen=True, slots=True)
class CustomerActivity:
    customer: Customer
    figures: Figures
    balances: list[Balance]
    last_activity_at: datetime | None
    status: ActivityStatus
    payer: PayerSegment | None = None
    #: ``balances`` summed in the view's currency (None: a currency without a rate).
    balance: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Kpis:
    currency: str
    active_payers: int
    new_payers: int
    customers_served: int
    revenue: Decimal
    ai_cost: Decimal
    arpu: Decimal | None
    average_cost_to_serve: Decimal | None
    #: Each entry currency's KPIs in its own money (its payers, revenue, costs).
    by_currency: tuple[Kpis, ...] = ()
    #: Pairs without a rate: those currencies are not in the figures above.
    missing: tuple[CurrencyPair, ...] = ()


def _keyed(rows: list[conversion.Converted]) -> dict[Any, Totals]:
    return {row.key[0]: row.totals for row in rows if row.key[0] is not None}


async def _converted(
    session: AsyncSession,
    org: OrgContext,
    dimension: str,
    start: datetime,
    end: datetime,
    currency: str,
) -> conversion.Conversion:
    connection = await driver_connection(session)
    query = repo.MeasureQuery((org.id,), start, end, group_by=(dimension,))
    return await conversion.convert_one(session, connection, org.id, query, currency)


async def _per(
    session: AsyncSession,
    org: OrgContext,
    dimension: str,
    start: datetime,
    end: datetime,
    currency: str,
) -> dict[Any, Totals]:
    """Per value of ``dimension``, in ``currency`` (currencies without a rate left out)."""
    return _keyed((await _converted(session, org, dimension, start, end, currency)).rows)


async def _history(
    session: AsyncSession, org: OrgContext, dimension: str, end: datetime
) -> dict[Any, Totals]:
    """All entries before ``end`` per value of ``dimension``, in their own currencies (counts,
    last activity and "paid anything" need no conversion)."""
    connection = await driver_connection(session)
    query = repo.MeasureQuery((org.id,), EARLIEST_EVENT, end, group_by=(dimension,))
    result: dict[Any, Totals] = defaultdict(Totals)
    for row in await repo.measure(connection, query):
        if row.key[0] is not None:
            result[row.key[0]].add_row(row.values)
    return result


def _status(in_range: Totals | None, history: Totals | None) -> ActivityStatus:
    if in_range is not None and in_range.entries:
        return ActivityStatus.ACTIVE
    if history is not None and history.entries:
        return ActivityStatus.IDLE
    return ActivityStatus.NEVER


def _spend_order(figures: Figures, label: str) -> tuple[Decimal, Decimal, str]:
    return (-figures.billed_usage, -figures.ai_cost, label)


async def users_view(
    session: AsyncSession,
    org: OrgContext,
    start: datetime,
    end: datetime,
    currency: str,
    limit: int,
    segment: Segment | None = None,
) -> list[UserActivity]:
    in_range = await _per(session, org, "user", start, end, currency)
    history = await _history(session, org, "user", end)
    before = await _history(session, org, "user", start)
    balances = await account_balances(session)
    spent_through = await user_accounts(session, org.id)
    shared: dict[uuid.UUID, int] = defaultdict(int)
    for spent in spent_through.values():
        for account in spent:
            shared[account] += 1
    converter = await Converter.load(
        session, org.id, {balances[a][1] for a in shared if a in balances}, currency
    )
    access = await integration_access(session)
    users = list(await session.scalars(select(User)))
    rows = []
    for user in users:
        totals = in_range.get(user.id)
        past = history.get(user.id)
        earlier = before.get(user.id)
        accounts = tuple(
            AccountBalanceRow(a, balances[a][1], balances[a][2], shared[a] > 1)
            for a in sorted(spent_through.get(user.id, ()))
            if a in balances
        )
        balance = converter.total((a.currency, a.amount) for a in accounts) if accounts else None
        payer = payer_segment(
            totals is not None and _charged(totals), earlier is not None and _charged(earlier)
        )
        if segment is not None and not segment.admits(payer, balance):
            continue
        rows.append(
            UserActivity(
                user,
                Figures.of(totals or Totals(), currency),
                None if past is None else past.last_at,
                _status(totals, past),
                payer,
                accounts,
                balance,
                access.get(user.id, NO_ACCESS),
            )
        )
    rows.sort(key=lambda r: _spend_order(r.figures, r.user.email))
    return rows[:limit]


def _charged(totals: Totals) -> bool:
    """A user pays through their accounts: usage charged beyond the allowances."""
    return totals.revenue_on(RevenueBasis.ATTRIBUTED) > 0


async def _balances(session: AsyncSession) -> dict[uuid.UUID, list[Balance]]:
    found = await session.execute(
        select(Account.customer_id, Account.currency, AccountBalance.balance).join(
            AccountBalance,
            (AccountBalance.organization_id == Account.organization_id)
            & (AccountBalance.account_id == Account.id),
        )
    )
    sums: dict[uuid.UUID, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for customer_id, currency, balance in found.all():
        sums[customer_id][currency.strip()] += balance
    return {
        customer: [Balance(c, amount) for c, amount in sorted(by_currency.items())]
        for customer, by_currency in sums.items()
    }


async def customers_view(
    session: AsyncSession,
    org: OrgContext,
    start: datetime,
    end: datetime,
    currency: str,
    limit: int,
    segment: Segment | None = None,
) -> list[CustomerActivity]:
    in_range = await _per(session, org, "customer", start, end, currency)
    history = await _history(session, org, "customer", end)
    before = await _history(session, org, "customer", start)
    balances = await _balances(session)
    converter = await _converter(session, org, balances, currency)
    rows = []
    for customer in await session.scalars(select(Customer)):
        totals = in_range.get(customer.id)
        past = history.get(customer.id)
        own = balances.get(customer.id, [])
        balance = converter.total((b.currency, b.amount) for b in own)
        payer = payer_segment(
            totals is not None and _paid(totals),
            customer.id in before and _paid(before[customer.id]),
        )
        if segment is not None and not segment.admits(payer, balance):
            continue
        rows.append(
            CustomerActivity(
                customer,
                Figures.of(totals or Totals(), currency),
                own,
                None if past is None else past.last_at,
                _status(totals, past),
                payer,
                balance,
            )
        )
    rows.sort(key=lambda r: _spend_order(r.figures, r.customer.name))
    return rows[:limit]


async def _converter(
    session: AsyncSession, org: OrgContext, balances: dict[uuid.UUID, list[Balance]], target: str
) -> Converter:
    currencies = {b.currency for own in balances.values() for b in own}
    return await Converter.load(session, org.id, currencies, target)


async def _admitted(
    session: AsyncSession,
    org: OrgContext,
    segment: Segment,
    per_customer: dict[Any, Totals],
    before: dict[Any, Totals],
    currency: str,
) -> set[Any]:
    """The customers ``segment`` admits over the range (payers read from ``per_customer``)."""
    balances = await _balances(session)
    converter = await _converter(session, org, balances, currency)
    admitted = set()
    for customer in await session.scalars(select(Customer.id)):
        totals = per_customer.get(customer)
        payer = payer_segment(
            totals is not None and _paid(totals), customer in before and _paid(before[customer])
        )
        balance = converter.total((b.currency, b.amount) for b in balances.get(customer, []))
        if segment.admits(payer, balance):
            admitted.add(customer)
    return admitted


def _paid(totals: Totals) -> bool:
    return totals.subscriptions + totals.top_ups + totals.postpaid_usage > 0


def _per_head(amount: Decimal, heads: int) -> Decimal | None:
    if heads == 0:
        return None
    return EXACT.divide(amount, Decimal(heads)).quantize(
        QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT
    )


def _kpis(
    currency: str, per_customer: dict[Any, Totals], before: dict[Any, Totals], whole: Totals
) -> Kpis:
    payers = {c for c, totals in per_customer.items() if _paid(totals)}
    new = {c for c in payers if c not in before or not _paid(before[c])}
    served = {c for c, totals in per_customer.items() if totals.events}
    figures = Figures.of(whole, currency)
    return Kpis(
        currency=currency,
        active_payers=len(payers),
        new_payers=len(new),
        customers_served=len(served),
        revenue=figures.revenue,
        ai_cost=figures.ai_cost,
        arpu=_per_head(whole.revenue, len(payers)),
        average_cost_to_serve=_per_head(whole.ai_cost, len(served)),
    )


async def kpis(
    session: AsyncSession,
    org: OrgContext,
    start: datetime,
    end: datetime,
    currency: str,
    segment: Segment | None = None,
) -> Kpis:
    converted = await _converted(session, org, "customer", start, end, currency)
    before = await _history(session, org, "customer", start)
    admitted = None
    if segment is not None:
        admitted = await _admitted(session, org, segment, _keyed(converted.rows), before, currency)

    def kept(rows: list[conversion.Converted]) -> list[conversion.Converted]:
        # Entries without a customer count in the whole, as in P&L, unless segmented.
        return rows if admitted is None else [r for r in rows if r.key[0] in admitted]

    whole = Totals()
    for row in kept(converted.rows):
        whole.add(row.totals)
    panels = []
    for own, rows in sorted(converted.by_currency.items()):
        total = Totals()
        for row in kept(rows):
            total.add(row.totals)
        panels.append(_kpis(own, _keyed(kept(rows)), before, total))
    result = _kpis(currency, _keyed(kept(converted.rows)), before, whole)
    return replace(result, by_currency=tuple(panels), missing=converted.missing)
