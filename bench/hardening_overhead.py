"""What the GraphQL hardening costs a trivial query: the app as built (query limits in the
parser and validation caches, the rate limiter at the gate) against the same app built with
strawberry's plain caches and no limiter, in this process, in alternating slices, counted in
CPU time per request (a busy machine skews both sides alike). The limiter counts in process
memory, and, in a second comparison, in Redis (``--redis``, default the machine's).

    python -m bench.hardening_overhead [--requests 500] [--rounds 9] [--redis redis://…]
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid
from typing import Any

import orjson

import costgraph.app.graphql_schema as schema_build
import costgraph.app.main as app_main
from bench.db import in_process_tenant
from bench.in_process import bearer_headers, post_graphql
from bench.report import standalone
from bench.stats import Comparison, Measurement
from costgraph.auth.keys import KeyStore
from costgraph.auth.tokens import mint_access_token

#: Measured at parity (0.99x-1.05x): the limits ride in hooks the caches run anyway, and a
#: cached verdict is a dict lookup; the in-process limiter ~6 µs a request.
TARGET_RATIO = 0.9
#: One Redis round trip a request (limits' Lua script through redis-py). Alone ~80 µs of CPU
#: (a bare INCR ~60); in the app on the loaded shared machine ~230, nearly all of it the
#: socket write that wakes redis-server: the price of counts shared between instances.
TARGET_RATIO_REDIS = 0.5
BODY = orjson.dumps({"query": "{ me { subject } }"})


def client_token(settings: Any, organization_id: uuid.UUID) -> str:
    """A client-credentials token as /oauth/token issues it (subject = client id): one budget,
    the client's, so one counter update a request."""
    key = KeyStore(settings.key_dir, settings.signing_key_path).ensure()
    return mint_access_token(
        key,
        issuer=settings.issuer,
        audience=settings.audience,
        subject="cg_bench",
        organization_id=organization_id,
        scopes=["usage:write"],
        client_id="cg_bench",
    )


def _unhardened(settings: Any, url: str) -> Any:
    """The same app with strawberry's ParserCache/ValidationCache and no rate limiter."""
    from strawberry.extensions import ParserCache, ValidationCache

    def plain_caches(limits: Any, maxsize: int = 1024) -> list[Any]:
        return [lambda: ParserCache(maxsize=maxsize), lambda: ValidationCache(maxsize=maxsize)]

    class NoLimiter:
        @staticmethod
        def from_settings(settings: Any) -> None:
            return None

    caches, limiter = schema_build.limited_caches, app_main.RateLimiter
    schema_build.limited_caches = plain_caches  # type: ignore[assignment]
    app_main.RateLimiter = NoLimiter  # type: ignore[assignment,misc]
    try:
        return app_main.create_app(settings, url)
    finally:
        schema_build.limited_caches = caches
        app_main.RateLimiter = limiter  # type: ignore[misc]


async def measure(server_url: str, requests: int, rounds: int, redis: str) -> list[Comparison]:
    async with in_process_tenant(server_url, alerts_worker=False, rollup_interval_seconds=0) as db:
        settings, url, tenant = db.settings, db.url, db.tenant
        token = client_token(settings, tenant.org.id)
        headers = bearer_headers(token)
        shared = settings.model_copy(
            update={
                "rate_limit_url": redis,
                "rate_limit_key_prefix": f"costgraph-bench-{uuid.uuid4().hex}",
            }
        )
        apps = {
            "plain": _unhardened(settings, url),
            "hardened": app_main.create_app(settings, url),
            "hardened+redis": app_main.create_app(shared, url),
        }
        spent = dict.fromkeys(apps, 0.0)
        lifespans = [app.router.lifespan_context(app) for app in apps.values()]
        for lifespan in lifespans:
            await lifespan.__aenter__()
        try:
            for app in apps.values():  # warm every one
                for _ in range(requests):
                    await post_graphql(app, BODY, headers)
            names = list(apps)
            for round_ in range(rounds):
                # Each round starts with another app: the first slice after a switch pays
                # for the others' garbage, which would otherwise fall on one side only.
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    app = apps[name]
                    gc.collect()
                    started = time.process_time()
                    for _ in range(requests):
                        await post_graphql(app, BODY, headers)
                    spent[name] += time.process_time() - started
        finally:
            for lifespan in reversed(lifespans):
                await lifespan.__aexit__(None, None, None)
    done = requests * rounds
    details = {"requests_per_slice": requests, "rounds": rounds}
    plain = Measurement("without", done, spent["plain"])
    return [
        Comparison(
            f"trivial query, GraphQL hardening on ({label})",
            "req/CPU-s",
            Measurement("with hardening", done, spent[name]),
            plain,
            target,
            details=details,
        )
        for name, label, target in (
            ("hardened", "limiter in process", TARGET_RATIO),
            ("hardened+redis", "limiter in Redis", TARGET_RATIO_REDIS),
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    standalone(
        "hardening_overhead", lambda url: measure(url, args.requests, args.rounds, args.redis)
    )


if __name__ == "__main__":
    main()
