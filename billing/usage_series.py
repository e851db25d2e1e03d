"""Usage sums in one currency and basis, for forecasts and usage patterns.

A scope's usage may sit in several currencies (its accounts' own). Each bucket's sum in a
currency is converted at the rate in force at the bucket's start (a local midnight or hour):
close to, but not exactly, converting every entry at its own instant, which is what P&L does.
Forecasts and patterns are estimates; P&L is the exact figure. A missing rate is
``RATE_MISSING``, never a silent 1.0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import fx
from costgraph.billing.budgets import Basis
from costgraph.billing.cost_formula import convert
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.billing.usage_series_repository import BucketSum
from costgraph.models import Account


async def default_currency(session: AsyncSession, org: OrgContext, scope: Scope) -> str:
    """An account's own currency; the organisation's reporting currency for anything wider."""
    if scope.kind is ScopeKind.ACCOUNT:
        found = await get_many(session, Account, [scope.id])
        account = found.get(scope.id)
        if account is not None:
            return account.currency
    return org.reporting_currency


class Converter:
    """Converts amounts of several currencies into one, at dated rates loaded once."""

    def __init__(self, target: str, book: fx.RateBook) -> None:
        self.target = target
        self._book = book
        self.converted_from: set[str] = set()

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        org: OrgContext,
        target: str,
        currencies: set[str],
        instants: Sequence[datetime],
    ) -> Converter:
        others = {c for c in currencies if c != target}
        if not others or not instants:
            return cls(target, fx.RateBook())
        book = await fx.load_book(
            session, org.id, {(c, target) for c in others}, min(instants), max(instants)
        )
        return cls(target, book)

    def __call__(self, amount: Decimal, currency: str, at: datetime) -> Decimal:
        if currency == self.target:
            return amount
        self.converted_from.add(currency)
        return convert(amount, self._book.rate_at(currency, self.target, at))

    @property
    def note(self) -> str | None:
        if not self.converted_from:
            return None
        return (
            f"usage in {', '.join(sorted(self.converted_from))} converted to {self.target} at "
            "the rate in force at the start of each bucket"
        )


async def converter_for(
    session: AsyncSession, org: OrgContext, target: str, sums: Sequence[BucketSum]
) -> Converter:
    return await Converter.load(
        session, org, target, {s.currency for s in sums}, [s.bucket for s in sums]
    )


def amount_of(row: BucketSum, basis: Basis) -> Decimal:
    return row.billed if basis is Basis.BILLED_USAGE else row.ai_cost


def series(
    sums: Sequence[BucketSum], basis: Basis, converter: Converter
) -> tuple[dict[datetime, Decimal], dict[datetime, int]]:
    """Spend (in the converter's currency) and requests per bucket."""
    spend: dict[datetime, Decimal] = defaultdict(Decimal)
    requests: dict[datetime, int] = defaultdict(int)
    for row in sums:
        spend[row.bucket] += converter(amount_of(row, basis), row.currency, row.bucket)
        requests[row.bucket] += row.requests
    return dict(spend), dict(requests)
