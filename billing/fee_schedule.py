"""The arithmetic of subscription fees: cycles, monthly pieces, proration and recognition.

Pure functions (no I/O): the biller (:mod:`costgraph.billing.subscription_billing`) and
``costgraph verify`` use the same ones.

- **Cycles** are anchored at the subscription's start: cycle ``k`` of a monthly subscription
  is ``[anchor + k months, anchor + k+1 months)``, of an annual one ``[anchor + 12k months,
  anchor + 12(k+1) months)``; a day past the end of a shorter month is its last day (a
  subscription from 31 January renews on 28/29 February, 31 March, 30 April, ...), always
  counted from the anchor, never from the previous cycle (so 31 March follows 28 February).
- **Pieces** are the monthly cycles inside a billing cycle (one for monthly billing, twelve
  for annual): the unit in which revenue is recognised.
- **Time left** in a cycle, for proration, is counted in pieces: the whole pieces after the
  instant plus the part of the current piece left (exact, to the microsecond). For monthly
  billing that is simply the part of the month left; for annual billing it is the months
  left, so a credit is exactly what the unearned months of the fee were (a twelfth each).
- **Rounding**: an amount billed or credited is rounded once, to the currency's minor unit,
  half-to-even (:func:`costgraph.kernel.money.round_for_presentation`, the one rounding of
  money). An amount spread over pieces (recognition) is split in proportion to each piece's
  weight, each share rounded the same way, the last piece taking what is left: the shares
  always add up to the amount exactly.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from costgraph.kernel.money import round_for_presentation

MONTHS_PER_CYCLE = {"MONTHLY": 1, "ANNUAL": 12}


def add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` plus ``months`` calendar months (the day clamped to the month's last)."""
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


@dataclass(frozen=True, slots=True)
class Cycle:
    """Billing cycle ``index`` of a subscription: ``[start, end)``."""

    index: int
    start: datetime
    end: datetime
    #: Its pieces (monthly cycles), in order; their first index among all monthly cycles.
    first_month: int
    months: int
    anchor: datetime

    def pieces(self) -> list[tuple[datetime, datetime]]:
        return [
            (add_months(self.anchor, m), add_months(self.anchor, m + 1))
            for m in range(self.first_month, self.first_month + self.months)
        ]


def cycle(anchor: datetime, billing: str, index: int) -> Cycle:
    months = MONTHS_PER_CYCLE[billing]
    first = index * months
    return Cycle(
        index,
        add_months(anchor, first),
        add_months(anchor, first + months),
        first,
        months,
        anchor,
    )


def cycle_at(anchor: datetime, billing: str, at: datetime) -> Cycle:
    """The cycle holding ``at`` (not before ``anchor``)."""
    if at < anchor:
        raise ValueError("the subscription had not started")
    months = MONTHS_PER_CYCLE[billing]
    elapsed = (at.year - anchor.year) * 12 + at.month - anchor.month
    index = max(0, elapsed // months)
    found = cycle(anchor, billing, index)
    while found.start > at:
        found = cycle(anchor, billing, found.index - 1)
    while found.end <= at:
        found = cycle(anchor, billing, found.index + 1)
    return found


def due_cycles(
    anchor: datetime, billing: str, now: datetime, ends_at: datetime | None
) -> list[Cycle]:
    """Every cycle started by ``now`` and before ``ends_at`` (a cancellation's period end)."""
    if now < anchor:
        return []
    last = cycle_at(anchor, billing, now).index
    found = [cycle(anchor, billing, i) for i in range(last + 1)]
    return [c for c in found if ends_at is None or c.start < ends_at]


def piece_weights(cycle: Cycle, service_start: datetime) -> list[Fraction]:
    """Per piece, the part of it ``[service_start, cycle end)`` covers (0 to 1, exact)."""
    weights = []
    for start, end in cycle.pieces():
        if service_start <= start:
            weights.append(Fraction(1))
        elif service_start >= end:
            weights.append(Fraction(0))
        else:
            weights.append(Fraction(_micros(end - service_start), _micros(end - start)))
    return weights


def time_left(cycle: Cycle, at: datetime) -> Fraction:
    """The part of the cycle left at ``at``, counted in pieces (see the module's docstring)."""
    return sum(piece_weights(cycle, at), Fraction(0)) / cycle.months


def prorate(amount: Decimal, part: Fraction, currency: str) -> Decimal:
    """``amount`` x ``part``, rounded to the currency's minor unit (half-to-even)."""
    exact = Fraction(amount) * part
    return round_for_presentation(Decimal(exact.numerator) / Decimal(exact.denominator), currency)


def spread(amount: Decimal, weights: list[Fraction], currency: str) -> list[Decimal]:
    """``amount`` split over the pieces in proportion to ``weights``; the last piece with a
    weight takes the remainder, so the shares add up to ``amount`` exactly."""
    total = sum(weights, Fraction(0))
    shares = [Decimal(0)] * len(weights)
    if total == 0:
        return shares
    last = max(i for i, w in enumerate(weights) if w)
    given = Decimal(0)
    for i, weight in enumerate(weights):
        if not weight:
            continue
        if i == last:
            shares[i] = amount - given
        else:
            shares[i] = prorate(amount, weight / total, currency)
            given += shares[i]
    return shares


@dataclass(frozen=True, slots=True)
class Charge:
    """A fee (``sign`` 1) or credit (``sign`` -1) of one cycle, serving from ``service_start``."""

    amount: Decimal
    sign: int
    service_start: datetime


def earned_per_piece(cycle: Cycle, charges: list[Charge], currency: str) -> list[Decimal]:
    """What each piece of the cycle earns: every fee's share minus every credit's."""
    earned = [Decimal(0)] * cycle.months
    for charge in charges:
        shares = spread(charge.amount, piece_weights(cycle, charge.service_start), currency)
        for i, share in enumerate(shares):
            earned[i] += charge.sign * share
    return earned


def recognition_time(piece: tuple[datetime, datetime], charges: list[Charge]) -> datetime:
    """When a piece's earnings are recognised: its start, or the latest change inside it (a
    proration written mid-piece is recognised when written)."""
    start, end = piece
    inside = [c.service_start for c in charges if start < c.service_start < end]
    return max([start, *inside])


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
