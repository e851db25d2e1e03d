"""Where CostGraph's server spends a hot-path request: py-spy on the server process while the
load generator sends ``authorizeUsage``, single ``recordUsage`` or the trivial query at c=16,
and the database's lock waits sampled meanwhile.

    python -m bench.profile_hot_path authorize [--seconds 10] [--accounts 1] [--stacks out.folded]
    python -m bench.profile_hot_path record | trivial

Printed: the server CPU per request (from the OS), the share of samples by layer (a sample
counts for the innermost layer named below on its stack), the functions with the most samples
of their own, and how often the database's backends were waiting on a lock. py-spy (the
``bench`` extra) samples without stopping the process (``--nonblocking``) and needs ptrace
rights on it (root, or ``kernel.yama.ptrace_scope = 0``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import orjson

from bench import authorize, single_usage
from bench.env import BenchEnv, bench_env
from bench.hot_path import ServerCpu, http_slice
from bench.httpbench import HttpConfig
from bench.loadgen import LoadPlan
from bench.report import run_async
from bench.trivial_query import EXPECT as TRIVIAL_EXPECT
from bench.trivial_query import QUERY as TRIVIAL_QUERY
from bench.workload import EventFactory
from costgraph.kernel.database_url import plain_url

#: Layers, innermost first: a stack is counted for the first whose marker it holds.
LAYERS = (
    ("asyncpg (protocol, encode/decode)", ("asyncpg/",)),
    ("SQLAlchemy (session, pool, ORM)", ("sqlalchemy/",)),
    ("costgraph billing (domain)", ("costgraph/billing/", "/billing/")),
    ("costgraph alerts (before-commit hooks)", ("/alerts/",)),
    ("costgraph kernel (unit of work, retry)", ("/kernel/",)),
    ("costgraph resolvers and schema", ("/resolvers/", "/schema/")),
    ("graphql-core (execute)", ("graphql/",)),
    ("strawberry", ("strawberry/",)),
    ("costgraph app (view, caches, middleware)", ("/app/",)),
    ("auth (token check)", ("/auth/", "jwt/", "cryptography/")),
    ("starlette / uvicorn / httptools", ("starlette/", "uvicorn/", "httptools")),
    ("event loop (uvloop, asyncio)", ("uvloop", "asyncio/")),
)


def _layer(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, markers in LAYERS:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def summarise(raw: Path, top: int = 25) -> str:
    layers: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        layers[_layer(stack)] += count
        own[stack.split(";")[-1]] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples (active threads only)", "", "by layer (innermost):"]
    lines += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in layers.most_common()]
    lines += ["", "own samples:"]
    lines += [f"  {n * 100 / total:5.1f}%  {frame[:140]}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


async def _lock_waits(url: str, stop: asyncio.Event) -> collections.Counter[str]:
    """pg_stat_activity of the bench database every 10 ms: active backends by wait event."""
    seen: collections.Counter[str] = collections.Counter()
    connection = await asyncpg.connect(plain_url(url))
    sessions = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
    try:
        opened = await connection.fetchval(sessions)
        while not stop.is_set():
            rows = await connection.fetch(
                "SELECT coalesce(wait_event_type || ':' || wait_event, 'running') AS w"
                " FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'active' AND pid <> pg_backend_pid()"
            )
            seen["samples"] += 1
            for row in rows:
                seen[row["w"]] += 1
            await asyncio.sleep(0.01)
        seen["connections opened"] = await connection.fetchval(sessions) - opened - 1
    finally:
        await connection.close()
    return seen


async def _plan(env: BenchEnv, workload: str, accounts: int, config: HttpConfig) -> LoadPlan:
    headers = {"Authorization": f"Bearer {env.token}"}
    if workload == "trivial":
        body = orjson.dumps({"query": TRIVIAL_QUERY})
        return config.plan("/graphql", lambda index: body, TRIVIAL_EXPECT, headers)
    ids = await authorize.budgeted_accounts(env.settings, env.url, env.tenant, accounts)
    if workload == "authorize":
        factory = authorize.EstimateFactory(ids, "profile")
        return config.plan("/graphql", factory.body_for, authorize.EXPECT, headers)
    events = EventFactory(replace(env.tenant, account_ids=tuple(ids)), seed=5)
    body_for = single_usage.usage_body_factory(events)
    return config.plan("/graphql", body_for, b'"UsageRecorded"', headers)


async def profile(
    server_url: str, workload: str, seconds: float, accounts: int, flame: Path | None
) -> None:
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed (pip install -e '.[bench]')")
    config = HttpConfig(duration=seconds, warmup=1.0, max_requests=1_000_000)
    async with bench_env(server_url) as env:
        plan = await _plan(env, workload, accounts, config)
        await http_slice(env.ours_port, plan, "warm-up")()  # caches, pools, counters
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "stacks.txt"
            recorder = await asyncio.create_subprocess_exec(
                spy,
                "record",
                "--pid",
                str(env.ours_pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "250",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(raw),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            stop = asyncio.Event()
            waits = asyncio.create_task(_lock_waits(env.url, stop))
            cpu = ServerCpu(env.ours_pid)
            measured = await cpu.slice(http_slice(env.ours_port, plan, workload))()
            stop.set()
            seen = await waits
            _, errors = await recorder.communicate()
            if flame is not None and raw.exists():  # collapsed stacks: any flame graph tool
                shutil.copyfile(raw, flame)
            print(
                f"{workload}: {measured.rate:,.0f} req/s, p50 {measured.p50_ms:.1f} ms, "
                f"p99 {measured.p99_ms:.1f} ms, server CPU {cpu.us_per_request} µs/request"
            )
            samples = seen.pop("samples", 1)
            print(f"database connections opened meanwhile: {seen.pop('connections opened')}")
            waiting = ", ".join(f"{k} {v / samples:.2f}" for k, v in seen.most_common(8))
            print(f"active backends on average, by wait: {waiting}")
            print(summarise(raw) if raw.exists() else f"py-spy failed: {errors.decode()[-500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=("authorize", "record", "trivial"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--accounts", type=int, default=1, help="budgeted accounts, round robin")
    parser.add_argument("--stacks", type=Path, help="keep the collapsed stacks (flame graph input)")
    args = parser.parse_args()
    from bench.db import postgres_server

    with postgres_server() as server_url:
        run_async(profile(server_url, args.workload, args.seconds, args.accounts, args.stacks))


if __name__ == "__main__":
    main()
