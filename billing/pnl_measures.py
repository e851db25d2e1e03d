"""What P&L counts, in one place: each measure's SQL over one ledger entry, and the figures
derived from the sums (DESIGN.md, "Revenue, cost and margin").

Per entry (``e`` the entry, ``a`` its account):

- **usage** is a ``USAGE_CHARGE`` or a usage correction: an ``ADJUSTMENT`` that points at the
  entry it corrects (``related_entry_id``; what reprice writes). Its ``ai_cost`` is AI cost,
  its ``amount`` billed usage; billed usage of a postpaid account is also revenue.
- ``SUBSCRIPTION_PAYMENT`` and ``DEPOSIT`` (top-ups) are revenue; ``REFUND`` and
  ``WITHDRAWAL`` (money handed back) reduce it; ``PLATFORM_FEE`` is a cost of the business.
- An ``ADJUSTMENT`` without a related entry is a manual correction of a balance: neither
  revenue nor cost, reported on its own (``balance_adjustments``).

Derived: revenue = subscriptions + top-ups + postpaid usage - refunds - withdrawals;
markup earned = billed usage - AI cost; margin = revenue - AI cost - platform fees;
margin % = margin / revenue x 100 (none when revenue is 0).
Sums are exact; a figure is rounded once, to the ledger's 12 places, when it is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from costgraph.billing.cost_formula import EXACT
from costgraph.kernel.money import QUANTUM

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)
PERCENT_QUANTUM = Decimal("0.0001")

USAGE_SQL = (
    "(e.type = 'USAGE_CHARGE' OR (e.type = 'ADJUSTMENT' AND e.related_entry_id IS NOT NULL))"
)

#: Count measures: (name, SQL per entry). Summed, never converted.
COUNTS: tuple[tuple[str, str], ...] = (
    ("entries", "1"),
    ("events", "CASE WHEN e.type = 'USAGE_CHARGE' THEN 1 ELSE 0 END"),
    ("input_tokens", "e.input_tokens"),
    ("output_tokens", "e.output_tokens"),
    ("cached_input_tokens", "e.cached_input_tokens"),
    ("cache_write_tokens", "e.cache_write_tokens"),
    ("reasoning_tokens", "e.reasoning_tokens"),
)
#: Money measures in the entry's currency: (name, SQL per entry). Summed, then converted.
MONEY: tuple[tuple[str, str], ...] = (
    ("ai_cost", f"CASE WHEN {USAGE_SQL} THEN e.ai_cost ELSE 0 END"),
    ("billed_usage", f"CASE WHEN {USAGE_SQL} THEN e.amount ELSE 0 END"),
    ("postpaid_usage", f"CASE WHEN {USAGE_SQL} AND a.postpaid THEN e.amount ELSE 0 END"),
    ("subscriptions", "CASE WHEN e.type = 'SUBSCRIPTION_PAYMENT' THEN e.amount ELSE 0 END"),
    ("top_ups", "CASE WHEN e.type = 'DEPOSIT' THEN e.amount ELSE 0 END"),
    ("refunds", "CASE WHEN e.type = 'REFUND' THEN e.amount ELSE 0 END"),
    ("withdrawals", "CASE WHEN e.type = 'WITHDRAWAL' THEN e.amount ELSE 0 END"),
    ("platform_fees", "CASE WHEN e.type = 'PLATFORM_FEE' THEN e.amount ELSE 0 END"),
    (
        "balance_adjustments",
        "CASE WHEN e.type = 'ADJUSTMENT' AND e.related_entry_id IS NULL THEN e.amount ELSE 0 END",
    ),
)
MEASURES: tuple[tuple[str, str], ...] = COUNTS + MONEY
MEASURE_NAMES: tuple[str, ...] = tuple(name for name, _ in MEASURES)


def reported(value: Decimal) -> Decimal:
    """An exact sum as it is reported: the ledger's 12 places, half-to-even."""
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT)


@dataclass(slots=True)
class Totals:
    """Sums of the measures over some entries, money in one currency (exact, unrounded)."""

    entries: int = 0
    events: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    ai_cost: Decimal = ZERO
    billed_usage: Decimal = ZERO
    postpaid_usage: Decimal = ZERO
    subscriptions: Decimal = ZERO
    top_ups: Decimal = ZERO
    refunds: Decimal = ZERO
    withdrawals: Decimal = ZERO
    platform_fees: Decimal = ZERO
    balance_adjustments: Decimal = ZERO
    last_at: datetime | None = None

    @classmethod
    def of_row(cls, values: Sequence[Any], rate: Decimal = ONE) -> Totals:
        """From SQL sums in :data:`MEASURE_NAMES` order, then ``max(last_at)``."""
        totals = cls()
        totals.add_row(values, rate)
        return totals

    def add_row(self, values: Sequence[Any], rate: Decimal = ONE) -> None:
        counts = len(COUNTS)
        for index, (name, _) in enumerate(COUNTS):
            setattr(self, name, getattr(self, name) + int(values[index] or 0))
        for index, (name, _) in enumerate(MONEY, counts):
            amount = Decimal(values[index] or 0)
            if rate != ONE:
                amount = EXACT.multiply(amount, rate)
            setattr(self, name, EXACT.add(getattr(self, name), amount))
        self._seen(values[len(MEASURES)])

    def add(self, other: Totals) -> None:
        for name, _ in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name, _ in MONEY:
            setattr(self, name, EXACT.add(getattr(self, name), getattr(other, name)))
        self._seen(other.last_at)

    def _seen(self, at: datetime | None) -> None:
        if at is not None and (self.last_at is None or at > self.last_at):
            self.last_at = at

    # --- derived figures (exact) ---

    @property
    def tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cached_input_tokens
            + self.cache_write_tokens
            + self.reasoning_tokens
        )

    @property
    def revenue(self) -> Decimal:
        received = self.subscriptions + self.top_ups + self.postpaid_usage
        return EXACT.subtract(EXACT.subtract(received, self.refunds), self.withdrawals)

    @property
    def markup(self) -> Decimal:
        return EXACT.subtract(self.billed_usage, self.ai_cost)

    @property
    def margin(self) -> Decimal:
        return EXACT.subtract(EXACT.subtract(self.revenue, self.ai_cost), self.platform_fees)

    @property
    def net_impact(self) -> Decimal:
        """What this slice's activity earned: billed usage - AI cost - fees, plus the revenue
        that is not usage (payments carry no model, agent or user, so for those slices it is
        the markup earned less fees)."""
        other_revenue = EXACT.subtract(self.revenue, self.postpaid_usage)
        return EXACT.add(EXACT.subtract(self.markup, self.platform_fees), other_revenue)

    @property
    def margin_percent(self) -> Decimal | None:
        revenue = self.revenue
        if revenue == 0:
            return None
        ratio = EXACT.divide(EXACT.multiply(self.margin, HUNDRED), revenue)
        return ratio.quantize(PERCENT_QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT)

    def has_usage(self) -> bool:
        return self.events != 0 or self.ai_cost != 0 or self.billed_usage != 0 or self.tokens != 0


@dataclass(frozen=True, slots=True)
class Figures:
    """Totals as reported: money rounded once to 12 places, in ``currency``."""

    currency: str
    revenue: Decimal
    subscriptions: Decimal
    top_ups: Decimal
    postpaid_usage: Decimal
    refunds: Decimal
    withdrawals: Decimal
    ai_cost: Decimal
    billed_usage: Decimal
    markup: Decimal
    platform_fees: Decimal
    balance_adjustments: Decimal
    margin: Decimal
    margin_percent: Decimal | None
    net_impact: Decimal
    events: int
    entries: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    tokens: int
    last_at: datetime | None

    @classmethod
    def of(cls, totals: Totals, currency: str) -> Figures:
        return cls(
            currency=currency,
            revenue=reported(totals.revenue),
            subscriptions=reported(totals.subscriptions),
            top_ups=reported(totals.top_ups),
            postpaid_usage=reported(totals.postpaid_usage),
            refunds=reported(totals.refunds),
            withdrawals=reported(totals.withdrawals),
            ai_cost=reported(totals.ai_cost),
            billed_usage=reported(totals.billed_usage),
            markup=reported(totals.markup),
            platform_fees=reported(totals.platform_fees),
            balance_adjustments=reported(totals.balance_adjustments),
            margin=reported(totals.margin),
            margin_percent=totals.margin_percent,
            net_impact=reported(totals.net_impact),
            events=totals.events,
            entries=totals.entries,
            input_tokens=totals.input_tokens,
            output_tokens=totals.output_tokens,
            cached_input_tokens=totals.cached_input_tokens,
            cache_write_tokens=totals.cache_write_tokens,
            reasoning_tokens=totals.reasoning_tokens,
            tokens=totals.tokens,
            last_at=totals.last_at,
        )


assert [f.name for f in fields(Totals)][: len(MEASURES)] == list(MEASURE_NAMES)
