"""FORECAST alerts: a budget whose projected period total crosses its limit.

**Which bound.** A budget is alerted when the *lower end of the 80 % interval* of its period's
projected total (:mod:`costgraph.billing.forecast`) is above its limit: at least about 90 % of
the simulated paths end over it. The expected total alone would fire on half the noisy
periods that end under the limit, early in a period and on spiky usage; the lower bound fires
only when going over is likely, and it still fires well before the limit itself is reached
(the threshold stages cover that). A projection without an interval (``NO_HISTORY``: nothing
to forecast from) is what is spent: it crosses the limit only when the spend has. The alert
carries the expected total as its ``spent``. The projection is the one ``forecast`` answers,
hard caps applied: a hard-capped budget's projection never passes its limit, so it is alerted
when the cap binds it and the lower bound *reaches* the limit (spend is likely to be refused).

**When.** Never on the write path: projecting a period runs a simulation. A loop in each API
process (``app/forecast_alerts.py``, every ``COSTGRAPH_FORECAST_ALERT_INTERVAL_SECONDS``)
asks for the budgets whose current period has spend and no FORECAST alert yet under their
current terms (:func:`repository.forecast_candidates`), and projects those whose spend
changed since the process last projected them: an idle budget is projected once, a busy one
at most once per interval. The alert is raised through a unit of work like any other — once
per budget, period and terms version (a change of terms re-arms it), to the same channels and
the ``alertRaised`` subscription.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.alerts.evaluation import raise_forecast_alert
from costgraph.alerts.records import AlertRecord
from costgraph.billing import budget_repository
from costgraph.billing.directory import OrgContext
from costgraph.billing.forecast import HISTORY_DAYS, Projection, projected_total
from costgraph.models.budget import Budget

#: The interval whose lower end decides (percent).
ALERT_LEVEL = 80


def alert_figure(projection: Projection) -> Decimal:
    """What is compared with the limit: the lower end of the 80 % interval of the period's
    total, or (no interval: nothing to forecast from) the projection, what is spent."""
    interval = projection.interval(ALERT_LEVEL)
    return projection.projected if interval is None else interval.low


@dataclass(frozen=True, slots=True)
class Verdict:
    """A budget's period projected: over its limit (by :func:`alert_figure`) or not."""

    budget: Budget
    projection: Projection

    @property
    def over(self) -> bool:
        """Over the limit; for a hard cap that bounds its own projection (the projection is
        capped, so it never goes over), likely to reach the cap: spend will be refused."""
        figure = alert_figure(self.projection)
        limit = self.budget.limit_amount
        binding = self.projection.binding_cap
        capped = binding is not None and binding.budget_id == self.budget.id
        return figure > limit or (capped and figure >= limit)


async def project(
    session: AsyncSession,
    org: OrgContext,
    budget_id: uuid.UUID,
    now: datetime,
    zone: ZoneInfo,
    *,
    history_days: int = HISTORY_DAYS,
) -> Verdict | None:
    """Project the budget's current period (a reading session); None when it has none."""
    budget = await budget_repository.get_budget(session, budget_id)
    if budget is None:
        return None
    projection = await projected_total(session, org, budget, now, zone, history_days=history_days)
    return None if projection is None else Verdict(budget, projection)


async def raise_if_over(
    session: AsyncSession, org: OrgContext, verdict: Verdict
) -> AlertRecord | None:
    """Raise the FORECAST alert of a projection over its limit (in the writer's unit of
    work), unless the budget's terms changed since it was projected."""
    if not verdict.over:
        return None
    budget = await budget_repository.get_budget(session, verdict.budget.id)
    if budget is None or budget.terms_version != verdict.budget.terms_version:
        return None  # new terms: the next round projects against them
    target = verdict.projection.target
    figure = max(verdict.projection.projected, alert_figure(verdict.projection))
    return await raise_forecast_alert(session, org, budget, (target.start, target.end), figure)
