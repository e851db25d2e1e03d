"""Token allowances: usage draws on the plan's allowance first, then on the prepaid balance,
then — for postpaid accounts only — on credit. Prepaid usage with nothing left to draw on is
``ALLOWANCE_EXHAUSTED`` and writes nothing.

Allowance cycles are monthly, anchored at the subscription's start (the 31st becomes the
last day of shorter months); annual billing pays for twelve such cycles at once.

A call that costs nothing draws nothing (:func:`allocate`): allowances cover cost.

**A cycle keeps the allowance it opened with.** A cycle opens when its first usage locks its
counter (``allowance_counters``, or a team's ``pool_allowance_counters``), which records the
included tokens then. A plan change (``changePlan``) or seats changed later in the cycle
apply from the next cycle; before the cycle's first usage they apply at once. Drawing, the
allowance status and ``costgraph verify`` all read the counter's own size, so a cycle's
count stays exactly recomputable from the ledger — min(the counter's included tokens, the
budgeted tokens that drew on it) — which a size moving under a partly covered entry would
not be.
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

    **An event that costs nothing draws nothing.** The allowance covers cost: a call billed
    0 needs no cover, and drawing tokens for it would only shrink what covers the paid calls.
    It also keeps the ledger self-describing: an entry drew iff it was not charged in full
    (``balance_delta > -amount``), which ``costgraph verify`` reads back — an entry of 0 is
    charged in full (0), so a draw for it could not be told from the ledger. "Nothing" is at
    the stored scale (12 places): what the ledger will hold.
    """
    draws: list[Draw] = []
    left = max(0, available_tokens)
    for tokens, billed in usages:
        covered = 0 if quantize_stored(billed) <= 0 else min(tokens, left)
        left -= covered
        draws.append(Draw(covered, balance_charge(billed, tokens, tokens - covered)))
    return draws


def balance_charge(billed: Decimal, tokens: int, uncovered: int) -> Decimal:
    """What the balance pays of ``billed`` usage of ``tokens`` budgeted tokens, ``uncovered``
    of which the allowance did not cover: the share of the uncovered tokens (in full when the
    usage consumes no budgeted tokens). One rule for ingestion (:func:`allocate`) and for a
    reprice's correction (billing/correction_charge.py)."""
    return quantize_stored(billed if tokens == 0 else billed * uncovered / tokens)


def banner(used: int, included: int, auto_top_up: bool = False) -> Banner:
    if included <= 0:
        return Banner.NONE
    if used >= included:
        return Banner.EXHAUSTED
    if not auto_top_up and Decimal(used) * 100 >= BUY_MORE_AT * included:
        return Banner.BUY_MORE
    return Banner.NONE
