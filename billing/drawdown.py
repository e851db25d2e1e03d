"""Who pays for a usage entry: the plan's allowance, then the prepaid balance, then credit.

The allowance counters of the accounts involved are locked first; only then are replays
told apart from new events, so two writers of the same event cannot both draw on the
allowance. The balance is charged after the insert, for what was actually written, with a
floor of zero on prepaid accounts (see :func:`costgraph.billing.ledger._append`).

An account on a pooled plan draws on its team's pool instead of an allowance of its own
(:mod:`costgraph.billing.pools`): the pool's counter is locked the same way, in one fixed
order with the rest.

Only a cycle still running is drawn on: usage dated in a cycle that is over (it arrived late,
or was backfilled) is charged in full, so a late event never spends a past month's unused
allowance. Usage that costs nothing draws nothing: there is no cost to cover
(:func:`~costgraph.billing.allowances.allocate`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import balance_repository as repo
from costgraph.billing import events
from costgraph.billing.allowances import allocate, cycle_window
from costgraph.billing.entries import Entry
from costgraph.billing.pools import CounterKey, allowance_term
from costgraph.kernel.clock import utcnow
from costgraph.kernel.unit_of_work import emit


@dataclass(frozen=True, slots=True)
class Cycle:
    """One allowance counter a write draws on: an account's own, or its team's pool."""

    key: CounterKey
    start: datetime
    end: datetime
    included: int
    used: int


@dataclass(slots=True)
class Cycles:
    """The counters a write locked, and which one each (account, occurred_at) draws on."""

    by_key: dict[CounterKey, Cycle] = field(default_factory=dict)
    placed: dict[tuple[uuid.UUID, datetime], CounterKey] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def key_of(self, entry: Entry) -> CounterKey | None:
        if entry.account_id is None:
            return None
        return self.placed.get((entry.account_id, entry.occurred_at))


def tokens_of(entry: Entry) -> int:
    """The budgeted tokens the entry consumes of an allowance (weighed when it was built,
    billing/weights.py; an entry without them counts its tokens)."""
    if entry.budgeted_tokens is not None:
        return entry.budgeted_tokens
    return (
        entry.input_tokens
        + entry.output_tokens
        + entry.cached_input_tokens
        + entry.reasoning_tokens
    )


async def lock_cycles(
    session: AsyncSession,
    organization_id: uuid.UUID,
    entries: Sequence[Entry],
    subscriptions: Mapping[uuid.UUID, Sequence[repo.SubscriptionTerm]] | None = None,
    *,
    now: datetime | None = None,
) -> Cycles:
    """Lock the allowance counter of every cycle the entries draw on — the account's own, or
    its team's pool (:mod:`costgraph.billing.pools`) — except cycles that are over by ``now``
    (default: the business clock): usage dated in a past cycle — late, or backfilled — never
    draws on that cycle's unused tokens (nor on the current cycle's); it is charged in full.

    ``subscriptions``: the accounts' subscriptions when the caller has read them already
    (in this transaction); else they are read here.
    """
    now = now or utcnow()
    if subscriptions is None:
        accounts = {e.account_id for e in entries if e.account_id is not None}
        subscriptions = await repo.subscription_terms(session, organization_id, accounts)
    pool_ids = {t.pool_id for terms in subscriptions.values() for t in terms if t.pool_id}
    pools = await repo.pool_terms(session, organization_id, pool_ids, now) if pool_ids else {}
    cycles = Cycles()
    wanted: dict[CounterKey, tuple[datetime, int]] = {}
    for entry in entries:
        if entry.account_id is None:
            continue
        current = repo.in_force(subscriptions.get(entry.account_id, []), entry.occurred_at)
        term = None if current is None else allowance_term(current, pools, entry.occurred_at)
        if term is None:
            continue
        start, end = cycle_window(term.anchor, entry.occurred_at)
        if end <= now:
            continue
        key = term.key(start)
        wanted[key] = (end, term.included)
        cycles.placed[(entry.account_id, entry.occurred_at)] = key
    for key in sorted(wanted):  # a fixed order: writers cannot deadlock
        pooled, holder, start = key
        end, included = wanted[key]
        # A cycle keeps the allowance (a pool: the capacity) it opened with.
        counter = await repo.lock_allowance(
            session, organization_id, holder, (start, end), included, pooled=pooled
        )
        if counter is not None:  # None: no tokens now, and the cycle never opened
            used, included = counter
            cycles.by_key[key] = Cycle(key, start, end, included, used)
    cycles.placed = {at: key for at, key in cycles.placed.items() if key in cycles.by_key}
    return cycles


def draw(entries: Sequence[Entry], cycles: Cycles) -> tuple[list[Entry], dict[CounterKey, int]]:
    """Cover entries from their cycle's allowance in order; the rest is charged to the balance.

    Returns the entries with their ``balance_delta`` and the tokens drawn per counter.
    """
    groups: dict[CounterKey | None, list[int]] = defaultdict(list)
    for index, entry in enumerate(entries):
        groups[cycles.key_of(entry)].append(index)
    charged = list(entries)
    drawn: dict[CounterKey, int] = {}
    for key, indexes in groups.items():
        cycle = None if key is None else cycles.by_key[key]
        available = 0 if cycle is None else cycle.included - cycle.used
        draws = allocate(available, [(tokens_of(entries[i]), entries[i].amount) for i in indexes])
        for index, result in zip(indexes, draws, strict=True):
            charged[index] = replace(entries[index], balance_delta=-result.balance_charge)
        if key is not None:
            drawn[key] = sum(result.covered_tokens for result in draws)
    return charged, drawn


async def apply_draws(session: AsyncSession, drawn: dict[CounterKey, int]) -> None:
    for (pooled, holder, start), tokens in sorted(drawn.items()):
        if tokens:
            await repo.draw_allowance(session, holder, start, tokens, pooled=pooled)


async def tell_pool_members(
    session: AsyncSession,
    organization_id: uuid.UUID,
    drawn: Mapping[CounterKey, int],
    drawers: set[uuid.UUID],
    now: datetime,
) -> None:
    """A pool drawn on changed the allowance of every account sharing it: tell the members
    other than ``drawers`` (whose usage notice tells them already), after commit like any
    allowance change (``allowanceChanged``)."""
    pools = {holder for (pooled, holder, _), tokens in drawn.items() if pooled and tokens}
    if not pools:
        return
    members = await repo.pool_accounts(session, organization_id, pools, now)
    others = tuple(a for a in members if a not in drawers)
    if others:
        emit(session, events.AllowanceChanged(organization_id, others))
