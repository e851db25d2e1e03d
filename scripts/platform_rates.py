"""Write ``billing/data/platform_rates.csv`` from ECB euro foreign exchange reference rates.

Input: one or more files in the ECB's daily CSV format (``eurofxref.csv`` inside
https://www.ecb.europa.eu/stats/eurofxref/eurofxref.zip): a header ``Date, USD, JPY, ...``
and one row ``20 January 2026, 1.1728, 185.18, ...`` (1 EUR = rate units of each currency).

Output (stdout), per reference date:

- ``EUR -> X`` for every currency the ECB quotes: the published reference rate as is;
- ``USD -> X`` for every other currency: the cross rate ``EUR/X ÷ EUR/USD`` of the same day,
  rounded to 12 decimal places half-to-even (provider prices are in USD, and CostGraph does
  not triangulate: an account in X needs a USD -> X rate; USD -> EUR is the inverse of
  EUR -> USD, found without a row of its own).

A code CostGraph does not accept as a current ISO 4217 currency (BGN, withdrawn when Bulgaria
adopted the euro) is left out. Each rate is in force from 00:00 UTC of its reference date
until the next date's. Run:

    python scripts/platform_rates.py eurofxref-2024-09-26.csv eurofxref-2026-01-20.csv \
        > billing/data/platform_rates.csv
"""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from pathlib import Path

from costgraph.kernel.money import is_currency

SOURCE_URL = (
    "https://www.ecb.europa.eu/stats/policy_and_exchange_rates/"
    "euro_reference_exchange_rates/html/index.en.html"
)
COLUMNS = ("base", "quote", "rate", "effective_from", "source", "source_url", "as_of")
PLACES = Decimal("0.000000000001")
EXACT = Context(prec=60)


def read_day(path: Path) -> tuple[str, dict[str, Decimal]]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    header = [cell.strip() for cell in lines[0].split(",")]
    values = [cell.strip() for cell in lines[1].split(",")]
    day = datetime.strptime(values[0], "%d %B %Y").replace(tzinfo=UTC).date().isoformat()
    rates = {
        code: Decimal(value)
        for code, value in zip(header[1:], values[1:], strict=False)
        if code and value and value != "N/A" and is_currency(code)
    }
    return day, rates


def rows(day: str, rates: dict[str, Decimal]) -> list[tuple[str, ...]]:
    source = f"ECB euro foreign exchange reference rates of {day}"
    start = f"{day}T00:00:00Z"
    found = [
        ("EUR", code, str(rate), start, source, SOURCE_URL, day)
        for code, rate in sorted(rates.items())
    ]
    usd = rates["USD"]
    crossed = {code: EXACT.divide(rate, usd) for code, rate in rates.items() if code != "USD"}
    for code, rate in sorted(crossed.items()):
        value = rate.quantize(PLACES, rounding=ROUND_HALF_EVEN, context=EXACT).normalize()
        via = f"EUR->{code} / EUR->USD"
        found.append(
            ("USD", code, f"{value:f}", start, f"{source}, crossed: {via}", SOURCE_URL, day)
        )
    return found


def main(paths: list[str]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(COLUMNS)
    for day, rates in sorted(read_day(Path(p)) for p in paths):
        writer.writerows(rows(day, rates))


if __name__ == "__main__":
    main(sys.argv[1:])
