"""Trends and seasonality of daily spend: pure computations (numpy, statsmodels), no database.

**Days.** The complete local days of a range (every hour of the day inside it and before
``now``), built from the hourly series usage patterns already read.

**Trend.** A regression of daily spend on a linear trend with weekday effects (statsmodels
OLS, HC3 covariance) after a robust fit (RLM, Tukey's biweight) has screened out one-off spike
days, as the forecast does (:mod:`costgraph.billing.forecast_models`). Reported: the slope per
day with its standard error, 95 % interval and p-value; the slope per week relative to the
mean daily spend; and the week-over-week change (the last seven complete days against the
seven before). Under :data:`MIN_TREND_DAYS` days the trend is not estimated.

**Rising.** ``rising`` is true when the slope's 95 % interval lies wholly above zero *and*
the growth is material: at least :data:`MIN_WEEKLY_GROWTH` (1 %) of the mean daily spend per
week. ``FALLING`` mirrors it; anything else is ``FLAT``.

**Seasonality.** Profiles by day of week, ISO week of the year and month of the year: the
days of each in the range, their spend, the average daily spend and its index (that average
over the range's average daily spend: 1.2 is 20 % above the usual day). A range of a year
shows each week and month once; weeks and months are those of the configured zone.
"""

from __future__ import annotations

import enum
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from costgraph.kernel.money import quantize_stored

#: Days from which a trend is estimated (two of each weekday).
MIN_TREND_DAYS = 14
#: Growth per week (share of the mean daily spend) from which a significant slope is rising.
MIN_WEEKLY_GROWTH = 0.01
#: Confidence of the slope's interval, in percent.
CONFIDENCE = 95
#: A robust weight at or below this marks a day as a spike left out of the fit.
OUTLIER_WEIGHT = 1e-3


class TrendDirection(enum.StrEnum):
    RISING = "RISING"
    FALLING = "FALLING"
    FLAT = "FLAT"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


@dataclass(frozen=True, slots=True)
class DaySpend:
    date: date
    spend: Decimal


@dataclass(frozen=True, slots=True)
class Trend:
    direction: TrendDirection
    days: int
    mean_daily: Decimal
    #: Spend per day added by the trend (currency units per day); None under 14 days.
    slope_per_day: Decimal | None = None
    slope_std_error: Decimal | None = None
    slope_low: Decimal | None = None
    slope_high: Decimal | None = None
    p_value: float | None = None
    #: ``7 x slope / mean daily spend``: the trend's weekly growth as a share of a day.
    weekly_growth: float | None = None
    excluded_days: int = 0
    #: The last seven complete days against the seven before.
    last_week: Decimal | None = None
    previous_week: Decimal | None = None

    @property
    def rising(self) -> bool:
        return self.direction is TrendDirection.RISING

    @property
    def weeks(self) -> float:
        return round(self.days / 7, 1)

    @property
    def week_over_week(self) -> Decimal | None:
        if self.last_week is None or self.previous_week is None:
            return None
        return self.last_week - self.previous_week

    @property
    def week_over_week_percent(self) -> Decimal | None:
        change = self.week_over_week
        if change is None or not self.previous_week:
            return None
        return (change * 100 / self.previous_week).quantize(Decimal("0.01"))


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One day of the week (ISO 1-7), ISO week (1-53) or month (1-12)."""

    key: int
    days: int
    spend: Decimal
    average_daily: Decimal
    #: ``average_daily`` over the range's average daily spend (None when that is zero).
    index: float | None


@dataclass(frozen=True, slots=True)
class Seasonality:
    trend: Trend
    days: tuple[DaySpend, ...]
    day_of_week: tuple[ProfileRow, ...]
    week_of_year: tuple[ProfileRow, ...]
    month_of_year: tuple[ProfileRow, ...]


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def complete_days(
    hours: Sequence[tuple[datetime, Decimal]], zone: ZoneInfo, cut: datetime
) -> list[DaySpend]:
    """The local days all of whose hours are in ``hours`` (UTC starts) and end by ``cut``."""
    spend: dict[date, Decimal] = defaultdict(Decimal)
    counted: dict[date, int] = defaultdict(int)
    for start, amount in hours:
        if start + timedelta(hours=1) > cut:
            continue
        day = start.astimezone(zone).date()
        spend[day] += amount
        counted[day] += 1
    found = []
    for day in sorted(spend):
        length = _midnight(day + timedelta(days=1), zone) - _midnight(day, zone)
        if counted[day] == round(length.total_seconds() / 3600):
            found.append(DaySpend(day, spend[day]))
    return found


def _decimal(value: float) -> Decimal:
    return quantize_stored(Decimal(repr(float(value))))


def _statsmodels() -> tuple[Any, Any, Any]:
    from statsmodels.regression.linear_model import OLS
    from statsmodels.robust.norms import TukeyBiweight
    from statsmodels.robust.robust_linear_model import RLM

    return OLS, RLM, TukeyBiweight


def _design(days: Sequence[date]) -> np.ndarray:
    """Intercept, day index (days since the first), dummies for Tuesday..Sunday."""
    first = days[0]
    design = np.zeros((len(days), 8), dtype=np.float64)
    design[:, 0] = 1.0
    for i, day in enumerate(days):
        design[i, 1] = (day - first).days
        weekday = day.weekday()
        if weekday:
            design[i, 1 + weekday] = 1.0
    return design


def trend(days: Sequence[DaySpend]) -> Trend:
    """The trend of consecutive complete days (see the module's docstring)."""
    n = len(days)
    total = sum((d.spend for d in days), Decimal(0))
    mean = quantize_stored(total / n) if n else Decimal(0)
    last = sum((d.spend for d in days[-7:]), Decimal(0)) if n >= 14 else None
    previous = sum((d.spend for d in days[-14:-7]), Decimal(0)) if n >= 14 else None
    if n < MIN_TREND_DAYS or mean <= 0:
        return Trend(
            TrendDirection.INSUFFICIENT_DATA, n, mean, last_week=last, previous_week=previous
        )
    ols, rlm, tukey = _statsmodels()
    y = np.array([float(d.spend) for d in days], dtype=np.float64)
    design = _design([d.date for d in days])
    keep = np.ones(n, dtype=bool)
    with np.errstate(all="ignore"):
        residual = y - np.median(y)
        if np.median(np.abs(residual - np.median(residual))) > 0:
            weights = np.asarray(rlm(y, design, M=tukey()).fit().weights, dtype=np.float64)
            if np.all(np.isfinite(weights)) and (weights > OUTLIER_WEIGHT).sum() >= 10:
                keep = weights > OUTLIER_WEIGHT
        fit = ols(y[keep], design[keep]).fit(cov_type="HC3")
        slope = float(fit.params[1])
        error = float(fit.bse[1])
        if not math.isfinite(error):
            fit = ols(y[keep], design[keep]).fit()
            error = float(fit.bse[1])
        low, high = (float(v) for v in np.asarray(fit.conf_int(alpha=0.05))[1])
        p_value = float(fit.pvalues[1])
    if not all(math.isfinite(v) for v in (slope, error, low, high)):
        return Trend(
            TrendDirection.INSUFFICIENT_DATA, n, mean, last_week=last, previous_week=previous
        )
    growth = 7 * slope / float(mean)
    if low > 0 and growth >= MIN_WEEKLY_GROWTH:
        direction = TrendDirection.RISING
    elif high < 0 and growth <= -MIN_WEEKLY_GROWTH:
        direction = TrendDirection.FALLING
    else:
        direction = TrendDirection.FLAT
    return Trend(
        direction=direction,
        days=n,
        mean_daily=mean,
        slope_per_day=_decimal(slope),
        slope_std_error=_decimal(error),
        slope_low=_decimal(low),
        slope_high=_decimal(high),
        p_value=round(p_value, 6) if math.isfinite(p_value) else None,
        weekly_growth=round(growth, 6),
        excluded_days=int(n - keep.sum()),
        last_week=last,
        previous_week=previous,
    )


def _profile(days: Sequence[DaySpend], key: Any, mean: Decimal) -> tuple[ProfileRow, ...]:
    spend: dict[int, Decimal] = defaultdict(Decimal)
    counted: dict[int, int] = defaultdict(int)
    for d in days:
        k = key(d.date)
        spend[k] += d.spend
        counted[k] += 1
    rows = []
    for k in sorted(spend):
        average = quantize_stored(spend[k] / counted[k])
        index = None if mean <= 0 else round(float(average / mean), 4)
        rows.append(ProfileRow(k, counted[k], spend[k], average, index))
    return tuple(rows)


def seasonality(days: Sequence[DaySpend]) -> Seasonality:
    found = trend(days)
    mean = found.mean_daily
    return Seasonality(
        trend=found,
        days=tuple(days),
        day_of_week=_profile(days, lambda d: d.isoweekday(), mean),
        week_of_year=_profile(days, lambda d: d.isocalendar().week, mean),
        month_of_year=_profile(days, lambda d: d.month, mean),
    )


__all__ = [
    "MIN_TREND_DAYS",
    "DaySpend",
    "ProfileRow",
    "Seasonality",
    "Trend",
    "TrendDirection",
    "complete_days",
    "seasonality",
    "trend",
]
