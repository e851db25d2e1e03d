"""Which channels hear of an alert: the organisation's, and those of every scope above it.

A channel with no scope hears every alert of the organisation. A scoped channel hears the
alerts of budgets on that scope and below it: a DEPARTMENT channel those of the department's
budgets and of its users' budgets; a CUSTOMER channel those of the customer and its accounts;
an ACCOUNT or USER channel its own. A channel tied to a budget hears only that budget's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.alerts.records import AlertRecord
from costgraph.billing.directory import get_many
from costgraph.billing.scopes import ScopeKind
from costgraph.models import Account, User
from costgraph.models.alerts import NotificationChannel

ScopeKey = tuple[str, uuid.UUID]


async def ancestry(
    session: AsyncSession, organization_id: uuid.UUID, alerts: Sequence[AlertRecord]
) -> dict[uuid.UUID, set[ScopeKey]]:
    """Per alert, the scopes it lies in (its own and every one above it)."""
    users = await get_many(
        session, User, {a.scope_id for a in alerts if a.scope_kind == ScopeKind.USER}
    )
    accounts = await get_many(
        session, Account, {a.scope_id for a in alerts if a.scope_kind == ScopeKind.ACCOUNT}
    )
    found: dict[uuid.UUID, set[ScopeKey]] = {}
    for alert in alerts:
        scopes: set[ScopeKey] = {
            (ScopeKind.ORGANIZATION.value, organization_id),
            (alert.scope_kind, alert.scope_id),
        }
        user = users.get(alert.scope_id) if alert.scope_kind == ScopeKind.USER else None
        if user is not None and user.department_id is not None:
            scopes.add((ScopeKind.DEPARTMENT.value, user.department_id))
        account = accounts.get(alert.scope_id) if alert.scope_kind == ScopeKind.ACCOUNT else None
        if account is not None:
            scopes.add((ScopeKind.CUSTOMER.value, account.customer_id))
        found[alert.id] = scopes
    return found


def hears(channel: NotificationChannel, alert: AlertRecord, scopes: set[ScopeKey]) -> bool:
    if channel.budget_id is not None and channel.budget_id != alert.budget_id:
        return False
    if channel.scope_kind is None or channel.scope_id is None:
        return True
    return (channel.scope_kind, channel.scope_id) in scopes


async def route(
    session: AsyncSession,
    organization_id: uuid.UUID,
    alerts: Sequence[AlertRecord],
    channels: Sequence[NotificationChannel],
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(alert id, channel id) for every channel that hears each alert."""
    if not alerts or not channels:
        return []
    if all(c.scope_kind is None for c in channels):
        scopes: dict[uuid.UUID, set[ScopeKey]] = {a.id: set() for a in alerts}
    else:
        scopes = await ancestry(session, organization_id, alerts)
    return [
        (alert.id, channel.id)
        for alert in alerts
        for channel in channels
        if hears(channel, alert, scopes[alert.id])
    ]
