"""The P&L bench at toy size, so its code cannot rot (timing is judged by ``python -m bench``)."""

from __future__ import annotations

from bench import pnl
from bench.db import fresh_database
from bench.stats import render_table


async def test_pnl_bench_runs_end_to_end(server_url: str) -> None:
    config = pnl.PnLConfig(entries=3_000, calls=4, warmup=1)
    async with fresh_database(server_url) as url:
        rows = await pnl.measure_url(url, config)
    assert [r.workload for r in rows] == [
        "30-day account P&L",
        "30-day org P&L by model",
        "30-day account P&L, unaligned",
        "30-day org P&L by model, unaligned",
        "30-day account P&L, 1,000-entry tail",
    ]
    for row in rows:
        assert row.ours.operations == 4 and row.ceiling.operations == 4
        assert row.ours.p50_ms <= row.ours.p99_ms
        assert row.details["entries"] == 3_000
    assert "p99 <= 25 ms" in render_table(rows)
