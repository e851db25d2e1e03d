"""Token allowances: usage draws on the plan's allowance first, then on the prepaid balance,
then — for postpaid accounts only — on credit. Prepaid usage with nothing left to draw on is
``ALLOWANCE_EXHAUSTED`` and writes nothing.

Allowance cycles are monthly, anchored at the subscription's start (the 31st becomes the
last day of shorter months); annual billing pays for twelve such cycles at once.
"""

from __future__ import annotations

import calendar
import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from costgraph.kernel.money import quantize_stored

BUY_MORE_AT = Decimal(75)


class Banner(enum.StrEnum):
    NONE = "NONE"
    BUY_MORE = "BUY_MORE"
    EXHAUSTED = "EXHAUSTED"


def _add_months(anchor: datetime, months: int) -> datetime:
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def cycle_window(starts_at: datetime, at: datetime) -> tuple[datetime, datetime]:
    """The monthly cycle ``[start, end)`` holding ``at``, for a subscription from ``starts_at``."""
    if at < starts_at:
        raise ValueError("the subscription had not started")
    months = (at.year - starts_at.year) * 12 + at.month - starts_at.month
    start = _add_months(starts_at, months)
    if start > at:
        months -= 1
        start = _add_months(starts_at, months)
    return start, _add_months(starts_at, months + 1)


@dataclass(frozen=True, slots=True)
class Draw:
    """How one usage entry is paid: tokens from the allowance, money from the balance."""

    covered_tokens: int
    balance_charge: Decimal


def allocate(available_tokens: int, usages: list[tuple[int, Decimal]]) -> list[Draw]:
    """Cover ``(budgeted tokens, billed)`` usages in order from the allowance; the rest is
    money. Tokens here are budgeted tokens: weighed by model, feature and unit kind
    (billing/weights.py), so a heavy step consumes more of the allowance than a light one.

    The billed price of a partly covered event is charged in proportion to its uncovered
    tokens; an event that consumes no budgeted tokens (units without a weight, a weight of 0)
    is charged in full.
    """
    draws: list[Draw] = []
    left = max(0, available_tokens)
    for tokens, billed in usages:
        covered = min(tokens, left)
        left -= covered
        uncovered = billed if tokens == 0 else billed * (tokens - covered) / tokens
        draws.append(Draw(covered, quantize_stored(uncovered)))
    return draws


def banner(used: int, included: int, auto_top_up: bool = False) -> Banner:
    if included <= 0:
        return Banner.NONE
    if used >= included:
        return Banner.EXHAUSTED
    if not auto_top_up and Decimal(used) * 100 >= BUY_MORE_AT * included:
        return Banner.BUY_MORE
    return Banner.NONE
