"""Wiring the unit of work: which hooks run before and after every commit.

The kernel's :class:`~costgraph.kernel.unit_of_work.Units` knows no domain; here, at the top,
it is given them:

- before commit: alert evaluation (the budget counters a unit raised become alerts and
  outbox rows in the same transaction), and auto-top-up requests (the balances a unit moved
  below their threshold, alerts/top_up_requests.py);
- after commit: the bus (usage, balances, allowances, budgets, alerts), this process's copy
  of changed budgets dropped, the alert worker woken and the business metrics counted.

The app builds one in its lifespan (``AppState.units``); a command-line job that writes builds
its own, without a bus.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from costgraph.alerts import evaluation
from costgraph.alerts.events import AlertsRaised
from costgraph.alerts.top_up_requests import raise_top_up_requests
from costgraph.alerts.worker import Wakeup
from costgraph.app.observability.metrics import Metrics
from costgraph.billing import events, reservation_repository
from costgraph.kernel.unit_of_work import AfterCommit, DomainEvent, UnitOfWork, Units
from costgraph.resolvers import counting
from costgraph.subscriptions.announcer import BusAnnouncer
from costgraph.subscriptions.publish import Publisher


async def _evaluate_alerts(unit: UnitOfWork) -> None:
    await evaluation.evaluate(unit)


def _forget_changed_budgets(committed: Sequence[DomainEvent]) -> None:
    """This process's copy of an organisation's budgets, once their terms changed (other
    processes notice the new version when they next hold)."""
    for event in committed:
        if isinstance(event, events.BudgetsChanged) and event.terms:
            reservation_repository.forget_budgets(event.organization_id)


def _after_commit_local(metrics: Metrics | None, wakeup: Wakeup | None) -> AfterCommit:
    def hook(committed: Sequence[DomainEvent]) -> None:
        raised = [alert for e in committed if isinstance(e, AlertsRaised) for alert in e.alerts]
        if raised and wakeup is not None:
            wakeup.set()  # this process's delivery worker starts at once
        if metrics is not None:
            counting.alerts(metrics, [alert.kind.code for alert in raised])
            counting.expired(
                metrics, sum(e.count for e in committed if isinstance(e, events.HoldsExpired))
            )

    return hook


def build_units(
    sessions: async_sessionmaker[AsyncSession],
    *,
    bus: Publisher | None = None,
    metrics: Metrics | None = None,
    wakeup: Wakeup | None = None,
) -> Units:
    units = Units(sessions)
    units.before_commit(_evaluate_alerts)
    units.before_commit(raise_top_up_requests)
    if bus is not None:
        units.after_commit(BusAnnouncer(bus))
    units.after_commit(_forget_changed_budgets)
    units.after_commit(_after_commit_local(metrics, wakeup))
    return units
