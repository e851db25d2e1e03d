"""Pooled allowances: one allowance shared by all the accounts and seats of a team.

**Joining a team.** A plan with ``pooled`` set is a team plan (Atelier). The first account of
a customer to subscribe to it opens the *team subscription*, which is the pool: it carries
the team's base fee and its cycle anchor (its start). Every later account of the same
customer subscribing to the same plan while that pool is in force joins it: its own
subscription row names the pool (``account_subscriptions.pool_id``; the team subscription
names itself), has no base fee of its own (fee 0: the team pays it once), pays the seat fee
for its own seats like the team subscription does, and draws on the pool. A customer has at
most one pool per plan at a time; subscriptions of one customer are serialised by a lock
on the customer (:mod:`costgraph.billing.tier_rules`), so two accounts subscribing at once
cannot open two pools.

**Seats and capacity.** Every subscription of the pool has seats (default 1; ``seats`` when
subscribing, ``setSeats`` later): the people the team pays a ``seatFee`` for. Accounts are
where usage lands — a team may put five people on one account or give each their own — so
capacity follows the seats paid for: capacity = the plan's included tokens per seat x the
seats of all the pool's subscriptions in force. A cycle keeps the capacity it opened with
(stored on its counter when its first usage locks it): seats added or removed, or accounts
joining or leaving, change the allowance from the next cycle. That keeps every cycle's count
exactly recomputable from the ledger (``costgraph verify``: min(the cycle's capacity, tokens
of the usage that drew on it)), which a capacity moving under a partly covered entry would
not be.

**Cycles** are the pool's, monthly from the team subscription's start, whatever day a member
joined: a team has one allowance that resets at one time. A member draws only while both its
own subscription and the team subscription are in force; otherwise its usage is charged in
full (as an account without a plan). The account holding the team subscription cannot move
to another plan while other accounts still draw on its pool: they move first.

**Drawing exactly under concurrency.** The pool's counter (``pool_allowance_counters``, one
row per pool and cycle) is locked like an account's (``SELECT … FOR UPDATE``), and every
counter a write touches, pooled or not, is locked in one fixed order (:data:`CounterKey`:
unpooled before pooled, then by holder id and cycle start), so writers in any number of
processes serialise on the pool and never deadlock; each draws at most what is left.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

#: Whose counter: (pooled, the account or the pool, the cycle's start). Tuples order the
#: locks: unpooled counters (by account) before pooled ones (by pool).
CounterKey = tuple[bool, uuid.UUID, datetime]


@dataclass(frozen=True, slots=True)
class PoolTerm:
    """The team subscription's terms, read when a member draws: ``seats`` are those of all the
    pool's subscriptions in force now."""

    pool_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime | None
    included_per_seat: int
    seats: int

    @property
    def capacity(self) -> int:
        return self.included_per_seat * self.seats

    def in_force(self, at: datetime) -> bool:
        return self.starts_at <= at and (self.ends_at is None or at < self.ends_at)


class Subscribed(Protocol):
    """What choosing an allowance needs of a subscription (a row or a
    :class:`~costgraph.billing.balance_repository.SubscriptionTerm`)."""

    @property
    def account_id(self) -> uuid.UUID: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def included_tokens(self) -> int: ...
    @property
    def pool_id(self) -> uuid.UUID | None: ...


@dataclass(frozen=True, slots=True)
class AllowanceTerm:
    """The allowance a subscription draws on at some time: its own or its team's pool."""

    pooled: bool
    #: The account (unpooled) or the pool (the team subscription's id).
    holder_id: uuid.UUID
    #: Cycles run monthly from here.
    anchor: datetime
    included: int

    def key(self, cycle_start: datetime) -> CounterKey:
        return (self.pooled, self.holder_id, cycle_start)


def allowance_term(
    subscription: Subscribed, pools: Mapping[uuid.UUID, PoolTerm], at: datetime
) -> AllowanceTerm | None:
    """The allowance ``subscription`` (in force at ``at``) draws on then; None: none (its
    pool is not in force).

    A term with ``included`` 0 (no tokens now: the plan has none, or the subscription moved
    to such a plan after usage opened the running cycle) draws only on a cycle that has
    opened already, which keeps the allowance it opened with (billing/allowances.py); it
    opens none."""
    if subscription.pool_id is None:
        return AllowanceTerm(
            False,
            subscription.account_id,
            subscription.starts_at,
            max(0, subscription.included_tokens),
        )
    pool = pools.get(subscription.pool_id)
    if pool is None or not pool.in_force(at):
        return None
    return AllowanceTerm(True, pool.pool_id, pool.starts_at, max(0, pool.capacity))
