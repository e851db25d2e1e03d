"""A trivial authenticated GraphQL query, ``{ me { subject } }``, against a bare Starlette
JSON route doing the same token check (the app's ``TokenVerifier``) and answering the same
JSON.

Both get the same request bytes from the loopback load generator at concurrency 16, under
the same uvicorn configuration, in alternating slices.

    python -m bench.trivial_query [--duration 3] [--rounds 2] [--concurrency 16] [--tuning …]
"""

from __future__ import annotations

import orjson

from bench.apps import BARE_ME_PATH
from bench.env import BenchEnv
from bench.httpbench import HttpConfig, http_main
from bench.loadgen import alternate
from bench.stats import Comparison

TARGET_RATIO = 0.5
QUERY = "{ me { subject } }"
EXPECT = b'{"data":{"me":{"subject":"client:bench"}}}'


async def measure(env: BenchEnv, config: HttpConfig) -> list[Comparison]:
    body = orjson.dumps({"query": QUERY})
    headers = {"Authorization": f"Bearer {env.token}"}

    def body_for(index: int) -> bytes:
        return body

    ours, ceiling = await alternate(
        [
            (
                "{ me { subject } } over HTTP",
                env.ours_port,
                config.plan("/graphql", body_for, EXPECT, headers),
            ),
            (
                "bare Starlette + verify",
                env.bare_port,
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
                "tuning": list(env.tuning),
            },
        )
    ]


def main() -> None:
    http_main("trivial_query", __doc__, measure)


if __name__ == "__main__":
    main()
