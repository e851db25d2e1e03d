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

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from importlib.resources import files

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import fx_repository as repo
from costgraph.kernel.clock import parse_rfc3339
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
class RatesReport:
    added: int = 0
    unchanged: int = 0
    kept: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.added} exchange rates added, {self.unchanged} already present"
        if self.kept:
            text += f", {len(self.kept)} left as the platform has them ({'; '.join(self.kept)})"
        return text


def rates_text() -> str:
    return files("costgraph.billing").joinpath(RATES_FILE).read_text(encoding="utf-8")


def parse_rates(text: str) -> list[ShippedRate]:
    """Every row as a validated rate; a bad row is an error naming its line."""
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValidationFailed(f"the rates file's columns must be: {','.join(COLUMNS)}")
    found: list[ShippedRate] = []
    for line, row in enumerate(reader, start=2):
        where = f"line {line}"
        base, quote = row["base"].strip(), row["quote"].strip()
        if not is_currency(base) or not is_currency(quote) or base == quote:
            raise ValidationFailed(f"{where}: base and quote are two ISO 4217 codes")
        if not all(row[name].strip() for name in ("source", "source_url", "as_of")):
            raise ValidationFailed(f"{where}: every row needs its source, source_url and as_of")
        try:
            rate = parse_decimal(row["rate"].strip())
            effective_from = parse_rfc3339(row["effective_from"].strip())
        except ValueError as exc:
            raise ValidationFailed(f"{where}: {exc}") from None
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
