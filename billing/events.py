"""What billing writes tell the rest of the system, as typed events of the unit of work.

The domain emits them (:func:`costgraph.kernel.unit_of_work.emit`) where the write happens —
the shared append path of the ledger, budget counters, reservations, plans — so every writer
emits the same events whatever path it took. Hooks read them: alert evaluation before commit
(:class:`BudgetCountersRaised`), the bus publisher and metrics after commit (the rest).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from costgraph.billing.entries import Entry
from costgraph.kernel.unit_of_work import DomainEvent

if TYPE_CHECKING:
    from costgraph.billing.budgets import CounterChange, TermsChange


@dataclass(frozen=True, slots=True)
class UsageRecorded(DomainEvent):
    """New usage charges (never replays) were written."""

    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class BalancesChanged(DomainEvent):
    """Money entries other than usage (top-ups, refunds, adjustments, fees, withdrawals)
    were written on these accounts."""

    organization_id: uuid.UUID
    account_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class NoAutoTopUp(DomainEvent):
    """These accounts' balances were moved under their row lock, which the transaction holds
    until it commits, and their balance rows said no auto-top-up is on (migration 0021): the
    top-up evaluation before commit has nothing to do for them, unless the same unit makes a
    setting (:class:`AutoTopUpSet`). Not announced."""

    organization_id: uuid.UUID
    account_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class AllowanceChanged(DomainEvent):
    """These accounts' plan or included allowance changed."""

    organization_id: uuid.UUID
    account_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class BudgetsChanged(DomainEvent):
    """These budgets' terms, holds or counters changed (other than by usage, which
    :class:`UsageRecorded` already tells). ``terms``: their limits or thresholds changed (each
    process then drops its copy of the organisation's budgets)."""

    organization_id: uuid.UUID
    budget_ids: tuple[uuid.UUID, ...]
    terms: bool = False


@dataclass(frozen=True, slots=True)
class BudgetCountersRaised(DomainEvent):
    """Budget counters the write raised, before and after: what alerts evaluate."""

    changes: tuple[CounterChange, ...]


@dataclass(frozen=True, slots=True)
class BudgetTermsSet(DomainEvent):
    """Budgets created or given new terms, with their current period's spend: what alerts
    evaluate against the new terms (the stages they now reach)."""

    changes: tuple[TermsChange, ...]


@dataclass(frozen=True, slots=True)
class HoldsExpired(DomainEvent):
    """Overdue reservations an authorisation expired on its way (housekeeping)."""

    organization_id: uuid.UUID
    count: int


@dataclass(frozen=True, slots=True)
class AutoTopUpSet(DomainEvent):
    """An account's auto-top-up setting was made or changed: evaluate it before commit."""

    organization_id: uuid.UUID
    account_id: uuid.UUID
