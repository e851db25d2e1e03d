"""Forecasts of a period's total and usage patterns."""

from __future__ import annotations

import datetime as dt
import decimal
import math

import strawberry

from costgraph.billing import forecast as model
from costgraph.billing import forecast_caps, pattern_analysis
from costgraph.billing import patterns as pattern_model
from costgraph.billing import trends as trend_model
from costgraph.billing.anomaly_detection import TARGET_FPR
from costgraph.billing.forecast import PeriodSource
from costgraph.billing.forecast_models import Method
from costgraph.billing.patterns import AnomalyKind, Baseline
from costgraph.billing.trends import TrendDirection
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
strawberry.enum(
    TrendDirection,
    name="TrendDirection",
    description="RISING: the daily spend's slope is above zero with 95 % confidence and adds "
    "at least 1 % of a mean day per week; FALLING mirrors it; FLAT otherwise; "
    "INSUFFICIENT_DATA: fewer than 14 complete days (or no spend).",
)
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


@strawberry.type(description="A slope's 95 % confidence interval (spend per day).")
class SlopeInterval:
    low: decimal.Decimal
    high: decimal.Decimal


@strawberry.type(
    description="The trend of daily spend over complete local days: a regression with weekday "
    "effects and a linear trend (spike days screened out by a robust fit), in `currency` per day."
)
class SpendTrend:
    direction: TrendDirection
    rising: bool = strawberry.field(
        description="The evidence: `slopePerDay`, its `slopeInterval95` (wholly above zero) and "
        "`weeklyGrowth` (at least 0.01), over `daysConsidered` days."
    )
    days_considered: int = strawberry.field(description="Complete local days the fit saw.")
    weeks_considered: float = strawberry.field(description="daysConsidered / 7.")
    mean_daily_spend: decimal.Decimal
    slope_per_day: decimal.Decimal | None = strawberry.field(
        description="Spend added per day by the trend (null under 14 days)."
    )
    slope_std_error: decimal.Decimal | None
    slope_interval95: SlopeInterval | None
    p_value: float | None = strawberry.field(description="Of the slope being zero (two-sided).")
    weekly_growth: float | None = strawberry.field(
        description="7 x slopePerDay / meanDailySpend: 0.05 is 5 % of a mean day more each week."
    )
    excluded_spike_days: int = strawberry.field(description="Days left out as one-off spikes.")
    last_week_spend: decimal.Decimal | None = strawberry.field(
        description="The last seven complete days (null under 14 days)."
    )
    previous_week_spend: decimal.Decimal | None = strawberry.field(
        description="The seven days before those."
    )
    week_over_week_change: decimal.Decimal | None = strawberry.field(
        description="lastWeekSpend - previousWeekSpend."
    )
    week_over_week_percent: decimal.Decimal | None = strawberry.field(
        description="That change in percent of previousWeekSpend (null when it is 0)."
    )

    @classmethod
    def of(cls, t: trend_model.Trend) -> SpendTrend:
        interval = (
            None
            if t.slope_low is None or t.slope_high is None
            else SlopeInterval(low=t.slope_low, high=t.slope_high)
        )
        return cls(
            direction=t.direction,
            rising=t.rising,
            days_considered=t.days,
            weeks_considered=t.weeks,
            mean_daily_spend=t.mean_daily,
            slope_per_day=t.slope_per_day,
            slope_std_error=t.slope_std_error,
            slope_interval95=interval,
            p_value=t.p_value,
            weekly_growth=t.weekly_growth,
            excluded_spike_days=t.excluded_days,
            last_week_spend=t.last_week,
            previous_week_spend=t.previous_week,
            week_over_week_change=t.week_over_week,
            week_over_week_percent=t.week_over_week_percent,
        )


@strawberry.type(
    description="Spend of one day of the week (ISO 1-7), ISO week of the year (1-53) or month "
    "(1-12) over the range's complete days."
)
class SeasonalProfileRow:
    key: int
    days: int = strawberry.field(description="Complete days of it in the range.")
    spend: decimal.Decimal
    average_daily_spend: decimal.Decimal
    index: float | None = strawberry.field(
        description="averageDailySpend / the range's mean daily spend (1.2: 20 % above a usual "
        "day); null when nothing was spent."
    )

    @classmethod
    def of(cls, row: trend_model.ProfileRow) -> SeasonalProfileRow:
        return cls(
            key=row.key,
            days=row.days,
            spend=row.spend,
            average_daily_spend=row.average_daily,
            index=row.index,
        )


@strawberry.type(description="One complete local day of the range.")
class DailySpend:
    date: dt.date
    spend: decimal.Decimal


@strawberry.type(
    description="A hard-capped budget that bounds the forecast: spend past its limit is refused."
)
class ForecastCap:
    budget_id: strawberry.ID
    scope: BudgetScope
    period: BudgetPeriod
    limit: decimal.Decimal
    currency: CurrencyCode
    remaining: decimal.Decimal = strawberry.field(
        description="What its current period still lets through: limit - spent, at least 0."
    )
    current_period_end: dt.datetime

    @classmethod
    def of(cls, cap: forecast_caps.Cap) -> ForecastCap:
        return cls(
            budget_id=strawberry.ID(str(cap.budget_id)),
            scope=BudgetScope(
                kind=BudgetScopeKind(cap.scope.kind), id=strawberry.ID(str(cap.scope.id))
            ),
            period=cap.period,
            limit=cap.limit,
            currency=CurrencyCode(cap.currency),
            remaining=cap.remaining,
            current_period_end=cap.window_end,
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
    bounded_by_cap: bool = strawberry.field(
        description="A hard cap, not demand, bounds the projection: `projectedTotal` and the "
        "intervals stop at what `cap` lets through (`uncappedProjectedTotal` is the demand)."
    )
    cap: ForecastCap | None = strawberry.field(
        description="The hard cap that bounds the projection (null: demand does)."
    )
    caps: list[ForecastCap] = strawberry.field(
        description="Every hard cap on this scope or one holding it (organisation, an account's "
        "customer, a user's department) on the forecast's basis and currency: the projection "
        "and its intervals never exceed what they let through."
    )
    uncapped_projected_total: decimal.Decimal = strawberry.field(
        description="The expected total had no cap stopped spend." + _ESTIMATE
    )
    probability_capped: decimal.Decimal | None = strawberry.field(
        description="Share of simulated paths a cap cut, 0 to 1 (null: no cap or no history)."
    )
    trend: SpendTrend | None = strawberry.field(
        description="The trend of the daily history the model saw (null: NO_HISTORY)."
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
            bounded_by_cap=p.bounded_by_cap,
            cap=None if p.binding_cap is None else ForecastCap.of(p.binding_cap),
            caps=[ForecastCap.of(c) for c in p.caps],
            uncapped_projected_total=p.projected
            if p.uncapped_projected is None
            else p.uncapped_projected,
            probability_capped=p.probability_capped,
            trend=None if p.trend is None else SpendTrend.of(p.trend),
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
        description="Hours whose score exceeds `anomalyThreshold`, a threshold fitted to the "
        "range's own tail of scores for a false-positive rate of `anomalyFalsePositiveRate` "
        "per hour, and that are away from the baseline by at least three mean hourly spends; "
        "strongest first, at most 50 (`anomaliesFlagged` counts them all)."
    )
    anomalies_flagged: int
    anomaly_baseline: AnomalyBaseline
    anomaly_threshold: float | None = strawberry.field(
        description="The score above which an hour is a spike, fitted to this range; null when "
        "none were looked for or none can be (a range of ordinary hours only)."
    )
    anomaly_false_positive_rate: float = strawberry.field(
        description="The per-hour false-positive rate the threshold is chosen for."
    )
    trend: SpendTrend = strawberry.field(description="Of daily spend over the range.")
    daily: list[DailySpend] = strawberry.field(description="Complete local days, oldest first.")
    day_of_week_profile: list[SeasonalProfileRow]
    week_of_year_profile: list[SeasonalProfileRow] = strawberry.field(
        description="ISO weeks (in the configured zone) present in the range."
    )
    month_of_year_profile: list[SeasonalProfileRow]
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
            anomalies_flagged=report.anomalies_flagged,
            anomaly_baseline=report.baseline,
            anomaly_threshold=report.anomaly_threshold
            if math.isfinite(report.anomaly_threshold)
            else None,
            anomaly_false_positive_rate=TARGET_FPR,
            trend=SpendTrend.of(report.seasonality.trend),
            daily=[DailySpend(date=d.date, spend=d.spend) for d in report.seasonality.days],
            day_of_week_profile=[SeasonalProfileRow.of(r) for r in report.seasonality.day_of_week],
            week_of_year_profile=[
                SeasonalProfileRow.of(r) for r in report.seasonality.week_of_year
            ],
            month_of_year_profile=[
                SeasonalProfileRow.of(r) for r in report.seasonality.month_of_year
            ],
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
