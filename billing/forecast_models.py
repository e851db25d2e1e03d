"""Forecast models: pure numerics on a series of daily spend (no database, no money types).

Figures here are floats: a forecast is a statistical estimate, and the statistics library
works in floats. :mod:`costgraph.billing.forecast` turns them into ``Decimal`` in one place.

**WEEKDAY_TREND_REGRESSION** — used from :data:`MIN_MODEL_DAYS` complete days of history::

    spend(t) = a + b·t + effect(weekday of t) + noise(t)

1. A robust regression (statsmodels ``RLM``, Tukey's biweight) screens one-off spikes: days it
   gives (near) zero weight are left out of the fit and of the noise estimate. They are counted
   in ``excluded_days`` (and ``usagePatterns`` reports them); the interval does not price in a
   new spike of that size.
2. Ordinary least squares (statsmodels ``OLS``) with weekday dummies and a linear trend on the
   remaining days; coefficient covariance HC3 (robust to unequal variance, sound on small
   samples).
3. :data:`PATHS` simulated futures: coefficients drawn from a multivariate t around the estimate
   (parameter uncertainty, trend included), each day's noise proportional to that day's
   expected spend (the relative noise estimated from the residuals, t-distributed), and a day
   never below zero.

**MEAN_DAILY_RATE** — the fallback under :data:`MIN_MODEL_DAYS` days: the mean of the observed
days (from five days on, days with a modified z-score above 3.5 are left out as spikes), with
paths drawn as ``mean + s/√n·T`` per path and ``+ s·T`` per day (Student t with ``n - 1``
degrees of freedom, at least 2; ``s`` the sample spread, at least :data:`FALLBACK_MIN_CV` of
the mean; with a single day the spread is assumed equal to the mean). Deliberately wide.

Intervals on a period total are quantiles of the *sums* of simulated paths, never sums of
per-day bounds. Simulation is seeded, so the same history always gives the same answer.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

#: Complete days of history from which the regression is used (two of each weekday).
MIN_MODEL_DAYS = 14
#: Simulated futures per forecast.
PATHS = 2_000
#: The simulation's fixed seed: a forecast is reproducible.
SEED = 20_260_109
#: Interval levels, in percent.
LEVELS = (80, 95)
#: A robust weight at or below this marks a day as a spike left out of the fit.
OUTLIER_WEIGHT = 1e-3
#: The fallback's spread is never taken below this share of the mean.
FALLBACK_MIN_CV = 0.25
#: The fallback leaves out days whose modified z-score exceeds this (from this many days).
SPIKE_Z = 3.5
SPIKE_MIN_DAYS = 5


class Method(enum.StrEnum):
    WEEKDAY_TREND_REGRESSION = "WEEKDAY_TREND_REGRESSION"
    MEAN_DAILY_RATE = "MEAN_DAILY_RATE"
    NO_HISTORY = "NO_HISTORY"


@dataclass(frozen=True, slots=True)
class DailyHistory:
    """Complete days of spend, oldest first (zero days included, none negative)."""

    values: tuple[float, ...]
    #: Weekday of ``values[0]``: 0 is Monday.
    first_weekday: int = 0


@dataclass(frozen=True, slots=True)
class RemainingForecast:
    """Spend still to come, day by day (already scaled by each day's share to come)."""

    method: Method
    note: str
    #: Expected spend per remaining day, shape ``(h,)``.
    expected: Array
    #: Simulated spend per path and remaining day, shape ``(paths, h)``, never negative.
    paths: Array
    history_days: int
    excluded_days: int = 0


@dataclass(frozen=True, slots=True)
class Bounds:
    level: int
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class PathSummary:
    """What a forecast says, as remaining amounts (add what is already spent)."""

    expected_total: float
    total: tuple[Bounds, ...]
    day_expected: tuple[float, ...]
    day: tuple[tuple[Bounds, ...], ...]
    cumulative_expected: tuple[float, ...]
    cumulative: tuple[tuple[Bounds, ...], ...]
    #: Share of paths whose remaining total exceeds the threshold asked for (None: not asked).
    probability_above: float | None


def _statsmodels() -> tuple[Any, Any, Any]:
    """OLS, RLM and Tukey's biweight. statsmodels takes seconds to import (scipy, pandas), so it
    loads with the first regression, not with every process that imports billing."""
    from statsmodels.regression.linear_model import OLS
    from statsmodels.robust.norms import TukeyBiweight
    from statsmodels.robust.robust_linear_model import RLM

    return OLS, RLM, TukeyBiweight


def _weekday_design(length: int, first_weekday: int, t0: int) -> Array:
    """Columns: intercept, day index, dummies for Tuesday..Sunday (Monday is the base)."""
    t = np.arange(t0, t0 + length, dtype=np.float64)
    weekdays = (np.arange(t0, t0 + length) + first_weekday) % 7
    design = np.zeros((length, 8), dtype=np.float64)
    design[:, 0] = 1.0
    design[:, 1] = t
    for k in range(1, 7):
        design[:, 1 + k] = weekdays == k
    return design


def _matrix_root(cov: Array) -> Array:
    """A square root of a covariance matrix that tolerates tiny negative eigenvalues."""
    values, vectors = np.linalg.eigh((cov + cov.T) / 2.0)
    root: Array = vectors * np.sqrt(np.clip(values, 0.0, None))
    return root


def _scale_days(expected: Array, paths: Array, fractions: Sequence[float]) -> tuple[Array, Array]:
    share = np.asarray(fractions, dtype=np.float64)
    return expected * share, paths * share[None, :]


def _regression(
    history: DailyHistory, horizon: int, paths: int, rng: np.random.Generator
) -> tuple[Array, Array, int]:
    ols, rlm, tukey = _statsmodels()
    y = np.asarray(history.values, dtype=np.float64)
    n = len(y)
    design = _weekday_design(n, history.first_weekday, 0)
    keep = np.ones(n, dtype=bool)
    residual = y - np.median(y)
    if np.median(np.abs(residual - np.median(residual))) > 0:  # RLM needs a spread to scale by
        robust = rlm(y, design, M=tukey()).fit()
        weights = np.asarray(robust.weights, dtype=np.float64)
        if np.all(np.isfinite(weights)):
            keep = weights > OUTLIER_WEIGHT
    if keep.sum() < design.shape[1] + 2:  # too few days left to fit: keep them all
        keep = np.ones(n, dtype=bool)
    fit = ols(y[keep], design[keep]).fit(cov_type="HC3")
    beta = np.asarray(fit.params, dtype=np.float64)
    cov = np.asarray(fit.cov_params(), dtype=np.float64)
    if not np.all(np.isfinite(cov)):  # a weekday with one day left: leverage 1
        fit = ols(y[keep], design[keep]).fit()
        cov = np.asarray(fit.cov_params(), dtype=np.float64)
    dof = max(float(fit.df_resid), 1.0)
    fitted = design[keep] @ beta
    floor = 0.05 * max(float(np.mean(np.abs(y))), 1e-12)
    relative = (y[keep] - fitted) / np.maximum(np.abs(fitted), floor)
    spread = math.sqrt(float(np.sum(relative**2)) / dof)

    future = _weekday_design(horizon, history.first_weekday, n)
    expected = np.maximum(future @ beta, 0.0)
    scale = np.sqrt(dof / rng.chisquare(dof, size=paths))  # multivariate t
    draws = beta[None, :] + scale[:, None] * (
        rng.standard_normal((paths, len(beta))) @ _matrix_root(cov).T
    )
    means = draws @ future.T
    noise = spread * np.maximum(np.abs(means), floor) * scale[:, None]
    simulated = np.maximum(means + noise * rng.standard_normal((paths, horizon)), 0.0)
    return expected, simulated, int(n - keep.sum())


def spike_mask(values: Array, threshold: float = SPIKE_Z) -> npt.NDArray[np.bool_]:
    """Days far above the rest: modified z-score ``0.6745·(x - median) / MAD`` over the
    threshold (Iglewicz and Hoaglin). Needs :data:`SPIKE_MIN_DAYS` days and a spread."""
    flagged = np.zeros(len(values), dtype=bool)
    if len(values) < SPIKE_MIN_DAYS:
        return flagged
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    if mad <= 0:
        return flagged
    return np.asarray(0.6745 * (values - median) / mad > threshold, dtype=bool)


def _mean_rate(
    values: Sequence[float], horizon: int, paths: int, rng: np.random.Generator
) -> tuple[Array, Array, int]:
    y = np.asarray(values, dtype=np.float64)
    spikes = spike_mask(y)
    y = y[~spikes]
    n = len(y)
    mean = float(np.mean(y))
    # One day says nothing of the spread: assume it is as large as the mean.
    spread = max(float(np.std(y, ddof=1)), FALLBACK_MIN_CV * mean) if n >= 2 else mean
    dof = float(max(n - 1, 2))
    level = mean + spread / math.sqrt(n) * rng.standard_t(dof, size=paths)
    daily = level[:, None] + spread * rng.standard_t(dof, size=(paths, horizon))
    expected = np.full(horizon, mean, dtype=np.float64)
    return expected, np.maximum(daily, 0.0), int(spikes.sum())


def forecast_remaining(
    history: DailyHistory,
    fractions: Sequence[float],
    *,
    today_so_far: float = 0.0,
    today_elapsed: float = 0.0,
    paths: int = PATHS,
    seed: int = SEED,
) -> RemainingForecast:
    """Forecast the spend still to come on each remaining day.

    ``fractions[j]`` is the share of day ``j``'s spend still to come inside the period (day 0
    directly follows the history; usually today, partly gone). ``today_so_far`` and
    ``today_elapsed`` (the share of today gone) serve only when there is no complete day yet.
    """
    horizon = len(fractions)
    rng = np.random.default_rng(seed)
    n = len(history.values)
    if horizon == 0:
        empty = np.zeros(0, dtype=np.float64)
        return RemainingForecast(
            Method.MEAN_DAILY_RATE if n < MIN_MODEL_DAYS else Method.WEEKDAY_TREND_REGRESSION,
            "the period is over: nothing is left to forecast",
            empty,
            np.zeros((paths, 0), dtype=np.float64),
            n,
        )
    with np.errstate(all="ignore"):
        if n >= MIN_MODEL_DAYS:
            try:
                expected, simulated, excluded = _regression(history, horizon, paths, rng)
            except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as exc:
                failure = f"the regression could not be fitted ({type(exc).__name__}); "
            else:
                if np.all(np.isfinite(simulated)) and np.all(np.isfinite(expected)):
                    expected, simulated = _scale_days(expected, simulated, fractions)
                    note = (
                        f"regression with weekday effects and a linear trend on {n} days of "
                        "history, intervals from simulated paths"
                    )
                    if excluded:
                        note += f"; {excluded} spike day(s) left out of the fit"
                    return RemainingForecast(
                        Method.WEEKDAY_TREND_REGRESSION, note, expected, simulated, n, excluded
                    )
                failure = "the regression gave no finite forecast; "
        else:
            failure = ""
        if n == 0:
            rate = today_so_far / today_elapsed if today_elapsed > 0 else 0.0
            expected, simulated, excluded = _mean_rate([rate], horizon, paths, rng)
            basis = (
                "no complete day of history yet: today's spend so far, extrapolated to a full "
                "day, with a spread assumed as large as the rate (a wide interval)"
            )
        else:
            expected, simulated, excluded = _mean_rate(history.values, horizon, paths, rng)
            basis = (
                f"only {n} complete day(s) of history (the weekday and trend model needs "
                f"{MIN_MODEL_DAYS}): mean daily rate, with a wide interval from the observed "
                "day-to-day spread"
            )
            if excluded:
                basis += f"; {excluded} spike day(s) left out of the rate"
    expected, simulated = _scale_days(expected, simulated, fractions)
    return RemainingForecast(
        Method.MEAN_DAILY_RATE, failure + basis, expected, simulated, n, excluded
    )


def _quantiles(values: Array) -> dict[int, tuple[Array, Array]]:
    """Per level: the lower and upper quantiles over paths (axis 0)."""
    found: dict[int, tuple[Array, Array]] = {}
    for level in LEVELS:
        tail = (100 - level) / 200
        low, high = np.quantile(values, [tail, 1 - tail], axis=0)
        found[level] = (np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64))
    return found


def summarize(forecast: RemainingForecast, threshold: float | None = None) -> PathSummary:
    """Totals, per-day and cumulative bounds of a forecast, as amounts still to come.

    ``threshold``: also report the share of paths whose remaining total exceeds it.
    """
    paths = forecast.paths
    horizon = paths.shape[1]
    totals = paths.sum(axis=1)
    cumulative = np.cumsum(paths, axis=1)
    total_q = _quantiles(totals)
    day_q = _quantiles(paths) if horizon else {}
    cum_q = _quantiles(cumulative) if horizon else {}

    def per_day(found: dict[int, tuple[Array, Array]]) -> tuple[tuple[Bounds, ...], ...]:
        return tuple(
            tuple(
                Bounds(level, float(found[level][0][j]), float(found[level][1][j]))
                for level in LEVELS
            )
            for j in range(horizon)
        )

    return PathSummary(
        expected_total=float(forecast.expected.sum()),
        total=tuple(
            Bounds(level, float(total_q[level][0]), float(total_q[level][1])) for level in LEVELS
        ),
        day_expected=tuple(float(v) for v in forecast.expected),
        day=per_day(day_q),
        cumulative_expected=tuple(float(v) for v in np.cumsum(forecast.expected)),
        cumulative=per_day(cum_q),
        probability_above=None if threshold is None else float(np.mean(totals > threshold)),
    )


def straight_line(spent: float, days_elapsed: float, days_in_period: float) -> float:
    """What most tools show: spend so far ÷ days elapsed x days in the period."""
    return spent / days_elapsed * days_in_period if days_elapsed > 0 else 0.0
