"""The starter catalog: public list prices shipped with CostGraph, loaded into the platform
catalog by ``costgraph catalog load`` and by every ``costgraph migrate`` (and so ``serve`` and
``demo``).

The file is ``billing/data/starter_prices.csv``: one price version per row, with the page the
numbers were read from (``source_url``) and when (``as_of``). Token prices are per million;
``unit_prices`` is ``KIND=price`` pairs joined by ``|``, as are ``aliases``.

Loading is idempotent and never overrides what is already there. Per row: a platform version
of that model starting at the same instant with the same numbers is left alone; one with
other numbers, or a later platform version, wins over the file (an operator's own choice);
otherwise the row is added as a new version, closing the open one before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import catalog_repository as repo
from costgraph.billing.catalog import NewPriceVersion, set_model_price, validate_version
from costgraph.billing.shipped_csv import ShippedLoad, csv_rows, instant, shipped_text
from costgraph.kernel.errors import ValidationFailed
from costgraph.kernel.money import parse_decimal

STARTER_FILE = "data/starter_prices.csv"
ACTOR = "starter-catalog"
COLUMNS = (
    "provider",
    "model",
    "currency",
    "effective_from",
    "input_per_million",
    "output_per_million",
    "cached_input_per_million",
    "cache_write_per_million",
    "reasoning_per_million",
    "long_context_threshold",
    "input_per_million_above_threshold",
    "output_per_million_above_threshold",
    "unit_prices",
    "aliases",
    "source_url",
    "as_of",
)
_PRICES = (
    "input_per_million",
    "output_per_million",
    "cached_input_per_million",
    "cache_write_per_million",
    "reasoning_per_million",
    "input_per_million_above_threshold",
    "output_per_million_above_threshold",
)


@dataclass
class LoadReport(ShippedLoad):
    NOUN = "price versions"
    HOLDER = "the catalog"


def starter_text() -> str:
    return shipped_text(STARTER_FILE)


def _price(text: str, where: str) -> Decimal | None:
    if not text.strip():
        return None
    try:
        return parse_decimal(text.strip())
    except ValueError as exc:
        raise ValidationFailed(f"{where}: {exc}") from None


def parse_rows(text: str) -> list[NewPriceVersion]:
    """Every row as a validated version; a bad row is an error naming its line."""
    versions: list[NewPriceVersion] = []
    for where, row in csv_rows(text, COLUMNS, "the catalog file"):
        if not row["source_url"].strip() or not row["as_of"].strip():
            raise ValidationFailed(f"{where}: every row needs its source_url and as_of")
        units: list[tuple[str, Decimal]] = []
        for pair in filter(None, row["unit_prices"].split("|")):
            kind, _, price = pair.partition("=")
            value = _price(price, where)
            if value is None:
                raise ValidationFailed(f"{where}: unit price {pair!r} has no price")
            units.append((kind.strip(), value))
        threshold = row["long_context_threshold"].strip()
        effective_from = instant(row["effective_from"], where)
        version = NewPriceVersion(
            provider=row["provider"],
            model=row["model"],
            currency=row["currency"].strip(),
            effective_from=effective_from,
            long_context_threshold=int(threshold) if threshold else None,
            unit_prices=tuple(units),
            aliases=tuple(a.strip() for a in row["aliases"].split("|") if a.strip()),
            source_url=row["source_url"].strip(),
            **{name: _price(row[name], where) for name in _PRICES},  # type: ignore[arg-type]
        )
        try:
            versions.append(validate_version(version, where))
        except ValidationFailed as exc:
            raise ValidationFailed(f"{where}: {exc.message} ({exc.field})") from None
    return versions


def _same_numbers(row: object, version: NewPriceVersion) -> bool:
    sheet = repo.sheet_of(row)  # type: ignore[arg-type]
    return (
        getattr(row, "currency", None) == version.currency
        and all(getattr(sheet, name) == getattr(version, name) for name in _PRICES)
        and sheet.long_context_threshold == version.long_context_threshold
        and dict(sheet.unit_prices) == dict(version.unit_prices)
    )


async def load_versions(session: AsyncSession, versions: Iterable[NewPriceVersion]) -> LoadReport:
    report = LoadReport()
    for version in versions:
        await repo.lock_series(session, None, version.provider, version.model)
        existing = await repo.series(session, None, version.provider, version.model)
        same_start = next((r for r in existing if r.effective_from == version.effective_from), None)
        label = f"{version.provider}/{version.model}"
        if same_start is not None:
            if _same_numbers(same_start, version):
                report.unchanged += 1
            else:
                report.kept.append(f"{label}: other numbers from the same date")
            continue
        if any(r.effective_from > version.effective_from for r in existing):
            report.kept.append(f"{label}: a later version")
            continue
        await set_model_price(session, None, version, ACTOR, path=label)
        report.added += 1
    return report


async def load_starter_catalog(session: AsyncSession, text: str | None = None) -> LoadReport:
    """Load the shipped starter catalog, or ``text`` in the same format."""
    return await load_versions(session, parse_rows(starter_text() if text is None else text))
