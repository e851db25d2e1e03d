"""Loading the starter price catalog and the platform exchange rates into a migrated database
(``costgraph catalog load``, and after every ``costgraph migrate``/``serve``)."""

from __future__ import annotations

from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.settings import Settings
from costgraph.billing.catalog_loader import LoadReport, load_starter_catalog
from costgraph.billing.rates_loader import RatesReport, load_platform_rates
from costgraph.kernel.unit_of_work import Units


async def load_catalog(url: str, settings: Settings, text: str | None = None) -> LoadReport:
    """Load the starter catalog, or ``text`` (a CSV in its format)."""
    engine = create_engine(url, settings)
    try:
        units = Units(create_sessionmaker(engine))  # platform rows: no tenant
        return await units.run(None, lambda unit: load_starter_catalog(unit.session, text))
    finally:
        await engine.dispose()


async def load_rates(url: str, settings: Settings) -> RatesReport:
    """Load the shipped platform exchange rates (``billing/data/platform_rates.csv``)."""
    engine = create_engine(url, settings)
    try:
        units = Units(create_sessionmaker(engine))  # platform rows: no tenant
        return await units.run(None, lambda unit: load_platform_rates(unit.session))
    finally:
        await engine.dispose()
