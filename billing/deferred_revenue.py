"""Deferred revenue of a P&L: subscription fees billed and not yet earned at the report's end
(billing/subscription_billing.py). A balance at an instant, not a flow of the range: it is
shown beside the P&L and is never part of revenue or margin.

It is a plain SUM over the ledger (``SUBSCRIPTION_FEE - SUBSCRIPTION_CREDIT -
REVENUE_RECOGNIZED + REVENUE_REVERSED`` of the scope's entries before the end), per entry
currency, each converted at the rate in force at the end (a currency without one is left
out). Slices of usage (an agent) carry no fees: theirs is None.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import fx
from costgraph.billing import subscription_billing_repository as repo
from costgraph.billing.pnl import Report, ScopeKind
from costgraph.billing.pnl_measures import reported


async def deferred_at_end(session: AsyncSession, report: Report) -> Decimal | None:
    scope = report.scope
    if scope.agent is not None:
        return None
    balances = await repo.deferred_balances(
        session,
        report.organization.id,
        report.end,
        account_id=scope.id if scope.kind is ScopeKind.ACCOUNT else None,
        customer_id=scope.id if scope.kind is ScopeKind.CUSTOMER else None,
    )
    if report.panel:
        balances = {c: v for c, v in balances.items() if c == report.currency}
    others = {(c, report.currency) for c in balances if c != report.currency}
    at = report.end - timedelta(microseconds=1)
    book = await fx.load_book(session, report.organization.id, others, at, report.end)
    total = Decimal(0)
    for currency, amount in balances.items():
        rate = book.find(currency, report.currency, at)
        if rate is not None:
            total += amount * rate
    return reported(total)
