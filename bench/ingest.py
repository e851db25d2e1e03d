"""Batch ingest of priced usage: ``record_usage_batch`` (in process, and over HTTP) against
raw asyncpg ``INSERT … SELECT unnest … ON CONFLICT DO NOTHING`` into a bare copy of the table.

Batches of 1,000 events, 10 % of them retries of events sent before. The three writers take
turns batch by batch, so drift on a shared machine hits them alike. Each side's time is
the sum of its own batches: for ours, building the ``UsageEvent``s and the whole transaction
as the resolver runs it; for the ceiling, building the rows and the one statement; over
HTTP, the request round trip to a real uvicorn server (the client's JSON is built before).

    python -m bench.ingest [--batches 20] [--batch-size 1000] [--no-http] [--pricing caller]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.ceiling import CEILING_ROWS_SQL, LEDGER_USAGE_ROWS_SQL, RowBuilder, insert_batch
from bench.env import BenchEnv, bench_env
from bench.httpbench import tuning_argument
from bench.loadgen import LOOPBACK, Connection
from bench.report import standalone
from bench.stats import Comparison, Measurement
from bench.tuning import parse as parse_tuning
from bench.workload import (
    EventFactory,
    EventSpec,
    Pricing,
    seed_catalog,
    to_graphql_input,
    to_usage_event,
)
from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.heap import tune_garbage_collector
from costgraph.app.state import AppState
from costgraph.app.units import build_units
from costgraph.billing import ledger
from costgraph.billing.commands import Limits
from costgraph.billing.directory import OrgContext
from costgraph.billing.entries import Entry
from costgraph.kernel.database_url import plain_url

TARGET_RATIO = 0.5
MIN_EVENTS_PER_SECOND = 20_000.0

BATCH_MUTATION = """
mutation Ingest($input: [UsageEventInput!]!) {
  recordUsageBatch(input: $input) {
    __typename
    ... on UsageBatchRecorded { recorded replayed }
    ... on UserError { code message field }
  }
}
"""


@dataclass(frozen=True, slots=True)
class IngestConfig:
    batches: int = 20
    batch_size: int = 1_000
    duplicate_fraction: float = 0.10
    warmup_batches: int = 2
    pricing: Pricing = Pricing.CALLER
    http: bool = True


@dataclass(slots=True)
class Tally:
    """Times and outcomes of one writer's measured batches."""

    label: str
    times: list[float] = field(default_factory=list)
    events: int = 0

    def add(self, seconds: float, events: int) -> None:
        self.times.append(seconds)
        self.events += events

    def measurement(self) -> Measurement:
        return Measurement(self.label, self.events, sum(self.times), tuple(self.times))


async def domain_batch(
    sessions: async_sessionmaker[AsyncSession],
    org: OrgContext,
    specs: Sequence[EventSpec],
    limits: Limits,
) -> list[Entry]:
    """What ``recordUsageBatch``'s resolver does after decoding: one unit of work (a tenant
    transaction, alerts evaluated before commit; no bus to publish to here)."""
    events = [to_usage_event(spec) for spec in specs]
    units = build_units(sessions)
    return await units.run(
        org, lambda unit: ledger.record_usage_batch(unit.session, unit.org, events, limits)
    )


def batch_body(specs: Sequence[EventSpec]) -> bytes:
    return orjson.dumps(
        {"query": BATCH_MUTATION, "variables": {"input": [to_graphql_input(s) for s in specs]}}
    )


class HttpIngest:
    """``recordUsageBatch`` over one keep-alive connection to the real uvicorn server."""

    def __init__(self, port: int, token: str) -> None:
        self.connection = Connection(LOOPBACK, port)
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    async def send(self, body: bytes) -> tuple[float, dict[str, Any]]:
        raw = self.connection.encode("POST", "/graphql", body, self.headers)
        started_at = time.perf_counter()
        response = await self.connection.send(raw)
        elapsed = time.perf_counter() - started_at
        document = orjson.loads(response.body)
        result = (document.get("data") or {}).get("recordUsageBatch") or {}
        if response.status != 200 or result.get("__typename") != "UsageBatchRecorded":
            raise RuntimeError(
                f"recordUsageBatch failed: {response.status} {response.body[:500]!r}"
            )
        return elapsed, result


class Writers:
    """The three writers of one run and what they need."""

    def __init__(self, env: BenchEnv, raw: asyncpg.Connection, config: IngestConfig) -> None:
        self.env = env
        self.raw = raw
        self.config = config
        self.engine = create_engine(env.url, env.settings)
        self.sessions = create_sessionmaker(self.engine)
        self.limits = AppState.limits_of(env.settings)
        self.in_process = EventFactory(env.tenant, config.pricing, seed=1)
        self.over_http = EventFactory(env.tenant, config.pricing, seed=2)
        self.http = HttpIngest(env.ours_port, env.token) if config.http else None
        self.tallies = (Tally("record_usage_batch"), Tally("asyncpg unnest"), Tally("HTTP"))

    async def close(self) -> None:
        if self.http is not None:
            await self.http.connection.close()
        await self.engine.dispose()

    async def round(self, builder: RowBuilder, measured: bool) -> None:
        """One batch each: ours in process, the ceiling on the same rows, ours over HTTP."""
        ours, ceiling, http = self.tallies
        size, duplicates = self.config.batch_size, self.config.duplicate_fraction
        specs = self.in_process.batch(size, duplicates)
        retries = self.in_process.last_retries

        started_at = time.perf_counter()
        entries = await domain_batch(self.sessions, self.env.tenant.org, specs, self.limits)
        elapsed = time.perf_counter() - started_at
        _check_replays("record_usage_batch", sum(1 for e in entries if e.replayed), retries)
        if measured:
            ours.add(elapsed, len(specs))

        started_at = time.perf_counter()
        await insert_batch(self.raw, builder, specs)
        elapsed = time.perf_counter() - started_at
        if measured:
            ceiling.add(elapsed, len(specs))

        if self.http is not None:
            body = batch_body(self.over_http.batch(size, duplicates))
            elapsed, result = await self.http.send(body)
            _check_replays("recordUsageBatch", result["replayed"], self.over_http.last_retries)
            if measured:
                http.add(elapsed, size)


async def measure(env: BenchEnv, config: IngestConfig) -> list[Comparison]:
    if config.pricing is Pricing.CATALOG:
        await seed_catalog(env.url, env.tenant)
    raw = await asyncpg.connect(plain_url(env.url), server_settings={"timezone": "UTC"})
    writers = Writers(env, raw, config)
    try:
        before = await _rows(raw, env.tenant.org.id)
        builder = await RowBuilder.load(raw, env.tenant.org.id, env.tenant.currency)
        for index in range(config.warmup_batches + config.batches):
            if index == config.warmup_batches:
                # Planner statistics as autovacuum keeps them in steady state: on a fresh
                # table a lookup by key would scan all of the tenant's rows.
                await raw.execute("ANALYZE")
                # The collector as the server tunes it once started (app/heap.py), for
                # both writers alike (one process).
                tune_garbage_collector()
            await writers.round(builder, measured=index >= config.warmup_batches)
        after = await _rows(raw, env.tenant.org.id)
    finally:
        await writers.close()
        await raw.close()
    checks = {
        "ledger_rows": after[0] - before[0],
        "ceiling_rows": after[1] - before[1],
        "distinct_events_in_process": writers.in_process.count,
        "distinct_events_http": writers.over_http.count,
    }
    expected = writers.in_process.count + writers.over_http.count
    if checks["ledger_rows"] != expected or checks["ceiling_rows"] != writers.in_process.count:
        raise AssertionError(f"row counts do not match the events sent: {checks}")
    details = {
        "batch_size": config.batch_size,
        "batches": config.batches,
        "duplicate_fraction": config.duplicate_fraction,
        "pricing": config.pricing.value,
        "checks": checks,
        "tuning": list(env.tuning),
    }
    ours, ceiling, http = (tally.measurement() for tally in writers.tallies)
    rows = [
        Comparison(
            "batch ingest (domain)",
            "events/s",
            ours,
            ceiling,
            TARGET_RATIO,
            MIN_EVENTS_PER_SECOND,
            details,
        )
    ]
    if config.http:
        rows.append(
            Comparison(
                "batch ingest (HTTP GraphQL)",
                "events/s",
                http,
                ceiling,
                TARGET_RATIO,
                MIN_EVENTS_PER_SECOND,
                details,
            )
        )
    return rows


def _check_replays(writer: str, replays: int, retries: int) -> None:
    if replays != retries:
        raise AssertionError(f"{writer}: {replays} replays for {retries} retried events")


async def _rows(raw: asyncpg.Connection, org_id: Any) -> tuple[int, int]:
    """The tenant's usage rows in the ledger and in the ceiling table."""
    ledger_rows = await raw.fetchval(LEDGER_USAGE_ROWS_SQL, org_id)
    ceiling_rows = await raw.fetchval(CEILING_ROWS_SQL, org_id)
    return int(ledger_rows), int(ceiling_rows)


async def run(
    server_url: str, config: IngestConfig | None = None, tuning: tuple[str, ...] = ()
) -> list[Comparison]:
    async with bench_env(server_url, tuning) as env:
        return await measure(env, config or IngestConfig())


def main() -> None:
    default = IngestConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=default.batches)
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument("--duplicates", type=float, default=default.duplicate_fraction)
    parser.add_argument("--warmup", type=int, default=default.warmup_batches)
    parser.add_argument("--pricing", choices=[p.value for p in Pricing], default="caller")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP GraphQL variant")
    tuning_argument(parser)
    args = parser.parse_args()
    config = IngestConfig(
        batches=args.batches,
        batch_size=args.batch_size,
        duplicate_fraction=args.duplicates,
        warmup_batches=args.warmup,
        pricing=Pricing(args.pricing),
        http=not args.no_http,
    )
    tuning = parse_tuning(args.tuning)
    standalone("ingest", lambda url: run(url, config, tuning))


if __name__ == "__main__":
    main()
