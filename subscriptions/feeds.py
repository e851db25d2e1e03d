"""The live feeds behind the Subscription fields, free of GraphQL.

``usage_feed`` first yields a snapshot of the scope's totals for the current period (calendar
month, UTC), then one update per burst of matching events: it takes everything waiting in its
inbox at once and re-reads the totals once, so a thousand events in quick succession make a
handful of updates, never a backlog (coalesced totals). Feeds of the same scope in one process
share their reads (:mod:`costgraph.subscriptions.coalesced_reads`): one totals read per scope
per burst, however many subscriptions watch it. Every notice's organisation is checked
against the subscriber's before anything is read: another tenant's event is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from costgraph.billing.scopes import Scope
from costgraph.subscriptions.bus import Bus
from costgraph.subscriptions.channels import (
    accounts_channel,
    alerts_channel,
    budgets_channel,
    usage_channel,
)
from costgraph.subscriptions.coalesced_reads import CoalescedReads
from costgraph.subscriptions.events import (
    AccountNotice,
    AlertNotice,
    BudgetNotice,
    MalformedNotice,
    UsageDelta,
    decode_account,
    decode_alert,
    decode_budget,
    decode_usage,
)
from costgraph.subscriptions.inbox import Inbox, InboxClosed
from costgraph.subscriptions.signals import BusItem, BusSignal
from costgraph.subscriptions.stats import ThrottledLog
from costgraph.subscriptions.totals import UsageTotals, current_period

logger = logging.getLogger("costgraph.feeds")
_log = ThrottledLog(logger)

Period = tuple[datetime, datetime]
ReadTotals = Callable[[Scope, Period], Awaitable[list[UsageTotals]]]

#: The process's totals reads, keyed by (organisation, scope, period).
TOTALS_READS: CoalescedReads[list[UsageTotals]] = CoalescedReads()


class UpdateKind(enum.StrEnum):
    #: The totals when the subscription started.
    SNAPSHOT = "SNAPSHOT"
    #: One or more events changed the totals.
    EVENT = "EVENT"
    #: Live updates are interrupted (the broker is unreachable); the totals are the last known.
    INTERRUPTED = "INTERRUPTED"
    #: Updates flow again after an interruption or a gap; the totals were re-read.
    RESUMED = "RESUMED"


@dataclass(frozen=True, slots=True)
class UsageChange:
    delta: UsageDelta
    published_at: datetime


@dataclass(frozen=True, slots=True)
class UsageUpdate:
    kind: UpdateKind
    scope: Scope
    period: Period
    totals: tuple[UsageTotals, ...]
    #: The newest event this update includes (None for snapshots and resumptions).
    change: UsageChange | None
    #: Ledger entries included since the previous update.
    entries: int


def _matching(
    item: str, organization_id: uuid.UUID, scope: Scope, period: Period
) -> list[UsageChange]:
    try:
        notice = decode_usage(item)
    except MalformedNotice as exc:
        _log.warning("malformed", "dropped a malformed usage notice: %s", exc)
        return []
    if notice.organization_id != organization_id:
        _log.warning("tenant", "dropped a usage notice of another organisation")
        return []
    start, end = period
    return [
        UsageChange(delta, notice.published_at)
        for delta in notice.deltas
        if delta.touches(scope, organization_id) and start <= delta.occurred_at < end
    ]


async def usage_feed(
    bus: Bus, organization_id: uuid.UUID, scope: Scope, read_totals: ReadTotals
) -> AsyncIterator[UsageUpdate]:
    async def read(period: Period) -> tuple[UsageTotals, ...]:
        rows = await TOTALS_READS.read(
            (organization_id, scope, period), lambda: read_totals(scope, period)
        )
        return tuple(rows)

    async with bus.subscribe(usage_channel(organization_id), coalesce=True) as inbox:
        period = current_period()
        totals = await read(period)
        yield UsageUpdate(UpdateKind.SNAPSHOT, scope, period, totals, None, 0)

        async def update(kind: UpdateKind, changes: list[UsageChange]) -> UsageUpdate:
            nonlocal totals
            if kind is not UpdateKind.INTERRUPTED:
                totals = await read(period)
            entries = sum(c.delta.entries for c in changes)
            newest = max(changes, key=lambda c: c.delta.occurred_at) if changes else None
            return UsageUpdate(kind, scope, period, totals, newest, entries)

        while True:
            try:
                items: list[BusItem] = await inbox.drain()
            except InboxClosed:
                return
            period = current_period()
            pending: list[UsageChange] = []
            for item in items:
                if isinstance(item, BusSignal):
                    if pending:
                        yield await update(UpdateKind.EVENT, pending)
                        pending = []
                    kind = (
                        UpdateKind.INTERRUPTED
                        if item is BusSignal.INTERRUPTED
                        else UpdateKind.RESUMED
                    )
                    yield await update(kind, [])
                    continue
                pending.extend(_matching(item, organization_id, scope, period))
            if pending:
                yield await update(UpdateKind.EVENT, pending)


async def alert_feed(bus: Bus, organization_id: uuid.UUID) -> AsyncIterator[AlertNotice]:
    """Alerts of the organisation as they are raised. A reader that falls behind by more than
    the bus queue gets ``SlowConsumer`` (alerts are not coalesced: each one matters)."""
    async with bus.subscribe(alerts_channel(organization_id)) as inbox:
        while True:
            try:
                items = await inbox.drain()
            except InboxClosed:
                return
            for item in items:
                if isinstance(item, BusSignal):
                    continue  # alerts are kept by the alerts module; `alerts` lists missed ones
                try:
                    notice = decode_alert(item)
                except MalformedNotice as exc:
                    _log.warning("malformed", "dropped a malformed alert notice: %s", exc)
                    continue
                if notice.organization_id != organization_id:
                    _log.warning("tenant", "dropped an alert notice of another organisation")
                    continue
                yield notice


# --- state feeds: the current state, then again whenever it may have changed ---

T = TypeVar("T")
#: Whether one message of a channel may have changed the watched state.
Matters = Callable[[str], bool]


async def _drain_any(inboxes: Sequence[Inbox[BusItem]]) -> list[list[BusItem]]:
    """What every inbox holds, once at least one holds something (``InboxClosed`` when one
    is closed: the bus is shutting down)."""
    while True:
        if any(len(inbox) or inbox.closed for inbox in inboxes):
            return [await inbox.drain() if len(inbox) or inbox.closed else [] for inbox in inboxes]
        waits = [asyncio.ensure_future(inbox.ready()) for inbox in inboxes]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)


async def state_feed(
    bus: Bus, channels: Sequence[tuple[str, Matters]], read: Callable[[], Awaitable[T]]
) -> AsyncIterator[T]:
    """``read()`` once at the start, then once per burst of messages of which at least one
    matters (and after a gap or a resumption, when something may have been missed). An
    interruption yields nothing: the state is the last one sent until the bus resumes."""
    async with contextlib.AsyncExitStack() as stack:
        inboxes = [
            await stack.enter_async_context(bus.subscribe(channel, coalesce=True))
            for channel, _ in channels
        ]
        yield await read()
        while True:
            try:
                batches = await _drain_any(inboxes)
            except InboxClosed:
                return
            changed = False
            for (_, matters), items in zip(channels, batches, strict=True):
                for item in items:
                    if isinstance(item, BusSignal):
                        changed = changed or item is not BusSignal.INTERRUPTED
                    elif not changed and matters(item):
                        changed = True
            if changed:
                yield await read()


def _usage_matters(organization_id: uuid.UUID, touches: Callable[[UsageDelta], bool]) -> Matters:
    def matters(item: str) -> bool:
        try:
            notice = decode_usage(item)
        except MalformedNotice as exc:
            _log.warning("malformed", "dropped a malformed usage notice: %s", exc)
            return False
        if notice.organization_id != organization_id:
            _log.warning("tenant", "dropped a usage notice of another organisation")
            return False
        return any(touches(delta) for delta in notice.deltas)

    return matters


N = TypeVar("N", AccountNotice, BudgetNotice)


def _names(
    organization_id: uuid.UUID,
    watched_id: uuid.UUID,
    decode: Callable[[str], N],
    ids_of: Callable[[N], tuple[uuid.UUID, ...]],
    kind: str,
) -> Matters:
    """Whether an id-list notice (``kind``: "an account", "a budget") of the organisation
    names ``watched_id``."""

    def matters(item: str) -> bool:
        try:
            notice = decode(item)
        except MalformedNotice as exc:
            _log.warning("malformed", "dropped a malformed %s notice: %s", kind.split()[1], exc)
            return False
        if notice.organization_id != organization_id:
            _log.warning("tenant", "dropped %s notice of another organisation", kind)
            return False
        return watched_id in ids_of(notice)

    return matters


def allowance_feed(
    bus: Bus, organization_id: uuid.UUID, account_id: uuid.UUID, read: Callable[[], Awaitable[T]]
) -> AsyncIterator[T]:
    """An account's allowance: now, then after usage recorded on it (allowance used, prepaid
    drawdown) and after money moved on it (top-ups, refunds, adjustments, fees)."""
    return state_feed(
        bus,
        [
            (
                usage_channel(organization_id),
                _usage_matters(organization_id, lambda d: d.account_id == account_id),
            ),
            (
                accounts_channel(organization_id),
                _names(
                    organization_id,
                    account_id,
                    decode_account,
                    lambda n: n.account_ids,
                    "an account",
                ),
            ),
        ],
        read,
    )


def budget_feed(
    bus: Bus,
    organization_id: uuid.UUID,
    scope: Scope,
    read: Callable[[], Awaitable[T]],
    budget_id: uuid.UUID | None = None,
) -> AsyncIterator[T]:
    """A budget's status: now, then after usage recorded in its scope, and (given its id)
    after its terms were set or holds on it were taken or given back."""
    channels: list[tuple[str, Matters]] = [
        (
            usage_channel(organization_id),
            _usage_matters(organization_id, lambda d: d.touches(scope, organization_id)),
        )
    ]
    if budget_id is not None:
        channels.append(
            (
                budgets_channel(organization_id),
                _names(
                    organization_id, budget_id, decode_budget, lambda n: n.budget_ids, "a budget"
                ),
            )
        )
    return state_feed(bus, channels, read)
