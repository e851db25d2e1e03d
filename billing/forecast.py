"""Where a budget period will end: the projected total with 80 % and 95 % intervals, the daily
path to it, and the day a limit would be crossed.

**Which period.** ``forecast(scope)`` uses the scope's MONTH budget when it has one (AI_COST
before BILLED_USAGE unless a basis is asked for): its currency, basis and limit. Without one,
the calendar month in the configured zone (``Limits.zone``), in the scope's currency (an
account's own, else the organisation's reporting currency), on AI cost, with no limit.
:func:`projected_total` forecasts any budget's current period (the hook for forecast alerts).

**What is known and what is estimated.** Spend so far in the period is summed exactly from the
ledger (usage charges and their corrections, see :mod:`usage_series_repository`), as of
``now``. Only the rest of the period is uncertain: the model
(:mod:`costgraph.billing.forecast_models`) sees the complete local days of the last
``history_days`` (from the scope's first usage in that window), forecasts the days to come —
today's share still to come included — and simulates paths; an interval on the total is
``spent so far + a quantile of the simulated path sums``.

**Money.** The model runs in floats. Its figures become ``Decimal`` in :func:`estimate` only,
rounded to the currency's minor unit (half-to-even) — every figure of a projection is an
estimate except ``spent``. A day whose net usage is negative (a correction larger than the
day's charges) counts as zero, and the note says so.

**No history.** No usage in the look-back window: method ``NO_HISTORY``, the projection is
what is spent (usually zero), with no interval, and the note says why.
"""

from __future__ import annotations

import asyncio
import enum
import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import budget_repository
from costgraph.billing.budgets import Basis, period_of, require_scope
from costgraph.billing.directory import OrgContext
from costgraph.billing.forecast_caps import Cap, caps_for, clip
from costgraph.billing.forecast_models import (
    LEVELS,
    Bounds,
    DailyHistory,
    Method,
    PathSummary,
    RemainingForecast,
    forecast_remaining,
    summarize,
)
from costgraph.billing.fx import CurrencyPair
from costgraph.billing.periods import Period, window
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.billing.trends import DaySpend, Trend, trend
from costgraph.billing.usage_series import converted_sums, default_currency, series
from costgraph.kernel.money import minor_unit, round_for_presentation
from costgraph.models.budget import Budget

#: Default look-back of the model, in days (``COSTGRAPH_FORECAST_HISTORY_DAYS``).
HISTORY_DAYS = 84


class PeriodSource(enum.StrEnum):
    BUDGET = "BUDGET"
    CALENDAR_MONTH = "CALENDAR_MONTH"


@dataclass(frozen=True, slots=True)
class Target:
    """What is forecast: a scope's spend on a basis, in a currency, over ``[start, end)``."""

    scope: Scope
    basis: Basis
    currency: str
    period: Period
    start: datetime
    end: datetime
    source: PeriodSource
    budget_id: uuid.UUID | None = None
    limit: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Interval:
    level: int
    low: Decimal
    high: Decimal


@dataclass(frozen=True, slots=True)
class ForecastDay:
    """One local day of the period. ``observed``: complete and in the past (exact figures,
    no interval); otherwise an estimate (today: what is spent so far plus the rest)."""

    date: date
    observed: bool
    spend: Decimal
    cumulative: Decimal
    spend_intervals: tuple[Interval, ...] = ()
    cumulative_intervals: tuple[Interval, ...] = ()


@dataclass(frozen=True, slots=True)
class Projection:
    target: Target
    zone: str
    as_of: datetime
    spent: Decimal
    projected: Decimal
    #: One per level of :data:`LEVELS`; empty when there is no basis for one (NO_HISTORY).
    intervals: tuple[Interval, ...]
    days: tuple[ForecastDay, ...]
    method: Method
    note: str
    history_days: int
    excluded_days: int
    clamped_days: int
    #: The day the limit was crossed (observed) or would be on the expected path.
    limit_crossed_on: date | None
    limit_reached: bool
    #: Share of simulated paths ending above the limit (1 once it is reached).
    probability_over_limit: Decimal | None
    #: Pairs without a rate into the target's currency: that usage is not in the figures.
    missing: tuple[CurrencyPair, ...] = ()
    #: The hard caps that bound the scope's spend (see :mod:`forecast_caps`).
    caps: tuple[Cap, ...] = ()
    #: The cap that lowered the expected total most; None when demand, not a cap, bounds it.
    binding_cap: Cap | None = None
    #: The expected total had no cap stopped spend (what demand alone would reach).
    uncapped_projected: Decimal | None = None
    #: Share of simulated paths a cap cut.
    probability_capped: Decimal | None = None
    #: The trend of the history the model saw (None: no history).
    trend: Trend | None = None

    @property
    def bounded_by_cap(self) -> bool:
        """A hard cap, not demand, bounds the expected total."""
        return self.binding_cap is not None

    def interval(self, level: int) -> Interval | None:
        return next((i for i in self.intervals if i.level == level), None)

    @property
    def exceeds_limit(self) -> bool:
        """The expected total is above the limit (what a forecast alert looks at)."""
        return self.target.limit is not None and self.projected > self.target.limit

    def likely_over_limit(self, probability: Decimal) -> bool:
        """At least this share of simulated paths ends above the limit."""
        return (
            self.probability_over_limit is not None and self.probability_over_limit >= probability
        )


def estimate(known: Decimal, remaining: float, currency: str) -> Decimal:
    """THE one conversion of model output to money: an exactly known amount plus a float
    estimate of what is still to come (never below zero), rounded to the currency's minor
    unit, half-to-even."""
    if not math.isfinite(remaining):
        raise ValueError("a forecast produced a non-finite figure")
    return round_for_presentation(known + Decimal(repr(max(remaining, 0.0))), currency)


def _intervals(known: Decimal, bounds: Sequence[Bounds], currency: str) -> tuple[Interval, ...]:
    return tuple(
        Interval(b.level, estimate(known, b.low, currency), estimate(known, b.high, currency))
        for b in bounds
    )


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _dates(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _share_to_come(day: date, zone: ZoneInfo, now: datetime, target: Target) -> float:
    """The share of ``day``'s spend still to come inside the period (by elapsed time)."""
    start, end = _midnight(day, zone), _midnight(day + timedelta(days=1), zone)
    length = (end - start).total_seconds()
    lower = max(start, target.start, now)
    upper = min(end, target.end)
    return min(1.0, max(0.0, (upper - lower).total_seconds() / length))


async def _daily(
    session: AsyncSession,
    org: OrgContext,
    target: Target,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
) -> tuple[dict[date, Decimal], str | None, tuple[CurrencyPair, ...]]:
    sums, converter = await converted_sums(
        session, org, target.scope, start, end, "day", str(zone.key), target.currency
    )
    spend, _ = series(sums, target.basis, converter)
    by_date: dict[date, Decimal] = defaultdict(Decimal)
    for bucket, amount in spend.items():
        by_date[bucket.astimezone(zone).date()] += amount
    return dict(by_date), converter.note, converter.missing


def _clamp(values: dict[date, Decimal]) -> tuple[dict[date, Decimal], set[date]]:
    negative = {d for d, v in values.items() if v < 0}
    return {d: max(v, Decimal(0)) for d, v in values.items()}, negative


async def project(
    session: AsyncSession,
    org: OrgContext,
    target: Target,
    now: datetime,
    zone: ZoneInfo,
    *,
    history_days: int = HISTORY_DAYS,
    period_note: str = "",
) -> Projection:
    """Forecast ``target``'s total at the end of its period, as of ``now`` (inside it)."""
    today = now.astimezone(zone).date()
    last = (target.end - timedelta(microseconds=1)).astimezone(zone).date()
    first = target.start.astimezone(zone).date()
    lookback = today - timedelta(days=history_days)
    raw_history, note_fx, missing_history = await _daily(
        session, org, target, _midnight(lookback, zone), _midnight(today, zone), zone
    )
    raw_period, note_fx_period, missing_period = await _daily(
        session, org, target, target.start, now, zone
    )
    missing = tuple(sorted(set(missing_history) | set(missing_period)))
    history, negative = _clamp(raw_history)
    period_days, negative_period = _clamp(raw_period)
    clamped = negative | negative_period
    spent = sum(period_days.values(), Decimal(0))
    today_so_far = period_days.get(today, Decimal(0))
    horizon = [d for d in _dates(max(today, first), last)]
    fractions = [_share_to_come(d, zone, now, target) for d in horizon]

    notes = [n for n in (period_note,) if n]
    forecast: RemainingForecast | None
    history_trend: Trend | None = None
    if not raw_history and not raw_period and today_so_far == 0:
        forecast = None
        history_values: list[float] = []
        notes.append(
            f"NO_HISTORY: this scope has no usage in the last {history_days} days, so there is "
            "nothing to forecast from; the projection is what is spent (nothing) and carries "
            "no interval"
        )
    elif not raw_history and today_so_far == 0:
        forecast = None
        history_values = []
        notes.append(
            f"NO_HISTORY: no usage in the last {history_days} days; the projection is what "
            "this period has already spent, with no more expected and no interval"
        )
    else:
        begin = min(raw_history) if raw_history else today
        history_dates = _dates(begin, today - timedelta(days=1)) if begin < today else []
        history_values = [float(history.get(d, Decimal(0))) for d in history_dates]
        first_weekday = begin.weekday()
        day_start = _midnight(today, zone)
        day_length = (_midnight(today + timedelta(days=1), zone) - day_start).total_seconds()
        elapsed = (now - day_start).total_seconds() / day_length
        forecast = await asyncio.to_thread(
            forecast_remaining,
            DailyHistory(tuple(history_values), first_weekday),
            fractions,
            today_so_far=float(today_so_far),
            today_elapsed=elapsed,
        )
        notes.append(forecast.note)
        days_seen = [DaySpend(d, history.get(d, Decimal(0))) for d in history_dates]
        history_trend = await asyncio.to_thread(trend, days_seen)
    caps = await caps_for(
        session, org.id, target.scope, target.basis, target.currency, horizon, now, zone
    )
    capping = _CapEffect()
    if forecast is not None and caps:
        forecast, capping = _apply_caps(forecast, caps, target.currency)
        if capping.binding is not None:
            notes.append(
                f"bounded by the hard cap of budget {capping.binding.budget_id} "
                f"({capping.binding.period.value}, limit {capping.binding.limit} "
                f"{capping.binding.currency}, {capping.binding.remaining} left in its current "
                f"period): without it the expected total would be "
                f"{estimate(spent, capping.uncapped, target.currency)}"
            )
    for extra in dict.fromkeys((note_fx, note_fx_period)):
        if extra:
            notes.append(extra)
    if clamped:
        notes.append(
            f"{len(clamped)} day(s) whose net usage was negative (corrections larger than the "
            "day's charges) counted as zero"
        )
    projection = _assemble(
        target,
        zone,
        now,
        period_days,
        spent,
        horizon,
        forecast,
        notes,
        len(history_values),
        len(clamped),
    )
    return replace(
        projection,
        missing=missing,
        caps=tuple(caps),
        binding_cap=capping.binding,
        uncapped_projected=projection.projected
        if forecast is None
        else estimate(spent, capping.uncapped or float(forecast.expected.sum()), target.currency),
        probability_capped=None
        if forecast is None or not caps
        else Decimal(repr(round(capping.share_capped, 3))),
        trend=history_trend,
    )


@dataclass(frozen=True, slots=True)
class _CapEffect:
    binding: Cap | None = None
    #: The expected remaining spend before the caps.
    uncapped: float = 0.0
    share_capped: float = 0.0


def _apply_caps(
    forecast: RemainingForecast, caps: Sequence[Cap], currency: str
) -> tuple[RemainingForecast, _CapEffect]:
    """The forecast with every cap's rooms applied to its expected days and its paths; the
    cap that lowered the expected total most (by at least half a minor unit) binds."""
    expected, paths = forecast.expected, forecast.paths
    uncapped = float(expected.sum())
    before_paths = paths.sum(axis=1)
    binding: Cap | None = None
    largest = 0.0
    tolerance = float(Decimal(1).scaleb(-minor_unit(currency))) / 2
    for cap in caps:
        total = float(expected.sum())
        expected = clip(expected, cap)
        paths = clip(paths, cap)
        cut = total - float(expected.sum())
        if cut > largest and cut >= tolerance:
            binding, largest = cap, cut
    share = float(np.mean(paths.sum(axis=1) < before_paths - 1e-12)) if paths.size else 0.0
    capped = replace(forecast, expected=expected, paths=paths)
    return capped, _CapEffect(binding, uncapped, share)


def _assemble(
    target: Target,
    zone: ZoneInfo,
    now: datetime,
    period_days: dict[date, Decimal],
    spent: Decimal,
    horizon: Sequence[date],
    forecast: RemainingForecast | None,
    notes: list[str],
    history_days: int,
    clamped_days: int,
) -> Projection:
    currency = target.currency
    limit = target.limit
    first = target.start.astimezone(zone).date()
    today = now.astimezone(zone).date()
    days: list[ForecastDay] = []
    crossed: date | None = None
    running = Decimal(0)
    for day in _dates(first, today - timedelta(days=1)) if first < today else []:
        value = period_days.get(day, Decimal(0))
        running += value
        if limit is not None and crossed is None and running >= limit:
            crossed = day
        days.append(
            ForecastDay(day, True, estimate(value, 0.0, currency), estimate(running, 0.0, currency))
        )
    reached = limit is not None and spent >= limit
    if reached and crossed is None:
        crossed = today
    threshold = None if limit is None or reached else float(limit - spent)
    summary: PathSummary | None = None if forecast is None else summarize(forecast, threshold)
    today_so_far = period_days.get(today, Decimal(0))
    for j, day in enumerate(horizon):
        known = today_so_far if day == today else Decimal(0)
        if summary is None:
            days.append(
                ForecastDay(
                    day, False, estimate(known, 0.0, currency), estimate(spent, 0.0, currency)
                )
            )
            continue
        cumulative = estimate(spent, summary.cumulative_expected[j], currency)
        if limit is not None and crossed is None and cumulative >= limit:
            crossed = day
        days.append(
            ForecastDay(
                day,
                False,
                estimate(known, summary.day_expected[j], currency),
                cumulative,
                _intervals(known, summary.day[j], currency),
                _intervals(spent, summary.cumulative[j], currency),
            )
        )
    if summary is None:
        projected = estimate(spent, 0.0, currency)
        intervals: tuple[Interval, ...] = ()
    else:
        projected = estimate(spent, summary.expected_total, currency)
        intervals = _intervals(spent, summary.total, currency)
    probability: Decimal | None = None
    if limit is not None:
        if reached:
            probability = Decimal(1)
        elif summary is not None and summary.probability_above is not None:
            probability = Decimal(repr(round(summary.probability_above, 3)))
        else:
            probability = Decimal(0)
    return Projection(
        target=target,
        zone=str(zone.key),
        as_of=now,
        spent=estimate(spent, 0.0, currency),
        projected=projected,
        intervals=intervals,
        days=tuple(days),
        method=Method.NO_HISTORY if forecast is None else forecast.method,
        note="; ".join(notes),
        history_days=history_days,
        excluded_days=0 if forecast is None else forecast.excluded_days,
        clamped_days=clamped_days,
        limit_crossed_on=crossed,
        limit_reached=reached,
        probability_over_limit=probability,
    )


def budget_target(budget: Budget, span: tuple[datetime, datetime]) -> Target:
    return Target(
        scope=Scope(ScopeKind(budget.scope_kind), budget.scope_id),
        basis=Basis(budget.basis),
        currency=budget.currency,
        period=Period(budget.period),
        start=span[0],
        end=span[1],
        source=PeriodSource.BUDGET,
        budget_id=budget.id,
        limit=budget.limit_amount,
    )


async def _month_budget(session: AsyncSession, scope: Scope, basis: Basis | None) -> Budget | None:
    found = [
        b
        for b in await budget_repository.budgets_for_scopes(session, [scope])
        if b.period == Period.MONTH and (basis is None or b.basis == basis)
    ]
    found.sort(key=lambda b: (b.basis != Basis.AI_COST, b.created_at))
    return found[0] if found else None


async def forecast(
    session: AsyncSession,
    org: OrgContext,
    scope: Scope,
    now: datetime,
    zone: ZoneInfo,
    *,
    basis: Basis | None = None,
    history_days: int = HISTORY_DAYS,
) -> Projection:
    """The scope's month: its MONTH budget's period, else the calendar month in ``zone``.

    An unknown scope — or another tenant's — is NOT_FOUND (field ``scope.id``).
    """
    await require_scope(session, org, scope, "scope.id")
    budget = await _month_budget(session, scope, basis)
    if budget is not None:
        target = budget_target(budget, window(Period.MONTH, now, zone))
        note = (
            f"period: the scope's MONTH budget ({target.basis.value}, {target.currency}, "
            f"limit {target.limit}) in {zone.key}"
        )
    else:
        start, end = window(Period.MONTH, now, zone)
        target = Target(
            scope=scope,
            basis=basis or Basis.AI_COST,
            currency=await default_currency(session, org, scope),
            period=Period.MONTH,
            start=start,
            end=end,
            source=PeriodSource.CALENDAR_MONTH,
        )
        note = f"period: the calendar month in {zone.key} (this scope has no MONTH budget)"
    return await project(
        session, org, target, now, zone, history_days=history_days, period_note=note
    )


async def projected_total(
    session: AsyncSession,
    org: OrgContext,
    budget: Budget,
    now: datetime,
    zone: ZoneInfo,
    *,
    history_days: int = HISTORY_DAYS,
) -> Projection | None:
    """Forecast-alert hook: where ``budget``'s current period will end.

    Any period (DAY … QUARTER, CUSTOM); None when a custom window does not contain ``now``.
    The caller decides what warrants an alert (``projection.exceeds_limit``, or
    ``likely_over_limit(Decimal("0.8"))``) and raises it once per budget and period.
    """
    span = period_of(budget, now, zone)
    if span is None:
        return None
    target = budget_target(budget, span)
    note = f"period: the budget's {budget.period} period in {zone.key}"
    return await project(
        session, org, target, now, zone, history_days=history_days, period_note=note
    )


__all__ = [
    "HISTORY_DAYS",
    "LEVELS",
    "ForecastDay",
    "Interval",
    "Method",
    "PeriodSource",
    "Projection",
    "Target",
    "estimate",
    "forecast",
    "project",
    "projected_total",
]
