"""Where an account stands: its allowance this cycle, its prepaid balance, and the banner.

A member of a team's pool (:mod:`costgraph.billing.pools`) sees the pool's figures: what the
team's seats include and what all its accounts used this cycle."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import balance_repository as repo
from costgraph.billing import top_ups_repository
from costgraph.billing.allowances import Banner, banner, cycle_window
from costgraph.billing.directory import get_many
from costgraph.billing.pools import PoolTerm, allowance_term
from costgraph.kernel.errors import NotFound
from costgraph.models import Account


@dataclass(frozen=True, slots=True)
class AllowanceStatus:
    account_id: uuid.UUID
    currency: str
    plan_code: str | None
    included: int
    used: int
    top_up_balance: Decimal
    postpaid: bool
    cycle_start: datetime | None
    resets_at: datetime | None
    #: Drawn from the team's pool (shared by its accounts): the figures are the pool's.
    pooled: bool = False
    #: The seats the allowance is for (a pool's: its team subscription's).
    seats: int = 1
    #: Auto-top-up is on (billing/top_ups.py): the banner does not prompt BUY_MORE.
    auto_top_up: bool = False

    @property
    def remaining(self) -> int:
        return max(0, self.included - self.used)

    @property
    def banner(self) -> Banner:
        if self.included == 0:
            # No plan allowance: a prepaid account with nothing left is exhausted.
            exhausted = not self.postpaid and self.top_up_balance <= 0
            return Banner.EXHAUSTED if exhausted else Banner.NONE
        return banner(self.used, self.included, self.auto_top_up)


async def allowance_status(
    session: AsyncSession, account_id: uuid.UUID, now: datetime
) -> AllowanceStatus:
    status = await _allowance_status(session, account_id, now)
    if await top_ups_repository.enabled_for(session, account_id):
        return replace(status, auto_top_up=True)
    return status


async def _allowance_status(
    session: AsyncSession, account_id: uuid.UUID, now: datetime
) -> AllowanceStatus:
    account = (await get_many(session, Account, [account_id])).get(account_id)
    if account is None:
        raise NotFound("account", account_id, "accountId")
    balance = (await repo.balances(session, [account_id])).get(account_id, Decimal(0))
    current = repo.in_force((await repo.subscriptions_of(session, [account_id]))[account_id], now)
    if current is None:
        return AllowanceStatus(
            account_id, account.currency, None, 0, 0, balance, account.postpaid, None, None
        )
    pools: dict[uuid.UUID, PoolTerm] = {}
    if current.pool_id is not None:
        pools = await repo.pool_terms(session, account.organization_id, [current.pool_id], now)
    term = allowance_term(current, pools, now)
    counter = None
    if term is not None:
        start, end = cycle_window(term.anchor, now)
        # The cycle's allowance is the one it opened with, once opened (billing/allowances.py).
        counter = await repo.allowance_used(session, term.holder_id, start, pooled=term.pooled)
    if term is None or (counter is None and term.included == 0):
        # Nothing included (and no cycle opened with an allowance), or the pool is over.
        return AllowanceStatus(
            account_id,
            account.currency,
            current.plan_code,
            0,
            0,
            balance,
            account.postpaid,
            None,
            None,
            pooled=current.pool_id is not None,
            seats=current.seats,
        )
    used, included = counter or (0, term.included)
    return AllowanceStatus(
        account_id,
        account.currency,
        current.plan_code,
        included,
        used,
        balance,
        account.postpaid,
        start,
        end,
        pooled=term.pooled,
        seats=pools[term.holder_id].seats if term.pooled else current.seats,
    )
