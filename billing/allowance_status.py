"""Where an account stands: its allowance this cycle, its prepaid balance, and the banner."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import balance_repository as repo
from costgraph.billing.allowances import Banner, banner, cycle_window
from costgraph.billing.directory import get_many
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

    @property
    def remaining(self) -> int:
        return max(0, self.included - self.used)

    @property
    def banner(self) -> Banner:
        if self.included == 0:
            # No plan allowance: a prepaid account with nothing left is exhausted.
            exhausted = not self.postpaid and self.top_up_balance <= 0
            return Banner.EXHAUSTED if exhausted else Banner.NONE
        return banner(self.used, self.included)


async def allowance_status(
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
    start, end = cycle_window(current.starts_at, now)
    used = await repo.allowance_used(session, account_id, start)
    return AllowanceStatus(
        account_id,
        account.currency,
        current.plan_code,
        current.included_tokens,
        used,
        balance,
        account.postpaid,
        start,
        end,
    )
