"""The forecast backtest at test size: the same harness as ``python -m bench.forecast_backtest``
on fewer periods, fixed seeds, thresholds asserted (the full run is in the README)."""

from __future__ import annotations

from bench.forecast_backtest import TARGET_COVERAGE, render, run_backtest


def test_backtest_meets_coverage_and_beats_the_straight_line() -> None:
    # 80 periods x 3 evaluation points = 240 forecasts: at a true 95 % coverage, 90 % or less
    # is over three standard deviations away; the seeds make the run deterministic.
    report = run_backtest(periods=80, seed=20_260_109, paths=1_000)
    print(render(report))
    assert report.overall.cases == 240
    for level, target in TARGET_COVERAGE.items():
        assert report.overall.coverage(level) >= target, (level, report.as_dict())
    assert report.overall.mape_ours < report.overall.mape_line
    for tally in report.by_day:  # at every evaluation point, not only on average
        assert tally.mape_ours < tally.mape_line, tally.as_dict()
        assert tally.coverage(95) >= 0.85, tally.as_dict()
    assert report.overall.methods == {"WEEKDAY_TREND_REGRESSION": 240}
    assert report.passed


def test_backtest_is_deterministic() -> None:
    first = run_backtest(periods=5, seed=3, paths=300).as_dict()
    second = run_backtest(periods=5, seed=3, paths=300).as_dict()
    first.pop("seconds"), second.pop("seconds")
    assert first == second
