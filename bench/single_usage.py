"""One ``recordUsage`` per request over HTTP against a bare Starlette route doing the same
one-row insert with asyncpg (into ``ledger_ceiling``).

Both servers run under the same uvicorn configuration in their own processes and get the
very same request bytes (a GraphQL POST body, a fresh idempotency key each), from the
loopback load generator at concurrency 16; they are measured in alternating slices.

    python -m bench.single_usage [--duration 3] [--rounds 2] [--concurrency 16] [--tuning …]
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped]
import orjson

from bench.apps import BARE_USAGE_PATH
from bench.ceiling import CEILING_ROWS_SQL, LEDGER_USAGE_ROWS_SQL
from bench.env import BenchEnv
from bench.httpbench import HttpConfig, http_main
from bench.loadgen import alternate
from bench.stats import Comparison
from bench.workload import EventFactory, to_graphql_input
from costgraph.kernel.database_url import plain_url

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


async def measure(env: BenchEnv, config: HttpConfig) -> list[Comparison]:
    before = await _rows(env.url, env.tenant.org.id)
    ours_events = EventFactory(env.tenant, seed=3)
    ceiling_events = EventFactory(env.tenant, seed=3)
    headers = {"Authorization": f"Bearer {env.token}"}
    expect = b'"UsageRecorded"'
    ours, ceiling = await alternate(
        [
            (
                "recordUsage over HTTP",
                env.ours_port,
                config.plan("/graphql", usage_body_factory(ours_events), expect, headers),
            ),
            (
                "bare Starlette + asyncpg",
                env.bare_port,
                config.plan(BARE_USAGE_PATH, usage_body_factory(ceiling_events), expect, headers),
            ),
        ],
        config.rounds,
    )
    after = await _rows(env.url, env.tenant.org.id)
    checks = {
        "ledger_rows": after[0] - before[0],
        "requests_sent": ours_events.count,
        "ceiling_rows": after[1] - before[1],
        "ceiling_requests_sent": ceiling_events.count,
    }
    if checks["ledger_rows"] != ours_events.count or checks["ceiling_rows"] != (
        ceiling_events.count
    ):
        raise AssertionError(f"rows written differ from requests sent: {checks}")
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
                "tuning": list(env.tuning),
            },
        )
    ]


async def _rows(url: str, org_id: uuid.UUID) -> tuple[int, int]:
    """The tenant's usage rows in the ledger and in the ceiling table."""
    connection = await asyncpg.connect(plain_url(url))
    try:
        ledger_rows = await connection.fetchval(LEDGER_USAGE_ROWS_SQL, org_id)
        ceiling_rows = await connection.fetchval(CEILING_ROWS_SQL, org_id)
    finally:
        await connection.close()
    return int(ledger_rows), int(ceiling_rows)


def main() -> None:
    http_main("single_usage", __doc__, measure)


if __name__ == "__main__":
    main()
