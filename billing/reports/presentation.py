"""How a report shows values: money rounded once, here, and text made safe for spreadsheets.

Money is rounded to the currency's ISO 4217 minor unit, half-to-even, by
:func:`costgraph.kernel.money.round_for_presentation` (the one rounding of money) and only
when a report is rendered; each table also shows its unrounded total (the ledger's 12 places)
so a reader can reconcile the rounded rows. Text that a spreadsheet would take for a formula
(``=``, ``+``, ``-``, ``@`` …) is escaped by the CSV exports' own rule.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from costgraph.billing.exports.formula import escape_formula
from costgraph.billing.pnl_measures import reported
from costgraph.kernel.money import format_decimal, minor_unit, round_for_presentation


def rounded(amount: Decimal, currency: str) -> Decimal:
    return round_for_presentation(amount, currency)


def unrounded(amount: Decimal) -> str:
    """The exact amount as text (12 places): a spreadsheet number would lose digits."""
    return format_decimal(reported(amount))


def shown(amount: Decimal, currency: str) -> str:
    """``1,234.57 USD``: rounded, grouped, with its ISO code."""
    places = minor_unit(currency)
    return f"{rounded(amount, currency):,.{places}f} {currency}"


def number_format(currency: str) -> str:
    """An Excel number format with the currency's minor-unit digits."""
    places = minor_unit(currency)
    return "#,##0" + ("." + "0" * places if places else "")


def safe_text(value: str) -> str:
    """A text cell that no spreadsheet evaluates as a formula."""
    return escape_formula(value)


def percent(value: Decimal | None) -> str:
    return "" if value is None else f"{value.quantize(Decimal('0.01'))} %"


def stamp(value: datetime) -> str:
    """A UTC instant to the second: ``2026-01-31T23:59:59Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
