"""Measurements, comparisons against a ceiling, and the printed table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1); 0.0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Measurement:
    """``operations`` done in ``seconds`` of wall time; latencies are per operation, in seconds.

    An operation is whatever the workload counts (events for ingest, requests for HTTP);
    ``latencies`` are per timed unit (a batch for ingest, a request for HTTP).
    """

    label: str
    operations: int
    seconds: float
    latencies: tuple[float, ...] = ()
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.operations / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1000

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "operations": self.operations,
            "seconds": round(self.seconds, 6),
            "rate": round(self.rate, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "samples": len(self.latencies),
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """One row of the table: ours against the ceiling measured in the same run."""

    workload: str
    unit: str
    ours: Measurement
    ceiling: Measurement
    target_ratio: float
    min_rate: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.ours.rate / self.ceiling.rate if self.ceiling.rate > 0 else 0.0

    @property
    def passed(self) -> bool:
        if self.ours.errors or self.ceiling.errors:
            return False
        if self.ratio < self.target_ratio:
            return False
        return self.min_rate is None or self.ours.rate >= self.min_rate

    @property
    def target(self) -> str:
        text = f">= {self.target_ratio:g}x"
        if self.min_rate is not None:
            text += f", >= {self.min_rate:,.0f} {self.unit}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "unit": self.unit,
            "ours": self.ours.to_json(),
            "ceiling": self.ceiling.to_json(),
            "ratio": round(self.ratio, 3),
            "target_ratio": self.target_ratio,
            "min_rate": self.min_rate,
            "passed": self.passed,
            "details": self.details,
        }


def render_table(rows: Sequence[Comparison]) -> str:
    header = (
        "workload",
        "ours",
        "p50/p99 ms",
        "ceiling",
        "p50/p99 ms",
        "ratio",
        "target",
        "result",
    )
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.workload,
                f"{row.ours.rate:,.0f} {row.unit}",
                f"{row.ours.p50_ms:.2f}/{row.ours.p99_ms:.2f}",
                f"{row.ceiling.rate:,.0f} {row.unit}",
                f"{row.ceiling.p50_ms:.2f}/{row.ceiling.p99_ms:.2f}",
                f"{row.ratio:.2f}x",
                row.target,
                "PASS" if row.passed else "FAIL",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = [
        " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    ]
    rendered.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(rendered)


def as_dicts(rows: Sequence[Comparison]) -> list[dict[str, Any]]:
    return [row.to_json() for row in rows]
