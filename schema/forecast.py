"""Forecasts of a period's total and usage patterns."""

from __future__ import annotations

import datetime as dt
import decimal

import strawberry

from costgraph.billing import forecast as model
from costgraph.billing import pattern_analysis
from costgraph.billing import patterns as pattern_model
from costgraph.billing.forecast import PeriodSource
from costgraph.billing.forecast_models import Method
from costgraph.billing.patterns import AnomalyKind, Baseline
from costgraph.kernel.money import quantize_stored
from costgraph.schema.budgets import BudgetBasis, BudgetPeriod, BudgetScope
from costgraph.schema.currencies import CurrencyPair, pairs
from costgraph.schema.scalars import CurrencyCode
from costgraph.schema.scopes import BudgetScopeKind

strawberry.enum(
    Method,
    name="ForecastMethod",
    description="WEEKDAY_TREND_REGRESSION: a regression with weekday effects and a linear "
    "trend (statsmodels), from 14 complete days of history; MEAN_DAILY_RATE: the fallback on "
    "shorter history, with a deliberately wide interval; NO_HISTORY: no usage to forecast from.",
)
strawberry.enum(
    PeriodSource,
    name="ForecastPeriodSource",
    description="BUDGET: the scope's MONTH budget's period, currency, basis and limit; "
    "CALENDAR_MONTH: no such budget, so the calendar month in the configured time zone.",
)
strawberry.enum(
    Baseline,
    name="AnomalyBaseline",
    description="What an hour is compared with: the median of the same hour of the week "
    "(ranges of 21 days or more), of the same hour of the day (3 days or more), or NONE.",
)
strawberry.enum(AnomalyKind, name="AnomalyKind", description="Above (SPIKE) or below (DROP).")
ForecastMethod = Method
ForecastPeriodSource = PeriodSource
AnomalyBaseline = Baseline

_ESTIMATE = " An estimate, rounded to the currency's minor unit."


@strawberry.type(description="A range an estimate falls in with the given probability.")
class EstimateInterval:
    level: int = strawberry.field(description="Percent: 80 or 95.")
    low: decimal.Decimal = strawberry.field(description="Lower bound." + _ESTIMATE)
    high: decimal.Decimal = strawberry.field(description="Upper bound." + _ESTIMATE)

    @classmethod
    def pick(cls, intervals: tuple[model.Interval, ...], level: int) -> EstimateInterval | None:
        found = next((i for i in intervals if i.level == level), None)
        return None if found is None else cls(level=found.level, low=found.low, high=found.high)


@strawberry.type(description="One local day of the forecast period.")
class ForecastDay:
    date: dt.date = strawberry.field(description="The day, in the forecast's time zone.")
    observed: bool = strawberry.field(
        description="A complete past day: exact figures, no interval. Otherwise an estimate "
        "(today: spent so far plus the rest of the day)."
    )
    spend: decimal.Decimal = strawberry.field(
        description="The day's spend (expected, unless observed)."
    )
    cumulative: decimal.Decimal = strawberry.field(
        description="The period's spend by the end of the day (expected, unless observed)."
    )
    spend_interval80: EstimateInterval | None
    spend_interval95: EstimateInterval | None
    cumulative_interval80: EstimateInterval | None = strawberry.field(
        description="Where the running total should be at the end of the day, 80 % of paths."
    )
    cumulative_interval95: EstimateInterval | None

    @classmethod
    def of(cls, day: model.ForecastDay) -> ForecastDay:
        return cls(
            date=day.date,
            observed=day.observed,
            spend=day.spend,
            cumulative=day.cumulative,
            spend_interval80=EstimateInterval.pick(day.spend_intervals, 80),
            spend_interval95=EstimateInterval.pick(day.spend_intervals, 95),
            cumulative_interval80=EstimateInterval.pick(day.cumulative_intervals, 80),
            cumulative_interval95=EstimateInterval.pick(day.cumulative_intervals, 95),
        )


@strawberry.type(
    description="Where a scope's spend will stand at the end of the current period. "
    "Everything but `spent` is a statistical estimate."
)
class Forecast:
    scope: BudgetScope
    basis: BudgetBasis
    currency: CurrencyCode
    period: BudgetPeriod
    period_source: ForecastPeriodSource
    period_start: dt.datetime
    period_end: dt.datetime = strawberry.field(description="Exclusive.")
    time_zone: str = strawberry.field(description="Where days and the period are cut (IANA).")
    budget_id: strawberry.ID | None = strawberry.field(description="The budget forecast, if any.")
    limit: decimal.Decimal | None = strawberry.field(description="That budget's limit.")
    as_of: dt.datetime
    spent: decimal.Decimal = strawberry.field(
        description="Spent in the period so far: exact, rounded to the minor unit."
    )
    projected_total: decimal.Decimal = strawberry.field(
        description="Expected total at the end of the period." + _ESTIMATE
    )
    interval80: EstimateInterval | None = strawberry.field(
        description="The period total lies here with 80 % probability (null: NO_HISTORY)."
    )
    interval95: EstimateInterval | None = strawberry.field(
        description="The period total lies here with 95 % probability (null: NO_HISTORY)."
    )
    days: list[ForecastDay] = strawberry.field(description="Every day of the period.")
    limit_crossed_on: dt.date | None = strawberry.field(
        description="The day the limit was crossed, or would be on the expected path; null "
        "when it would not be or there is no limit."
    )
    limit_reached: bool
    probability_over_limit: decimal.Decimal | None = strawberry.field(
        description="Share of simulated paths ending above the limit, 0 to 1 (an estimate)."
    )
    method: ForecastMethod
    note: str = strawberry.field(description="What was forecast from what, in words.")
    history_days: int = strawberry.field(description="Complete days of history the model saw.")
    excluded_spike_days: int = strawberry.field(
        description="History days left out of the fit as one-off spikes."
    )
    clamped_negative_days: int = strawberry.field(
        description="Days whose net usage was negative (corrections), counted as zero."
    )
    missing_rates: list[CurrencyPair] = strawberry.field(
        description="Pairs without a rate into `currency`: usage in those currencies is left "
        "out of every figure (the note says so). Empty when all usage converted."
    )

    @classmethod
    def of(cls, p: model.Projection) -> Forecast:
        target = p.target
        return cls(
            missing_rates=pairs(p.missing),
            scope=BudgetScope(
                kind=BudgetScopeKind(target.scope.kind), id=strawberry.ID(str(target.scope.id))
            ),
            basis=target.basis,
            currency=CurrencyCode(target.currency),
            period=target.period,
            period_source=target.source,
            period_start=target.start,
            period_end=target.end,
            time_zone=p.zone,
            budget_id=None if target.budget_id is None else strawberry.ID(str(target.budget_id)),
            limit=target.limit,
            as_of=p.as_of,
            spent=p.spent,
            projected_total=p.projected,
            interval80=EstimateInterval.pick(p.intervals, 80),
            interval95=EstimateInterval.pick(p.intervals, 95),
            days=[ForecastDay.of(d) for d in p.days],
            limit_crossed_on=p.limit_crossed_on,
            limit_reached=p.limit_reached,
            probability_over_limit=p.probability_over_limit,
            method=p.method,
            note=p.note,
            history_days=p.history_days,
            excluded_spike_days=p.excluded_days,
            clamped_negative_days=p.clamped_days,
        )


@strawberry.type(description="One weekday x hour cell of the heatmap, in the patterns' zone.")
class HeatmapCell:
    day_of_week: int = strawberry.field(description="ISO: 1 is Monday, 7 is Sunday.")
    hour: int = strawberry.field(description="Local hour of the day, 0-23.")
    spend: decimal.Decimal
    requests: int
    hours: int = strawberry.field(description="How many such hours the range holds.")
    average_spend: decimal.Decimal = strawberry.field(description="spend / hours (0 if none).")

    @classmethod
    def of(cls, cell: pattern_model.HeatCell) -> HeatmapCell:
        average = decimal.Decimal(0) if cell.hours == 0 else cell.spend / cell.hours
        return cls(
            day_of_week=cell.weekday,
            hour=cell.hour,
            spend=cell.spend,
            requests=cell.requests,
            hours=cell.hours,
            average_spend=quantize_stored(average),
        )


@strawberry.type(description="An hour of the day among the costliest.")
class PeakHour:
    hour: int
    spend: decimal.Decimal
    requests: int
    share: float = strawberry.field(description="Of the range's spend, 0 to 1.")


@strawberry.type(description="An hour whose spend is far from its usual level.")
class UsageAnomaly:
    kind: AnomalyKind
    start: dt.datetime = strawberry.field(description="The hour's start (UTC).")
    day_of_week: int
    hour: int = strawberry.field(description="Local hour of the day.")
    spend: decimal.Decimal
    expected: decimal.Decimal = strawberry.field(description="The baseline: a median.")
    score: float = strawberry.field(description="Modified z-score (MAD based).")


@strawberry.type(description="Who used a feature in one local week (Monday start).")
class FeatureAdoption:
    week_start: dt.date
    feature: str | None = strawberry.field(description="null: usage without a feature tag.")
    users: int = strawberry.field(description="Distinct users (usage with a user id).")
    new_users: int = strawberry.field(description="Users first seen on the feature in the range.")
    requests: int


@strawberry.type(description="What a request costs with one model for one feature.")
class ModelCostPerRequest:
    provider: str | None
    model: str | None
    feature: str | None
    requests: int
    ai_cost: decimal.Decimal
    billed_usage: decimal.Decimal
    ai_cost_per_request: decimal.Decimal | None = strawberry.field(
        description="Exact to 12 places (per-request costs are fractions of a cent)."
    )
    billed_per_request: decimal.Decimal | None
    average_input_tokens: float | None
    average_output_tokens: float | None
    relative_to_cheapest: float | None = strawberry.field(
        description="AI cost per request over that of the cheapest model used for the same "
        "feature: 1 is the cheapest; 8 means eight times as costly per request."
    )

    @classmethod
    def of(cls, row: pattern_model.CostPerRequest) -> ModelCostPerRequest:
        usage = row.usage
        return cls(
            provider=usage.provider,
            model=usage.model,
            feature=usage.feature,
            requests=usage.requests,
            ai_cost=usage.ai_cost,
            billed_usage=usage.billed,
            ai_cost_per_request=row.ai_cost_per_request,
            billed_per_request=row.billed_per_request,
            average_input_tokens=row.average_input_tokens,
            average_output_tokens=row.average_output_tokens,
            relative_to_cheapest=row.relative_to_cheapest,
        )


@strawberry.type(
    description="When and on what a scope spends, over a range, in the configured time zone. "
    "Sums are exact (12 places) in `currency`."
)
class UsagePatterns:
    scope: BudgetScope
    basis: BudgetBasis = strawberry.field(description="What `spend` measures.")
    currency: CurrencyCode
    time_zone: str = strawberry.field(description="Hours, weekdays and weeks are cut here.")
    start: dt.datetime
    end: dt.datetime
    total_spend: decimal.Decimal
    total_requests: int
    heatmap: list[HeatmapCell] = strawberry.field(description="168 cells, Monday 00 first.")
    peak_hours: list[PeakHour]
    anomalies: list[UsageAnomaly] = strawberry.field(
        description="Hours with a modified z-score (median absolute deviation of hourly spend "
        "from its baseline) beyond `anomalyThreshold` and away from the baseline by at least "
        "the mean hourly spend; strongest first, at most 50."
    )
    anomaly_baseline: AnomalyBaseline
    anomaly_threshold: float
    feature_adoption: list[FeatureAdoption]
    feature_adoption_truncated: bool
    cost_per_request: list[ModelCostPerRequest] = strawberry.field(
        description="By provider, model and feature, the largest AI cost first."
    )
    notes: list[str]
    missing_rates: list[CurrencyPair] = strawberry.field(
        description="Pairs without a rate into `currency`: usage in those currencies is left "
        "out of every figure. Empty when all usage converted."
    )

    @classmethod
    def of(cls, report: pattern_analysis.PatternsReport) -> UsagePatterns:
        return cls(
            scope=BudgetScope(
                kind=BudgetScopeKind(report.scope.kind), id=strawberry.ID(str(report.scope.id))
            ),
            basis=report.basis,
            currency=CurrencyCode(report.currency),
            time_zone=report.zone,
            start=report.start,
            end=report.end,
            total_spend=report.total_spend,
            total_requests=report.total_requests,
            heatmap=[HeatmapCell.of(c) for c in report.heatmap],
            peak_hours=[
                PeakHour(hour=p.hour, spend=p.spend, requests=p.requests, share=p.share)
                for p in report.peak_hours
            ],
            anomalies=[
                UsageAnomaly(
                    kind=a.kind,
                    start=a.start,
                    day_of_week=a.weekday,
                    hour=a.hour,
                    spend=a.spend,
                    expected=a.expected,
                    score=a.score,
                )
                for a in report.anomalies
            ],
            anomaly_baseline=report.baseline,
            anomaly_threshold=report.anomaly_threshold,
            feature_adoption=[
                FeatureAdoption(
                    week_start=w.week,
                    feature=w.feature,
                    users=w.users,
                    new_users=w.new_users,
                    requests=w.requests,
                )
                for w in report.adoption
            ],
            feature_adoption_truncated=report.adoption_truncated,
            cost_per_request=[ModelCostPerRequest.of(r) for r in report.cost_per_request],
            notes=report.notes,
            missing_rates=pairs(report.missing),
        )
