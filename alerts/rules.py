"""Threshold rules: which stages a write crossed, and how an alert reads. Pure functions.

A stage ``t`` (percent) is crossed by a write that took a budget's period spend from
``before`` to ``after`` when ``before * 100 < limit * t <= after * 100`` — exact decimals,
no rounding, so a spend landing exactly on a threshold raises it and the next write does not.
One write may cross several stages at once (each is its own alert). Stage 0 is the forecast
stage: the period's projected total is over the limit.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from costgraph.billing.budgets import CounterChange
from costgraph.kernel.money import round_for_presentation

FORECAST_STAGE = 0


class AlertKind(enum.StrEnum):
    THRESHOLD = "THRESHOLD"
    FORECAST = "FORECAST"

    @classmethod
    def of_stage(cls, stage: int) -> AlertKind:
        return cls.FORECAST if stage == FORECAST_STAGE else cls.THRESHOLD

    @property
    def code(self) -> str:
        """The alert's stable code (GraphQL ``code``, webhook ``type`` prefix)."""
        return "BUDGET_FORECAST" if self is AlertKind.FORECAST else "BUDGET_THRESHOLD"

    @property
    def event_type(self) -> str:
        return "budget.forecast_exceeded" if self is AlertKind.FORECAST else "budget.threshold"


@dataclass(frozen=True, slots=True)
class StageCrossing:
    """One stage of one budget reached in one period: the alert to raise (at most once)."""

    budget_id: uuid.UUID
    scope_kind: str
    scope_id: uuid.UUID
    period: str
    stage: int
    period_start: datetime
    period_end: datetime
    spent: Decimal
    limit: Decimal
    currency: str

    @property
    def kind(self) -> AlertKind:
        return AlertKind.of_stage(self.stage)


def crossed_stages(
    thresholds: Iterable[int], limit: Decimal, before: Decimal, after: Decimal
) -> list[int]:
    """The thresholds (percent) that a move from ``before`` to ``after`` crossed upwards."""
    return sorted(t for t in set(thresholds) if before * 100 < limit * t <= after * 100)


def crossings(changes: Sequence[CounterChange]) -> list[StageCrossing]:
    """Every stage the counter changes of one transaction crossed, in a stable order.

    Several changes of one budget and period (a batch applied in parts) are merged first:
    the stages crossed are those between the lowest ``before`` and the highest ``after``.
    """
    merged: dict[tuple[uuid.UUID, datetime], tuple[CounterChange, Decimal, Decimal]] = {}
    for change in changes:
        key = (change.budget.id, change.period_start)
        seen = merged.get(key)
        if seen is None:
            merged[key] = (change, change.spent_before, change.spent_after)
        else:
            merged[key] = (
                change,
                min(seen[1], change.spent_before),
                max(seen[2], change.spent_after),
            )
    found: list[StageCrossing] = []
    for key in sorted(merged):
        change, before, after = merged[key]
        budget = change.budget
        for stage in crossed_stages(budget.thresholds, budget.limit_amount, before, after):
            found.append(
                StageCrossing(
                    budget_id=budget.id,
                    scope_kind=budget.scope_kind,
                    scope_id=budget.scope_id,
                    period=budget.period,
                    stage=stage,
                    period_start=change.period_start,
                    period_end=change.period_end,
                    spent=after,
                    limit=budget.limit_amount,
                    currency=budget.currency,
                )
            )
    return found


def _money(value: Decimal, currency: str) -> str:
    return f"{round_for_presentation(value, currency)} {currency}"


def message(crossing: StageCrossing) -> str:
    """The human sentence every channel shows (money rounded for presentation only)."""
    scope = crossing.scope_kind.lower()
    span = f"{crossing.period_start:%Y-%m-%d} to {crossing.period_end:%Y-%m-%d}"
    if crossing.kind is AlertKind.FORECAST:
        return (
            f"The {crossing.period.lower()} budget of {scope} {crossing.scope_id} is forecast "
            f"to reach {_money(crossing.spent, crossing.currency)}, over its limit of "
            f"{_money(crossing.limit, crossing.currency)} ({span})."
        )
    return (
        f"The {crossing.period.lower()} budget of {scope} {crossing.scope_id} has reached "
        f"{crossing.stage}% of its limit: {_money(crossing.spent, crossing.currency)} of "
        f"{_money(crossing.limit, crossing.currency)} spent ({span})."
    )


def severity(stage: int) -> str:
    """PagerDuty-style severity: the limit itself (or a forecast past it) is the loudest."""
    if stage == FORECAST_STAGE:
        return "error"
    if stage >= 100:
        return "critical"
    if stage >= 90:
        return "error"
    return "warning"
