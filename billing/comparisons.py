"""Period comparisons: a figure over a range against the same figure over ``compareTo``.

Every change is ``current - previous`` (absolute) and ``(current - previous) / |previous| x
100`` to 4 places (relative, in percent: positive when the figure grew, whatever the sign of
the base); the relative change is None when the base is 0. Both periods are read with the
same scope, filters and currency, each converted entry-time-exact on its own
(:mod:`costgraph.billing.pnl_conversion`); a currency without a rate is left out of the period
in which it has none, and the pairs of either period are named together.

Series (a timeline, bucketed usage) are aligned by bucket offset: the ``i``-th bucket of the
range against the ``i``-th bucket of ``compareTo``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TypeVar

from costgraph.billing.cost_formula import EXACT
from costgraph.billing.fx import CurrencyPair
from costgraph.billing.pnl_measures import HUNDRED, PERCENT_QUANTUM, Figures
from costgraph.billing.pnl_ranges import ReportLimits, TimeBucket, buckets, require_range

#: Money figures of a P&L compared one by one (names of :class:`Figures`).
MONEY_FIGURES = ("revenue", "ai_cost", "billed_usage", "platform_fees", "margin", "markup")
#: Count figures compared one by one.
COUNT_FIGURES = ("events", "tokens")


def relative(current: Decimal, previous: Decimal) -> Decimal | None:
    """(current - previous) / |previous| x 100, 4 places half-to-even; None on a 0 base."""
    if previous == 0:
        return None
    ratio = EXACT.divide(EXACT.multiply(EXACT.subtract(current, previous), HUNDRED), abs(previous))
    return ratio.quantize(PERCENT_QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT)


@dataclass(frozen=True, slots=True)
class Change:
    """A money (or any exact) figure in both periods."""

    current: Decimal
    previous: Decimal
    absolute: Decimal
    relative: Decimal | None

    @classmethod
    def of(cls, current: Decimal, previous: Decimal) -> Change:
        return cls(
            current, previous, EXACT.subtract(current, previous), relative(current, previous)
        )


@dataclass(frozen=True, slots=True)
class CountChange:
    current: int
    previous: int
    absolute: int
    relative: Decimal | None

    @classmethod
    def of(cls, current: int, previous: int) -> CountChange:
        return cls(
            current, previous, current - previous, relative(Decimal(current), Decimal(previous))
        )


@dataclass(frozen=True, slots=True)
class OptionalChange:
    """A figure that may be undefined in a period (a ratio over zero heads, a margin % over
    zero revenue): the changes are None unless both periods have it."""

    current: Decimal | None
    previous: Decimal | None
    absolute: Decimal | None
    relative: Decimal | None

    @classmethod
    def of(cls, current: Decimal | None, previous: Decimal | None) -> OptionalChange:
        if current is None or previous is None:
            return cls(current, previous, None, None)
        return cls(
            current, previous, EXACT.subtract(current, previous), relative(current, previous)
        )


@dataclass(frozen=True, slots=True)
class FiguresChange:
    """Two periods' figures (same currency) and the change of each compared figure."""

    current: Figures
    previous: Figures
    money: dict[str, Change]
    counts: dict[str, CountChange]
    margin_percent: OptionalChange

    @classmethod
    def of(cls, current: Figures, previous: Figures) -> FiguresChange:
        return cls(
            current,
            previous,
            {n: Change.of(getattr(current, n), getattr(previous, n)) for n in MONEY_FIGURES},
            {n: CountChange.of(getattr(current, n), getattr(previous, n)) for n in COUNT_FIGURES},
            OptionalChange.of(current.margin_percent, previous.margin_percent),
        )


def require_compare_range(
    start: datetime, end: datetime, limits: ReportLimits, field: str = "compareTo"
) -> tuple[datetime, datetime]:
    return require_range(start, end, limits, field)


def union_missing(*groups: Iterable[CurrencyPair]) -> tuple[CurrencyPair, ...]:
    return tuple(sorted({pair for group in groups for pair in group}))


def bucket_offsets(start: datetime, end: datetime, bucket: TimeBucket) -> dict[datetime, int]:
    """Each bucket's start (as grouped, unclipped) -> its offset in the range."""
    return {lower: index for index, (lower, _) in enumerate(buckets(start, end, bucket))}


_Item = TypeVar("_Item")


def pair_by_offset(
    current: list[_Item], previous: list[_Item]
) -> list[tuple[_Item | None, _Item | None]]:
    """Two series side by side by position; the shorter padded with None."""
    length = max(len(current), len(previous))
    return [
        (
            current[i] if i < len(current) else None,
            previous[i] if i < len(previous) else None,
        )
        for i in range(length)
    ]


def figures_by_currency(panels: Iterable[Figures]) -> dict[str, Figures]:
    return {f.currency: f for f in panels}
