"""The verify bench at toy size, so its code cannot rot (timing is judged by running it)."""

from __future__ import annotations

from bench import verify as verify_bench
from bench.db import fresh_database
from bench.stats import render_table


async def test_verify_bench_runs_end_to_end(server_url: str) -> None:
    config = verify_bench.VerifyConfig(entries=3_000)
    async with fresh_database(server_url) as url:
        (row,) = await verify_bench.measure_url(url, config)
    assert row.workload == "costgraph verify, whole platform"
    assert row.details["entries"] == 3_000
    assert row.details["drift"] == 0 and row.ours.errors == 0, row.details
    checked = row.details["checked"]
    assert checked["account balances"] > 100  # the accounts with entries
    assert checked["budget counters"] == row.details["budget_counters"] > 0
    assert checked["month-close rows"] > 0 and checked["rollup rows"] > 0
    assert set(row.details["check_seconds"]) == set(checked)
    assert row.passed and "no drift" in render_table([row])
