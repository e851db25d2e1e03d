"""A trivial authenticated GraphQL query, ``{ me { subject } }``, against a bare Starlette
JSON route doing the same token check (``TokenVerifier.verify``) and answering the same JSON.

Both get the same request bytes from the loopback load generator at concurrency 16, under
the same uvicorn configuration, in alternating slices.

    python -m bench.trivial_query [--duration 3] [--rounds 2] [--concurrency 16]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson

from bench.apps import BARE_ME_PATH
from bench.db import bench_settings, create_tenant, fresh_database, integrator_token
from bench.httpbench import HttpConfig, http_arguments
from bench.loadgen import alternate
from bench.report import standalone
from bench.server import BARE_TOKEN, COSTGRAPH, ServerConfig, free_port, started
from bench.stats import Comparison

TARGET_RATIO = 0.5
QUERY = "{ me { subject } }"
EXPECT = b'{"data":{"me":{"subject":"client:bench"}}}'


async def run(server_url: str, config: HttpConfig | None = None) -> list[Comparison]:
    config = config or HttpConfig()
    async with fresh_database(server_url) as url:
        with tempfile.TemporaryDirectory(prefix="costgraph-bench-") as tmp:
            return await _run(url, Path(tmp), config)


async def _run(url: str, data_dir: Path, config: HttpConfig) -> list[Comparison]:
    settings = bench_settings(data_dir, url)
    tenant = await create_tenant(settings, url, accounts=1, users=0)
    token = integrator_token(settings, tenant.org.id)
    body = orjson.dumps({"query": QUERY})
    headers = {"Authorization": f"Bearer {token}"}

    def body_for(index: int) -> bytes:
        return body

    configs = (
        ServerConfig(COSTGRAPH, free_port(), url, str(data_dir), tuning=config.tuning),
        ServerConfig(BARE_TOKEN, free_port(), url, str(data_dir)),
    )
    async with started(*configs) as (ours_server, ceiling_server):
        ours, ceiling = await alternate(
            [
                (
                    "{ me { subject } } over HTTP",
                    ours_server.port,
                    config.plan("/graphql", body_for, EXPECT, headers),
                ),
                (
                    "bare Starlette + verify",
                    ceiling_server.port,
                    config.plan(BARE_ME_PATH, body_for, EXPECT, headers),
                ),
            ],
            config.rounds,
        )
    return [
        Comparison(
            "trivial query (HTTP, c=16)",
            "req/s",
            ours,
            ceiling,
            TARGET_RATIO,
            details={
                "concurrency": config.concurrency,
                "query": QUERY,
                "tuning": list(config.tuning),
            },
        )
    ]


def main() -> None:
    config = http_arguments(__doc__.split("\n\n")[0])
    standalone("trivial_query", lambda url: run(url, config))


if __name__ == "__main__":
    main()
