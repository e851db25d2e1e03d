"""Batch ingest of priced usage: ``record_usage_batch`` (in process, and over HTTP) against
raw asyncpg ``INSERT … SELECT unnest … ON CONFLICT DO NOTHING`` into a bare copy of the table.

Batches of 1,000 events, 10 % of them retries of events sent before. The three writers take
turns batch by batch, so drift on a shared machine hits them alike. Each side's time is
the sum of its own batches: for ours, building the ``UsageEvent``s and the whole transaction
as the resolver runs it; for the ceiling, building the rows and the one statement; over
HTTP, the request round trip (the client's JSON is built beforehand).

    python -m bench.ingest [--batches 30] [--batch-size 1000] [--no-http] [--pricing caller]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.ceiling import (
    CEILING_ROWS_SQL,
    LEDGER_USAGE_ROWS_SQL,
    RowBuilder,
    create_ceiling_table,
    insert_batch,
)
from bench.db import bench_settings, create_tenant, fresh_database, integrator_token
from bench.loadgen import LOOPBACK, Connection
from bench.report import standalone
from bench.server import COSTGRAPH, ServerConfig, free_port, started
from bench.stats import Comparison, Measurement
from bench.tuning import apply as apply_tuning
from bench.tuning import parse as parse_tuning
from bench.workload import (
    EventFactory,
    EventSpec,
    Pricing,
    seed_catalog,
    to_graphql_input,
    to_usage_event,
)
from costgraph.app.database import create_engine, create_sessionmaker, plain_url
from costgraph.app.state import AppState
from costgraph.billing import ledger
from costgraph.billing.commands import Limits
from costgraph.billing.directory import OrgContext
from costgraph.billing.entries import Entry
from costgraph.models.scoping import bind_tenant

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
    batches: int = 30
    batch_size: int = 1_000
    duplicate_fraction: float = 0.10
    warmup_batches: int = 2
    pricing: Pricing = Pricing.CALLER
    http: bool = True
    #: :mod:`bench.tuning` experiments, applied in this process and to the HTTP server.
    tuning: tuple[str, ...] = ()


@dataclass(slots=True)
class Tally:
    """Times and outcomes of one writer's batches."""

    label: str
    times: list[float] = field(default_factory=list)
    events: int = 0
    recorded: int = 0
    replayed: int = 0

    def add(self, seconds: float, events: int, recorded: int, replayed: int) -> None:
        self.times.append(seconds)
        self.events += events
        self.recorded += recorded
        self.replayed += replayed

    def measurement(self) -> Measurement:
        return Measurement(self.label, self.events, sum(self.times), tuple(self.times))


async def domain_batch(
    sessions: async_sessionmaker[AsyncSession],
    org: OrgContext,
    specs: Sequence[EventSpec],
    limits: Limits,
) -> list[Entry]:
    """What ``recordUsageBatch``'s resolver does after decoding: one tenant transaction."""
    events = [to_usage_event(spec) for spec in specs]
    session = sessions()
    bind_tenant(session.sync_session, org.id)
    try:
        async with session.begin():
            return await ledger.record_usage_batch(session, org, events, limits)
    finally:
        await session.close()


def batch_body(specs: Sequence[EventSpec]) -> bytes:
    return orjson.dumps(
        {"query": BATCH_MUTATION, "variables": {"input": [to_graphql_input(s) for s in specs]}}
    )


class HttpIngest:
    """``recordUsageBatch`` over one keep-alive connection to a real uvicorn server."""

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


@contextlib.asynccontextmanager
async def _http_server(
    enabled: bool, url: str, data_dir: Path, org: OrgContext, tuning: tuple[str, ...]
) -> AsyncIterator[int | None]:
    if not enabled:
        yield None
        return
    config = ServerConfig(COSTGRAPH, free_port(), url, str(data_dir), str(org.id), tuning=tuning)
    async with started(config) as servers:
        yield servers[0].port


async def run(server_url: str, config: IngestConfig | None = None) -> list[Comparison]:
    config = config or IngestConfig()
    async with fresh_database(server_url) as url:
        with tempfile.TemporaryDirectory(prefix="costgraph-bench-") as tmp:
            return await _run(url, Path(tmp), config)


async def _run(url: str, data_dir: Path, config: IngestConfig) -> list[Comparison]:
    apply_tuning(config.tuning)
    settings = bench_settings(data_dir, url)
    tenant = await create_tenant(settings, url)
    if config.pricing is Pricing.CATALOG:
        await seed_catalog(url, tenant)
    token = integrator_token(settings, tenant.org.id)
    limits = AppState.limits_of(settings)
    engine = create_engine(url, settings)
    sessions = create_sessionmaker(engine)
    raw = await asyncpg.connect(plain_url(url), server_settings={"timezone": "UTC"})
    try:
        await create_ceiling_table(raw)
        builder = await RowBuilder.load(raw, tenant.org.id, tenant.currency)
        in_process = EventFactory(tenant, config.pricing, seed=1)
        over_http = EventFactory(tenant, config.pricing, seed=2)
        ours, ceiling, http = Tally("record_usage_batch"), Tally("asyncpg unnest"), Tally("HTTP")
        async with _http_server(config.http, url, data_dir, tenant.org, config.tuning) as port:
            client = None if port is None else HttpIngest(port, token)
            for index in range(config.warmup_batches + config.batches):
                measured = index >= config.warmup_batches
                if index == config.warmup_batches:
                    # Planner statistics as autovacuum would keep them in steady state; on
                    # a fresh table the duplicate lookup would scan the tenant's rows.
                    await raw.execute("ANALYZE ledger_entries, ledger_ceiling")
                specs = in_process.batch(config.batch_size, config.duplicate_fraction)
                retries = in_process.last_retries

                started_at = time.perf_counter()
                entries = await domain_batch(sessions, tenant.org, specs, limits)
                elapsed = time.perf_counter() - started_at
                replays = sum(1 for e in entries if e.replayed)
                _check_replays("record_usage_batch", replays, retries)
                if measured:
                    ours.add(elapsed, len(specs), len(specs) - replays, replays)

                started_at = time.perf_counter()
                await insert_batch(raw, builder, specs)
                elapsed = time.perf_counter() - started_at
                if measured:
                    ceiling.add(elapsed, len(specs), len(specs) - retries, retries)

                if client is not None:
                    body = batch_body(over_http.batch(config.batch_size, config.duplicate_fraction))
                    elapsed, result = await client.send(body)
                    _check_replays("recordUsageBatch", result["replayed"], over_http.last_retries)
                    if measured:
                        http.add(elapsed, config.batch_size, result["recorded"], result["replayed"])
            if client is not None:
                await client.connection.close()
        checks = await _verify(raw, tenant.org, in_process, over_http)
    finally:
        await raw.close()
        await engine.dispose()

    details = {
        "batch_size": config.batch_size,
        "batches": config.batches,
        "duplicate_fraction": config.duplicate_fraction,
        "pricing": config.pricing.value,
        "checks": checks,
        "tuning": list(config.tuning),
    }
    rows = [
        Comparison(
            "batch ingest (domain)",
            "events/s",
            ours.measurement(),
            ceiling.measurement(),
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
                http.measurement(),
                ceiling.measurement(),
                TARGET_RATIO,
                MIN_EVENTS_PER_SECOND,
                details,
            )
        )
    return rows


def _check_replays(writer: str, replays: int, retries: int) -> None:
    if replays != retries:
        raise AssertionError(f"{writer}: {replays} replays for {retries} retried events")


async def _verify(
    raw: asyncpg.Connection, org: OrgContext, in_process: EventFactory, over_http: EventFactory
) -> dict[str, int]:
    """Row counts must be exactly the distinct events sent (retries write nothing)."""
    ledger_rows = await raw.fetchval(LEDGER_USAGE_ROWS_SQL, org.id)
    ceiling_rows = await raw.fetchval(CEILING_ROWS_SQL, org.id)
    checks = {
        "ledger_rows": int(ledger_rows),
        "ceiling_rows": int(ceiling_rows),
        "distinct_events_in_process": in_process.count,
        "distinct_events_http": over_http.count,
    }
    if ledger_rows != in_process.count + over_http.count or ceiling_rows != in_process.count:
        raise AssertionError(f"row counts do not match the events sent: {checks}")
    return checks


def main() -> None:
    default = IngestConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=default.batches)
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument("--duplicates", type=float, default=default.duplicate_fraction)
    parser.add_argument("--warmup", type=int, default=default.warmup_batches)
    parser.add_argument("--pricing", choices=[p.value for p in Pricing], default="caller")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP GraphQL variant")
    parser.add_argument("--tuning", help="comma-separated bench.tuning experiments")
    args = parser.parse_args()
    config = IngestConfig(
        batches=args.batches,
        batch_size=args.batch_size,
        duplicate_fraction=args.duplicates,
        warmup_batches=args.warmup,
        pricing=Pricing(args.pricing),
        http=not args.no_http,
        tuning=parse_tuning(args.tuning),
    )
    standalone("ingest", lambda url: run(url, config))


if __name__ == "__main__":
    main()
