"""Who pays for a usage entry: the plan's allowance, then the prepaid balance, then credit.

The allowance counters of the accounts involved are locked first; only then are replays
told apart from new events, so two writers of the same event cannot both draw on the
allowance. The balance is charged after the insert, for what was actually written, with a
floor of zero on prepaid accounts (see :func:`costgraph.billing.ledger._append`).

Only a cycle still running is drawn on: usage dated in a cycle that is over (it arrived late,
or was backfilled) is charged in full, so a late event never spends a past month's unused
allowance.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import balance_repository as repo
from costgraph.billing.allowances import allocate, cycle_window
from costgraph.billing.entries import Entry
from costgraph.kernel.clock import utcnow


@dataclass(frozen=True, slots=True)
class Cycle:
    account_id: uuid.UUID
    start: datetime
    end: datetime
    included: int
    used: int


def tokens_of(entry: Entry) -> int:
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
) -> dict[tuple[uuid.UUID, datetime], Cycle]:
    """Lock the allowance counter of every (account, cycle) the entries fall in, except
    cycles that are over by ``now`` (default: the business clock): usage dated in a past
    cycle — late, or backfilled — never draws on that cycle's unused tokens (nor on the
    current cycle's); it is charged in full.

    ``subscriptions``: the accounts' subscriptions when the caller has read them already
    (in this transaction); else they are read here.
    """
    now = now or utcnow()
    if subscriptions is None:
        accounts = {e.account_id for e in entries if e.account_id is not None}
        subscriptions = await repo.subscription_terms(session, organization_id, accounts)
    wanted: dict[tuple[uuid.UUID, datetime], tuple[datetime, datetime, int]] = {}
    for entry in entries:
        if entry.account_id is None:
            continue
        current = repo.in_force(subscriptions.get(entry.account_id, []), entry.occurred_at)
        if current is None or current.included_tokens <= 0:
            continue
        start, end = cycle_window(current.starts_at, entry.occurred_at)
        if end <= now:
            continue
        wanted[(entry.account_id, start)] = (start, end, current.included_tokens)
    cycles: dict[tuple[uuid.UUID, datetime], Cycle] = {}
    for key in sorted(wanted):  # a fixed order: writers cannot deadlock
        start, end, included = wanted[key]
        used = await repo.lock_allowance(session, organization_id, key[0], (start, end), included)
        cycles[key] = Cycle(key[0], start, end, included, used)
    return cycles


def cycle_key(
    entry: Entry, cycles: dict[tuple[uuid.UUID, datetime], Cycle]
) -> tuple[uuid.UUID, datetime] | None:
    for (account_id, start), cycle in cycles.items():
        if account_id == entry.account_id and start <= entry.occurred_at < cycle.end:
            return account_id, start
    return None


def draw(
    entries: Sequence[Entry], cycles: dict[tuple[uuid.UUID, datetime], Cycle]
) -> tuple[list[Entry], dict[tuple[uuid.UUID, datetime], int]]:
    """Cover entries from their cycle's allowance in order; the rest is charged to the balance.

    Returns the entries with their ``balance_delta`` and the tokens drawn per cycle.
    """
    groups: dict[tuple[uuid.UUID, datetime] | None, list[int]] = defaultdict(list)
    for index, entry in enumerate(entries):
        groups[cycle_key(entry, cycles)].append(index)
    charged = list(entries)
    drawn: dict[tuple[uuid.UUID, datetime], int] = {}
    for key, indexes in groups.items():
        available = 0 if key is None else cycles[key].included - cycles[key].used
        draws = allocate(available, [(tokens_of(entries[i]), entries[i].amount) for i in indexes])
        for index, result in zip(indexes, draws, strict=True):
            charged[index] = replace(entries[index], balance_delta=-result.balance_charge)
        if key is not None:
            drawn[key] = sum(result.covered_tokens for result in draws)
    return charged, drawn


async def apply_draws(session: AsyncSession, drawn: dict[tuple[uuid.UUID, datetime], int]) -> None:
    for (account_id, start), tokens in sorted(drawn.items()):
        if tokens:
            await repo.draw_allowance(session, account_id, start, tokens)
