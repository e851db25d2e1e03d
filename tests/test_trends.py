"""Trends and seasonality of usagePatterns over up to a year of daily data, compared with
hand computations over the usage written."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from costgraph.app.state import AppState
from costgraph.billing import trends
from costgraph.billing.trends import DaySpend, TrendDirection
from tests import dates
from tests.conftest import Tenant
from tests.test_forecast import _event, record

#: Added per weekday (Monday first): weekends quiet.
WEEKDAY = (2.0, 3.0, 3.0, 2.5, 1.5, -4.0, -5.0)
DAYS = 150  # beyond the old 93-day cap

TRENDS = """query($range: DateRange!) { usagePatterns(range: $range) {
  totalSpend anomaliesFlagged anomalyThreshold anomalyFalsePositiveRate
  trend { direction rising daysConsidered weeksConsidered meanDailySpend slopePerDay
          slopeStdError slopeInterval95 { low high } pValue weeklyGrowth excludedSpikeDays
          lastWeekSpend previousWeekSpend weekOverWeekChange weekOverWeekPercent }
  daily { date spend }
  dayOfWeekProfile { key days spend averageDailySpend index }
  weekOfYearProfile { key days spend averageDailySpend index }
  monthOfYearProfile { key days spend averageDailySpend index } } }"""


def _amount(day: date, t: int, slope: float) -> Decimal:
    return Decimal(repr(round(20.0 + slope * t + WEEKDAY[day.weekday()], 2)))


async def _seed(state: AppState, tenant: Tenant, slope: float) -> dict[date, Decimal]:
    """One call a day at noon for DAYS complete days before today."""
    first = dates.day(-DAYS)
    amounts = {}
    for t in range(DAYS):
        at = first + timedelta(days=t, hours=12)
        amounts[at.date()] = _amount(at.date(), t, slope)
    await record(
        state,
        tenant,
        [_event(tenant, dates.day(-DAYS + t, 12), a) for t, a in enumerate(amounts.values())],
    )
    return amounts


async def _patterns(tenant: Tenant) -> dict[str, Any]:
    window = {"start": dates.rfc(dates.day(-DAYS)), "end": dates.rfc(dates.day(1))}
    body = await tenant.gql(TRENDS, {"range": window})
    assert "errors" not in body, body
    answer: dict[str, Any] = body["data"]["usagePatterns"]
    return answer


def _profile(amounts: dict[date, Decimal], key: Any) -> dict[int, tuple[int, Decimal]]:
    found: dict[int, list[Decimal]] = defaultdict(list)
    for day, amount in amounts.items():
        found[key(day)].append(amount)
    return {k: (len(v), sum(v, Decimal(0))) for k, v in found.items()}


async def test_a_rising_year_shape_is_measured(state: AppState, tenant: Tenant) -> None:
    amounts = await _seed(state, tenant, slope=0.5)
    p = await _patterns(tenant)
    # Complete days only: today is not over, so it is not a day of the trend.
    assert [d["date"] for d in p["daily"]] == [d.isoformat() for d in amounts]
    assert [Decimal(d["spend"]) for d in p["daily"]] == list(amounts.values())
    trend = p["trend"]
    assert trend["direction"] == "RISING" and trend["rising"] is True
    assert trend["daysConsidered"] == DAYS and trend["weeksConsidered"] == round(DAYS / 7, 1)
    # Additive weekday effects and a linear trend: the regression recovers 0.5 a day.
    assert abs(Decimal(trend["slopePerDay"]) - Decimal("0.5")) < Decimal("0.001")
    low, high = (Decimal(trend["slopeInterval95"][k]) for k in ("low", "high"))
    assert Decimal(0) < low <= Decimal("0.5") <= high
    assert trend["pValue"] < 1e-6
    mean = sum(amounts.values(), Decimal(0)) / DAYS
    assert Decimal(trend["meanDailySpend"]) == mean.quantize(Decimal("1E-12"))
    assert abs(trend["weeklyGrowth"] - 7 * 0.5 / float(mean)) < 1e-3
    values = list(amounts.values())
    last, previous = sum(values[-7:], Decimal(0)), sum(values[-14:-7], Decimal(0))
    assert Decimal(trend["lastWeekSpend"]) == last
    assert Decimal(trend["previousWeekSpend"]) == previous
    assert Decimal(trend["weekOverWeekChange"]) == last - previous == Decimal("24.5")
    assert Decimal(trend["weekOverWeekPercent"]) == ((last - previous) * 100 / previous).quantize(
        Decimal("0.01")
    )
    # Profiles: independent sums over what was written.
    for field, key in (
        ("monthOfYearProfile", lambda d: d.month),
        ("weekOfYearProfile", lambda d: d.isocalendar().week),
        ("dayOfWeekProfile", lambda d: d.isoweekday()),
    ):
        expected = _profile(amounts, key)
        rows = {r["key"]: r for r in p[field]}
        assert set(rows) == set(expected), field
        for k, (count, total) in expected.items():
            assert rows[k]["days"] == count and Decimal(rows[k]["spend"]) == total
            average = (total / count).quantize(Decimal("1E-12"))
            assert Decimal(rows[k]["averageDailySpend"]) == average
            assert abs(rows[k]["index"] - float(average / mean)) < 1e-4
    weekdays = {r["key"]: r["index"] for r in p["dayOfWeekProfile"]}
    assert weekdays[3] > 1 > weekdays[7]  # Wednesdays busy, Sundays quiet
    assert p["anomaliesFlagged"] == 0 and p["anomalyFalsePositiveRate"] == 3e-4


async def test_a_flat_series_is_not_rising(state: AppState, tenant: Tenant) -> None:
    await _seed(state, tenant, slope=0.0)
    trend = (await _patterns(tenant))["trend"]
    assert trend["direction"] == "FLAT" and trend["rising"] is False
    assert abs(Decimal(trend["slopePerDay"])) < Decimal("0.001")
    assert Decimal(trend["weekOverWeekChange"]) == 0


def test_trend_rules_by_hand() -> None:
    start = date(2026, 1, 5)  # a Monday
    falling = [DaySpend(start + timedelta(days=t), Decimal(100 - t)) for t in range(28)]
    found = trends.trend(falling)
    assert found.direction is TrendDirection.FALLING and not found.rising
    assert found.slope_per_day == Decimal("-1.000000000000")
    short = trends.trend(falling[:13])
    assert short.direction is TrendDirection.INSUFFICIENT_DATA and short.slope_per_day is None
    # A significant but tiny slope (under 1 % of a day per week) is FLAT, not rising.
    tiny = [
        DaySpend(start + timedelta(days=t), Decimal(1000) + Decimal(t) / 100) for t in range(28)
    ]
    assert trends.trend(tiny).direction is TrendDirection.FLAT
    # A one-off spike day is screened out of the fit.
    spiky = [DaySpend(d.date, Decimal(50 + i % 3)) for i, d in enumerate(falling)]
    spiky[10] = DaySpend(spiky[10].date, Decimal(5000))
    screened = trends.trend(spiky)
    assert screened.excluded_days == 1 and screened.direction is TrendDirection.FLAT
