"""Usage sums in one currency and basis, for forecasts and usage patterns.

A scope's usage may sit in several currencies (its accounts' own). They are converted by the
one rule of :mod:`costgraph.billing.fx`: each entry at the rate in force at its own instant —
the sums are split at every rate change inside the range, so each part has one rate — the
same figures P&L converts. A currency without a rate for some of its usage in the range is
left out (wholly), named in :attr:`Converter.missing` and in the note: never a silent 1.0,
and never a failure of the whole forecast.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import fx
from costgraph.billing import usage_series_repository as repo
from costgraph.billing.budgets import Basis
from costgraph.billing.cost_formula import convert
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.fx import CurrencyPair
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
    """Converts sums of several currencies into one by the rule of :mod:`fx` (see above)."""

    def __init__(self, plan: fx.RatePlan, parts: Iterable[tuple[str, int]] = ()) -> None:
        self.plan = plan
        self.target = plan.target
        self._rates: dict[tuple[str, int], Decimal] = {}
        #: Currencies left out: some of their usage has no rate to the target.
        self.missing_currencies: set[str] = set()
        for currency, segment in parts:
            if currency == self.target or (currency, segment) in self._rates:
                continue
            rate = plan.rate(currency, segment)
            if rate is None:
                self.missing_currencies.add(currency)
            else:
                self._rates[currency, segment] = rate
        self.converted_from = {c for c, _ in self._rates} - self.missing_currencies

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        org: OrgContext,
        target: str,
        currencies: Iterable[str],
        start: datetime,
        end: datetime,
    ) -> Converter:
        """The rates over ``[start, end)``; sums must be split at :attr:`instants`."""
        return cls(await fx.load_plan(session, org.id, set(currencies), target, start, end))

    @property
    def instants(self) -> tuple[datetime, ...]:
        return self.plan.instants

    def with_parts(self, parts: Iterable[tuple[str, int]]) -> Converter:
        """This converter checked against the sums it will convert."""
        return Converter(self.plan, parts)

    def __call__(self, amount: Decimal, currency: str, segment: int = 0) -> Decimal | None:
        """``amount`` in the target; None when its currency is left out."""
        if currency == self.target:
            return amount
        if currency in self.missing_currencies:
            return None
        return convert(amount, self._rates[currency, segment])

    @property
    def missing(self) -> tuple[CurrencyPair, ...]:
        return tuple(CurrencyPair(c, self.target) for c in sorted(self.missing_currencies))

    @property
    def note(self) -> str | None:
        notes = []
        if self.converted_from:
            notes.append(
                f"usage in {', '.join(sorted(self.converted_from))} converted to {self.target} "
                "at the rate in force at each entry's time"
            )
        if self.missing_currencies:
            notes.append(
                f"usage in {', '.join(sorted(self.missing_currencies))} left out: no rate to "
                f"{self.target} for all of it in the range"
            )
        return "; ".join(notes) or None


async def converted_sums(
    session: AsyncSession,
    org: OrgContext,
    scope: Scope,
    start: datetime,
    end: datetime,
    unit: repo.Unit,
    zone: str,
    target: str,
) -> tuple[list[BucketSum], Converter]:
    """Usage per local ``unit`` and currency, split at the rate changes into ``target`` when
    there are any, with the converter that brings them into ``target``."""
    sums = await repo.bucket_sums(session, org.id, scope, start, end, unit, zone)
    converter = await Converter.load(session, org, target, {s.currency for s in sums}, start, end)
    if converter.instants:
        sums = await repo.bucket_sums(
            session, org.id, scope, start, end, unit, zone, converter.instants
        )
    return sums, converter.with_parts((s.currency, s.segment) for s in sums)


def amount_of(row: BucketSum, basis: Basis) -> Decimal:
    return row.billed if basis is Basis.BILLED_USAGE else row.ai_cost


def series(
    sums: Sequence[BucketSum], basis: Basis, converter: Converter
) -> tuple[dict[datetime, Decimal], dict[datetime, int]]:
    """Spend (in the converter's currency) and requests per bucket; a currency left out adds
    neither (its requests are not in the spend either)."""
    spend: dict[datetime, Decimal] = defaultdict(Decimal)
    requests: dict[datetime, int] = defaultdict(int)
    for row in sums:
        amount = converter(amount_of(row, basis), row.currency, row.segment)
        if amount is None:
            continue
        spend[row.bucket] += amount
        requests[row.bucket] += row.requests
    return dict(spend), dict(requests)
