"""The whole suite with small defaults (two to three minutes on 2 cores): one table, one JSON
file.

    python -m bench                   # every workload
    python -m bench --only ingest     # some of them (repeatable)
    python -m bench --quick           # shorter, for a first look
    python -m bench --tuning org-cache,token-cache   # what-if (see bench/tuning.py)
    python -m bench --only pnl --pnl-entries 10000000  # P&L at the full size (see bench/pnl.py)

One fresh database and one pair of servers (CostGraph's, the bare ceiling's) serve every
workload of the run; the database is on the embedded PostgreSQL unless
``COSTGRAPH_DATABASE_URL`` is set. Exit status 1 when any workload misses its target, so CI
can run it as a non-blocking job.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from bench import (
    authorize,
    export_csv,
    ingest,
    pnl,
    record_budgeted,
    single_usage,
    trivial_query,
)
from bench.db import postgres_server
from bench.env import BenchEnv, bench_env
from bench.httpbench import HttpConfig, tuning_argument
from bench.ingest import IngestConfig
from bench.report import run_async, write_results
from bench.stats import Comparison, render_table
from bench.tuning import parse as parse_tuning

Bench = Callable[[BenchEnv], Awaitable[list[Comparison]]]
NAMES = (
    "ingest",
    "single_usage",
    "trivial_query",
    "authorize",
    "record_budgeted",
    "pnl",
    "export_csv",
)


def suite(quick: bool, pnl_entries: int | None = None) -> dict[str, Bench]:
    http, batches, books = HttpConfig(), IngestConfig(), pnl.PnLConfig()
    if quick:
        http = replace(http, duration=1.5, warmup=0.5)
        batches = replace(batches, batches=10, warmup_batches=1)
        books = replace(books, entries=50_000, calls=100, warmup=10)
    # opt-in: 10,000,000 is the size docs/architecture.md's target names
    if pnl_entries is not None:
        books = replace(books, entries=pnl_entries)
    return {
        "ingest": lambda env: ingest.measure(env, batches),
        "single_usage": lambda env: single_usage.measure(env, http),
        "trivial_query": lambda env: trivial_query.measure(env, http),
        "authorize": lambda env: authorize.measure(env, http),
        "record_budgeted": lambda env: record_budgeted.measure(env, http),
        "pnl": lambda env: pnl.measure_url(env.url, books),
        # 1,000,000 entries with python -m bench.export_csv; the suite keeps it short.
        "export_csv": lambda env: export_csv.measure_url(
            env.url, export_csv.ExportConfig(entries=50_000 if quick else 200_000), env.data_dir
        ),
    }


async def run_all(
    server_url: str, benches: dict[str, Bench], tuning: tuple[str, ...]
) -> list[Comparison]:
    rows: list[Comparison] = []
    async with bench_env(server_url, tuning) as env:
        for name, bench in benches.items():
            started_at = time.perf_counter()
            print(f"running {name} ...", flush=True)
            rows.extend(await bench(env))
            print(f"  done in {time.perf_counter() - started_at:.1f}s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=NAMES, help="repeatable")
    parser.add_argument("--quick", action="store_true", help="shorter slices and fewer batches")
    parser.add_argument(
        "--pnl-entries", type=int, help="ledger size of the P&L bench (default 200,000)"
    )
    tuning_argument(parser)
    args = parser.parse_args()
    tuning = parse_tuning(args.tuning)
    benches = suite(args.quick, args.pnl_entries)
    if args.only:
        benches = {name: bench for name, bench in benches.items() if name in args.only}
    started_at = time.perf_counter()
    with postgres_server() as server_url:
        rows = run_async(run_all(server_url, benches, tuning))
    elapsed = time.perf_counter() - started_at
    print()
    print(render_table(rows))
    extra = {"elapsed_seconds": round(elapsed, 1), "quick": args.quick, "tuning": list(tuning)}
    path = write_results("suite", rows, extra)
    print(f"\n{len(rows)} workloads in {elapsed:.0f}s; results: {path}")
    sys.exit(0 if all(row.passed for row in rows) else 1)


if __name__ == "__main__":
    main()
