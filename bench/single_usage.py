"""One ``recordUsage`` per request over HTTP against a bare Starlette route doing the same
one-row insert with asyncpg (into ``ledger_ceiling``).

Both servers run under the same uvicorn configuration in their own processes and get the
very same request bytes (a GraphQL POST body, a fresh idempotency key each), from the
loopback load generator at concurrency 16; they are measured in alternating slices.

    python -m bench.single_usage [--duration 3] [--rounds 2] [--concurrency 16]
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import asyncpg
import orjson

from bench.apps import BARE_USAGE_PATH
from bench.ceiling import CEILING_ROWS_SQL, LEDGER_USAGE_ROWS_SQL, create_ceiling_table
from bench.db import bench_settings, create_tenant, fresh_database, integrator_token
from bench.httpbench import HttpConfig, http_arguments
from bench.loadgen import alternate
from bench.report import standalone
from bench.server import BARE_INSERT, COSTGRAPH, ServerConfig, free_port, started
from bench.stats import Comparison
from bench.workload import EventFactory, to_graphql_input
from costgraph.app.database import plain_url

TARGET_RATIO = 0.5

RECORD_MUTATION = """
mutation Record($input: UsageEventInput!) {
  recordUsage(input: $input) {
    __typename
    ... on UsageRecorded { replayed entry { id } }
    ... on UserError { code message field }
  }
}
"""


def usage_body_factory(factory: EventFactory) -> Callable[[int], bytes]:
    """Each request a fresh event (a new idempotency key), as JSON variables."""

    def body_for(index: int) -> bytes:
        spec = factory.fresh()
        return orjson.dumps(
            {"query": RECORD_MUTATION, "variables": {"input": to_graphql_input(spec)}}
        )

    return body_for


async def run(server_url: str, config: HttpConfig | None = None) -> list[Comparison]:
    config = config or HttpConfig()
    async with fresh_database(server_url) as url:
        with tempfile.TemporaryDirectory(prefix="costgraph-bench-") as tmp:
            return await _run(url, Path(tmp), config)


async def _run(url: str, data_dir: Path, config: HttpConfig) -> list[Comparison]:
    settings = bench_settings(data_dir, url)
    tenant = await create_tenant(settings, url)
    token = integrator_token(settings, tenant.org.id)
    raw = await asyncpg.connect(plain_url(url))
    try:
        await create_ceiling_table(raw)
    finally:
        await raw.close()
    ours_events = EventFactory(tenant, seed=3)
    ceiling_events = EventFactory(tenant, seed=3)
    headers = {"Authorization": f"Bearer {token}"}
    ours_plan = config.plan(
        "/graphql", usage_body_factory(ours_events), b'"UsageRecorded"', headers
    )
    ceiling_plan = config.plan(
        BARE_USAGE_PATH, usage_body_factory(ceiling_events), b'"UsageRecorded"', headers
    )
    org = str(tenant.org.id)
    configs = (
        ServerConfig(COSTGRAPH, free_port(), url, str(data_dir), org, tuning=config.tuning),
        ServerConfig(BARE_INSERT, free_port(), url, str(data_dir), org),
    )
    async with started(*configs) as (ours_server, ceiling_server):
        ours, ceiling = await alternate(
            [
                ("recordUsage over HTTP", ours_server.port, ours_plan),
                ("bare Starlette + asyncpg", ceiling_server.port, ceiling_plan),
            ],
            config.rounds,
        )
    checks = await _verify(url, tenant.org.id, ours_events.count, ceiling_events.count)
    return [
        Comparison(
            "single recordUsage (HTTP, c=16)",
            "req/s",
            ours,
            ceiling,
            TARGET_RATIO,
            details={
                "concurrency": config.concurrency,
                "checks": checks,
                "tuning": list(config.tuning),
            },
        )
    ]


async def _verify(url: str, org_id: object, ours_sent: int, ceiling_sent: int) -> dict[str, int]:
    """Every request sent wrote exactly one row (each carried a fresh key)."""
    connection = await asyncpg.connect(plain_url(url))
    try:
        ledger_rows = await connection.fetchval(LEDGER_USAGE_ROWS_SQL, org_id)
        ceiling_rows = await connection.fetchval(CEILING_ROWS_SQL, org_id)
    finally:
        await connection.close()
    checks = {
        "ledger_rows": int(ledger_rows),
        "requests_sent": ours_sent,
        "ceiling_rows": int(ceiling_rows),
        "ceiling_requests_sent": ceiling_sent,
    }
    if ledger_rows != ours_sent or ceiling_rows != ceiling_sent:
        raise AssertionError(f"rows written differ from requests sent: {checks}")
    return checks


def main() -> None:
    config = http_arguments(__doc__.split("\n\n")[0])
    standalone("single_usage", lambda url: run(url, config))


if __name__ == "__main__":
    main()
