"""What the observability layers cost a trivial query: the app as built (request-id and metrics
middleware, the GraphQL operation observer, the access line) against the same app built
without them, in this process, in alternating slices, counted in CPU time per request (so a
busy machine skews both sides alike). Twice: with logging below INFO (no line written), and
with JSON lines at INFO (written to /dev/null), as production runs.

    python -m bench.observability_overhead [--requests 500] [--rounds 6]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import orjson

from bench.db import in_process_tenant, integrator_token
from bench.in_process import bearer_headers, post_graphql
from bench.report import standalone
from bench.stats import Comparison, Measurement
from costgraph.app.main import create_app
from costgraph.app.observability import wiring
from costgraph.app.observability.logging import log_handler

#: The layers add a few tens of µs of CPU to a request of a few hundred: about 20 µs without
#: a line (middleware ~5, operation observer ~11, counters ~3), about 20 more for the JSON line.
TARGET_RATIO = 0.8
TARGET_RATIO_LOGGED = 0.65
QUERY = orjson.dumps({"query": "{ me { subject } }"})


def _without_observability(settings: Any, url: str) -> Any:
    """The same app with no observability middleware and no operation observer."""
    middleware, extensions = wiring.Observability.middleware, wiring.Observability.schema_extensions
    wiring.Observability.middleware = lambda self: []  # type: ignore[method-assign]
    wiring.Observability.schema_extensions = lambda self: []  # type: ignore[method-assign]
    try:
        return create_app(settings, url)
    finally:
        wiring.Observability.middleware = middleware  # type: ignore[method-assign]
        wiring.Observability.schema_extensions = extensions  # type: ignore[method-assign]


@contextlib.contextmanager
def _json_handler() -> Iterator[logging.Logger]:
    """The app's JSON handler on the root logger, writing to /dev/null; the root's level then
    says whether lines are written (INFO) or not (WARNING)."""
    root = logging.getLogger()
    previous = root.level
    with open(os.devnull, "w") as sink:
        handler = log_handler("json", sink)
        root.addHandler(handler)
        try:
            yield root
        finally:
            root.removeHandler(handler)
            root.setLevel(previous)


async def measure(server_url: str, requests: int, rounds: int) -> list[Comparison]:
    async with in_process_tenant(server_url) as db:
        settings, url, tenant = db.settings, db.url, db.tenant
        token = integrator_token(settings, tenant.org.id)
        headers = bearer_headers(token)
        observed = create_app(settings, url)
        plain = _without_observability(settings, url)
        # Each slice: (name, app, root level); alternated so load drift hits all alike.
        slices = (
            ("plain", plain, logging.WARNING),
            ("observed", observed, logging.WARNING),
            ("observed+json", observed, logging.INFO),
        )
        spent = {name: 0.0 for name, _, _ in slices}
        async with (
            observed.router.lifespan_context(observed),
            plain.router.lifespan_context(plain),
            contextlib.AsyncExitStack() as stack,
        ):
            root = stack.enter_context(_json_handler())
            for _, app, _ in slices[:2]:  # warm both
                for _ in range(requests):
                    await post_graphql(app, QUERY, headers)
            for _ in range(rounds):
                for name, app, level in slices:
                    root.setLevel(level)
                    started = time.process_time()
                    for _ in range(requests):
                        await post_graphql(app, QUERY, headers)
                    spent[name] += time.process_time() - started
    done = requests * rounds
    details = {"requests_per_slice": requests, "rounds": rounds}
    plain_run = Measurement("without", done, spent["plain"])
    return [
        Comparison(
            f"trivial query, observability on ({label})",
            "req/CPU-s",
            Measurement("with observability", done, spent[name]),
            plain_run,
            target,
            details=details,
        )
        for name, label, target in (
            ("observed", "no log lines", TARGET_RATIO),
            ("observed+json", "JSON access line at INFO", TARGET_RATIO_LOGGED),
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    standalone("observability_overhead", lambda url: measure(url, args.requests, args.rounds))


if __name__ == "__main__":
    main()
