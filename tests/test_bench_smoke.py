"""The benchmark suite at toy size, so its code cannot rot: every bench runs end to end on
one shared environment (fresh database, real uvicorn servers on loopback, the ceilings) and
checks its own row counts. No timing is asserted — speed is judged by ``python -m bench``,
as ratios to ceilings measured in the same run."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench import (
    authorize,
    export_csv,
    hostile,
    hot_path_cpu,
    ingest,
    loadtest,
    record_budgeted,
    single_usage,
    trivial_query,
)
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


async def test_record_budgeted_bench(env: BenchEnv) -> None:
    rows = await record_budgeted.measure(env, TINY_HTTP)
    assert [r.workload for r in rows] == [
        "single recordUsage, one hot budget (HTTP, c=2) vs trivial query",
        "single recordUsage, 16 accounts (HTTP, c=2) vs trivial query",
    ]
    for row in rows:
        _well_formed(row)
        checks = row.details["checks"]
        # one entry per request; balances and counters moved by exactly the ledger's sums
        assert checks["entries"] == checks["requests_sent"] >= row.ours.operations > 0
        assert checks["balances_moved_by"] == checks["billed"] != "0"
        assert checks["counted"] == checks["ai_cost"] != "0"
    assert [r.details["accounts"] for r in rows] == [1, 16]


async def test_trivial_query_bench(env: BenchEnv) -> None:
    (row,) = await trivial_query.measure(env, TINY_HTTP)
    _well_formed(row)
    assert row.ours.operations <= TINY_HTTP.max_requests


async def test_authorize_bench(env: BenchEnv) -> None:
    rows = await authorize.measure(env, TINY_HTTP)
    hot, spread = "one hot budget (HTTP, c=2)", "16 accounts (HTTP, c=2)"
    assert [r.workload for r in rows] == [
        f"authorizeUsage, {hot} vs trivial query",
        f"authorizeUsage, {hot} vs raw reserve SQL",
        f"authorizeUsage, {hot} vs bare PK lookup",
        f"authorizeUsage, {spread} vs trivial query",
        f"authorizeUsage, {spread} vs raw reserve SQL",
    ]
    for row in rows:
        _well_formed(row)
        checks = row.details["checks"]
        # every request over HTTP and every raw statement made one reservation
        assert checks["reservations"] == checks["requests_sent"] + checks["raw_holds"]
        assert checks["requests_sent"] >= row.ours.operations > 0
    assert rows[0].details["accounts"] == 1 and rows[3].details["accounts"] == 16
    assert rows[2].details["checks"]["ceiling_requests_sent"] >= rows[2].ceiling.operations > 0


async def test_load_test(env: BenchEnv) -> None:
    tiny = loadtest.LoadConfig(
        duration=0.5,
        warmup=0.0,
        writers=1,
        batch_writers=1,
        batch_size=5,
        readers=1,
        subscribers=2,
        max_requests=30,
    ).checked()
    report = await loadtest.run_against(
        tiny, env.url, env.settings, env.tenant, env.ours_port, env.token
    )
    document = report.to_json()
    operations = {op["operation"]: op for op in document["operations"]}
    assert set(operations) >= {"recordUsage", "recordUsageBatch", "ledger page"}
    for op in operations.values():
        assert op["requests"] > 0 and op["errors"] == 0, op
        assert op["p50_ms"] <= op["p95_ms"] <= op["p99_ms"]
    # Every acknowledged event is in the ledger once, and every subscriber saw all of them.
    checks = document["checks"]
    assert checks["ledger_usage_rows"] == checks["events_acknowledged"] > 0
    live = document["subscriptions"]
    assert live["events_covered_min"] == checks["ledger_usage_rows"]
    assert live["errors"] == 0
    assert "recordUsageBatch" in loadtest.render(report)


async def test_export_csv_bench(env: BenchEnv) -> None:
    (row,) = await export_csv.measure_url(
        env.url, export_csv.ExportConfig(entries=3_000), env.data_dir
    )
    _well_formed(row)
    checks = row.details["checks"]
    assert checks["rows_ours"] == checks["rows_ceiling"] == checks["entries"] == 3_000
    assert row.details["server_rss_peak_mib"] >= row.details["server_rss_before_mib"] > 0


async def test_hostile_bench(server_url: str) -> None:
    """Every hostile document and head is refused as it should be (the bench checks each
    answer's status), and the rows and the memory figures come out."""
    tiny = hostile.HostileConfig(requests=3, huge=1, rounds=1, memory_documents=20, slow_heads=0)
    rows = await hostile.run(server_url, tiny)
    assert [r.workload for r in rows] == [
        hostile.row_name(name)
        for name in [
            *hostile._documents(),
            *hostile._huge_documents(),
            hostile.PADDED,
            *hostile.HEADS,
        ]
    ]
    for row in rows:
        assert row.ours.operations > 0 and row.ceiling.operations > 0
    memory = rows[0].details["memory"]
    assert memory["documents"] == 20 and memory["rss_after_hostile_mib"] > 0


async def test_hot_path_cpu_bench(server_url: str, tmp_path: Path) -> None:
    profile = tmp_path / "run.prof"
    rows = await hot_path_cpu.measure(server_url, requests=4, rounds=2, profile=str(profile))
    assert [r.ours.label for r in rows] == ["authorizeUsage", "recordUsage"]
    for row in rows:
        _well_formed(row)
        assert row.ours.operations == row.ceiling.operations == 8
        assert set(row.details["cpu_us_per_request"]) == {
            "trivial query",
            "authorizeUsage",
            "recordUsage",
        }
    assert _written(tmp_path) == [
        "authorizeUsage-run.prof",
        "recordUsage-run.prof",
        "trivial_query-run.prof",
    ]


def _written(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.stat().st_size > 0)
