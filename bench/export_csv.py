"""CSV export of a large ledger: ``GET /exports/ledger.csv`` over ``--entries`` entries (default
1,000,000) from a CostGraph server in its own process, against PostgreSQL's own CSV writer
(the ceiling): ``COPY (SELECT …) TO STDOUT WITH CSV`` of the same rows and columns, in the same
order, through asyncpg's ``copy_from_query``.

The entries are seeded straight in SQL with ``generate_series`` (chunks of 250,000, session in
``replica`` role so no foreign-key trigger runs per row; the references hold by construction):
one organisation, 40 accounts, 95 % usage charges (8 models, 10 features — one of them a
formula — and 20 agents), the rest top-ups, a description with a comma and quotes on every
100th entry. They sit in January 2025, apart from anything else in the database.

Ours is the whole request: the bearer check, the range and column checks, the tenant
session, the server-side cursor read in chunks of ``COSTGRAPH_EXPORT_CHUNK_ROWS``, the
rounding and escaping in Python, the RFC 4180 writer, and HTTP; the client only counts bytes
and line ends. Memory: the server's resident set is sampled every 20 ms during the export;
we report the peak, its growth over the RSS just before the request, and the process's
high-water mark (``VmHWM``, start-up included). Flat memory means the growth does not scale
with the number of entries (compare ``--entries 100000`` with the default).

    python -m bench.export_csv                      # 1,000,000 entries
    python -m bench.export_csv --entries 100000     # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import psutil

from bench.db import BenchTenant, bench_settings, create_tenant, fresh_database, role_token
from bench.report import standalone
from bench.server import COSTGRAPH, ServerConfig, ServerProcess, free_port, started
from bench.stats import Comparison, Measurement
from costgraph.billing.exports import ExportLimits, ExportRequest, ReportKind, queries
from costgraph.billing.exports.spec import resolve_columns
from costgraph.kernel.database_url import plain_url

ENTRIES = 1_000_000
CHUNK = 250_000
#: What a PostgreSQL-side CSV writer does at C speed, ours does in Python per cell (rounding,
#: escaping, quoting) and sends over HTTP; see bench/README.md for the measured ratio.
TARGET_RATIO = 0.05
START = datetime(2025, 1, 1, tzinfo=UTC)
END = START + timedelta(days=31)
ACCOUNTS = 40

SEED = """
INSERT INTO ledger_entries (organization_id, id, type, account_id, customer_id, occurred_at,
    currency, amount, balance_delta, ai_cost, provider_cost, provider_currency, fx_rate,
    caller_priced, provider, model, input_tokens, output_tokens, feature, agent, description,
    idempotency_key, request_hash)
SELECT $1, ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, kind, acct, $3,
    $4::timestamptz + make_interval(secs => g * $5::float8), 'USD',
    CASE WHEN usage THEN cost * 1.2 ELSE 25 END,
    CASE WHEN usage THEN -cost * 1.2 ELSE 25 END,
    CASE WHEN usage THEN cost ELSE 0 END,
    CASE WHEN usage THEN cost END, CASE WHEN usage THEN 'USD' END,
    CASE WHEN usage THEN 1 END, usage,
    CASE WHEN usage THEN (ARRAY['openai', 'anthropic'])[1 + g % 2] END,
    CASE WHEN usage THEN 'model-' || (g % 8) END,
    CASE WHEN usage THEN 200 + g % 3000 ELSE 0 END,
    CASE WHEN usage THEN 50 + g % 700 ELSE 0 END,
    CASE WHEN usage THEN (CASE WHEN g % 10 = 0 THEN '=cmd()' ELSE 'feature-' || (g % 10) END) END,
    CASE WHEN usage AND g % 3 <> 0 THEN 'agent-' || (g % 20) END,
    CASE WHEN g % 100 = 0 THEN 'note ' || g || ', "quoted"' END,
    'bench-' || g, '\\x00'::bytea
FROM (
    SELECT g, g % 100 < 95 AS usage,
        CASE WHEN g % 100 < 95 THEN 'USAGE_CHARGE' ELSE 'DEPOSIT' END AS kind,
        ($2::uuid[])[1 + g % array_length($2::uuid[], 1)] AS acct,
        ((g * 7919) % 100000)::numeric / 10000000 AS cost
    FROM generate_series($6::bigint, $7::bigint) AS g
) s
"""


@dataclass(frozen=True, slots=True)
class ExportConfig:
    entries: int = ENTRIES


async def seed(url: str, tenant: BenchTenant, entries: int) -> None:
    connection = await asyncpg.connect(plain_url(url))
    try:
        accounts = list(tenant.account_ids)
        await connection.executemany(
            "INSERT INTO accounts (organization_id, id, customer_id, name, currency, postpaid) "
            "VALUES ($1, $2, $3, $4, 'USD', true)",
            [
                (tenant.org.id, uuid.uuid4(), tenant.customer_id, f"export {i}")
                for i in range(ACCOUNTS - len(accounts))
            ],
        )
        accounts = [
            row["id"]
            for row in await connection.fetch(
                "SELECT id FROM accounts WHERE organization_id = $1", tenant.org.id
            )
        ]
        step = (END - START).total_seconds() / (entries + 1)
        await connection.execute("SET session_replication_role = replica")
        for first in range(1, entries + 1, CHUNK):
            last = min(entries, first + CHUNK - 1)
            await connection.execute(
                SEED, tenant.org.id, accounts, tenant.customer_id, START, step, first, last
            )
        await connection.execute("SET session_replication_role = DEFAULT")
        await connection.execute("ANALYZE ledger_entries")
    finally:
        await connection.close()


class RssSampler:
    """The process's resident set, sampled in a thread every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = asyncio.Event()

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def high_water_mark(self) -> int | None:
        """``VmHWM`` (Linux): the peak resident set since the process started."""
        try:
            text = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return None

    async def run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, await asyncio.to_thread(self.rss))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    def stop(self) -> None:
        self._stop.set()


@dataclass(slots=True)
class Download:
    seconds: float
    bytes: int
    lines: int
    status: int


async def download(port: int, token: str, params: dict[str, str]) -> Download:
    started_at = time.perf_counter()
    size = lines = 0
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as client,
        client.stream(
            "GET",
            "/exports/ledger.csv",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        async for chunk in response.aiter_raw():
            size += len(chunk)
            lines += chunk.count(b"\n")
        status = response.status_code
    return Download(time.perf_counter() - started_at, size, lines, status)


async def ceiling(url: str, tenant: BenchTenant) -> Download:
    """PostgreSQL's CSV writer over the same statement (rows, columns, order)."""
    request = ExportRequest(ReportKind.LEDGER, START, END)
    sql, args = queries.ledger_statement(tenant.org.id, request, resolve_columns(request))
    size = lines = 0

    async def sink(data: bytes) -> None:
        nonlocal size, lines
        size += len(data)
        lines += data.count(b"\n")

    connection = await asyncpg.connect(plain_url(url))
    try:
        started_at = time.perf_counter()
        await connection.copy_from_query(sql, *args, output=sink, format="csv", header=True)
        seconds = time.perf_counter() - started_at
    finally:
        await connection.close()
    return Download(seconds, size, lines, 200)


async def measure_url(url: str, config: ExportConfig, data_dir: Path) -> list[Comparison]:
    settings = bench_settings(data_dir, url)
    tenant = await create_tenant(settings, url)
    seeded_at = time.perf_counter()
    await seed(url, tenant, config.entries)
    seed_seconds = time.perf_counter() - seeded_at
    # A finance_viewer's token: exports need ``read_ledger``.
    token = role_token(settings, tenant.org.id, ["finance_viewer"], "finance:bench")
    params = {"start": START.isoformat(), "end": END.isoformat()}
    server_config = ServerConfig(COSTGRAPH, free_port(), url, str(data_dir), str(tenant.org.id))
    async with started(server_config) as (server,):
        ours, memory = await _ours(server, token, params)
    floor = await ceiling(url, tenant)
    rows_ours = ours.lines - 1 - 2  # the header; the two reconciliation rows (one currency)
    rows_ceiling = floor.lines - 1
    errors = 0 if ours.status == 200 and rows_ours == config.entries else 1
    return [
        Comparison(
            workload=f"CSV export, {config.entries:,} ledger entries (HTTP)",
            unit="rows/s",
            ours=Measurement("GET /exports/ledger.csv", rows_ours, ours.seconds, errors=errors),
            ceiling=Measurement("COPY ... TO STDOUT WITH CSV", rows_ceiling, floor.seconds),
            target_ratio=TARGET_RATIO,
            details={
                "checks": {
                    "entries": config.entries,
                    "rows_ours": rows_ours,
                    "rows_ceiling": rows_ceiling,
                    "status": ours.status,
                },
                "bytes_ours": ours.bytes,
                "bytes_ceiling": floor.bytes,
                "seed_seconds": round(seed_seconds, 1),
                "chunk_rows": ExportLimits.of(settings).chunk_rows,
                **memory,
            },
        )
    ]


async def _ours(
    server: ServerProcess, token: str, params: dict[str, str]
) -> tuple[Download, dict[str, Any]]:
    sampler = RssSampler(server.process.pid)
    before = sampler.rss()
    sampling = asyncio.create_task(sampler.run())
    try:
        result = await download(server.port, token, params)
    finally:
        sampler.stop()
        await sampling
    mib = 1024 * 1024
    high_water = sampler.high_water_mark()
    return result, {
        "server_rss_before_mib": round(before / mib, 1),
        "server_rss_peak_mib": round(sampler.peak / mib, 1),
        "server_rss_growth_mib": round((sampler.peak - before) / mib, 1),
        "server_vmhwm_mib": None if high_water is None else round(high_water / mib, 1),
    }


async def measure(server_url: str, config: ExportConfig) -> list[Comparison]:
    """A fresh database on ``server_url`` (dropped afterwards) and a temporary data dir."""
    async with fresh_database(server_url) as url:
        with tempfile.TemporaryDirectory(prefix="costgraph-bench-") as tmp:
            return await measure_url(url, config, Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=ENTRIES)
    args = parser.parse_args()
    config = ExportConfig(entries=args.entries)
    rows = standalone("export_csv", lambda url: measure(url, config))
    for row in rows:
        print({k: v for k, v in row.details.items() if k != "checks"})


if __name__ == "__main__":
    main()
