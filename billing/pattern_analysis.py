"""``usagePatterns``: when a scope spends, what is unusual, how it trends and what its seasons
are, who adopts which feature, and what a request costs per model and feature — over up to a
year (hourly detail for the heatmap and anomalies, complete days for trends).

Everything is in the configured zone (``Limits.zone``): heatmap hours and weekdays, weeks
(Monday start) of feature adoption. Spend is AI cost by default (or billed usage), in the
scope's currency (an account's own, else the organisation's reporting currency); sums are the
ledger's, exact to 12 places, converted entry by entry where a scope spans currencies (see
:mod:`costgraph.billing.usage_series`); a currency without a rate is left out and named.
The statistics are described in :mod:`costgraph.billing.patterns`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import patterns, trends
from costgraph.billing import usage_series_repository as repo
from costgraph.billing.budgets import Basis, require_scope
from costgraph.billing.directory import OrgContext
from costgraph.billing.fx import CurrencyPair
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.billing.usage_series import Converter, converted_sums, default_currency, series
from costgraph.kernel.errors import ValidationFailed

#: Default longest range (``COSTGRAPH_PATTERNS_MAX_RANGE_DAYS``, and never beyond the P&L's
#: ``COSTGRAPH_PNL_MAX_RANGE_DAYS``): a year of daily trend and seasonality.
MAX_RANGE_DAYS = 366
#: Feature-week rows in one answer (the busiest features of each week first).
MAX_ADOPTION_ROWS = 2_000
#: Model x feature x day x currency groups read at most (beyond: narrow the range or scope).
MAX_MODEL_DAY_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class AdoptionWeek:
    week: date
    feature: str | None
    users: int
    new_users: int
    requests: int


@dataclass(frozen=True, slots=True)
class PatternsReport:
    scope: Scope
    basis: Basis
    currency: str
    zone: str
    start: datetime
    end: datetime
    total_spend: Decimal
    total_requests: int
    heatmap: list[patterns.HeatCell]
    peak_hours: list[patterns.PeakHour]
    anomalies: list[patterns.Anomaly]
    baseline: patterns.Baseline
    #: The score above which an hour is a spike, fitted to this range (inf: none can be).
    anomaly_threshold: float
    #: Hours flagged (the list holds the strongest :data:`patterns.MAX_ANOMALIES`).
    anomalies_flagged: int
    adoption: list[AdoptionWeek]
    adoption_truncated: bool
    cost_per_request: list[patterns.CostPerRequest]
    #: Daily spend's trend and its profiles by weekday, ISO week and month.
    seasonality: trends.Seasonality
    notes: list[str] = field(default_factory=list)
    #: Pairs without a rate into ``currency``: that usage is left out of every figure.
    missing: tuple[CurrencyPair, ...] = ()


def require_pattern_range(
    start: datetime, end: datetime, max_days: int, field_name: str = "range"
) -> tuple[datetime, datetime]:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed("range bounds must carry a time zone", field_name)
    if end <= start:
        raise ValidationFailed("range end must be after its start", f"{field_name}.end")
    if end - start > timedelta(days=max_days):
        raise ValidationFailed(
            f"usage patterns cover at most {max_days} days; narrow the range",
            f"{field_name}.end",
        )
    return start.astimezone(UTC), end.astimezone(UTC)


async def _model_features(
    session: AsyncSession,
    org: OrgContext,
    scope: Scope,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    currency: str,
) -> list[patterns.ModelFeatureUsage]:
    zone_name = str(zone.key)
    rows = await repo.model_feature_sums(
        session, org.id, scope, start, end, zone_name, MAX_MODEL_DAY_ROWS + 1
    )
    converter = await Converter.load(session, org, currency, {r.currency for r in rows}, start, end)
    if converter.instants and len(rows) <= MAX_MODEL_DAY_ROWS:
        rows = await repo.model_feature_sums(
            session,
            org.id,
            scope,
            start,
            end,
            zone_name,
            MAX_MODEL_DAY_ROWS + 1,
            converter.instants,
        )
    if len(rows) > MAX_MODEL_DAY_ROWS:
        raise ValidationFailed(
            "too many model and feature combinations in this range for one answer; narrow "
            "the range or the scope",
            "range",
        )
    converter = converter.with_parts((r.currency, r.segment) for r in rows)
    Key = tuple[str | None, str | None, str | None]
    ai: dict[Key, Decimal] = defaultdict(Decimal)
    billed: dict[Key, Decimal] = defaultdict(Decimal)
    counts: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        key = (row.provider, row.model, row.feature)
        ai_cost = converter(row.ai_cost, row.currency, row.segment)
        billed_usage = converter(row.billed, row.currency, row.segment)
        if ai_cost is None or billed_usage is None:
            continue  # a currency left out (no rate): named by the hourly series' note
        ai[key] += ai_cost
        billed[key] += billed_usage
        counts[key][0] += row.requests
        counts[key][1] += row.input_tokens
        counts[key][2] += row.output_tokens
    return [
        patterns.ModelFeatureUsage(
            key[0],
            key[1],
            key[2],
            counts[key][0],
            ai[key],
            billed[key],
            counts[key][1],
            counts[key][2],
        )
        for key in ai
    ]


def _statistics(
    hours: list[patterns.HourSpend], zone: ZoneInfo, cut: datetime
) -> tuple[patterns.AnomalyScan, trends.Seasonality]:
    """The CPU part (a tail fit, a regression): run off the event loop."""
    days = trends.complete_days([(h.start, h.spend) for h in hours], zone, cut)
    return patterns.scan(hours), trends.seasonality(days)


async def usage_patterns(
    session: AsyncSession,
    org: OrgContext,
    scope: Scope | None,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    *,
    basis: Basis = Basis.AI_COST,
    max_range_days: int = MAX_RANGE_DAYS,
    now: datetime | None = None,
) -> PatternsReport:
    """Patterns of ``scope`` (the organisation when None) over ``[start, end)``.

    Trends and seasonality use the complete local days of the range before ``now``.

    A range longer than ``max_range_days`` is VALIDATION_FAILED; an unknown or another
    tenant's scope is NOT_FOUND (``scope.id``).
    """
    start, end = require_pattern_range(start, end, max_range_days)
    scope = scope or Scope(ScopeKind.ORGANIZATION, org.id)
    await require_scope(session, org, scope, "scope.id")
    currency = await default_currency(session, org, scope)
    hourly, converter = await converted_sums(
        session, org, scope, start, end, "hour", str(zone.key), currency
    )
    spend, requests = series(hourly, basis, converter)
    notes: list[str] = []
    negative = [bucket for bucket, value in spend.items() if value < 0]
    if negative:
        notes.append(
            f"{len(negative)} hour(s) whose net usage was negative (corrections) counted as zero"
        )
        spend = {bucket: max(value, Decimal(0)) for bucket, value in spend.items()}
    hours = patterns.fill_hours(patterns.hour_slots(start, end, zone), spend, requests, zone)
    cut = end if now is None else min(end, now)
    scan, seasons = await asyncio.to_thread(_statistics, hours, zone, cut)
    if scan.baseline is patterns.Baseline.NONE:
        notes.append(
            f"anomalies need at least {patterns.MIN_ANOMALY_DAYS} days of hours; none looked for"
        )
    adoption_rows = await repo.feature_adoption(
        session, org.id, scope, start, end, str(zone.key), MAX_ADOPTION_ROWS + 1
    )
    truncated = len(adoption_rows) > MAX_ADOPTION_ROWS
    model_rows = await _model_features(session, org, scope, start, end, zone, currency)
    if converter.note:
        notes.append(converter.note)
    return PatternsReport(
        scope=scope,
        basis=basis,
        currency=currency,
        zone=str(zone.key),
        start=start,
        end=end,
        total_spend=sum((h.spend for h in hours), Decimal(0)),
        total_requests=sum(h.requests for h in hours),
        heatmap=patterns.heatmap(hours),
        peak_hours=patterns.peak_hours(hours),
        anomalies=scan.found,
        baseline=scan.baseline,
        anomaly_threshold=scan.threshold,
        anomalies_flagged=scan.flagged,
        seasonality=seasons,
        adoption=[
            AdoptionWeek(
                row.week.astimezone(zone).date(),
                row.feature,
                row.users,
                row.new_users,
                row.requests,
            )
            for row in adoption_rows[:MAX_ADOPTION_ROWS]
        ],
        adoption_truncated=truncated,
        cost_per_request=patterns.cost_per_request(model_rows),
        notes=notes,
        missing=converter.missing,
    )


__all__ = ["MAX_RANGE_DAYS", "AdoptionWeek", "PatternsReport", "usage_patterns"]
