"""Bench of the usage-pattern anomaly detector on synthetic hourly spend whose answer is known.

    python -m bench.anomalies                    # 200 clean series, 200 per spike size
    python -m bench.anomalies --series 500 --seed 3 --json

Each series is a quarter (or 28 to 92 days) of hourly AI spend built the way usage is: calls
arrive as a Poisson process (10 to 2,000 a day, log-uniform) shaped by an office-hours
profile, a weekly rhythm (quiet weekends), a trend (-0.3 % to +1 % a day) and day-to-day
swings of +-15 %; each call costs its tokens (lognormal) at the price of a model drawn from a
mix of cheap and premium models (premium calls cost 20 to 30 times the cheap ones), so hours
have the heavy upper tail real usage has. A share of the series mimic ``costgraph demo``
(40 calls a day, 14:00 peak).

Reported:

- **false-positive rate**: hours flagged (spikes and drops) per hour, on series without any
  planted spike, with the false flags per 92-day quarter and the share of series with any;
- **recall** per planted spike size: one hour of a series receives extra spend of a known
  multiple of the series' mean *daily* spend (0.1x to 2x); recall is the share of such hours
  flagged as SPIKE.

Targets (asserted at small size by tests/test_anomaly_bench.py): false-positive rate at most
1e-3 per hour (the detector aims at 3e-4), recall at least 75 % for a spike of one day's spend
and 85 % for two days' (spikes smaller than a day's spend hide in low-volume scopes, where one
premium call is that large). Seeds are fixed: a run is deterministic. Exit status 1 on a miss.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import orjson

from costgraph.billing.anomaly_detection import TARGET_FPR, detect

#: (input, output) price per million tokens of the model mix, and how often each is used.
PRICES = np.array([[0.15, 0.6], [2.5, 10.0], [0.8, 4.0], [3.0, 15.0], [0.1, 0.4]])
MIX = np.array([0.59, 0.24, 0.10, 0.04, 0.03])
SPIKE_SIZES = (0.1, 0.25, 0.5, 1.0, 2.0)  # multiples of the series' mean daily spend
QUARTER_HOURS = 92 * 24
MAX_FPR = 1e-3
MIN_RECALL = {1.0: 0.75, 2.0: 0.85}
DEMO_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class Series:
    values: npt.NDArray[np.float64]
    weekdays: npt.NDArray[np.int64]
    hours: npt.NDArray[np.int64]
    demo: bool


def synthesize(rng: np.random.Generator, *, demo: bool = False) -> Series:
    """Hourly spend of one synthetic scope (see the module's docstring)."""
    days = 91 if demo else int(rng.integers(28, 93))
    if demo:
        rate, peak, spread, floor, weekend, trend, sigma = 40.0, 14.0, 3.5, 0.0, 0.3, 0.0067, 0.8
    else:
        rate = float(np.exp(rng.uniform(np.log(10), np.log(2_000))))
        peak, spread = rng.uniform(9, 17), rng.uniform(2.5, 5.0)
        floor, weekend = rng.uniform(0.0, 0.03), rng.uniform(0.2, 1.0)
        trend, sigma = rng.uniform(-0.003, 0.01), rng.uniform(0.5, 1.0)
    hour = np.arange(24)
    profile = np.exp(-0.5 * ((hour - peak) / spread) ** 2)
    profile = profile / profile.sum() * (1 - floor) + floor / 24
    rhythm = np.array([1.0, 1.1, 1.15, 1.1, 0.95, weekend, weekend * 0.8])
    first = int(rng.integers(0, 7))
    day = np.arange(days)
    daily = rate * rhythm[(day + first) % 7] * (1 + trend * day) * rng.uniform(0.85, 1.15, days)
    counts = rng.poisson((daily[:, None] * profile[None, :]).ravel())
    calls = int(counts.sum())
    model = rng.choice(len(MIX), size=calls, p=MIX)
    tokens_in = rng.lognormal(7.0, sigma, calls)
    tokens_out = rng.lognormal(5.8, sigma * 0.9, calls)
    cost = (tokens_in * PRICES[model, 0] + tokens_out * PRICES[model, 1]) / 1e6
    slot = np.repeat(np.arange(days * 24), counts)
    values = np.bincount(slot, weights=cost, minlength=days * 24).astype(np.float64)
    weekdays = ((np.repeat(day, 24) + first) % 7 + 1).astype(np.int64)
    return Series(values, weekdays, np.tile(hour, days).astype(np.int64), demo)


@dataclass(slots=True)
class Tally:
    series: int = 0
    hours: int = 0
    false_flags: int = 0
    series_flagged: int = 0
    demo_series: int = 0
    demo_flags: int = 0
    planted: dict[float, int] = field(default_factory=dict)
    found: dict[float, int] = field(default_factory=dict)

    @property
    def fpr(self) -> float:
        return self.false_flags / self.hours if self.hours else float("nan")

    def recall(self, size: float) -> float:
        planted = self.planted.get(size, 0)
        return self.found.get(size, 0) / planted if planted else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            "clean_series": self.series,
            "hours": self.hours,
            "false_flags": self.false_flags,
            "false_positive_rate_per_hour": self.fpr,
            "false_flags_per_quarter": self.fpr * QUARTER_HOURS,
            "share_of_series_with_a_false_flag": self.series_flagged / max(self.series, 1),
            "demo_like_flags_per_series": self.demo_flags / max(self.demo_series, 1),
            "recall_by_spike_size_in_days_of_spend": {
                str(size): self.recall(size) for size in sorted(self.planted)
            },
        }


@dataclass(frozen=True, slots=True)
class BenchReport:
    seed: int
    tally: Tally
    seconds: float

    @property
    def passed(self) -> bool:
        return self.tally.fpr <= MAX_FPR and all(
            self.tally.recall(size) >= target for size, target in MIN_RECALL.items()
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "target_fpr": TARGET_FPR,
            "targets": {
                "max_fpr": MAX_FPR,
                "min_recall": {str(k): v for k, v in MIN_RECALL.items()},
            },
            **self.tally.as_dict(),
            "passed": self.passed,
            "seconds": round(self.seconds, 2),
        }


def _flags(series: Series) -> npt.NDArray[np.bool_]:
    found = detect(series.values, series.weekdays, series.hours)
    if found is None:
        return np.zeros(len(series.values), dtype=bool)
    return found.spikes | found.drops


def run_bench(
    series: int = 200,
    spiked: int = 200,
    seed: int = 20_261_204,
    sizes: Sequence[float] = SPIKE_SIZES,
) -> BenchReport:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    tally = Tally()
    for i in range(series):
        clean = synthesize(rng, demo=i < series * DEMO_SHARE)
        flagged = int(_flags(clean).sum())
        tally.series += 1
        tally.hours += len(clean.values)
        tally.false_flags += flagged
        tally.series_flagged += flagged > 0
        if clean.demo:
            tally.demo_series += 1
            tally.demo_flags += flagged
    for size in sizes:
        for _ in range(spiked):
            base = synthesize(rng)
            at = int(rng.integers(24, len(base.values) - 24))
            values = base.values.copy()
            values[at] += size * 24 * float(np.mean(base.values))
            found = detect(values, base.weekdays, base.hours)
            tally.planted[size] = tally.planted.get(size, 0) + 1
            hit = found is not None and bool(found.spikes[at])
            tally.found[size] = tally.found.get(size, 0) + hit
    return BenchReport(seed, tally, time.perf_counter() - started)


def render(report: BenchReport) -> str:
    t = report.tally
    lines = [
        f"anomaly bench: {t.series} clean series ({t.hours} hours), "
        f"{sum(t.planted.values())} planted spikes (seed {report.seed}, {report.seconds:.1f}s)",
        f"false-positive rate: {t.fpr:.2e} per hour (target {TARGET_FPR:.0e}, ceiling "
        f"{MAX_FPR:.0e}) = {t.fpr * QUARTER_HOURS:.2f} false flags per 92-day quarter; "
        f"series with any: {t.series_flagged / max(t.series, 1):.1%}; demo-like series: "
        f"{t.demo_flags / max(t.demo_series, 1):.2f} flags each",
        "recall by spike size (extra spend in one hour, in days of the series' mean spend):",
    ]
    for size in sorted(t.planted):
        target = MIN_RECALL.get(size)
        note = "" if target is None else f"  (target >= {target:.0%})"
        lines.append(f"  {size:>5.2f} day(s): {t.recall(size):6.1%}{note}")
    lines.append("PASS" if report.passed else "FAIL")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.anomalies", description=__doc__)
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--spiked", type=int, default=200, help="series per spike size")
    parser.add_argument("--seed", type=int, default=20_261_204)
    parser.add_argument("--json", action="store_true", help="print the JSON document too")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    report = run_bench(args.series, args.spiked, args.seed)
    print(render(report))
    document = report.as_dict()
    if args.json:
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    if not args.no_save:
        from bench.report import RESULTS_DIR

        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        data = orjson.dumps(
            {"suite": "anomalies", "finished_at": stamp, **document}, option=orjson.OPT_INDENT_2
        )
        (RESULTS_DIR / f"anomalies-{stamp}.json").write_bytes(data)
        (RESULTS_DIR / "anomalies-latest.json").write_bytes(data)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
