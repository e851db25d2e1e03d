"""Exact money: decimal parsing, ISO 4217 currencies, and the one place amounts are rounded.

Amounts travel as strings and live as ``Decimal`` in Python and ``NUMERIC(38, 12)`` in the
database. Nothing on the money path is ever a float.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import cache

import iso4217

from costgraph.kernel.errors import ValidationFailed

#: Digits the database keeps: NUMERIC(38, 12) leaves 26 before the point.
SCALE = 12
INTEGER_DIGITS = 26
QUANTUM = Decimal(1).scaleb(-SCALE)
#: Integer digits of a decimal a caller sends (amounts, prices, rates, quantities): below
#: 10^15. Stored sums and conversions of such values keep 11 digits of room in NUMERIC(38, 12)
#: (10^11 largest amounts before a balance could overflow), and a value with its 12 decimals
#: is 27 significant digits, exact in Python's default 28-digit decimal context.
INPUT_INTEGER_DIGITS = 15
LARGEST_INPUT = Decimal(10) ** INPUT_INTEGER_DIGITS
#: Wide enough to quantize anything NUMERIC(38, 12) holds, and more, without InvalidOperation.
_WIDE = Context(prec=80)

_DECIMAL_RE = re.compile(
    rf"^-?(0|[1-9][0-9]{{0,{INPUT_INTEGER_DIGITS - 1}}})(\.[0-9]{{1,{SCALE}}})?$"
)
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def parse_decimal(text: str) -> Decimal:
    """Parse a plain decimal string; exponents, NaN, infinities and excess digits are refused."""
    if not _DECIMAL_RE.fullmatch(text):
        raise ValueError(
            f'{text[:40]!r} is not an exact decimal: write it as a string like "12.34" '
            f"with at most {INPUT_INTEGER_DIGITS} integer digits and {SCALE} decimals"
        )
    return Decimal(text)


def format_decimal(value: Decimal) -> str:
    """Decimal to its string form, fixed-point, never in exponent notation."""
    return format(value, "f")


@cache
def minor_unit(currency: str) -> int:
    """ISO 4217 minor-unit digits (USD 2, JPY 0, BHD 3); funds and metals count as 0."""
    exponent: int | None = iso4217.Currency(currency).exponent
    return exponent or 0


@cache
def is_currency(code: str) -> bool:
    if not _CURRENCY_RE.fullmatch(code):
        return False
    try:
        iso4217.Currency(code)
    except ValueError:
        return False
    return True


def require_currency(code: str, field: str) -> str:
    if not is_currency(code):
        raise ValidationFailed(f"{code[:10]!r} is not an ISO 4217 currency code", field)
    return code


def decimal_places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def require_payment_amount(
    amount: Decimal, currency: str, field: str, *, allow_negative: bool = False
) -> Decimal:
    """A payment-like amount: not zero (positive unless allowed), in the currency's minor unit."""
    if not amount.is_finite():
        raise ValidationFailed("amount must be a finite decimal", field)
    require_input_range(amount, field)
    if amount == 0 or (amount < 0 and not allow_negative):
        raise ValidationFailed(
            "amount must be greater than zero" if not allow_negative else "amount must not be zero",
            field,
        )
    places = minor_unit(currency)
    if decimal_places(amount.normalize()) > places:
        raise ValidationFailed(f"{currency} amounts have at most {places} decimal places", field)
    return amount


def require_input_range(value: Decimal, field: str | None) -> Decimal:
    """A caller's decimal below 10^15 in magnitude (``INPUT_INTEGER_DIGITS``)."""
    if value.is_finite() and abs(value) >= LARGEST_INPUT:
        raise ValidationFailed(
            f"must be less than 10^{INPUT_INTEGER_DIGITS} in magnitude "
            f"(at most {INPUT_INTEGER_DIGITS} integer digits)",
            field,
        )
    return value


def quantize_stored(value: Decimal) -> Decimal:
    """To the stored scale (12 places), half-to-even. Used for computed costs, not payments.
    Exact for any magnitude (a wide context): an amount too large to store is the caller's
    check (``LARGEST`` in billing/pricing.py), never an ``InvalidOperation`` here."""
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=_WIDE)


def round_for_presentation(value: Decimal, currency: str) -> Decimal:
    """THE rounding of money: to the currency's ISO 4217 minor unit, half-to-even.

    Ledger entries keep full precision; only invoices, exports and displays round, here.
    """
    return value.quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=ROUND_HALF_EVEN)
