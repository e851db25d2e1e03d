"""The rollup job in the API process: folds new ledger entries into the rollups every
``rollup_interval_seconds``, summarises the BRIN index of ``txid`` right after (so a reader
looking for the not-yet-rolled-up tail reads only the pages written since), creates the
coming months' ledger partitions, and closes finished months.

Every instance may run it: a run takes a PostgreSQL advisory lock, and an instance that
finds it taken skips its turn, so the job runs once at a time across the fleet. A failing
run is logged and retried on the next tick; queries stay exact meanwhile (they add the
not-yet-rolled-up tail from the ledger).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from costgraph.app.database import create_sessionmaker
from costgraph.app.settings import Settings
from costgraph.billing import month_close, rollups
from costgraph.kernel.clock import utcnow
from costgraph.kernel.unit_of_work import Units

logger = logging.getLogger("costgraph.rollups")

#: Housekeeping cadence, in seconds.
PARTITIONS_EVERY = 3_600.0
CLOSE_EVERY = 300.0


async def _raw(connection: Any) -> Any:
    raw = await connection.get_raw_connection()
    return raw.driver_connection


class RollupRunner:
    def __init__(self, engine: AsyncEngine, settings: Settings, units: Units | None = None) -> None:
        self.engine = engine
        self.settings = settings
        #: Month closes are written through units of work (the app's, or one of its own).
        self.units = units or Units(create_sessionmaker(engine))
        self._last: dict[str, float] = {}

    def _due(self, name: str, every: float) -> bool:
        now = time.monotonic()
        if now - self._last.get(name, float("-inf")) < every:
            return False
        self._last[name] = now
        return True

    async def tick(self) -> None:
        async with self.engine.connect() as connection:
            raw = await _raw(connection)
            if self._due("partitions", PARTITIONS_EVERY):
                created = await rollups.ensure_partitions(
                    raw, utcnow(), self.settings.partitions_ahead_months
                )
                if created:
                    logger.info("created %d ledger partition(s)", created)
            if await rollups.catch_up(raw) is not None:
                # Right after a run: the pages written since become summarised, so readers
                # looking for the next tail skip everything up to here.
                await rollups.summarize_brin(raw)
            if self._due("close", CLOSE_EVERY):
                # Not before the late-arrival window has passed either: an event a plain write
                # may still carry never lands in a closed month.
                grace = max(
                    timedelta(hours=self.settings.month_close_grace_hours),
                    timedelta(seconds=self.settings.late_arrival_window_seconds),
                )
                closed = await month_close.close_months(self.units, utcnow(), grace)
                if closed:
                    logger.info("closed %d organisation-month(s)", len(closed))

    async def run(self) -> None:
        interval = self.settings.rollup_interval_seconds
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # logged, retried next tick; answers stay exact meanwhile
                logger.exception("rollup run failed")
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def rollups_running(
    engine: AsyncEngine, settings: Settings, units: Units | None = None
) -> AsyncIterator[None]:
    if settings.rollup_interval_seconds <= 0:
        yield
        return
    runner = RollupRunner(engine, settings, units)
    task = asyncio.create_task(runner.run(), name="costgraph-rollups")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
