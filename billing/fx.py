"""Exchange rates: dated per currency pair, used at the instant of each entry.

``1 base = rate quote``, in force from ``effective_from`` until the next rate of the pair.
Rates are only ever added. The platform keeps rates every tenant sees; an organisation may
keep its own, which win for it. Looking up ``base -> quote`` at an instant, per owner (the
organisation first, then the platform): the direct rate, else the inverse of the
``quote -> base`` rate, ``1 / rate`` rounded to 12 places half-to-even (the rounded figure is
the one stored on the entry, so the entry stays reproducible). No triangulation through a
third currency. Nothing found is ``RATE_MISSING`` naming the pair — never a silent 1.0;
a currency to itself is exactly 1.

**The one rule of which rate converts what.** Every amount is converted at the rate in force
at its own entry's ``occurred_at`` (an estimate's, for liability estimates), looked up by
:meth:`RateBook.find` — pricing, budgets, P&L, usage, forecasts, patterns, KPIs, exports and
summaries alike. Views that convert sums rather than single entries split the sums at every
rate change inside their range (:class:`RatePlan`), so each part has one rate in force for
all of its entries: the same figure as converting entry by entry. Which rates: an
organisation's own rates, else the platform's; the platform P&L uses the platform's rates
only, so one platform total never mixes an organisation's own rate with another's.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import fx_repository as repo
from costgraph.billing.catalog import require_effective_date
from costgraph.billing.cost_formula import EXACT
from costgraph.kernel.clock import format_rfc3339, utcnow
from costgraph.kernel.errors import RateMissing, ValidationFailed
from costgraph.kernel.money import QUANTUM, require_currency
from costgraph.models.pricing import ExchangeRate

ONE = Decimal(1)


@dataclass(frozen=True, slots=True, order=True)
class CurrencyPair:
    """``base -> quote``: what converting ``base`` amounts into ``quote`` needs a rate for."""

    base: str
    quote: str

    def __str__(self) -> str:
        return f"{self.base}->{self.quote}"


@dataclass(frozen=True, slots=True)
class Rate:
    id: uuid.UUID
    organization_id: uuid.UUID | None
    base: str
    quote: str
    rate: Decimal
    effective_from: datetime
    created_at: datetime | None = None
    source: str | None = None

    @classmethod
    def of(cls, row: ExchangeRate) -> Rate:
        return cls(
            row.id,
            row.organization_id,
            row.base,
            row.quote,
            row.rate,
            row.effective_from,
            row.created_at,
            row.source,
        )


def inverse(rate: Decimal) -> Decimal:
    return EXACT.divide(ONE, rate).quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT)


@dataclass(slots=True)
class RateBook:
    """The rates one batch needs, by (is the organisation's own, base, quote)."""

    _times: dict[tuple[bool, str, str], list[datetime]] = field(default_factory=dict)
    _rates: dict[tuple[bool, str, str], list[Decimal]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[repo.RateRow]) -> RateBook:
        book = cls()
        for owner, base, quote, effective_from, rate in sorted(rows, key=lambda r: r[3]):
            key = (owner is not None, base, quote)
            book._times.setdefault(key, []).append(effective_from)
            book._rates.setdefault(key, []).append(rate)
        return book

    def _latest(self, key: tuple[bool, str, str], at: datetime) -> Decimal | None:
        times = self._times.get(key)
        if not times:
            return None
        index = bisect.bisect_right(times, at)
        return None if index == 0 else self._rates[key][index - 1]

    def find(self, base: str, quote: str, at: datetime) -> Decimal | None:
        """The rate in force at ``at`` (see the module's docstring), or None."""
        if base == quote:
            return ONE
        for own in (True, False):
            direct = self._latest((own, base, quote), at)
            if direct is not None:
                return direct
            reverse = self._latest((own, quote, base), at)
            if reverse is not None:
                return inverse(reverse)
        return None

    def rate_at(self, base: str, quote: str, at: datetime) -> Decimal:
        """:meth:`find`, a missing rate being ``RATE_MISSING`` naming the pair."""
        rate = self.find(base, quote, at)
        if rate is None:
            raise RateMissing(base, quote, format_rfc3339(at))
        return rate


async def load_book(
    session: AsyncSession,
    organization_id: uuid.UUID,
    pairs: Iterable[tuple[str, str]],
    start: datetime,
    end: datetime,
) -> RateBook:
    wanted = {pair for pair in pairs if pair[0] != pair[1]}
    both_ways = wanted | {(quote, base) for base, quote in wanted}
    return RateBook.of(await repo.rates_between(session, organization_id, both_ways, start, end))


@dataclass(frozen=True, slots=True)
class RatePlan:
    """Rates to bring sums of several currencies into ``target`` over ``[start, end)``.

    ``instants`` are the rate changes strictly inside the range (ascending): sums split at
    them (segment 0 before the first, segment ``i`` from ``instants[i - 1]``) have one rate
    each, the rate in force at every one of their entries' instants.
    """

    target: str
    start: datetime
    end: datetime
    book: RateBook
    instants: tuple[datetime, ...] = ()

    def segment_start(self, segment: int) -> datetime:
        return self.start if segment == 0 else self.instants[segment - 1]

    def rate(self, currency: str, segment: int = 0) -> Decimal | None:
        """The rate of ``currency`` in ``segment`` (None: no rate in force there)."""
        return self.book.find(currency, self.target, self.segment_start(segment))


async def load_plan(
    session: AsyncSession,
    organization_id: uuid.UUID | None,
    currencies: Iterable[str],
    target: str,
    start: datetime,
    end: datetime,
) -> RatePlan:
    """The rates of every ``currency -> target`` pair over the range, in one query
    (``organization_id`` None: the platform's rates only)."""
    others = {c for c in currencies if c != target}
    if not others:
        return RatePlan(target, start, end, RateBook())
    pairs = {(c, target) for c in others} | {(target, c) for c in others}
    rows = await repo.rates_between(session, organization_id, pairs, start, end)
    instants = tuple(sorted({row[3] for row in rows if start < row[3] < end}))
    return RatePlan(target, start, end, RateBook.of(rows), instants)


async def set_exchange_rate(
    session: AsyncSession,
    owner: uuid.UUID | None,
    base: str,
    quote: str,
    rate: Decimal,
    effective_from: datetime,
    actor: str | None = None,
) -> Rate:
    require_currency(base, "input.base")
    require_currency(quote, "input.quote")
    if base == quote:
        raise ValidationFailed("base and quote must differ", "input.quote")
    if not rate.is_finite() or rate <= 0:
        raise ValidationFailed("a rate must be greater than zero", "input.rate")
    start = require_effective_date(effective_from, "input.effectiveFrom")
    row = await repo.insert_rate(
        session,
        ExchangeRate(
            organization_id=owner,
            base=base,
            quote=quote,
            rate=rate,
            effective_from=start,
            created_by=actor,
        ),
    )
    return Rate.of(row)


async def exchange_rates(
    session: AsyncSession, organization_id: uuid.UUID | None, at: datetime | None = None
) -> list[Rate]:
    """Rates in force at ``at`` (default: now), one per pair, the organisation's own winning."""
    chosen: dict[tuple[str, str], Rate] = {}
    rows: Sequence[ExchangeRate] = await repo.rates_at(session, organization_id, at or utcnow())
    for row in rows:  # platform rows sort first; the organisation's own overwrites them
        chosen[(row.base, row.quote)] = Rate.of(row)
    return list(chosen.values())
