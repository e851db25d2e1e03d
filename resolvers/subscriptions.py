"""Subscription fields. Each checks its arguments before the stream starts (an unknown or
another tenant's scope is ``NOT_FOUND``, exactly as in queries), then maps a feed.

Per-event database work opens its own session (``context.reading()`` makes a new one each
time): the websocket's context lives as long as the connection and is shared by its
operations, so nothing connection-long may hold a session.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import datetime

import strawberry

from costgraph.auth.permissions import Right
from costgraph.billing import budgets
from costgraph.billing.allowance_status import AllowanceStatus, allowance_status
from costgraph.billing.budgets import require_scope
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.kernel.clock import utcnow
from costgraph.resolvers.access import needs, reads_account
from costgraph.resolvers.budgets import decode_scope
from costgraph.resolvers.ids import decode_id
from costgraph.schema.allowances import Allowance
from costgraph.schema.budgets import BudgetStatus
from costgraph.schema.context import Context
from costgraph.schema.scopes import BudgetScopeInput
from costgraph.schema.subscriptions import Alert, UsageUpdate
from costgraph.schema.types import Info
from costgraph.subscriptions import feeds
from costgraph.subscriptions.totals import UsageTotals, period_totals


def _totals_reader(context: Context) -> feeds.ReadTotals:
    async def read(scope: Scope, period: tuple[datetime, datetime]) -> list[UsageTotals]:
        async with context.reading() as session:
            return await period_totals(session, scope, period)

    return read


async def _usage_updates(context: Context, scope: Scope) -> AsyncGenerator[UsageUpdate, None]:
    org = await context.org()
    feed = feeds.usage_feed(context.app.bus, org.id, scope, _totals_reader(context))
    async for update in feed:
        yield UsageUpdate.of(update)


async def _alerts(context: Context) -> AsyncGenerator[Alert, None]:
    org = await context.org()
    async for notice in feeds.alert_feed(context.app.bus, org.id):
        yield Alert.of(notice)


def _allowance_reader(
    context: Context, account_id: uuid.UUID
) -> Callable[[], Awaitable[AllowanceStatus]]:
    async def read() -> AllowanceStatus:
        async with context.reading() as session:
            return await allowance_status(session, account_id, utcnow())

    return read


def _budget_reader(
    context: Context, budget_id: uuid.UUID
) -> Callable[[], Awaitable[budgets.BudgetStatus]]:
    async def read() -> budgets.BudgetStatus:
        async with context.reading() as session:
            return await budgets.status(session, budget_id, utcnow(), context.app.limits.zone)

    return read


async def _allowances(context: Context, account_id: uuid.UUID) -> AsyncGenerator[Allowance, None]:
    org = await context.org()
    read = _allowance_reader(context, account_id)
    async for status in feeds.allowance_feed(context.app.bus, org.id, account_id, read):
        yield Allowance.of(status)


async def _budget_statuses(
    context: Context, budget_id: uuid.UUID, scope: Scope
) -> AsyncGenerator[BudgetStatus, None]:
    org = await context.org()
    read = _budget_reader(context, budget_id)
    async for status in feeds.budget_feed(context.app.bus, org.id, scope, read, budget_id):
        yield BudgetStatus.of(status)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Live consumption of a scope (default: the organisation): a SNAPSHOT of "
        "this month's totals, then an update whenever usage is recorded there.",
        extensions=[needs(Right.READ_USAGE)],
    )
    async def usage_updates(  # a coroutine returning the stream
        self, info: Info, scope: BudgetScopeInput | None = None
    ) -> AsyncGenerator[UsageUpdate, None]:
        context = info.context
        org = await context.org()
        wanted = (
            Scope(ScopeKind.ORGANIZATION, org.id)
            if scope is None
            else decode_scope(scope, org.id, "scope")
        )
        async with context.reading() as session:
            await require_scope(session, org, wanted, "scope.id")
        return _usage_updates(context, wanted)

    @strawberry.subscription(
        description="Alerts of the caller's organisation as they are raised.",
        extensions=[needs(Right.READ_USAGE)],
    )
    async def alert_raised(self, info: Info) -> AsyncGenerator[Alert, None]:
        await info.context.org()
        return _alerts(info.context)

    @strawberry.subscription(
        description="An account's allowance and prepaid balance: the current one, then again "
        "whenever usage is recorded on the account or money moves on it (top-ups, refunds, "
        "adjustments, fees). A member follows its own account's.",
        extensions=[reads_account()],
    )
    async def allowance_changed(
        self, info: Info, account_id: strawberry.ID
    ) -> AsyncGenerator[Allowance, None]:
        context = info.context
        ident = decode_id(account_id, "account", "accountId")
        await _allowance_reader(context, ident)()  # NOT_FOUND: unknown or another tenant's
        return _allowances(context, ident)

    @strawberry.subscription(
        description="A budget's status: the current one, then again whenever usage is "
        "recorded in the budget's scope, the budget is set, or holds on it are reserved or "
        "released.",
        extensions=[needs(Right.READ_USAGE)],
    )
    async def budget_status_changed(
        self, info: Info, budget_id: strawberry.ID
    ) -> AsyncGenerator[BudgetStatus, None]:
        context = info.context
        ident = decode_id(budget_id, "budget", "budgetId")
        status = await _budget_reader(context, ident)()  # NOT_FOUND: unknown or another's
        scope = Scope(ScopeKind(status.budget.scope_kind), status.budget.scope_id)
        return _budget_statuses(context, ident, scope)
