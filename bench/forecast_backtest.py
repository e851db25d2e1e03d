"""Backtest of the period forecast on synthetic histories whose answer is known.

    python -m bench.forecast_backtest                 # 200 periods, days 7, 14 and 21
    python -m bench.forecast_backtest --periods 500 --seed 3 --json

Each replay draws a history with a known weekly rhythm (weekends lower), a linear trend
(from -0.4 % to +1.5 % of the starting level per day), multiplicative noise (5-25 %) and one
spike (x3 to x8 on a single day, somewhere before the first evaluation point), then a month
(28, 30 or 31 days) after 28 to 84 days of history. At each evaluation point (complete days
elapsed in the month) the forecast sees only the days so far (at most the product's 84-day
look-back) and predicts the month's total; the straight line predicts
``spend so far / days elapsed x days in the month``. Reported per point and overall:

- coverage: the share of replays whose actual total lies inside the 80 % and 95 % intervals
  (targets: at least 72 % and 90 %);
- MAPE: mean absolute percentage error of the point forecast, ours against the straight line
  (target: ours lower).

A second, informational scenario ("new scope") starts the history at the month's start, so the
forecast runs on the short-history fallback (MEAN_DAILY_RATE); there the point forecast *is* the
straight line, and only its interval coverage is of interest.

Seeds are fixed: a run is deterministic. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import orjson

from costgraph.billing.forecast_models import (
    PATHS,
    DailyHistory,
    forecast_remaining,
    straight_line,
    summarize,
)

#: The product's look-back (``COSTGRAPH_FORECAST_HISTORY_DAYS`` default).
HISTORY_DAYS = 84
EVALUATION_DAYS = (7, 14, 21)
SHORT_EVALUATION_DAYS = (3, 7, 10)
TARGET_COVERAGE = {80: 0.72, 95: 0.90}


@dataclass(frozen=True, slots=True)
class Replay:
    """Daily spend: ``values[:history]`` before the month, then ``month`` days of it."""

    values: np.ndarray
    history: int
    month: int
    first_weekday: int
    spike_day: int


def synthesize(rng: np.random.Generator, *, history: int | None = None) -> Replay:
    """One synthetic history with a known rhythm, trend, noise and spike."""
    before = int(rng.integers(28, 85)) if history is None else history
    month = int(rng.choice([28, 30, 31]))
    days = before + month
    level0 = rng.uniform(20.0, 200.0)
    slope = level0 * rng.uniform(-0.004, 0.015)
    rhythm = np.ones(7)
    rhythm[5] = rng.uniform(0.25, 0.7)  # Saturday
    rhythm[6] = rhythm[5] * rng.uniform(0.8, 1.1)  # Sunday
    rhythm *= 7 / rhythm.sum()
    first_weekday = int(rng.integers(0, 7))
    t = np.arange(days)
    level = np.maximum(level0 + slope * (t - before), 0.05 * level0)
    noise = rng.uniform(0.05, 0.25)
    values = level * rhythm[(t + first_weekday) % 7] * (1 + noise * rng.standard_normal(days))
    values = np.maximum(values, 0.0)
    spike_day = int(rng.integers(0, before + 7))  # seen before the first evaluation point
    values[spike_day] *= rng.uniform(3.0, 8.0)
    return Replay(values, before, month, first_weekday, spike_day)


@dataclass(slots=True)
class Tally:
    label: str
    cases: int = 0
    inside: dict[int, int] = field(default_factory=lambda: {80: 0, 95: 0})
    errors_ours: list[float] = field(default_factory=list)
    errors_line: list[float] = field(default_factory=list)
    methods: dict[str, int] = field(default_factory=dict)

    def coverage(self, level: int) -> float:
        return self.inside[level] / self.cases if self.cases else float("nan")

    @property
    def mape_ours(self) -> float:
        return float(np.mean(self.errors_ours)) if self.errors_ours else float("nan")

    @property
    def mape_line(self) -> float:
        return float(np.mean(self.errors_line)) if self.errors_line else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "cases": self.cases,
            "coverage_80": round(self.coverage(80), 4),
            "coverage_95": round(self.coverage(95), 4),
            "mape_ours": round(self.mape_ours, 4),
            "mape_straight_line": round(self.mape_line, 4),
            "methods": dict(self.methods),
        }


def evaluate(replay: Replay, day: int, tallies: Sequence[Tally], paths: int) -> None:
    """Forecast the month from ``day`` complete days into it; add the outcome to tallies."""
    start = replay.history
    seen = replay.values[: start + day]
    kept = seen[-HISTORY_DAYS:]
    first_weekday = (replay.first_weekday + len(seen) - len(kept)) % 7
    remaining = replay.month - day
    forecast = forecast_remaining(
        DailyHistory(tuple(float(v) for v in kept), first_weekday), [1.0] * remaining, paths=paths
    )
    summary = summarize(forecast)
    spent = float(replay.values[start : start + day].sum())
    actual = float(replay.values[start : start + replay.month].sum())
    ours = spent + summary.expected_total
    line = straight_line(spent, day, replay.month)
    for tally in tallies:
        tally.cases += 1
        for bounds in summary.total:
            if spent + bounds.low <= actual <= spent + bounds.high:
                tally.inside[bounds.level] += 1
        tally.errors_ours.append(abs(ours - actual) / actual)
        tally.errors_line.append(abs(line - actual) / actual)
        tally.methods[forecast.method.value] = tally.methods.get(forecast.method.value, 0) + 1


@dataclass(frozen=True, slots=True)
class BacktestReport:
    periods: int
    seed: int
    evaluation_days: tuple[int, ...]
    overall: Tally
    by_day: tuple[Tally, ...]
    short_overall: Tally | None
    seconds: float

    @property
    def passed(self) -> bool:
        return (
            all(self.overall.coverage(level) >= target for level, target in TARGET_COVERAGE.items())
            and self.overall.mape_ours < self.overall.mape_line
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "periods": self.periods,
            "seed": self.seed,
            "evaluation_days": list(self.evaluation_days),
            "history_days_max": HISTORY_DAYS,
            "targets": {"coverage_80": 0.72, "coverage_95": 0.90, "mape": "ours < straight line"},
            "overall": self.overall.as_dict(),
            "by_day": [t.as_dict() for t in self.by_day],
            "new_scope_fallback": (
                None if self.short_overall is None else self.short_overall.as_dict()
            ),
            "passed": self.passed,
            "seconds": round(self.seconds, 2),
        }


def run_backtest(
    periods: int = 200,
    seed: int = 20_260_109,
    evaluation_days: Sequence[int] = EVALUATION_DAYS,
    *,
    paths: int = PATHS,
    short_periods: int = 0,
) -> BacktestReport:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    overall = Tally("all points")
    by_day = {day: Tally(f"day {day}") for day in evaluation_days}
    for _ in range(periods):
        replay = synthesize(rng)
        for day in evaluation_days:
            evaluate(replay, day, (overall, by_day[day]), paths)
    short: Tally | None = None
    if short_periods:
        short = Tally("new scope (fallback)")
        short_rng = np.random.default_rng(seed + 1)
        for _ in range(short_periods):
            replay = synthesize(short_rng, history=0)
            # the spike may fall on a day after the evaluation point: the known days only
            for day in SHORT_EVALUATION_DAYS:
                evaluate(replay, day, (short,), paths)
    return BacktestReport(
        periods,
        seed,
        tuple(evaluation_days),
        overall,
        tuple(by_day.values()),
        short,
        time.perf_counter() - started,
    )


def render(report: BacktestReport) -> str:
    lines = [
        f"forecast backtest: {report.periods} synthetic periods, evaluated at days "
        f"{', '.join(map(str, report.evaluation_days))} (seed {report.seed}, "
        f"{report.seconds:.1f}s)",
        f"{'point':<22}{'cases':>7}{'cov 80%':>9}{'cov 95%':>9}{'MAPE ours':>11}{'MAPE line':>11}",
    ]
    rows = [*report.by_day, report.overall]
    if report.short_overall is not None:
        rows.append(report.short_overall)
    for tally in rows:
        lines.append(
            f"{tally.label:<22}{tally.cases:>7}{tally.coverage(80):>9.1%}{tally.coverage(95):>9.1%}"
            f"{tally.mape_ours:>11.2%}{tally.mape_line:>11.2%}"
        )
    lines.append(
        "targets: coverage 80% >= 72%, 95% >= 90%, MAPE ours < straight line -> "
        + ("PASS" if report.passed else "FAIL")
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.forecast_backtest", description=__doc__)
    parser.add_argument("--periods", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20_260_109)
    parser.add_argument("--short-periods", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print the JSON document too")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    report = run_backtest(args.periods, args.seed, short_periods=args.short_periods)
    print(render(report))
    document = report.as_dict()
    if args.json:
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    if not args.no_save:
        from bench.report import RESULTS_DIR

        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        data = orjson.dumps(
            {"suite": "forecast_backtest", "finished_at": stamp, **document},
            option=orjson.OPT_INDENT_2,
        )
        (RESULTS_DIR / f"forecast_backtest-{stamp}.json").write_bytes(data)
        (RESULTS_DIR / "forecast_backtest-latest.json").write_bytes(data)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
