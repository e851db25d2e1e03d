"""What the benches share: the shape of an HTTP comparison and the command line."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from bench import tuning
from bench.env import BenchEnv, bench_env
from bench.loadgen import LoadPlan
from bench.report import standalone
from bench.stats import Comparison


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """Slices of ``duration`` seconds (after ``warmup``), ``rounds`` slices per side."""

    duration: float = 3.0
    warmup: float = 1.0
    rounds: int = 2
    concurrency: int = 16
    max_requests: int = 100_000

    def plan(
        self,
        path: str,
        body_for: Callable[[int], bytes],
        expect: bytes,
        headers: Mapping[str, str],
    ) -> LoadPlan:
        return LoadPlan(
            path=path,
            body_for=body_for,
            headers=headers,
            expect=expect,
            concurrency=self.concurrency,
            duration=self.duration,
            warmup=self.warmup,
            max_requests=self.max_requests,
        )


def tuning_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tuning",
        help=f"comma-separated what-if experiments: {', '.join(tuning.EXPERIMENTS)}",
    )


def http_arguments(description: str) -> tuple[HttpConfig, tuple[str, ...]]:
    default = HttpConfig()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--duration", type=float, default=default.duration, help="per slice")
    parser.add_argument("--warmup", type=float, default=default.warmup, help="per slice")
    parser.add_argument("--rounds", type=int, default=default.rounds)
    parser.add_argument("--concurrency", type=int, default=default.concurrency)
    parser.add_argument("--max-requests", type=int, default=default.max_requests)
    tuning_argument(parser)
    args = parser.parse_args()
    config = HttpConfig(
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        concurrency=args.concurrency,
        max_requests=args.max_requests,
    )
    return config, tuning.parse(args.tuning)


def http_main(
    name: str,
    doc: str | None,
    measure: Callable[[BenchEnv, HttpConfig], Awaitable[list[Comparison]]],
) -> None:
    """``python -m bench.<name>``: one HTTP bench, from its command line, against a fresh
    server and database; prints its table and saves its JSON."""
    config, tunings = http_arguments((doc or name).split("\n\n")[0])

    async def run(server_url: str) -> list[Comparison]:
        async with bench_env(server_url, tunings) as env:
            return await measure(env, config)

    standalone(name, run)
