"""Usage patterns: pure computations over hourly spend and per-model usage (no database).

**Heatmap.** Every local hour of the range falls in one cell (ISO weekday 1-7 x hour 0-23, in
the configured zone); a cell holds the spend and requests of its hours and how many such hours
the range has, so ``spend / hours`` is the cell's average.

**Peak hours.** Hours of the day ranked by spend, with their share of the range's spend.

**Anomalies** — calibrated to a target false-positive rate
(:mod:`costgraph.billing.anomaly_detection`): a robust seasonal baseline (the median of the
same hour of the week from :data:`WEEKLY_BASELINE_DAYS` days, else of the hour of the day from
:data:`MIN_ANOMALY_DAYS`; under that, none are looked for), a score that scales the excess as
a count of calls would, a threshold from a tail fit for the target rate, and a minimum excess
of three mean hourly spends. A **DROP** is only looked for with the weekly baseline.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

from costgraph.billing import anomaly_detection as detection
from costgraph.kernel.money import quantize_stored

#: Days needed to look for anomalies at all; from which the baseline is the hour of the week.
MIN_ANOMALY_DAYS = detection.MIN_DAYS
WEEKLY_BASELINE_DAYS = detection.WEEKLY_BASELINE_DAYS
PEAK_HOURS = 3
MAX_ANOMALIES = 50


class Baseline(enum.StrEnum):
    HOUR_OF_WEEK = "HOUR_OF_WEEK"
    HOUR_OF_DAY = "HOUR_OF_DAY"
    NONE = "NONE"


class AnomalyKind(enum.StrEnum):
    SPIKE = "SPIKE"
    DROP = "DROP"


@dataclass(frozen=True, slots=True)
class HourSpend:
    """One local hour of the range (``start`` as a UTC instant) and its usage."""

    start: datetime
    weekday: int  # ISO: 1 is Monday
    hour: int
    spend: Decimal
    requests: int


@dataclass(frozen=True, slots=True)
class HeatCell:
    weekday: int
    hour: int
    spend: Decimal
    requests: int
    hours: int


@dataclass(frozen=True, slots=True)
class PeakHour:
    hour: int
    spend: Decimal
    requests: int
    share: float


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: AnomalyKind
    start: datetime
    weekday: int
    hour: int
    spend: Decimal
    expected: Decimal
    score: float


@dataclass(frozen=True, slots=True)
class ModelFeatureUsage:
    provider: str | None
    model: str | None
    feature: str | None
    requests: int
    ai_cost: Decimal
    billed: Decimal
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class CostPerRequest:
    usage: ModelFeatureUsage
    ai_cost_per_request: Decimal | None
    billed_per_request: Decimal | None
    average_input_tokens: float | None
    average_output_tokens: float | None
    #: This model's AI cost per request over the cheapest model's for the same feature.
    relative_to_cheapest: float | None


def hour_slots(start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    """The local hours meeting ``[start, end)``, as the UTC instants they start at."""
    local = start.astimezone(zone)
    first = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    slots: list[datetime] = []
    at = first
    while at < end:
        slots.append(at)
        at += timedelta(hours=1)
    return slots


def fill_hours(
    slots: Sequence[datetime],
    spend: dict[datetime, Decimal],
    requests: dict[datetime, int],
    zone: ZoneInfo,
) -> list[HourSpend]:
    """Every hour of the range with its usage (zero where none); a bucket the database cut
    differently (a repeated DST hour) joins the slot it falls in."""
    values: list[Decimal] = [Decimal(0)] * len(slots)
    counts: list[int] = [0] * len(slots)
    index = {slot: i for i, slot in enumerate(slots)}
    for bucket, amount in spend.items():
        i = index.get(bucket)
        if i is None:
            i = max(0, bisect.bisect_right(slots, bucket) - 1)
        values[i] += amount
        counts[i] += requests.get(bucket, 0)
    found: list[HourSpend] = []
    for slot, value, count in zip(slots, values, counts, strict=True):
        local = slot.astimezone(zone)
        found.append(HourSpend(slot, local.isoweekday(), local.hour, value, count))
    return found


def heatmap(hours: Sequence[HourSpend]) -> list[HeatCell]:
    """All 168 cells, Monday 00 first."""
    spend: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    requests: dict[tuple[int, int], int] = defaultdict(int)
    seen: dict[tuple[int, int], int] = defaultdict(int)
    for h in hours:
        key = (h.weekday, h.hour)
        spend[key] += h.spend
        requests[key] += h.requests
        seen[key] += 1
    return [
        HeatCell(d, hr, spend[(d, hr)], requests[(d, hr)], seen[(d, hr)])
        for d in range(1, 8)
        for hr in range(24)
    ]


def peak_hours(hours: Sequence[HourSpend], count: int = PEAK_HOURS) -> list[PeakHour]:
    """The hours of the day with the most spend (none when nothing was spent)."""
    spend: dict[int, Decimal] = defaultdict(Decimal)
    requests: dict[int, int] = defaultdict(int)
    for h in hours:
        spend[h.hour] += h.spend
        requests[h.hour] += h.requests
    total = sum(spend.values(), Decimal(0))
    if total <= 0:
        return []
    ranked = sorted((hr for hr in spend if spend[hr] > 0), key=lambda hr: (-spend[hr], hr))
    return [
        PeakHour(hr, spend[hr], requests[hr], float(spend[hr] / total)) for hr in ranked[:count]
    ]


@dataclass(frozen=True, slots=True)
class AnomalyScan:
    """What the scan found, and on what terms."""

    found: list[Anomaly]
    baseline: Baseline
    #: The score above which an hour is a spike (fitted per range; inf: nothing can be).
    threshold: float
    #: Hours flagged before the list was cut to :data:`MAX_ANOMALIES`.
    flagged: int = 0


def scan(hours: Sequence[HourSpend]) -> AnomalyScan:
    """Spikes (and, with a weekly baseline, drops) in hourly spend; strongest first."""
    values = np.array([float(h.spend) for h in hours], dtype=np.float64)
    weekdays = np.array([h.weekday for h in hours], dtype=np.int64)
    hour_of_day = np.array([h.hour for h in hours], dtype=np.int64)
    found = detection.detect(values, weekdays, hour_of_day)
    if found is None:
        baseline = Baseline.NONE if len(hours) / 24 < MIN_ANOMALY_DAYS else Baseline.HOUR_OF_DAY
        if len(hours) / 24 >= WEEKLY_BASELINE_DAYS:
            baseline = Baseline.HOUR_OF_WEEK
        return AnomalyScan([], baseline, math.inf)
    baseline = Baseline.HOUR_OF_WEEK if found.weekly else Baseline.HOUR_OF_DAY
    listed: list[Anomaly] = []
    for i in np.flatnonzero(found.spikes | found.drops):
        h = hours[int(i)]
        listed.append(
            Anomaly(
                AnomalyKind.SPIKE if found.spikes[i] else AnomalyKind.DROP,
                h.start,
                h.weekday,
                h.hour,
                h.spend,
                quantize_stored(Decimal(repr(float(found.expected[i])))),
                round(float(found.scores[i]), 2),
            )
        )
    listed.sort(key=lambda a: (-abs(a.score), a.start))
    return AnomalyScan(listed[:MAX_ANOMALIES], baseline, found.spike_threshold, len(listed))


def anomalies(hours: Sequence[HourSpend]) -> tuple[list[Anomaly], Baseline]:
    """:func:`scan`'s anomalies and baseline."""
    found = scan(hours)
    return found.found, found.baseline


def cost_per_request(rows: Sequence[ModelFeatureUsage]) -> list[CostPerRequest]:
    """Cost per request by model and feature, the costliest first; each compared with the
    cheapest model used for the same feature (a hint of where a cheaper model may do)."""
    per_request: dict[int, Decimal | None] = {}
    cheapest: dict[str | None, Decimal] = {}
    for i, row in enumerate(rows):
        value = None if row.requests == 0 else quantize_stored(row.ai_cost / row.requests)
        per_request[i] = value
        if value is not None and value > 0:
            current = cheapest.get(row.feature)
            cheapest[row.feature] = value if current is None else min(current, value)
    result: list[CostPerRequest] = []
    for i, row in enumerate(rows):
        value = per_request[i]
        floor = cheapest.get(row.feature)
        result.append(
            CostPerRequest(
                usage=row,
                ai_cost_per_request=value,
                billed_per_request=None
                if row.requests == 0
                else quantize_stored(row.billed / row.requests),
                average_input_tokens=None
                if row.requests == 0
                else round(row.input_tokens / row.requests, 1),
                average_output_tokens=None
                if row.requests == 0
                else round(row.output_tokens / row.requests, 1),
                relative_to_cheapest=None
                if value is None or floor is None or floor == 0
                else round(float(value / floor), 2),
            )
        )
    result.sort(key=lambda c: (-c.usage.ai_cost, c.usage.model or "", c.usage.feature or ""))
    return result
