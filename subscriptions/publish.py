"""What a committed write publishes on the bus. These functions never raise.

The domain knows nothing of the bus: it emits typed events on its unit of work, and after
the commit :class:`costgraph.subscriptions.announcer.BusAnnouncer` maps them to these calls.
A failure here is logged; the committed write is not affected.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol, TypeVar

from costgraph.billing.entries import Entry
from costgraph.models.ledger import EntryType
from costgraph.subscriptions.channels import (
    accounts_channel,
    alerts_channel,
    budgets_channel,
    usage_channel,
)
from costgraph.subscriptions.events import (
    AccountNotice,
    AlertNotice,
    BudgetNotice,
    UsageDelta,
    UsageNotice,
    encode_account,
    encode_alert,
    encode_budget,
    encode_usage,
)

logger = logging.getLogger("costgraph.bus")

T = TypeVar("T")

#: Deltas per message; a write touching more attributions is published in several.
MAX_DELTAS = 200


class Publisher(Protocol):
    def listening(self, channel: str) -> bool:
        """Whether a notice for ``channel`` may reach anyone: one nobody can hear is not
        built (:meth:`costgraph.subscriptions.bus.Bus.listening`)."""
        ...

    def publish(self, channel: str, message: str) -> bool: ...


def _group_key(entry: Entry) -> tuple[object, ...]:
    when = entry.occurred_at.astimezone(UTC)
    return (
        entry.account_id,
        entry.customer_id,
        entry.department_id,
        entry.user_id,
        entry.currency,
        when.year,
        when.month,
    )


def usage_deltas(entries: Iterable[Entry]) -> list[UsageDelta]:
    """New usage charges (replays excluded) summed per attribution, in first-seen order."""
    groups: dict[tuple[object, ...], list[Entry]] = {}
    for entry in entries:
        if entry.replayed or entry.type is not EntryType.USAGE_CHARGE:
            continue
        groups.setdefault(_group_key(entry), []).append(entry)
    return [_delta(group) for group in groups.values()]


def _delta(group: Sequence[Entry]) -> UsageDelta:
    last = max(group, key=lambda e: e.occurred_at)
    return UsageDelta(
        entry_id=group[-1].id,
        account_id=last.account_id,
        customer_id=last.customer_id,
        department_id=last.department_id,
        user_id=last.user_id,
        currency=last.currency,
        entries=len(group),
        input_tokens=sum(e.input_tokens for e in group),
        output_tokens=sum(e.output_tokens for e in group),
        cached_input_tokens=sum(e.cached_input_tokens for e in group),
        cache_write_tokens=sum(e.cache_write_tokens for e in group),
        reasoning_tokens=sum(e.reasoning_tokens for e in group),
        ai_cost=sum((e.ai_cost for e in group), Decimal(0)),
        billed=sum((e.amount for e in group), Decimal(0)),
        occurred_at=last.occurred_at,
    )


def _chunks(items: Sequence[T]) -> Iterator[tuple[T, ...]]:
    """``items`` in notices of at most :data:`MAX_DELTAS` each."""
    for start in range(0, len(items), MAX_DELTAS):
        yield tuple(items[start : start + MAX_DELTAS])


def usage_recorded(bus: Publisher, entries: Sequence[Entry]) -> None:
    """Announce committed usage entries to their organisation's subscribers."""
    try:
        by_org: dict[object, list[Entry]] = {}
        for entry in entries:
            by_org.setdefault(entry.organization_id, []).append(entry)
        now = datetime.now(UTC)
        for org_entries in by_org.values():
            org_id = org_entries[0].organization_id
            channel = usage_channel(org_id)
            if not bus.listening(channel):
                continue
            deltas = usage_deltas(org_entries)
            for chunk in _chunks(deltas):
                notice = UsageNotice(organization_id=org_id, published_at=now, deltas=chunk)
                bus.publish(channel, encode_usage(notice))
    except Exception:  # a notification must never fail a committed write
        logger.exception("could not publish usage notices")


def accounts_changed(
    bus: Publisher, organization_id: uuid.UUID, account_ids: Iterable[uuid.UUID]
) -> None:
    """Announce accounts whose balance or allowance a committed write changed (no usage)."""
    try:
        channel = accounts_channel(organization_id)
        if not bus.listening(channel):
            return
        now = datetime.now(UTC)
        for ids in _chunks(tuple(dict.fromkeys(account_ids))):
            notice = AccountNotice(
                organization_id=organization_id, published_at=now, account_ids=ids
            )
            bus.publish(channel, encode_account(notice))
    except Exception:  # a notification must never fail a committed write
        logger.exception("could not publish account notices")


def alert_raised(bus: Publisher, notice: AlertNotice) -> None:
    """Announce an alert to its organisation's subscribers (for the alerts module)."""
    try:
        channel = alerts_channel(notice.organization_id)
        if bus.listening(channel):
            bus.publish(channel, encode_alert(notice))
    except Exception:  # a notification must never fail a committed write
        logger.exception("could not publish an alert notice")


def budgets_changed(
    bus: Publisher, organization_id: uuid.UUID, budget_ids: Iterable[uuid.UUID]
) -> None:
    """Announce budgets whose terms or holds a committed write changed (one notice per write:
    subscribers re-read each budget once however many of its holds moved)."""
    try:
        channel = budgets_channel(organization_id)
        if not bus.listening(channel):
            return
        now = datetime.now(UTC)
        for ids in _chunks(tuple(dict.fromkeys(budget_ids))):
            notice = BudgetNotice(organization_id=organization_id, published_at=now, budget_ids=ids)
            bus.publish(channel, encode_budget(notice))
    except Exception:  # a notification must never fail a committed write
        logger.exception("could not publish budget notices")
