"""Loading the starter price catalog into a migrated database (``costgraph catalog load``,
and after every ``costgraph migrate``/``serve``)."""

from __future__ import annotations

from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.settings import Settings
from costgraph.billing.catalog_loader import LoadReport, load_starter_catalog


async def load_catalog(url: str, settings: Settings, text: str | None = None) -> LoadReport:
    """Load the starter catalog, or ``text`` (a CSV in its format)."""
    engine = create_engine(url, settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            return await load_starter_catalog(session, text)
    finally:
        await engine.dispose()
