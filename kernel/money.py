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


#: Significant digits an amount below one unit keeps in a message (see :func:`format_money`).
MESSAGE_SIGNIFICANT_DIGITS = 3


def format_amount(value: Decimal, currency: str) -> str:
    """An amount as a message shows it: fixed-point (never ``0E-12``), at the currency's
    minor unit (half-to-even, :func:`round_for_presentation`) — except an amount below one
    unit, which keeps :data:`MESSAGE_SIGNIFICANT_DIGITS` significant digits (at most the
    stored 12 places), so a fraction of a cent never reads as ``0.01`` or ``0.00``:
    ``0.005 USD``, ``0.0123 USD``, ``0.50 USD``, ``7.60 USD``, ``0 JPY``.

    For people only (alert and error messages, notifications); exports and invoices use
    :func:`round_for_presentation`, and the API returns exact decimals.
    """
    places = minor_unit(currency)
    if value.is_finite() and value != 0 and abs(value) < 1:
        wanted = MESSAGE_SIGNIFICANT_DIGITS - 1 - value.adjusted()
        places = max(places, min(SCALE, wanted))
    shown = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN, context=_WIDE)
    text = format(shown, "f")
    minimum = minor_unit(currency)
    if "." in text and places > minimum:  # extra places only where they carry a digit
        whole, fraction = text.split(".")
        fraction = fraction.rstrip("0").ljust(minimum, "0")
        text = f"{whole}.{fraction}" if fraction else whole
    return text


def format_money(value: Decimal, currency: str) -> str:
    """``0.005 USD``: :func:`format_amount` and the currency code."""
    return f"{format_amount(value, currency)} {currency}"
