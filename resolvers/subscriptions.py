"""Subscription fields. Each checks its arguments before the stream starts (an unknown or
another tenant's scope is ``NOT_FOUND``, exactly as in queries), then maps a feed.

Per-event database work opens its own session (``context.reading()`` makes a new one each
time): the websocket's context lives as long as the connection and is shared by its
operations, so nothing connection-long may hold a session.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from costgraph.auth.permissions import Right
from costgraph.billing.budgets import require_scope
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.resolvers.access import needs
from costgraph.resolvers.budgets import decode_scope
from costgraph.resolvers.context import Context
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
