"""A budget's currency must be reachable from the money it counts.

A budget counts the spend of accounts, each in its own currency, in the budget's currency:
each spend is converted at the rate in force when it occurred (:mod:`costgraph.billing.fx`).
``setBudget`` therefore refuses a currency that has no rate path — a direct or inverse rate,
the organisation's own or the platform's, in force now — from every currency the budget would
convert from: the account's own for an ACCOUNT budget; otherwise the currencies of the
scope's accounts (all of the organisation's for ORGANIZATION, DEPARTMENT and USER budgets)
and the organisation's reporting currency (the one new accounts take). The refusal is
``RATE_MISSING`` naming the pair, on ``input.currency``; nothing is written.

A rate missing later (an account in a new currency, a backfilled entry before a pair's first
rate) never refuses usage: the spend the budget cannot convert is left uncounted, the budget
"cannot evaluate" that period, and one RATE_MISSING alert says so (see
:func:`costgraph.billing.budgets.apply_spend`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import budget_repository as repo
from costgraph.billing import fx
from costgraph.billing.directory import OrgContext
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.kernel.clock import format_rfc3339
from costgraph.kernel.errors import RateMissing


async def source_currencies(session: AsyncSession, org: OrgContext, scope: Scope) -> set[str]:
    """The currencies a budget of ``scope`` converts from."""
    found = await repo.scope_account_currencies(session, scope)
    if scope.kind is not ScopeKind.ACCOUNT:
        found.add(org.reporting_currency)
    return found


async def require_rate_path(
    session: AsyncSession,
    org: OrgContext,
    scope: Scope,
    currency: str,
    now: datetime,
    field: str = "input.currency",
) -> None:
    """``RATE_MISSING`` naming the first pair (alphabetically) without a rate in force."""
    sources = sorted(c for c in await source_currencies(session, org, scope) if c != currency)
    if not sources:
        return
    book = await fx.load_book(session, org.id, [(c, currency) for c in sources], now, now)
    for source in sources:
        if book.find(source, currency, now) is None:
            raise RateMissing(source, currency, format_rfc3339(now), field)
