"""Scalars of the contract: exact decimals as strings, RFC 3339 in UTC, ISO 4217, JSON."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, NewType

import strawberry

from costgraph.kernel.clock import format_rfc3339, parse_rfc3339
from costgraph.kernel.money import format_decimal, is_currency, parse_decimal


def _parse_decimal(value: object) -> decimal.Decimal:
    if not isinstance(value, str):
        raise ValueError(
            'Decimal values are JSON strings such as "12.34"; numbers are refused '
            "because they lose precision"
        )
    return parse_decimal(value)


def _parse_datetime(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime values are RFC 3339 strings with a time zone")
    return parse_rfc3339(value)


def _parse_currency(value: object) -> str:
    if not isinstance(value, str) or not is_currency(value):
        raise ValueError(f"{str(value)[:10]!r} is not an ISO 4217 currency code")
    return value


def _parse_json(value: object) -> Any:
    return value


CurrencyCode = NewType("CurrencyCode", str)
JSON = NewType("JSON", object)

#: Given to ``StrawberryConfig(scalar_map=...)``: Python types to their GraphQL scalars.
SCALAR_MAP: dict[object, Any] = {
    decimal.Decimal: strawberry.scalar(
        name="Decimal",
        description='An exact decimal number, carried as a JSON string: "0.000123450000".',
        serialize=format_decimal,
        parse_value=_parse_decimal,
    ),
    dt.datetime: strawberry.scalar(
        name="DateTime",
        description="An RFC 3339 timestamp with a time zone; always returned in UTC.",
        serialize=format_rfc3339,
        parse_value=_parse_datetime,
    ),
    CurrencyCode: strawberry.scalar(
        name="CurrencyCode",
        description="An ISO 4217 alpha-3 currency code.",
        serialize=str,
        parse_value=_parse_currency,
    ),
    JSON: strawberry.scalar(
        name="JSON",
        description="Arbitrary JSON, e.g. metadata kept for reconciliation.",
        serialize=_parse_json,
        parse_value=_parse_json,
    ),
}
