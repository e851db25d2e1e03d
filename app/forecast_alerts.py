"""The FORECAST alert loop in the API process (the rule: :mod:`costgraph.alerts.forecasting`).

Every ``forecast_alert_interval_seconds`` it reads the budgets whose current period has spend
and no FORECAST alert yet under their current terms, projects those whose spend changed
since this process last projected them, and raises the alert of each projection over its
limit through the unit of work (channels, outbox and ``alertRaised`` as for any alert).
Several instances may run it: an alert is raised once per budget, period and terms version
whoever gets there first. A failing round is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from costgraph.alerts import forecasting, repository
from costgraph.billing.commands import Limits
from costgraph.billing.directory import OrgContext, get_organization
from costgraph.kernel.clock import utcnow
from costgraph.kernel.unit_of_work import Units
from costgraph.models.scoping import bind_platform, bind_tenant

logger = logging.getLogger("costgraph.forecast_alerts")

#: Budget periods looked at per round at most (the oldest organisations first).
ROUND_LIMIT = 5_000

_Key = tuple[uuid.UUID, datetime, int]


class ForecastAlerts:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        units: Units,
        limits: Limits,
        *,
        history_days: int,
    ) -> None:
        self.sessions = sessions
        self.units = units
        self.limits = limits
        self.history_days = history_days
        #: (budget, period start, terms version) -> the spend it was last projected at.
        self._projected: dict[_Key, Decimal] = {}

    async def tick(self, organization_id: uuid.UUID | None = None) -> int:
        """One round (of every organisation, or of one); the FORECAST alerts it raised."""
        now = utcnow()
        async with self.sessions() as session:
            bind_platform(session.sync_session)
            found = await repository.forecast_candidates(session, now, ROUND_LIMIT, organization_id)
        seen: dict[_Key, Decimal] = {}
        orgs: dict[uuid.UUID, OrgContext | None] = {}
        raised = 0
        for candidate in found:
            key = (candidate.budget_id, candidate.period_start, candidate.terms_version)
            seen[key] = candidate.spent
            if self._projected.get(key) == candidate.spent:
                continue  # nothing new to project from
            if candidate.organization_id not in orgs:
                orgs[candidate.organization_id] = await self._org(candidate.organization_id)
            org = orgs[candidate.organization_id]
            if org is None:
                continue
            try:
                raised += await self._evaluate(org, candidate.budget_id, now)
            except Exception:  # one budget's failure does not stop the others
                logger.exception("forecast of budget %s failed", candidate.budget_id)
                continue
            self._projected[key] = candidate.spent
        self._projected = {k: v for k, v in self._projected.items() if k in seen}
        return raised

    async def _org(self, organization_id: uuid.UUID) -> OrgContext | None:
        async with self.sessions() as session:
            row = await get_organization(session, organization_id)
        return None if row is None else OrgContext.of(row)

    async def _evaluate(self, org: OrgContext, budget_id: uuid.UUID, now: datetime) -> int:
        async with self.sessions() as session:
            bind_tenant(session.sync_session, org.id)
            verdict = await forecasting.project(
                session, org, budget_id, now, self.limits.zone, history_days=self.history_days
            )
        if verdict is None or not verdict.over:
            return 0
        alert = await self.units.run(
            org, lambda unit: forecasting.raise_if_over(unit.session, unit.org, verdict)
        )
        return 0 if alert is None else 1

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                raised = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # logged, retried next round
                logger.exception("forecast alert round failed")
                continue
            if raised:
                logger.info("raised %d forecast alert(s)", raised)


@contextlib.asynccontextmanager
async def forecast_alerts_running(
    sessions: async_sessionmaker[AsyncSession],
    units: Units,
    limits: Limits,
    *,
    interval: float,
    history_days: int,
) -> AsyncIterator[None]:
    """The loop for the app's lifetime (``interval`` 0: not in this process)."""
    if interval <= 0:
        yield
        return
    loop = ForecastAlerts(sessions, units, limits, history_days=history_days)
    task = asyncio.create_task(loop.run(interval), name="costgraph-forecast-alerts")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
