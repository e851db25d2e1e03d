"""Raising alerts inside the writer's transaction.

The unit of work every write goes through (:mod:`costgraph.kernel.unit_of_work`) runs
:func:`evaluate` just before commit: the budget counters the unit raised (the
:class:`~costgraph.billing.events.BudgetCountersRaised` events ``billing.budgets.apply_spend``
emitted) are turned into stage crossings, and so are the budgets set or changed
(:class:`~costgraph.billing.events.BudgetTermsSet`: the stages their new terms reach, see
:mod:`costgraph.alerts.rules`); the crossings into alert rows (``ON CONFLICT DO NOTHING``:
once per budget, kind, stage, period and terms version), the new alerts into outbox rows. All
of it commits with the spend, or rolls back with it. The alerts raised are emitted as
:class:`~costgraph.alerts.events.AlertsRaised`, announced after commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.alerts import outbox, repository, rules
from costgraph.alerts.events import AlertsRaised
from costgraph.alerts.records import AlertRecord
from costgraph.billing.directory import OrgContext, scope_labels
from costgraph.billing.events import BudgetCountersRaised, BudgetTermsSet
from costgraph.kernel.unit_of_work import UnitOfWork, emit
from costgraph.models.budget import Budget


async def evaluate(unit: UnitOfWork) -> list[AlertRecord]:
    """Raise the alerts of every stage this unit's spend or budget terms crossed (its
    before-commit hook)."""
    raised = unit.emitted(BudgetCountersRaised)
    terms = unit.emitted(BudgetTermsSet)
    if not raised and not terms:
        return []
    found = rules.terms_crossings([change for event in terms for change in event.changes])
    found += rules.crossings([change for event in raised for change in event.changes])
    if not found:
        return []
    return await raise_alerts(unit.session, unit.org, found)


async def raise_alerts(
    session: AsyncSession, org: OrgContext, crossings: Sequence[rules.StageCrossing]
) -> list[AlertRecord]:
    """Insert the alerts (those already raised are skipped) and enqueue their deliveries.
    Each carries its scope's name beside the id (one query per scope kind involved)."""
    names = await scope_labels(session, org, {(c.scope_kind, c.scope_id) for c in crossings})
    rows: list[dict[str, Any]] = [
        {
            "organization_id": org.id,
            "budget_id": c.budget_id,
            "kind": c.kind.value,
            "stage": c.stage,
            "terms_version": c.terms_version,
            "period_start": c.period_start,
            "period_end": c.period_end,
            "scope_kind": c.scope_kind,
            "scope_id": c.scope_id,
            "scope_name": names.get((c.scope_kind, c.scope_id)),
            "spent": c.spent,
            "limit_amount": c.limit,
            "currency": c.currency,
            "message": rules.message(c, names.get((c.scope_kind, c.scope_id))),
        }
        for c in crossings
    ]
    raised = await repository.insert_alerts(session, rows)
    if raised:
        await outbox.enqueue(session, org.id, raised)
        emit(session, AlertsRaised(tuple(raised)))
    return raised


async def raise_forecast_alert(
    session: AsyncSession,
    org: OrgContext,
    budget: Budget,
    period: tuple[datetime, datetime],
    projected: Decimal,
) -> AlertRecord | None:
    """The FORECAST alert: the period's projected total is over the budget's limit.

    Raised at most once per budget, period and terms version (a change of terms re-arms it).
    Returns the alert if this call raised it; in a unit of work it is announced after commit
    like any other.
    """
    if projected <= budget.limit_amount:
        return None
    crossing = rules.crossing_of(
        budget, period, rules.FORECAST_STAGE, projected, rules.AlertKind.FORECAST
    )
    raised = await raise_alerts(session, org, [crossing])
    return raised[0] if raised else None
