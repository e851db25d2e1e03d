"""RFC 4180 text from rows: a header, CRLF line ends, fields quoted when they hold a comma, a
quote, CR or LF (quotes doubled), UTF-8 without a byte-order mark; and the reconciliation rows.

Every record has the same fields: ``row_type`` first (``data``, then per currency
``total_rounded`` — the sum of the rounded cells above — and ``total_unrounded`` — the exact
sum), then the export's columns. Reconciliation rows fill the money columns and their
currency columns and leave the rest empty.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from costgraph.billing.cost_formula import EXACT
from costgraph.billing.exports.columns import (
    DATA,
    ROW_TYPE,
    TOTAL_ROUNDED,
    TOTAL_UNROUNDED,
    Column,
    Kind,
    column_texts,
)
from costgraph.billing.exports.rounding import ZERO, exact_sum, round_money
from costgraph.kernel.money import format_decimal, minor_unit

#: Characters that make a field need quotes (the csv module's minimal quoting, CRLF lines).
_SPECIAL = re.compile(r'[,"\r\n]')


def _quantum(currency: str) -> Decimal:
    """The currency's minor unit as a quantum: USD 0.01, JPY 1, BHD 0.001."""
    return _QUANTA.get(currency) or _QUANTA.setdefault(
        currency, Decimal(1).scaleb(-minor_unit(currency))
    )


_QUANTA: dict[str, Decimal] = {}


def quote_texts(texts: list[str]) -> list[str]:
    """Fields quoted where RFC 4180 needs it: a comma, a quote or a line break inside;
    quotes doubled."""
    search = _SPECIAL.search
    return ['"' + t.replace('"', '""') + '"' if search(t) else t for t in texts]


class TableWriter:
    """Rows in, CSV bytes out, chunk by chunk; keeps the sums for the reconciliation."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        position = {c.name: i for i, c in enumerate(self.columns)}
        #: (money column position, its currency column position)
        self._money = [
            (i, position[c.currency])
            for i, c in enumerate(self.columns)
            if c.kind is Kind.MONEY and c.currency is not None
        ]
        self._currency_of = {i: ci for i, ci in self._money}
        self._rounded: dict[str, dict[int, Decimal]] = {}
        self._exact: dict[str, dict[int, Decimal]] = {}
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")
        self.rows_written = 0

    def header(self) -> None:
        self._writer.writerow([ROW_TYPE, *(c.name for c in self.columns)])

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        """Data rows, each its values in column order (raw: Decimal, datetime, UUID...).

        This is the export's hot loop (a million rows for a big ledger), so it works column
        by column over the chunk (a comprehension per column, not a call per cell), and
        joins the fields itself: only text columns can hold a comma, a quote or a line
        break, so only they are quoted (:func:`quote_texts`, the csv module's minimal
        quoting; a test checks both write the same bytes)."""
        if not rows:
            return
        count = len(rows)
        values: list[Sequence[Any]] = list(zip(*rows, strict=True))  # column by column
        texts: list[list[str]] = []
        for index, column in enumerate(self.columns):
            if column.kind is Kind.MONEY:
                currencies = values[self._currency_of[index]]
                texts.append(self._money_texts(index, values[index], currencies))
            elif column.kind is Kind.TEXT:
                texts.append(quote_texts(column_texts(column.kind, values[index])))
            else:
                texts.append(column_texts(column.kind, values[index]))
        join = ",".join
        self._buffer.write(
            "".join([join(fields) + "\r\n" for fields in zip([DATA] * count, *texts, strict=True)])
        )
        self.rows_written += count

    def _money_texts(
        self, index: int, amounts: Sequence[Decimal | None], currencies: Sequence[str | None]
    ) -> list[str]:
        """Each amount rounded to its row's currency; the sums kept per currency."""
        present = set(currencies)
        with localcontext(EXACT):
            if len(present) == 1 and None not in present:  # the common case: one currency
                (currency,) = present
                assert currency is not None
                quantum = _quantum(currency)
                # ``+ ZERO`` turns a negative zero (-0.004 rounded) into 0.00.
                rounded = [
                    None if a is None else a.quantize(quantum, ROUND_HALF_EVEN) + ZERO
                    for a in amounts
                ]
                self._add(
                    currency,
                    index,
                    sum([a for a in amounts if a is not None], ZERO),
                    sum([r for r in rounded if r is not None], ZERO),
                )
                return ["" if r is None else str(r) for r in rounded]
            result: list[str] = []
            rounded_sums: dict[str, Decimal] = {}
            exact_sums: dict[str, Decimal] = {}
            for amount, code in zip(amounts, currencies, strict=True):
                if amount is None or code is None:
                    result.append("")
                    continue
                value = amount.quantize(_quantum(code), ROUND_HALF_EVEN) + ZERO
                exact_sums[code] = exact_sums.get(code, ZERO) + amount
                rounded_sums[code] = rounded_sums.get(code, ZERO) + value
                result.append(str(value))
            for code, total in exact_sums.items():
                self._add(code, index, total, rounded_sums[code])
        return result

    def _add(self, currency: str, index: int, exact: Decimal, rounded: Decimal) -> None:
        rounded_sums = self._rounded.setdefault(currency, {})
        exact_sums = self._exact.setdefault(currency, {})
        rounded_sums[index] = exact_sum(rounded_sums.get(index, ZERO), rounded)
        exact_sums[index] = exact_sum(exact_sums.get(index, ZERO), exact)

    def reconciliation(
        self,
        fallback_currency: str,
        exact: Mapping[str, Mapping[str, Decimal]] | None = None,
    ) -> None:
        """Per currency seen (or ``fallback_currency`` when none was), the rounded sums and
        the exact ones (``exact`` overrides them by currency and column name, e.g. with the
        P&L query's own totals). Nothing when no money column was chosen."""
        if not self._money:
            return
        currencies = sorted(self._exact) or [fallback_currency]
        for currency in currencies:
            exact_by_index = dict(self._exact.get(currency, {}))
            for name, value in (exact or {}).get(currency, {}).items():
                exact_by_index[self._position(name)] = value
            self._total_row(TOTAL_ROUNDED, currency, self._rounded.get(currency, {}), True)
            self._total_row(TOTAL_UNROUNDED, currency, exact_by_index, False)

    def _position(self, name: str) -> int:
        return next(i for i, c in enumerate(self.columns) if c.name == name)

    def _total_row(
        self, label: str, currency: str, sums: Mapping[int, Decimal], rounded: bool
    ) -> None:
        record = [label] + [""] * len(self.columns)
        for index, currency_index in self._money:
            record[currency_index + 1] = currency
            total = sums.get(index, ZERO)
            if rounded:
                total = round_money(total, currency)  # a sum of rounded cells: only the scale
            record[index + 1] = format_decimal(total)
        self._writer.writerow(record)

    def take(self) -> bytes:
        """What was written since the last call, as UTF-8."""
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode("utf-8")
