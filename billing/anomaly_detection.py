"""Calibrated anomaly detection on hourly spend: pure numerics (numpy, scipy), no money types.

Hourly AI spend is a sum of a few calls of very unequal cost (a premium model's call costs
tens of times a small one's), so its ordinary hours have a heavy upper tail: one costly call
in a quiet hour is ten times the hour's usual spend and is no news. A fixed z-score threshold
on such data flags hundreds of ordinary hours a quarter. This detector instead chooses its
threshold from the false-positive rate it targets, on the series' own tail:

1. **Baseline** — the median spend of the same hour of the week (at least
   :data:`WEEKLY_BASELINE_DAYS` days), else of the same hour of the day (at least
   :data:`MIN_DAYS`), scaled by a local level from :data:`LEVEL_MIN_DAYS` days on: the rolling
   median (one week, centred) of each day's spend over its seasonal expectation, so a trend
   does not read as a run of spikes.
2. **Score** — the excess over the baseline, scaled as a count of calls would be (its spread
   grows with the square root of the expected level): ``(x - b) / sqrt(max(b, 0.1·m) · m)``,
   ``m`` the range's mean hourly spend.
3. **Threshold from the target rate** — peaks over threshold (extreme value theory, as in
   Siffer et al., KDD 2017, "SPOT"): a generalized Pareto distribution is fitted (scipy) to the
   :data:`TAIL_SHARE` highest scores' excesses over the first of them, and the threshold is
   its quantile for a per-hour false-positive rate of :data:`TARGET_FPR`. When those tail
   scores do not vary (usage so regular that ordinary hours never exceed their baseline), the
   tail's start is the threshold.
4. **Materiality** — a flagged hour also exceeds its baseline by at least
   :data:`MIN_EXCESS_HOURS` times the range's mean hourly spend.

Drops (the same on the lower tail) are looked for with the weekly baseline only: with the
daily one every quiet weekend would be one. ``python -m bench.anomalies`` measures the
false-positive rate on synthetic series without spikes and the recall on planted spikes
(bench/README.md has the figures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

Array = npt.NDArray[np.float64]

#: The per-hour false-positive rate aimed at: about 0.7 false flags in a 92-day quarter.
TARGET_FPR = 3e-4
#: Share of hours (at least :data:`MIN_TAIL` of them) whose scores the tail is fitted to.
TAIL_SHARE = 0.02
MIN_TAIL = 10
#: A flagged hour exceeds its baseline by at least this many mean hourly spends.
MIN_EXCESS_HOURS = 3.0
#: Days needed to look for anomalies at all; from which the baseline is weekly; from which
#: a local level (rolling median) follows trends.
MIN_DAYS = 7
WEEKLY_BASELINE_DAYS = 21
LEVEL_MIN_DAYS = 14
LEVEL_WINDOW_DAYS = 7
#: The score's scale never takes the expected level below this share of the mean.
LEVEL_FLOOR = 0.1


@dataclass(frozen=True, slots=True)
class Detection:
    """Per hour: the baseline and the score; the flags and the thresholds they used."""

    expected: Array
    scores: Array
    spikes: npt.NDArray[np.bool_]
    drops: npt.NDArray[np.bool_]
    spike_threshold: float
    drop_threshold: float
    weekly: bool


def _genpareto() -> Any:
    """scipy.stats loads in about a second: with the first detection, not with billing."""
    from scipy.stats import genpareto  # type: ignore[import-untyped]

    return genpareto


def _rolling_median(values: Array, window: int) -> Array:
    half = window // 2
    padded = np.pad(values, (half, half), mode="edge")
    found: Array = np.median(sliding_window_view(padded, 2 * half + 1), axis=1)
    return found


def baseline(values: Array, keys: npt.NDArray[np.int64], days: float) -> Array:
    """The median of each hour's group (``keys``), scaled by the local level from 14 days on."""
    seasonal = np.zeros(len(values), dtype=np.float64)
    for key in np.unique(keys):
        group = keys == key
        seasonal[group] = np.median(values[group])
    if days >= LEVEL_MIN_DAYS:
        # The local level: each day's spend over its seasonal expectation, the rolling median
        # of a week of those ratios (robust to a spike day), scaling the day's hours. A ratio
        # rather than a difference, so a sparse series (most hours empty) follows its trend.
        day = np.arange(len(values)) // 24
        actual = np.bincount(day, weights=values)
        usual = np.bincount(day, weights=seasonal)
        ratio = np.divide(actual, usual, out=np.ones_like(actual), where=usual > 0)
        seasonal = seasonal * _rolling_median(ratio, LEVEL_WINDOW_DAYS)[day]
    return np.maximum(seasonal, 0.0)


def tail_threshold(scores: Array, rate: float = TARGET_FPR) -> float:
    """The score exceeded with probability ``rate`` per hour, by a generalized Pareto fit
    to the highest scores (peaks over threshold); inf when there is no tail to speak of."""
    n = len(scores)
    count = max(MIN_TAIL, math.ceil(TAIL_SHARE * n))
    if n <= count:
        return math.inf
    ordered = np.sort(scores)
    start = float(ordered[n - count - 1])
    excess = ordered[n - count :] - start
    if not np.any(excess > 0):
        return math.inf  # nothing ever exceeds the tail's start: nothing to flag
    if np.count_nonzero(excess > 1e-12 * max(1.0, abs(start))) < MIN_TAIL:
        return start  # ordinary hours never exceed it: what does is unusual
    shape, _, scale = _genpareto().fit(excess, floc=0)
    ratio = rate * n / count
    if not math.isfinite(shape) or not math.isfinite(scale) or scale <= 0:
        return start
    shape, scale = float(shape), float(scale)
    if abs(shape) < 1e-6:
        return start + scale * math.log(1 / ratio)
    return start + scale / shape * (float(ratio ** (-shape)) - 1)


def detect(
    values: Array,
    weekdays: npt.NDArray[np.int64],
    hours: npt.NDArray[np.int64],
    *,
    rate: float = TARGET_FPR,
    min_excess: float = MIN_EXCESS_HOURS,
) -> Detection | None:
    """Spikes and drops of an hourly series (``weekdays`` ISO 1-7, ``hours`` 0-23 local);
    None when the range is too short (under :data:`MIN_DAYS` days) or spends nothing."""
    n = len(values)
    days = n / 24
    mean = float(np.mean(values)) if n else 0.0
    if days < MIN_DAYS or mean <= 0:
        return None
    weekly = days >= WEEKLY_BASELINE_DAYS
    keys = (weekdays * 24 + hours) if weekly else hours.astype(np.int64)
    expected = baseline(values, keys, days)
    excess = values - expected
    scores = excess / np.sqrt(np.maximum(expected, LEVEL_FLOOR * mean) * mean)
    material = min_excess * mean
    spike_threshold = tail_threshold(scores, rate)
    spikes = (scores > spike_threshold) & (excess >= material)
    drop_threshold = tail_threshold(-scores, rate) if weekly else math.inf
    drops = (-scores > drop_threshold) & (-excess >= material)
    return Detection(expected, scores, spikes, drops, spike_threshold, drop_threshold, weekly)


__all__ = ["TARGET_FPR", "Detection", "baseline", "detect", "tail_threshold"]
