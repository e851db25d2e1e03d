"""What P&L counts, in one place: each measure's SQL over one ledger entry, and the figures
derived from the sums (docs/architecture.md, "Revenue, cost and margin").

Per entry (``e`` the entry, ``a`` its account):

- **usage** is a ``USAGE_CHARGE`` or a usage correction: an ``ADJUSTMENT`` that points at the
  entry it corrects (``related_entry_id``; what reprice writes). Its ``ai_cost`` is AI cost,
  its ``amount`` billed usage, and ``-balance_delta`` what the customer was **charged** for
  it: billed usage beyond the plan's allowance (the part the allowance covered is paid by the
  subscription fee). Charged usage of a postpaid account is revenue (billed overage).
- subscription fees earned (``REVENUE_RECOGNIZED`` - ``REVENUE_REVERSED``: billed fees
  recognised month by month; the billed, unearned rest is deferred revenue, reported beside
  the P&L and never in revenue or margin), ``SUBSCRIPTION_PAYMENT`` of plans CostGraph does
  not bill (a payment settling billed fees is not counted again) and ``DEPOSIT`` (top-ups)
  are revenue; ``SUBSCRIPTION_FEE`` and ``SUBSCRIPTION_CREDIT`` (billed, credited) are
  not; ``REFUND`` (of a payment that was revenue: not of one settling billed fees) and
  ``WITHDRAWAL`` (money handed back) reduce it; ``PLATFORM_FEE`` is a cost of the business.
- An ``ADJUSTMENT`` without a related entry is a manual correction of a balance: neither
  revenue nor cost, reported on its own (``balance_adjustments``).

Revenue has one definition, read on one of two bases (:class:`RevenueBasis`):

- ``RECEIVED``, for payers (the organisation, a customer, an account, the platform): money
  received = subscriptions + top-ups + postpaid billed overage - refunds - withdrawals.
  Prepaid usage was paid by its top-up and is not counted again; usage covered by the
  allowance was paid by the fee.
- ``ATTRIBUTED``, for slices of usage (an agent, a model, a provider, a user, a feature): the
  same money, attributed to the usage that earned it = charged usage (prepaid or postpaid,
  beyond the allowance). Payments carry no agent, model or user; the fee stays with the
  payer, so usage covered by the allowance carries its cost and no revenue in a slice.

Derived: markup earned = billed usage - AI cost; **net impact** = revenue - AI cost -
platform fees (:func:`net_impact`, the one definition: the P&L's ``margin``, a breakdown's
``netImpact``, the timeline's and the CSV's ``net_impact``; liability estimates are reported
beside it, never inside); margin % = margin / |revenue| x 100 (negative on a loss, none when
revenue is 0). Sums are exact; a figure is rounded once, to the ledger's 12 places, when it is
reported.
"""

from __future__ import annotations

import enum
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

#: Subscription revenue: fees earned (recognised month by month) and payments of plans that
#: CostGraph does not bill; a payment settling billed fees (``related_entry_id`` set) is not
#: counted again (billing/subscription_billing.py).
SUBSCRIPTIONS_SQL = (
    "CASE WHEN e.type = 'REVENUE_RECOGNIZED' THEN e.amount"
    " WHEN e.type = 'REVENUE_REVERSED' THEN -e.amount"
    " WHEN e.type = 'SUBSCRIPTION_PAYMENT' AND e.related_entry_id IS NULL THEN e.amount"
    " ELSE 0 END"
)

#: Money handed back against a payment that was revenue: a ``REFUND`` of a deposit or of a
#: subscription payment counted as revenue. The refund of a payment settling billed fees
#: (itself not revenue: the fees earned are) is not revenue either — it gives back cash, and
#: subtracting it would take from revenue what was never in it (a payment of 1000 against a
#: fee of 20, then 980 refunded, would leave a revenue of -960). A fee given up is a credit.
REFUNDS_SQL = (
    "CASE WHEN e.type = 'REFUND' AND NOT EXISTS (SELECT 1 FROM ledger_entries p"
    " WHERE p.organization_id = e.organization_id AND p.id = e.related_entry_id"
    " AND p.type = 'SUBSCRIPTION_PAYMENT' AND p.related_entry_id IS NOT NULL)"
    " THEN e.amount ELSE 0 END"
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
    (
        "postpaid_usage",
        f"CASE WHEN {USAGE_SQL} AND a.postpaid THEN -e.balance_delta ELSE 0 END",
    ),
    ("subscriptions", SUBSCRIPTIONS_SQL),
    ("top_ups", "CASE WHEN e.type = 'DEPOSIT' THEN e.amount ELSE 0 END"),
    ("refunds", REFUNDS_SQL),
    ("withdrawals", "CASE WHEN e.type = 'WITHDRAWAL' THEN e.amount ELSE 0 END"),
    ("platform_fees", "CASE WHEN e.type = 'PLATFORM_FEE' THEN e.amount ELSE 0 END"),
    (
        "balance_adjustments",
        "CASE WHEN e.type = 'ADJUSTMENT' AND e.related_entry_id IS NULL THEN e.amount ELSE 0 END",
    ),
    ("charged_usage", f"CASE WHEN {USAGE_SQL} THEN -e.balance_delta ELSE 0 END"),
)
MEASURES: tuple[tuple[str, str], ...] = COUNTS + MONEY
MEASURE_NAMES: tuple[str, ...] = tuple(name for name, _ in MEASURES)


class RevenueBasis(enum.Enum):
    """Which reading of revenue a set of entries gets (see the module's docstring)."""

    RECEIVED = "received"  # payers: the organisation, a customer, an account, the platform
    ATTRIBUTED = "attributed"  # slices of usage: agent, model, provider, user, feature


def net_impact(revenue: Decimal, ai_cost: Decimal, platform_fees: Decimal) -> Decimal:
    """The one net of the AI P&L: revenue attributed - cost attributed (AI cost and platform
    fees). It is a P&L's ``margin`` and a breakdown's, a timeline bucket's and the CSV's
    ``net_impact``. Liability estimates are reported beside it, never subtracted."""
    return EXACT.subtract(EXACT.subtract(revenue, ai_cost), platform_fees)


def margin_percent(margin: Decimal, revenue: Decimal) -> Decimal | None:
    """margin / |revenue| x 100 to 4 places: negative on a loss whatever the sign of revenue
    (refunds can exceed payments); None when revenue is 0."""
    if revenue == 0:
        return None
    ratio = EXACT.divide(EXACT.multiply(margin, HUNDRED), abs(revenue))
    return ratio.quantize(PERCENT_QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT)


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
    charged_usage: Decimal = ZERO
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
        """Money received (the ``RECEIVED`` basis)."""
        received = self.subscriptions + self.top_ups + self.postpaid_usage
        return EXACT.subtract(EXACT.subtract(received, self.refunds), self.withdrawals)

    @property
    def covered_usage(self) -> Decimal:
        """Billed usage the plans' allowances covered (paid by the subscription fee)."""
        return EXACT.subtract(self.billed_usage, self.charged_usage)

    def usage_revenue(self, basis: RevenueBasis) -> Decimal:
        """The part of revenue that usage brought: postpaid billed overage (``RECEIVED``) or
        all charged usage (``ATTRIBUTED``)."""
        return self.postpaid_usage if basis is RevenueBasis.RECEIVED else self.charged_usage

    def revenue_on(self, basis: RevenueBasis) -> Decimal:
        if basis is RevenueBasis.RECEIVED:
            return self.revenue
        return self.charged_usage

    @property
    def markup(self) -> Decimal:
        return EXACT.subtract(self.billed_usage, self.ai_cost)

    def net_impact(self, basis: RevenueBasis = RevenueBasis.RECEIVED) -> Decimal:
        return net_impact(self.revenue_on(basis), self.ai_cost, self.platform_fees)

    @property
    def margin(self) -> Decimal:
        return self.net_impact(RevenueBasis.RECEIVED)

    def has_usage(self) -> bool:
        return self.events != 0 or self.ai_cost != 0 or self.billed_usage != 0 or self.tokens != 0


@dataclass(frozen=True, slots=True)
class Figures:
    """Totals as reported: money rounded once to 12 places, in ``currency``; revenue (and so
    margin and net impact, which are one figure) on ``basis``."""

    currency: str
    revenue: Decimal
    subscriptions: Decimal
    top_ups: Decimal
    postpaid_usage: Decimal
    #: The part of revenue that usage brought, on ``basis``.
    usage_revenue: Decimal
    #: Billed usage beyond the allowances (charged to a balance or on credit).
    charged_usage: Decimal
    #: Billed usage the plans' allowances covered.
    covered_usage: Decimal
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
    basis: RevenueBasis = RevenueBasis.RECEIVED

    @classmethod
    def of(
        cls, totals: Totals, currency: str, basis: RevenueBasis = RevenueBasis.RECEIVED
    ) -> Figures:
        revenue = totals.revenue_on(basis)
        impact = totals.net_impact(basis)
        return cls(
            currency=currency,
            revenue=reported(revenue),
            subscriptions=reported(totals.subscriptions),
            top_ups=reported(totals.top_ups),
            postpaid_usage=reported(totals.postpaid_usage),
            usage_revenue=reported(totals.usage_revenue(basis)),
            charged_usage=reported(totals.charged_usage),
            covered_usage=reported(totals.covered_usage),
            refunds=reported(totals.refunds),
            withdrawals=reported(totals.withdrawals),
            ai_cost=reported(totals.ai_cost),
            billed_usage=reported(totals.billed_usage),
            markup=reported(totals.markup),
            platform_fees=reported(totals.platform_fees),
            balance_adjustments=reported(totals.balance_adjustments),
            margin=reported(impact),
            margin_percent=margin_percent(impact, revenue),
            net_impact=reported(impact),
            events=totals.events,
            entries=totals.entries,
            input_tokens=totals.input_tokens,
            output_tokens=totals.output_tokens,
            cached_input_tokens=totals.cached_input_tokens,
            cache_write_tokens=totals.cache_write_tokens,
            reasoning_tokens=totals.reasoning_tokens,
            tokens=totals.tokens,
            last_at=totals.last_at,
            basis=basis,
        )


assert [f.name for f in fields(Totals)][: len(MEASURES)] == list(MEASURE_NAMES)
