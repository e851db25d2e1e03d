"""Segments of payers for the users and customers views and the KPIs: new vs returning
payers, and balance bands whose thresholds the caller chooses.

- A **customer pays** in a range when its money received there (subscriptions, top-ups,
  postpaid billed overage) is above zero; a **user pays** when usage charged beyond the
  allowances is attributed to them (users pay through their accounts: the ``ATTRIBUTED``
  reading of revenue, :mod:`costgraph.billing.pnl_measures`).
- A payer is **NEW** when they paid in the range and nothing before its start, **RETURNING**
  when they paid in the range and before it. Who did not pay in the range is in neither.
- **Balance**: a customer's is the sum of its accounts' prepaid balances now; a user's the
  sum of the balances of the accounts their usage was charged to (the accounts they spend
  through; an account several users spend through counts for each, and says so). Summed in
  the view's currency at the rate in force now; a balance with an account currency without
  a rate is unknown (None), as is a user's who spent through no account.
- A **balance band** is ``[atLeast, below)``, either bound optional; a payer whose balance is
  unknown is in no band.
"""

from __future__ import annotations

import enum
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import fx
from costgraph.billing import segments_repository as repo
from costgraph.billing.cost_formula import EXACT
from costgraph.billing.ledger_repository import driver_connection
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import ValidationFailed
from costgraph.models import Account, AccountBalance
from costgraph.models.oauth import OAuthClient


class PayerSegment(enum.StrEnum):
    NEW = "NEW"
    RETURNING = "RETURNING"


@dataclass(frozen=True, slots=True)
class Segment:
    """A filter: payers of one kind, and/or a balance band ``[at_least, below)``."""

    payers: PayerSegment | None = None
    balance_at_least: Decimal | None = None
    balance_below: Decimal | None = None

    def __post_init__(self) -> None:
        low, high = self.balance_at_least, self.balance_below
        if low is not None and high is not None and high <= low:
            raise ValidationFailed(
                "balanceBelow must be above balanceAtLeast", "segment.balanceBelow"
            )

    @property
    def banded(self) -> bool:
        return self.balance_at_least is not None or self.balance_below is not None

    def admits(self, payer: PayerSegment | None, balance: Decimal | None) -> bool:
        if self.payers is not None and payer is not self.payers:
            return False
        if not self.banded:
            return True
        if balance is None:
            return False
        if self.balance_at_least is not None and balance < self.balance_at_least:
            return False
        return self.balance_below is None or balance < self.balance_below


def payer_segment(paid_now: bool, paid_before: bool) -> PayerSegment | None:
    if not paid_now:
        return None
    return PayerSegment.RETURNING if paid_before else PayerSegment.NEW


@dataclass(frozen=True, slots=True)
class AccountBalanceRow:
    account_id: uuid.UUID
    currency: str
    amount: Decimal
    #: Other users spend through this account too.
    shared: bool = False


async def account_balances(
    session: AsyncSession,
) -> dict[uuid.UUID, tuple[uuid.UUID, str, Decimal]]:
    """Every account of the tenant: ``id -> (customer id, currency, balance now)``."""
    found = await session.execute(
        select(Account.id, Account.customer_id, Account.currency, AccountBalance.balance).outerjoin(
            AccountBalance,
            (AccountBalance.organization_id == Account.organization_id)
            & (AccountBalance.account_id == Account.id),
        )
    )
    return {
        ident: (customer, currency.strip(), balance or Decimal(0))
        for ident, customer, currency, balance in found.all()
    }


async def user_accounts(
    session: AsyncSession, organization_id: uuid.UUID
) -> dict[uuid.UUID, set[uuid.UUID]]:
    """The accounts each user's entries were charged to (every entry, any time)."""
    connection = await driver_connection(session)
    result: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for user, account in await repo.user_accounts(connection, organization_id):
        result[user].add(account)
    return result


class Converter:
    """Sums of balances in one currency at the rates in force now."""

    def __init__(self, book: fx.RateBook, target: str) -> None:
        self.book, self.target, self.at = book, target, utcnow()

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        organization_id: uuid.UUID,
        currencies: Iterable[str],
        target: str,
    ) -> Converter:
        at = utcnow()
        pairs = {(c, target) for c in currencies if c != target}
        book = await fx.load_book(session, organization_id, pairs, at, at)
        converter = cls(book, target)
        converter.at = at
        return converter

    def total(self, amounts: Iterable[tuple[str, Decimal]]) -> Decimal | None:
        """The sum in the target currency; None when a currency has no rate now."""
        total = Decimal(0)
        for currency, amount in amounts:
            rate = self.book.find(currency, self.target, self.at)
            if rate is None:
                return None
            total = EXACT.add(total, EXACT.multiply(amount, rate))
        return total


@dataclass(frozen=True, slots=True)
class IntegrationAccess:
    clients: int
    active_clients: int

    @property
    def active(self) -> bool:
        return self.active_clients > 0


NO_ACCESS = IntegrationAccess(0, 0)


async def integration_access(session: AsyncSession) -> dict[uuid.UUID, IntegrationAccess]:
    """Per user with integration clients: how many, and how many are not revoked."""
    found = await session.execute(
        select(
            OAuthClient.user_id,
            func.count(),
            func.count().filter(OAuthClient.revoked_at.is_(None)),
        )
        .where(OAuthClient.user_id.is_not(None))
        .group_by(OAuthClient.user_id)
    )
    return {
        user: IntegrationAccess(total, active)
        for user, total, active in found.all()
        if user is not None
    }
