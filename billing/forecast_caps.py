"""Hard caps that bound a forecast: what they still let through, day by day.

A hard-capped budget refuses spend past its limit (:mod:`costgraph.billing.budgets`), so no
forecast of a scope under it may project more than the cap lets through. The caps that bind a
scope's spend are the hard-capped budgets on the scope itself and on every scope that holds
all of its usage: the organisation, an account's customer, a user's department. Each is taken
on the forecast's own basis and currency (a cap on another basis or in another currency is
left out: its figures are not the forecast's).

For each remaining day of the forecast, a cap's *window* is its period containing that day's
remaining part. The window in force now may still take ``limit - spent`` (spent summed from the
ledger up to now, as the budget's counter counts it; holds aside: held spend settles inside
that room); later windows take a whole ``limit`` each. A
custom window that does not cover a day leaves that day unbounded by it.

:func:`clip` applies the rooms to simulated paths: within each window, a path's running total
is cut at the room (a cut only lowers days, so caps applied one after another all hold).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import budget_repository
from costgraph.billing.budget_ledger import ledger_count
from costgraph.billing.budgets import Basis, period_of
from costgraph.billing.directory import get_many
from costgraph.billing.periods import Period
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.models import Account, User
from costgraph.models.budget import Budget

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Cap:
    """A hard cap on a forecast: its budget, and per remaining day which window and room."""

    budget_id: uuid.UUID
    scope: Scope
    period: Period
    limit: Decimal
    currency: str
    #: What the window in force now still lets through (``limit - spent``, at least 0).
    remaining: Decimal
    window_end: datetime
    #: Per remaining day: its window's index (-1: not bounded by this cap).
    groups: tuple[int, ...]
    #: Per window index: its room.
    rooms: tuple[float, ...]


async def enclosing_scopes(session: AsyncSession, org_id: uuid.UUID, scope: Scope) -> list[Scope]:
    """The scope and those holding all of its usage."""
    found = [scope]
    if scope.kind is not ScopeKind.ORGANIZATION:
        found.append(Scope(ScopeKind.ORGANIZATION, org_id))
    if scope.kind is ScopeKind.ACCOUNT:
        account = (await get_many(session, Account, [scope.id])).get(scope.id)
        if account is not None:
            found.append(Scope(ScopeKind.CUSTOMER, account.customer_id))
    if scope.kind is ScopeKind.USER:
        user = (await get_many(session, User, [scope.id])).get(scope.id)
        if user is not None and user.department_id is not None:
            found.append(Scope(ScopeKind.DEPARTMENT, user.department_id))
    return found


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


async def caps_for(
    session: AsyncSession,
    org_id: uuid.UUID,
    scope: Scope,
    basis: Basis,
    currency: str,
    horizon: Sequence[date],
    now: datetime,
    zone: ZoneInfo,
) -> list[Cap]:
    """The hard caps bounding ``scope``'s spend on the remaining days ``horizon``."""
    scopes = await enclosing_scopes(session, org_id, scope)
    budgets: list[Budget] = [
        b
        for b in await budget_repository.budgets_for_scopes(session, scopes)
        if b.hard_cap and b.basis == basis.value and b.currency == currency
    ]
    caps: list[Cap] = []
    for budget in budgets:
        current = period_of(budget, now, zone)
        spent = Decimal(0)
        if current is not None:
            count = await ledger_count(session, org_id, budget, (current[0], now))
            spent = count.spent
        remaining = max(Decimal(0), budget.limit_amount - spent)
        windows: dict[datetime, int] = {}
        rooms: list[float] = []
        groups: list[int] = []
        for day in horizon:
            at = max(_midnight(day, zone), now)
            span = period_of(budget, at, zone)
            if span is None:
                groups.append(-1)
                continue
            if span[0] not in windows:
                windows[span[0]] = len(rooms)
                in_force = current is not None and span[0] == current[0]
                rooms.append(float(remaining if in_force else budget.limit_amount))
            groups.append(windows[span[0]])
        caps.append(
            Cap(
                budget_id=budget.id,
                scope=Scope(ScopeKind(budget.scope_kind), budget.scope_id),
                period=Period(budget.period),
                limit=budget.limit_amount,
                currency=budget.currency,
                remaining=remaining,
                window_end=now if current is None else current[1],
                groups=tuple(groups),
                rooms=tuple(rooms),
            )
        )
    return caps


def clip(values: Array, cap: Cap) -> Array:
    """Days of spend (shape ``(..., h)``) with each window's running total cut at its room."""
    result = np.array(values, dtype=np.float64, copy=True)
    groups = np.asarray(cap.groups)
    for index, room in enumerate(cap.rooms):
        columns = np.flatnonzero(groups == index)
        if not len(columns):
            continue
        running = np.minimum(np.cumsum(result[..., columns], axis=-1), room)
        result[..., columns] = np.diff(running, axis=-1, prepend=0.0)
    return result


__all__ = ["Cap", "caps_for", "clip", "enclosing_scopes"]
