"""The columns each report offers, what kind of value each holds, and how a cell is written.

Every money column names the currency column that holds its ISO 4217 code (the code is in a
column beside the amount, not in the header: one ledger can hold several currencies). A money
column chosen without its currency column brings that column along, right after it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from costgraph.billing.exports.formula import (
    FORMULA_TRIGGERS,
    escape_formula,
    triggers_after_nfkc,
)
from costgraph.kernel.money import format_decimal


class Kind(enum.Enum):
    TEXT = "text"  # escaped against formula injection
    ID = "id"
    INTEGER = "integer"
    DECIMAL = "decimal"  # a number that is not money (a rate, a percent)
    MONEY = "money"  # rounded to its currency's minor unit
    CURRENCY = "currency"
    TIMESTAMP = "timestamp"  # RFC 3339, UTC, ``Z``


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    #: MONEY only: the column holding this amount's currency code.
    currency: str | None = None


ROW_TYPE = "row_type"
DATA, TOTAL_ROUNDED, TOTAL_UNROUNDED = "data", "total_rounded", "total_unrounded"


def _text(value: Any) -> str:
    return escape_formula(value if isinstance(value, str) else str(value))


def column_texts(kind: Kind, values: Sequence[Any]) -> list[str]:
    """The cells of a non-money column, a comprehension per kind (the export's hot loop)."""
    if kind is Kind.TEXT:
        triggers, wide = FORMULA_TRIGGERS, triggers_after_nfkc
        return [
            ""
            if v is None
            else ("'" + v if v and (v[0] in triggers or (v[0] >= "\x80" and wide(v[0]))) else v)
            if v.__class__ is str
            else _text(v)
            for v in values
        ]
    if kind is Kind.TIMESTAMP:
        return [
            ""
            if v is None
            else (v if v.tzinfo is UTC else v.astimezone(UTC)).isoformat().replace("+00:00", "Z")
            for v in values
        ]
    if kind is Kind.DECIMAL:
        return ["" if v is None else format_decimal(v) for v in values]
    assert kind is not Kind.MONEY  # rounded with its row's currency by the writer
    return ["" if v is None else str(v) for v in values]


def _table(*columns: Column) -> dict[str, Column]:
    return {c.name: c for c in columns}


def _money(name: str, currency: str = "currency") -> Column:
    return Column(name, Kind.MONEY, currency)


LEDGER: dict[str, Column] = _table(
    Column("id", Kind.ID),
    Column("occurred_at", Kind.TIMESTAMP),
    Column("recorded_at", Kind.TIMESTAMP),
    Column("type", Kind.TEXT),
    Column("account_id", Kind.ID),
    Column("account_name", Kind.TEXT),
    Column("customer_id", Kind.ID),
    Column("customer_name", Kind.TEXT),
    Column("user_id", Kind.ID),
    Column("user_email", Kind.TEXT),
    Column("user_name", Kind.TEXT),
    Column("department_id", Kind.ID),
    Column("department_name", Kind.TEXT),
    Column("provider", Kind.TEXT),
    Column("model", Kind.TEXT),
    Column("feature", Kind.TEXT),
    Column("agent", Kind.TEXT),
    Column("request_id", Kind.TEXT),
    Column("input_tokens", Kind.INTEGER),
    Column("output_tokens", Kind.INTEGER),
    Column("cached_input_tokens", Kind.INTEGER),
    Column("reasoning_tokens", Kind.INTEGER),
    Column("cache_write_tokens", Kind.INTEGER),
    _money("amount"),
    Column("currency", Kind.CURRENCY),
    _money("balance_delta"),
    _money("ai_cost"),
    _money("provider_cost", "provider_currency"),
    Column("provider_currency", Kind.CURRENCY),
    Column("fx_rate", Kind.DECIMAL),
    Column("markup_percent", Kind.DECIMAL),
    Column("related_entry_id", Kind.ID),
    Column("price_version_id", Kind.ID),
    Column("idempotency_key", Kind.TEXT),
    Column("description", Kind.TEXT),
    Column("metadata", Kind.TEXT),  # JSON text
)
LEDGER_DEFAULT: tuple[str, ...] = (
    "id",
    "occurred_at",
    "type",
    "account_id",
    "customer_id",
    "user_id",
    "user_email",
    "provider",
    "model",
    "feature",
    "agent",
    "input_tokens",
    "output_tokens",
    "amount",
    "currency",
    "ai_cost",
    "description",
)

#: Usage grouping: a column per dimension (present when grouped by it), then the measures.
USAGE_DIMENSIONS: dict[str, Column] = _table(
    Column("model", Kind.TEXT),
    Column("provider", Kind.TEXT),
    Column("customer_id", Kind.ID),
    Column("account_id", Kind.ID),
    Column("department_id", Kind.ID),
    Column("user_id", Kind.ID),
    Column("feature", Kind.TEXT),
    Column("agent", Kind.TEXT),
)
#: Names beside ids (a chargeback file names people and departments): id column -> the
#: columns offered right after it, each ``(column, the named object's attribute)``.
NAMES: dict[str, tuple[tuple[Column, str], ...]] = {
    "customer_id": ((Column("customer_name", Kind.TEXT), "name"),),
    "account_id": ((Column("account_name", Kind.TEXT), "name"),),
    "department_id": ((Column("department_name", Kind.TEXT), "name"),),
    "user_id": (
        (Column("user_email", Kind.TEXT), "email"),
        (Column("user_name", Kind.TEXT), "name"),
    ),
}
USAGE_MEASURES: dict[str, Column] = _table(
    Column("currency", Kind.CURRENCY),
    Column("events", Kind.INTEGER),
    Column("input_tokens", Kind.INTEGER),
    Column("output_tokens", Kind.INTEGER),
    Column("cached_input_tokens", Kind.INTEGER),
    Column("cache_write_tokens", Kind.INTEGER),
    Column("reasoning_tokens", Kind.INTEGER),
    Column("tokens", Kind.INTEGER),
    _money("ai_cost"),
    _money("billed_usage"),
    _money("markup"),
)
BUCKET_START = Column("bucket_start", Kind.TIMESTAMP)

PNL: dict[str, Column] = _table(
    Column("period_start", Kind.TIMESTAMP),
    Column("period_end", Kind.TIMESTAMP),
    Column("currency", Kind.CURRENCY),
    Column("revenue_basis", Kind.TEXT),
    _money("revenue"),
    _money("subscriptions"),
    _money("top_ups"),
    _money("postpaid_usage"),
    _money("usage_revenue"),
    _money("refunds"),
    _money("withdrawals"),
    _money("ai_cost"),
    _money("billed_usage"),
    _money("allowance_usage"),
    _money("markup"),
    _money("platform_fees"),
    _money("balance_adjustments"),
    _money("margin"),
    Column("margin_percent", Kind.DECIMAL),
    _money("net_impact"),
    _money("liability"),
    Column("events", Kind.INTEGER),
    Column("entries", Kind.INTEGER),
    Column("tokens", Kind.INTEGER),
)


def with_currencies(chosen: Sequence[str], table: dict[str, Column]) -> tuple[Column, ...]:
    """The chosen columns in order, each money column followed by its currency column
    when that was not chosen itself."""
    result: list[Column] = []
    names = set(chosen)
    for name in chosen:
        column = table[name]
        result.append(column)
        if column.currency is not None and column.currency not in names:
            result.append(table[column.currency])
            names.add(column.currency)
    return tuple(result)
