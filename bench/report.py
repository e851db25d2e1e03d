"""Running a bench from the command line: the event loop, the table, the JSON file."""

from __future__ import annotations

import asyncio
import os
import platform
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from bench.db import postgres_server
from bench.stats import Comparison, as_dicts, render_table

RESULTS_DIR = Path(__file__).resolve().parent / "results"
T = TypeVar("T")


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run_async(main: Awaitable[T]) -> T:
    """uvloop when installed — the loop ``costgraph serve`` runs on — else asyncio's."""
    if loop_name() == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)  # type: ignore[arg-type]
    with asyncio.Runner() as runner:
        return runner.run(main)  # type: ignore[arg-type]


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loop": loop_name(),
        "database": "configured" if os.environ.get("COSTGRAPH_DATABASE_URL") else "embedded",
    }


def write_results(
    name: str, rows: Sequence[Comparison], extra: dict[str, Any] | None = None
) -> Path:
    """``bench/results/<name>-<UTC timestamp>.json`` and ``<name>-latest.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "suite": name,
        "finished_at": stamp,
        "environment": environment(),
        "results": as_dicts(rows),
        **(extra or {}),
    }
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_bytes(data)
    (RESULTS_DIR / f"{name}-latest.json").write_bytes(data)
    return path


def standalone(name: str, bench: Callable[[str], Awaitable[list[Comparison]]]) -> list[Comparison]:
    """Run one bench against a fresh server/database, print its table, save its JSON."""
    with postgres_server() as server_url:
        rows = run_async(bench(server_url))
    print(render_table(rows))
    print(f"results: {write_results(name, rows)}")
    return rows
