"""The hot path's CPU per request in this process: ``authorizeUsage`` and single
``recordUsage`` against the trivial query ``{ me { subject } }``, each request sent straight
into the app (as ``costgraph serve`` builds it) with no socket, one at a time, in
alternating slices, counted in CPU time (the machine's load skews both alike). What the HTTP
benches' server-CPU column says, without uvicorn and the load generator around it: the
number to watch while cutting the app's own work, since the HTTP ratio follows it.

    python -m bench.hot_path_cpu [--requests 500] [--rounds 5] [--profile authorize.prof]

``--profile``: one more slice of each workload under cProfile, saved as ``<name>-<file>``.
The target is the hot-path issue's (the HTTP rate within 2x of the trivial query's): here
as CPU per request, at most 2x the trivial query's.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

import costgraph.app.main as app_main
from bench.authorize import EstimateFactory, budgeted_accounts
from bench.db import in_process_tenant, integrator_token
from bench.in_process import bearer_headers, post_graphql
from bench.report import standalone
from bench.single_usage import usage_body_factory
from bench.stats import Comparison, Measurement
from bench.workload import EventFactory

TARGET_RATIO = 0.5
TRIVIAL = orjson.dumps({"query": "{ me { subject } }"})

Bodies = Callable[[int], bytes]


async def measure(
    server_url: str, requests: int, rounds: int, profile: str | None = None
) -> list[Comparison]:
    async with in_process_tenant(server_url, alerts_worker=False, rollup_interval_seconds=0) as db:
        settings, url, tenant = db.settings, db.url, db.tenant
        token = integrator_token(settings, tenant.org.id)
        headers = bearer_headers(token)
        accounts = await budgeted_accounts(settings, url, tenant, 1)
        workloads: dict[str, Bodies] = {
            "trivial query": lambda _: TRIVIAL,
            "authorizeUsage": EstimateFactory(accounts, "cpu").body_for,
            "recordUsage": usage_body_factory(
                EventFactory(replace(tenant, account_ids=tuple(accounts)), seed=5)
            ),
        }
        app = app_main.create_app(settings, url)
        async with app.router.lifespan_context(app):
            spent = await _alternate(app, headers, workloads, requests, rounds)
            if profile:
                for name, bodies in workloads.items():
                    await _profiled(app, headers, bodies, requests, name, profile)
    done = requests * rounds
    trivial = Measurement("trivial query", done, spent["trivial query"])
    details = {"requests_per_slice": requests, "rounds": rounds, "unit": "CPU seconds"}
    return [
        Comparison(
            f"{name}, CPU per request in process vs trivial query",
            "req/CPU-s",
            Measurement(name, done, spent[name]),
            trivial,
            TARGET_RATIO,
            details={**details, "cpu_us_per_request": _per_request(spent, done)},
        )
        for name in ("authorizeUsage", "recordUsage")
    ]


async def _alternate(
    app: Any,
    headers: list[tuple[bytes, bytes]],
    workloads: dict[str, Bodies],
    requests: int,
    rounds: int,
) -> dict[str, float]:
    spent = dict.fromkeys(workloads, 0.0)
    for bodies in workloads.values():  # warm: caches, prepared statements, the pools
        for index in range(requests):
            await post_graphql(app, bodies(index), headers)
    names = list(workloads)
    for round_ in range(rounds):
        # Each round starts with another workload: the first slice after a switch pays for
        # the others' garbage, which would otherwise fall on one side only.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            batch = [workloads[name](index) for index in range(requests)]
            gc.collect()
            started = time.process_time()
            for body in batch:
                await post_graphql(app, body, headers)
            spent[name] += time.process_time() - started
    return spent


async def _profiled(
    app: Any,
    headers: list[tuple[bytes, bytes]],
    bodies: Bodies,
    requests: int,
    name: str,
    path: str,
) -> None:
    batch = [bodies(index) for index in range(requests)]
    profiler = cProfile.Profile()
    profiler.enable()
    for body in batch:
        await post_graphql(app, body, headers)
    profiler.disable()
    target = Path(path)
    profiler.dump_stats(target.with_name(f"{name.replace(' ', '_')}-{target.name}"))


def _per_request(spent: dict[str, float], done: int) -> dict[str, float]:
    return {name: round(seconds / done * 1e6, 1) for name, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    standalone(
        "hot_path_cpu",
        lambda url: measure(url, args.requests, args.rounds, args.profile),
    )


if __name__ == "__main__":
    main()
