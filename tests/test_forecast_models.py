"""The forecast models and pattern statistics on series whose answer is known (no database)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from costgraph.billing import patterns
from costgraph.billing.forecast_models import (
    MIN_MODEL_DAYS,
    DailyHistory,
    Method,
    forecast_remaining,
    straight_line,
    summarize,
)

RHYTHM = (1.0, 1.1, 1.05, 1.0, 0.95, 0.4, 0.35)  # Monday .. Sunday


def trend_series(
    days: int,
    *,
    start: float = 40.0,
    slope: float = 0.8,
    noise: float = 0.05,
    seed: int = 7,
    first_weekday: int = 0,
) -> tuple[list[float], list[float]]:
    """(observed, true mean) per day: a linear trend times a weekly rhythm, with noise."""
    rng = random.Random(seed)
    means = [(start + slope * t) * RHYTHM[(first_weekday + t) % 7] for t in range(days)]
    return [max(0.0, m * (1 + noise * rng.gauss(0, 1))) for m in means], means


def test_a_linear_trend_lands_inside_its_interval() -> None:
    observed, means = trend_series(56 + 24)
    history = DailyHistory(tuple(observed[:56]), first_weekday=0)
    forecast = forecast_remaining(history, [1.0] * 24)
    assert forecast.method is Method.WEEKDAY_TREND_REGRESSION
    summary = summarize(forecast)
    truth = sum(means[56:])
    actual = sum(observed[56:])
    by_level = {b.level: b for b in summary.total}
    assert by_level[80].low <= truth <= by_level[80].high
    assert by_level[95].low <= actual <= by_level[95].high
    assert by_level[95].low < by_level[80].low < by_level[80].high < by_level[95].high
    assert abs(summary.expected_total - truth) / truth < 0.03
    # The trend matters: a flat average of the history would be far below.
    assert summary.expected_total > 1.2 * np.mean(observed[:56]) * 24
    # Weekday rhythm: the expected Saturday is well below the expected Friday.
    friday = next(j for j in range(24) if (56 + j) % 7 == 4)
    assert summary.day_expected[friday + 1] < 0.6 * summary.day_expected[friday]


def test_total_interval_is_a_quantile_of_sums_not_a_sum_of_daily_bounds() -> None:
    observed, _ = trend_series(42, noise=0.2)
    summary = summarize(forecast_remaining(DailyHistory(tuple(observed)), [1.0] * 20))
    total95 = next(b for b in summary.total if b.level == 95)
    summed = sum(next(b for b in day if b.level == 95).high for day in summary.day)
    assert total95.high < summed  # independent daily noise partly cancels over the period
    last95 = next(b for b in summary.cumulative[-1] if b.level == 95)
    assert (last95.low, last95.high) == pytest.approx((total95.low, total95.high))


def test_a_spike_in_history_is_left_out_of_the_fit() -> None:
    observed, _ = trend_series(42, slope=0.0, noise=0.03)
    spiked = list(observed)
    spiked[30] *= 8
    clean = summarize(forecast_remaining(DailyHistory(tuple(observed)), [1.0] * 14))
    forecast = forecast_remaining(DailyHistory(tuple(spiked)), [1.0] * 14)
    assert forecast.excluded_days >= 1
    assert "spike" in forecast.note
    assert (
        abs(summarize(forecast).expected_total - clean.expected_total) / clean.expected_total < 0.03
    )


def test_short_history_falls_back_and_says_so() -> None:
    forecast = forecast_remaining(DailyHistory((10.0, 12.0, 9.0, 11.0, 10.0)), [1.0] * 10)
    assert forecast.method is Method.MEAN_DAILY_RATE
    assert "only 5 complete day(s)" in forecast.note and str(MIN_MODEL_DAYS) in forecast.note
    summary = summarize(forecast)
    assert summary.expected_total == pytest.approx(104.0)
    low, high = next((b.low, b.high) for b in summary.total if b.level == 95)
    assert low < 85 and high > 125  # wide: five days say little
    # A spike among the few days is left out of the rate.
    spiked = forecast_remaining(DailyHistory((10.0, 12.0, 90.0, 11.0, 10.0, 9.0)), [1.0] * 10)
    assert spiked.excluded_days == 1
    assert summarize(spiked).expected_total == pytest.approx(104.0)


def test_no_complete_day_uses_today_so_far() -> None:
    forecast = forecast_remaining(
        DailyHistory(()), [0.5, 1.0, 1.0], today_so_far=6.0, today_elapsed=0.5
    )
    assert forecast.method is Method.MEAN_DAILY_RATE
    assert "no complete day" in forecast.note
    assert forecast.expected.tolist() == pytest.approx([6.0, 12.0, 12.0])


def test_zero_days_are_data_and_paths_never_go_negative() -> None:
    values = tuple([0.0] * 10 + [5.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0])
    forecast = forecast_remaining(DailyHistory(values), [1.0] * 10)
    assert forecast.method is Method.WEEKDAY_TREND_REGRESSION
    assert (forecast.paths >= 0).all()
    assert summarize(forecast).expected_total < 30


def test_forecasts_are_reproducible() -> None:
    observed, _ = trend_series(30)
    a = forecast_remaining(DailyHistory(tuple(observed)), [0.3, 1.0, 1.0])
    b = forecast_remaining(DailyHistory(tuple(observed)), [0.3, 1.0, 1.0])
    assert np.array_equal(a.paths, b.paths)


def test_straight_line() -> None:
    assert straight_line(70.0, 7, 30) == pytest.approx(300.0)
    assert straight_line(0.0, 0, 30) == 0.0


# --- pattern statistics ---

PARIS = ZoneInfo("Europe/Paris")


def _hours(
    days: int, zone: ZoneInfo, value: Callable[[datetime], float]
) -> list[patterns.HourSpend]:
    start = datetime(2026, 6, 1, tzinfo=zone).astimezone(UTC)
    slots = patterns.hour_slots(start, start + timedelta(days=days), zone)
    spend = {slot: Decimal(str(value(slot.astimezone(zone)))) for slot in slots}
    return patterns.fill_hours(slots, spend, {s: 1 for s in slots}, zone)


def office(local: datetime) -> float:
    if local.isoweekday() > 5:
        return 0.2 if 10 <= local.hour < 16 else 0.0
    return 3.0 if local.hour == 14 else (1.0 if 9 <= local.hour < 18 else 0.05)


def test_a_planted_spike_and_peak_hour_are_found() -> None:
    spike_at = datetime(2026, 6, 10, 3, tzinfo=PARIS)

    def value(local: datetime) -> float:
        return 25.0 if local == spike_at else office(local)

    hours = _hours(28, PARIS, value)
    found, baseline = patterns.anomalies(hours)
    assert baseline is patterns.Baseline.HOUR_OF_WEEK
    assert [(a.kind, a.start) for a in found] == [
        (patterns.AnomalyKind.SPIKE, spike_at.astimezone(UTC))
    ]
    assert found[0].hour == 3 and found[0].expected == Decimal("0.05")
    assert found[0].score > patterns.scan(hours).threshold
    peaks = patterns.peak_hours(hours)
    assert peaks[0].hour == 14
    cells = {(c.weekday, c.hour): c for c in patterns.heatmap(hours)}
    assert len(cells) == 168
    assert cells[(3, 14)].spend == Decimal("12.0") and cells[(3, 14)].hours == 4


def test_short_ranges_use_the_daily_baseline_and_tiny_ranges_none() -> None:
    hours = _hours(7, PARIS, office)
    found, baseline = patterns.anomalies(hours)
    assert baseline is patterns.Baseline.HOUR_OF_DAY
    assert all(a.kind is patterns.AnomalyKind.SPIKE for a in found)
    assert patterns.anomalies(_hours(2, PARIS, office)) == ([], patterns.Baseline.NONE)


def test_flat_usage_has_no_anomalies_and_mad_zero_falls_back() -> None:
    assert patterns.anomalies(_hours(7, PARIS, lambda _: 1.0))[0] == []
    # More than half the hours identical (MAD = 0): the mean absolute deviation stands in.
    single = datetime(2026, 6, 3, 12, tzinfo=PARIS)
    found, _ = patterns.anomalies(_hours(7, PARIS, lambda t: 9.0 if t == single else 0.0))
    assert [a.start for a in found] == [single.astimezone(UTC)]


def test_heatmap_hours_follow_the_zone_across_dst() -> None:
    start = datetime(2026, 3, 28, tzinfo=PARIS).astimezone(UTC)
    end = datetime(2026, 3, 30, tzinfo=PARIS).astimezone(UTC)
    slots = patterns.hour_slots(start, end, PARIS)
    assert len(slots) == 47  # the night clocks go forward is an hour short
    assert slots[0].astimezone(PARIS).hour == 0


def test_cost_per_request_compares_models_of_a_feature() -> None:
    rows = [
        patterns.ModelFeatureUsage(
            "openai", "gpt-4o", "chat", 10, Decimal("1.0"), Decimal("1.2"), 5000, 1000
        ),
        patterns.ModelFeatureUsage(
            "openai", "gpt-4o-mini", "chat", 40, Decimal("0.5"), Decimal("0.6"), 20000, 4000
        ),
        patterns.ModelFeatureUsage(
            "openai", "gpt-4o", "search", 0, Decimal("0"), Decimal("0"), 0, 0
        ),
    ]
    result = {(r.usage.model, r.usage.feature): r for r in patterns.cost_per_request(rows)}
    assert result[("gpt-4o", "chat")].ai_cost_per_request == Decimal("0.100000000000")
    assert result[("gpt-4o-mini", "chat")].ai_cost_per_request == Decimal("0.012500000000")
    assert result[("gpt-4o", "chat")].relative_to_cheapest == 8.0
    assert result[("gpt-4o-mini", "chat")].relative_to_cheapest == 1.0
    assert result[("gpt-4o", "chat")].average_input_tokens == 500.0
    assert result[("gpt-4o", "search")].ai_cost_per_request is None
