"""Raising alerts inside the writer's transaction.

``Context.writing()`` — the one transaction every mutation uses — calls :func:`evaluate` just
before commit: the budget counters the transaction raised (collected on the session by
``billing.budgets.apply_spend``) are turned into stage crossings, the crossings into alert rows
(``ON CONFLICT DO NOTHING``: once per budget, stage and period), the new alerts into outbox
rows. All of it commits with the spend, or rolls back with it. The alerts a transaction
raised are kept on the session (:func:`take_raised`) to be announced after commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.alerts import outbox, repository, rules
from costgraph.alerts.records import AlertRecord
from costgraph.billing.budgets import take_counter_changes
from costgraph.billing.directory import OrgContext
from costgraph.models.budget import Budget

#: ``session.info`` key: alerts raised in the session's transaction, to announce after commit.
RAISED_KEY = "costgraph.alerts_raised"


async def evaluate(session: AsyncSession, org: OrgContext) -> list[AlertRecord]:
    """Raise the alerts of every stage this transaction's spend crossed (before commit)."""
    changes = take_counter_changes(session)
    if not changes:
        return []
    found = rules.crossings(changes)
    if not found:
        return []
    return await raise_alerts(session, org, found)


async def raise_alerts(
    session: AsyncSession, org: OrgContext, crossings: Sequence[rules.StageCrossing]
) -> list[AlertRecord]:
    """Insert the alerts (those already raised are skipped) and enqueue their deliveries."""
    rows: list[dict[str, Any]] = [
        {
            "organization_id": org.id,
            "budget_id": c.budget_id,
            "stage": c.stage,
            "period_start": c.period_start,
            "period_end": c.period_end,
            "scope_kind": c.scope_kind,
            "scope_id": c.scope_id,
            "spent": c.spent,
            "limit_amount": c.limit,
            "currency": c.currency,
            "message": rules.message(c),
        }
        for c in crossings
    ]
    raised = await repository.insert_alerts(session, rows)
    if raised:
        await outbox.enqueue(session, org.id, raised)
        session.info.setdefault(RAISED_KEY, []).extend(raised)
    return raised


def take_raised(session: AsyncSession) -> list[AlertRecord]:
    """The alerts raised in this session (and forget them): announce them after commit."""
    taken: list[AlertRecord] = session.info.pop(RAISED_KEY, [])
    return taken


async def raise_forecast_alert(
    session: AsyncSession,
    org: OrgContext,
    budget: Budget,
    period: tuple[datetime, datetime],
    projected: Decimal,
) -> AlertRecord | None:
    """The forecast stage: the period's projected total is over the budget's limit.

    Raised at most once per budget and period (stage 0 under the same unique key). Returns the
    alert if this call raised it. Inside ``Context.writing()`` it is announced after commit
    like any other; elsewhere, announce what :func:`take_raised` returns after committing.
    """
    if projected <= budget.limit_amount:
        return None
    crossing = rules.StageCrossing(
        budget_id=budget.id,
        scope_kind=budget.scope_kind,
        scope_id=budget.scope_id,
        period=budget.period,
        stage=rules.FORECAST_STAGE,
        period_start=period[0],
        period_end=period[1],
        spent=projected,
        limit=budget.limit_amount,
        currency=budget.currency,
    )
    raised = await raise_alerts(session, org, [crossing])
    return raised[0] if raised else None
