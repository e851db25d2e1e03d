"""The benchmark suite at toy size, so its code cannot rot: every bench runs end to end on
one shared environment (fresh database, real uvicorn servers on loopback, the ceilings) and
checks its own row counts. No timing is asserted — speed is judged by ``python -m bench``,
as ratios to ceilings measured in the same run."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from bench import authorize, ingest, single_usage, trivial_query
from bench.env import BenchEnv, bench_env
from bench.httpbench import HttpConfig
from bench.ingest import IngestConfig
from bench.stats import Comparison, render_table

TINY_HTTP = HttpConfig(duration=0.3, warmup=0.0, rounds=1, concurrency=2, max_requests=20)


@pytest.fixture(scope="module")
async def env(server_url: str) -> AsyncIterator[BenchEnv]:
    async with bench_env(server_url) as environment:
        yield environment


def _well_formed(row: Comparison) -> None:
    assert row.ours.operations > 0 and row.ceiling.operations > 0
    assert row.ours.errors == 0 and row.ceiling.errors == 0
    assert math.isfinite(row.ratio) and row.ratio > 0
    document = row.to_json()
    assert set(document) >= {"workload", "ours", "ceiling", "ratio", "target_ratio", "passed"}
    assert document["ours"]["p50_ms"] <= document["ours"]["p99_ms"]
    assert row.workload in render_table([row])


async def test_ingest_bench(env: BenchEnv) -> None:
    rows = await ingest.measure(env, IngestConfig(batches=2, batch_size=50, warmup_batches=1))
    assert [r.workload for r in rows] == ["batch ingest (domain)", "batch ingest (HTTP GraphQL)"]
    for row in rows:
        _well_formed(row)
        assert row.ours.operations == 100 and len(row.ours.latencies) == 2
    checks = rows[0].details["checks"]
    # 50 fresh events in the warm-up, then 45 fresh + 5 retries per batch, on each path.
    assert checks["distinct_events_in_process"] == checks["ceiling_rows"] == 140
    assert checks["ledger_rows"] == 280


async def test_single_usage_bench(env: BenchEnv) -> None:
    (row,) = await single_usage.measure(env, TINY_HTTP)
    _well_formed(row)
    checks = row.details["checks"]
    assert checks["ledger_rows"] == checks["requests_sent"] >= row.ours.operations


async def test_trivial_query_bench(env: BenchEnv) -> None:
    (row,) = await trivial_query.measure(env, TINY_HTTP)
    _well_formed(row)
    assert row.ours.operations <= TINY_HTTP.max_requests


async def test_authorize_bench(env: BenchEnv) -> None:
    (row,) = await authorize.measure(env, TINY_HTTP)
    _well_formed(row)
    checks = row.details["checks"]
    assert checks["reservations"] == checks["requests_sent"] >= row.ours.operations > 0
    assert checks["ceiling_requests_sent"] >= row.ceiling.operations > 0
