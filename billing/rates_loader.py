"""Platform exchange rates shipped with CostGraph: loaded by every ``costgraph migrate`` (and
so ``serve`` and ``demo``), like the starter price catalog, so that an organisation in EUR,
GBP or another common ISO 4217 currency records usage at once.

The file is ``billing/data/platform_rates.csv``: one dated rate per row, ``1 base = rate
quote`` in force from ``effective_from``, with its ``source`` (which published reference rates
of which date), ``source_url`` and ``as_of``. The rows are ECB euro foreign exchange reference
rates (EUR -> X) and the USD crosses of the same day (USD -> X = EUR/X ÷ EUR/USD), written by
``scripts/platform_rates.py`` from the ECB's daily file.

Loading is idempotent and never overrides anything: a platform rate of the same pair at the
same instant is left as it is (the same rate: "unchanged"; another: "kept", an operator's own
choice). Rates are only ever added (:mod:`costgraph.billing.fx`), and an organisation's own
rates still win for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import fx_repository as repo
from costgraph.billing.shipped_csv import ShippedLoad, csv_rows, instant, shipped_text
from costgraph.kernel.errors import ValidationFailed
from costgraph.kernel.money import is_currency, parse_decimal

RATES_FILE = "data/platform_rates.csv"
ACTOR = "platform-rates"
COLUMNS = ("base", "quote", "rate", "effective_from", "source", "source_url", "as_of")


@dataclass(frozen=True, slots=True)
class ShippedRate:
    base: str
    quote: str
    rate: Decimal
    effective_from: datetime
    source: str


@dataclass
class RatesReport(ShippedLoad):
    NOUN = "exchange rates"
    HOLDER = "the platform"


def rates_text() -> str:
    return shipped_text(RATES_FILE)


def parse_rates(text: str) -> list[ShippedRate]:
    """Every row as a validated rate; a bad row is an error naming its line."""
    found: list[ShippedRate] = []
    for where, row in csv_rows(text, COLUMNS, "the rates file"):
        base, quote = row["base"].strip(), row["quote"].strip()
        if not is_currency(base) or not is_currency(quote) or base == quote:
            raise ValidationFailed(f"{where}: base and quote are two ISO 4217 codes")
        if not all(row[name].strip() for name in ("source", "source_url", "as_of")):
            raise ValidationFailed(f"{where}: every row needs its source, source_url and as_of")
        try:
            rate = parse_decimal(row["rate"].strip())
        except ValueError as exc:
            raise ValidationFailed(f"{where}: {exc}") from None
        effective_from = instant(row["effective_from"], where)
        if not rate.is_finite() or rate <= 0:
            raise ValidationFailed(f"{where}: a rate must be greater than zero")
        source = f"{row['source'].strip()} ({row['source_url'].strip()}, as of {row['as_of']})"
        found.append(ShippedRate(base, quote, rate, effective_from, source))
    return found


async def load_rates(session: AsyncSession, rates: list[ShippedRate]) -> RatesReport:
    report = RatesReport()
    existing = await repo.platform_rates_at(
        session, [(r.base, r.quote, r.effective_from) for r in rates]
    )
    for rate in rates:
        there = existing.get((rate.base, rate.quote, rate.effective_from))
        if there is None:
            added = await repo.add_platform_rate(
                session, rate.base, rate.quote, rate.rate, rate.effective_from, rate.source, ACTOR
            )
            report.added += added
            report.unchanged += not added
        elif there == rate.rate:
            report.unchanged += 1
        else:
            report.kept.append(f"{rate.base}->{rate.quote} from {rate.effective_from:%Y-%m-%d}")
    return report


async def load_platform_rates(session: AsyncSession, text: str | None = None) -> RatesReport:
    """Load the shipped platform rates, or ``text`` in the same format."""
    return await load_rates(session, parse_rates(rates_text() if text is None else text))
