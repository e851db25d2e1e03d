"""Threshold rules: which stages a write crossed, and how an alert reads. Pure functions.

A stage ``t`` (percent) is crossed by a write that took a budget's period spend from
``before`` to ``after`` when ``before * 100 < limit * t <= after * 100`` — exact decimals,
no rounding, so a spend landing exactly on a threshold raises it and the next write does not.
One write may cross several stages at once (each is its own alert).

Alerts are raised once per budget, kind, stage, period and version of the budget's terms:

- THRESHOLD: a stage crossed by a write, as above; or reached by a change of terms
  (``setBudget``): the stages the period's spend reaches under the new terms that it had not
  reached under the old ones (a lowered limit fires the stages it now crosses; a new budget
  those its period's spend already reached). A change of terms is a new version, so a raised
  limit re-arms the stages above the spend: they fire again when crossed.
- FORECAST (stage 0): the period's projected total is over the limit.
- OVERAGE (stage 0): a write that was not refused took a hard-capped period over its limit —
  a settlement beyond its hold, within the tolerance (or a correction of past usage).
- RATE_MISSING (stage 0): a write left spend uncounted on the budget for want of a rate into
  its currency: the budget cannot evaluate the period (``budgetStatus.canEvaluate``).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from costgraph.billing.budgets import CounterChange, TermsChange, reached
from costgraph.kernel.money import format_money
from costgraph.models.budget import Budget

FORECAST_STAGE = 0


class AlertKind(enum.StrEnum):
    THRESHOLD = "THRESHOLD"
    FORECAST = "FORECAST"
    OVERAGE = "OVERAGE"
    #: A budget that cannot evaluate its period: spend without a rate into its currency.
    RATE_MISSING = "RATE_MISSING"
    #: Not a budget's: a Stripe payment whose key another request holds (nothing recorded).
    PAYMENT_CONFLICT = "PAYMENT_CONFLICT"
    #: Not a budget's: an account's prepaid balance fell below its auto-top-up threshold.
    TOP_UP_REQUESTED = "TOP_UP_REQUESTED"

    @classmethod
    def of_code(cls, code: str) -> AlertKind:
        return next((kind for kind in cls if kind.code == code), cls.THRESHOLD)

    @property
    def code(self) -> str:
        """The alert's stable code (GraphQL ``code``, webhook ``type`` prefix)."""
        if self in (AlertKind.PAYMENT_CONFLICT, AlertKind.TOP_UP_REQUESTED):
            return self.value
        return f"BUDGET_{self.value}"

    @property
    def event_type(self) -> str:
        return _EVENT_TYPES[self]


_EVENT_TYPES = {
    AlertKind.THRESHOLD: "budget.threshold",
    AlertKind.FORECAST: "budget.forecast_exceeded",
    AlertKind.OVERAGE: "budget.overage",
    AlertKind.RATE_MISSING: "budget.rate_missing",
    AlertKind.PAYMENT_CONFLICT: "payment.conflict",
    AlertKind.TOP_UP_REQUESTED: "account.top_up_requested",
}


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
    kind: AlertKind = AlertKind.THRESHOLD
    #: The budget's terms version: once per version, so a change of terms re-arms.
    terms_version: int = 1
    #: RATE_MISSING: the entry currencies the budget could not count.
    uncounted: tuple[str, ...] = ()


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
    uncounted: dict[tuple[uuid.UUID, datetime], set[str]] = {}
    for change in changes:
        key = (change.budget.id, change.period_start)
        if change.uncounted:
            uncounted.setdefault(key, set()).update(c for c, _ in change.uncounted)
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
        budget, window = change.budget, (change.period_start, change.period_end)
        for stage in crossed_stages(budget.thresholds, budget.limit_amount, before, after):
            found.append(crossing_of(budget, window, stage, after))
        if budget.hard_cap and before <= budget.limit_amount < after:
            found.append(crossing_of(budget, window, 0, after, AlertKind.OVERAGE))
        if key in uncounted:
            gap = crossing_of(budget, window, 0, after, AlertKind.RATE_MISSING)
            found.append(replace(gap, uncounted=tuple(sorted(uncounted[key]))))
    return found


def terms_crossings(changes: Sequence[TermsChange]) -> list[StageCrossing]:
    """The stages a budget's new terms make its period's spend reach, that the old terms had
    not: a new budget's stages already reached, a lowered limit's stages now crossed. (Those
    reached under both were raised before; a raised limit reaches fewer, and the new terms
    version re-arms the rest.)"""
    found: list[StageCrossing] = []
    for change in changes:
        budget, window = change.budget, (change.period_start, change.period_end)
        for stage in sorted(set(reached(budget, change.spent)) - set(change.reached_before)):
            found.append(crossing_of(budget, window, stage, change.spent))
    return found


def crossing_of(
    budget: Budget,
    window: tuple[datetime, datetime],
    stage: int,
    spent: Decimal,
    kind: AlertKind = AlertKind.THRESHOLD,
) -> StageCrossing:
    """The alert of ``budget`` (as its terms are now) in the period ``window``."""
    return StageCrossing(
        budget_id=budget.id,
        scope_kind=budget.scope_kind,
        scope_id=budget.scope_id,
        period=budget.period,
        stage=stage,
        period_start=window[0],
        period_end=window[1],
        spent=spent,
        limit=budget.limit_amount,
        currency=budget.currency,
        kind=kind,
        terms_version=budget.terms_version,
    )


def _money(value: Decimal, currency: str) -> str:
    return format_money(value, currency)


def scope_text(kind: str, ident: uuid.UUID, name: str | None) -> str:
    """``user Ada <ada@example.com> (id)``: the name beside the id, when there is one."""
    return f"{kind.lower()} {ident}" if not name else f"{kind.lower()} {name} ({ident})"


def message(crossing: StageCrossing, scope_name: str | None = None) -> str:
    """The human sentence every channel shows (money rounded for presentation only)."""
    scope = scope_text(crossing.scope_kind, crossing.scope_id, scope_name)
    span = f"{crossing.period_start:%Y-%m-%d} to {crossing.period_end:%Y-%m-%d}"
    if crossing.kind is AlertKind.FORECAST:
        return (
            f"The {crossing.period.lower()} budget of {scope} is forecast "
            f"to reach {_money(crossing.spent, crossing.currency)}, over its limit of "
            f"{_money(crossing.limit, crossing.currency)} ({span})."
        )
    if crossing.kind is AlertKind.RATE_MISSING:
        pairs = ", ".join(f"{c}->{crossing.currency}" for c in crossing.uncounted)
        return (
            f"The {crossing.period.lower()} budget of {scope} cannot evaluate its period: no "
            f"exchange rate {pairs or 'into ' + crossing.currency}, so that spend is not "
            f"counted against its limit of {_money(crossing.limit, crossing.currency)} (usage "
            f"is not refused for it); add the rate ({span})."
        )
    if crossing.kind is AlertKind.OVERAGE:
        return (
            f"The {crossing.period.lower()} budget of {scope} went over its hard cap: "
            f"{_money(crossing.spent, crossing.currency)} spent of "
            f"{_money(crossing.limit, crossing.currency)}, by a settlement beyond its hold; "
            f"new authorisations are refused until the period ends ({span})."
        )
    return (
        f"The {crossing.period.lower()} budget of {scope} has reached "
        f"{crossing.stage}% of its limit: {_money(crossing.spent, crossing.currency)} of "
        f"{_money(crossing.limit, crossing.currency)} spent ({span})."
    )


def severity(kind: AlertKind, stage: int) -> str:
    """PagerDuty-style severity: the limit itself (or a forecast past it) is the loudest."""
    if kind is AlertKind.FORECAST:
        return "error"
    if kind in (AlertKind.OVERAGE, AlertKind.PAYMENT_CONFLICT) or stage >= 100:
        return "critical"
    if stage >= 90:
        return "error"
    return "warning"
