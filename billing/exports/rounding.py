"""Money in an export: rounded to the currency's ISO 4217 minor unit, half-to-even, only here
(the ledger keeps 12 places); the reconciliation rows show the exact sums beside the rounded."""

from __future__ import annotations

from decimal import Decimal

from costgraph.billing.cost_formula import EXACT
from costgraph.kernel.money import round_for_presentation

ZERO = Decimal(0)


def round_money(value: Decimal, currency: str) -> Decimal:
    """To ``currency``'s minor unit (USD 2, JPY 0, BHD 3), half-to-even."""
    return round_for_presentation(value, currency)


def exact_sum(left: Decimal, right: Decimal) -> Decimal:
    """Addition without the default context's 28-digit limit."""
    return EXACT.add(left, right)
