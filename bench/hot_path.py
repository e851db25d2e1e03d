"""What the hot-path benches (``authorizeUsage``, single ``recordUsage``) share.

Their target (DESIGN.md, "Performance") is set against the trivial query
``{ me { subject } }`` measured in the same run: at least half its throughput, a p99 at most
twice its p99. So each of them alternates the trivial query with its own sides, slice by slice,
and each side's slices are merged as in :func:`bench.loadgen.alternate`. Beside wall-clock
figures, the server CPU each request of ours costs is read from the OS (user + system time of
CostGraph's server process over its slices): on a shared machine that holds where rates do not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psutil

from bench.env import BenchEnv
from bench.httpbench import HttpConfig
from bench.loadgen import LoadPlan, merge, run_load
from bench.stats import Comparison, Measurement, percentile
from bench.trivial_query import EXPECT as TRIVIAL_EXPECT
from bench.trivial_query import QUERY as TRIVIAL_QUERY

TARGET_RATIO = 0.5
#: ours' p99 at most this many times the trivial query's.
P99_FACTOR = 2.0

Slice = Callable[[], Awaitable[Measurement]]


@dataclass(frozen=True, slots=True)
class AgainstTrivial(Comparison):
    """Throughput >= ``target_ratio`` x the trivial query's and p99 <= ``P99_FACTOR`` x its."""

    @property
    def passed(self) -> bool:
        within = self.ours.p99_ms <= P99_FACTOR * self.ceiling.p99_ms
        return Comparison.passed.fget(self) and within  # type: ignore[attr-defined]

    @property
    def target(self) -> str:
        return f"{Comparison.target.fget(self)}, p99 <= {P99_FACTOR:g}x"  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Reported(Comparison):
    """A ratio reported against a ceiling that carries no target of its own."""

    target_ratio: float = 0.0

    @property
    def target(self) -> str:
        return "(reported)"


class ServerCpu:
    """CPU seconds of one process, summed over the slices measured through :meth:`slice`."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid) if pid else None
        self.seconds = 0.0
        self.requests = 0

    def _now(self) -> float:
        if self.process is None:
            return 0.0
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def slice(self, run: Slice) -> Slice:
        async def measured() -> Measurement:
            before = self._now()
            measurement = await run()
            self.seconds += self._now() - before
            self.requests += measurement.operations
            return measurement

        return measured

    @property
    def us_per_request(self) -> float | None:
        """Including the warm-up's requests in the CPU but not in the count: an upper bound."""
        if self.process is None or not self.requests:
            return None
        return round(self.seconds / self.requests * 1e6, 1)


def http_slice(port: int, plan: LoadPlan, label: str) -> Slice:
    return lambda: run_load(port, plan, label)


def trivial_plan(env: BenchEnv, config: HttpConfig) -> LoadPlan:
    body = orjson.dumps({"query": TRIVIAL_QUERY})
    headers = {"Authorization": f"Bearer {env.token}"}
    return config.plan("/graphql", lambda index: body, TRIVIAL_EXPECT, headers)


async def alternate(sides: Sequence[tuple[str, Slice]], rounds: int) -> dict[str, Measurement]:
    """Each side in turn, ``rounds`` times (the order rotating each round), merged per side."""
    parts: dict[str, list[Measurement]] = {label: [] for label, _ in sides}
    for index in range(rounds):
        shift = index % len(sides)
        for label, run in [*sides[shift:], *sides[:shift]]:
            parts[label].append(await run())
    return {label: merge(label, measured) for label, measured in parts.items()}


async def closed_loop(
    call: Callable[[int], Awaitable[Any]],
    config: HttpConfig,
    label: str,
) -> Measurement:
    """``config.concurrency`` workers in process, each awaiting ``call(i)`` then the next —
    the same closed loop and warm-up rule as :func:`bench.loadgen.run_load`, without HTTP."""
    start = time.perf_counter()
    measure_from = start + config.warmup
    deadline = measure_from + config.duration
    issued = 0
    latencies: list[float] = []
    finished = measure_from

    async def worker() -> None:
        nonlocal issued, finished
        while True:
            sent_at = time.perf_counter()
            if sent_at >= deadline or issued >= config.max_requests:
                return
            index = issued
            issued += 1
            await call(index)
            done = time.perf_counter()
            if sent_at >= measure_from:
                latencies.append(done - sent_at)
                finished = max(finished, done)

    await asyncio.gather(*(worker() for _ in range(config.concurrency)))
    return Measurement(
        label=label,
        operations=len(latencies),
        seconds=max(finished - measure_from, 1e-9),
        latencies=tuple(latencies),
    )


def summary(measurement: Measurement) -> dict[str, Any]:
    return {
        "rate": round(measurement.rate, 1),
        "p50_ms": round(measurement.p50_ms, 3),
        "p99_ms": round(measurement.p99_ms, 3),
        "p90_ms": round(percentile(measurement.latencies, 0.9) * 1000, 3),
    }
