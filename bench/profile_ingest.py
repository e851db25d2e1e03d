"""Where batch ingest spends its time, and what the prototypes in :mod:`bench.prototypes`
would save — measured on the same batches, in the same run.

    python -m bench.profile_ingest [--batches 15]

1. Stages: the ledger's own functions, wrapped with timers (ms per 1,000-event batch).
2. Candidates, each against the code it would replace, on identical inputs and checked to
   give identical results.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import random
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.db import bench_settings, create_tenant, fresh_database, postgres_server
from bench.ingest import domain_batch
from bench.prototypes import (
    fast_column_arrays,
    fast_replace,
    fast_request_hash,
    find_by_keys_raw,
)
from bench.report import run_async
from bench.workload import EventFactory, to_usage_event
from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.state import AppState
from costgraph.billing import ledger
from costgraph.billing import ledger_repository as repo
from costgraph.billing.idempotency import request_hash
from costgraph.models.scoping import bind_tenant

#: (module, attribute) pairs timed when present; the ledger is being extended, so a name
#: that does not exist (yet, or any more) is skipped.
STAGES: tuple[tuple[Any, str], ...] = (
    (ledger, "validate_usage"),
    (ledger, "request_hash"),
    (ledger, "get_many"),
    (ledger, "price_events"),
    (ledger, "prepare_pricing"),
    (ledger, "_usage_entries"),
    (ledger, "Entry"),
    (ledger, "_append"),
    (ledger, "_append_pipelined"),
    (ledger, "_settle"),
    (ledger, "_as_stored"),
    (ledger, "replay_or_conflict"),
    (ledger, "record_usage_batch"),
    (repo, "_column_arrays"),
    (repo, "usage_parties"),
    (repo, "insert_entries"),
    (repo, "insert_entries_moving_balance"),
    (repo, "insert_on"),
    (repo, "find_by_keys"),
    (getattr(ledger, "balance_repository", None), "move_balances"),
    (getattr(ledger, "budgets", None), "apply_spend"),
    (getattr(ledger, "drawdown", None), "lock_cycles"),
    (getattr(ledger, "drawdown", None), "draw"),
    (getattr(ledger, "drawdown", None), "apply_draws"),
    (ledger, "_move_balances"),
)


@contextmanager
def timed_stages(totals: dict[str, float]) -> Iterator[None]:
    originals: list[tuple[Any, str, Any]] = []
    for module, name in STAGES:
        target = getattr(module, name, None) if module is not None else None
        if target is None:
            continue
        label = f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
        originals.append((module, name, target))
        setattr(module, name, _timer(target, label, totals))
    try:
        yield
    finally:
        for module, name, target in originals:
            setattr(module, name, target)


def _timer(target: Any, label: str, totals: dict[str, float]) -> Any:
    if asyncio.iscoroutinefunction(target):

        @functools.wraps(target)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await target(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - started

        return timed_async

    @functools.wraps(target)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return target(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - started

    return timed


def per_batch(seconds: float, batches: int) -> str:
    return f"{seconds / batches * 1000:8.1f} ms"


def best_of(repeats: int, action: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


async def profile(server_url: str, batches: int) -> None:
    async with fresh_database(server_url) as url:
        with tempfile.TemporaryDirectory(prefix="costgraph-bench-") as tmp:
            settings = bench_settings(Path(tmp), url)
            tenant = await create_tenant(settings, url)
            engine = create_engine(url, settings)
            sessions = create_sessionmaker(engine)
            limits = AppState.limits_of(settings)
            factory = EventFactory(tenant)
            try:
                for _ in range(3):
                    await domain_batch(sessions, tenant.org, factory.batch(1000, 0.1), limits)
                async with sessions() as session, session.begin():
                    await session.connection()
                    connection = await repo.driver_connection(session)
                    await connection.execute("ANALYZE ledger_entries")
                work = [factory.batch(1000, 0.1) for _ in range(batches)]
                entries = await _stages(sessions, tenant.org, work, limits)
                await _candidates(sessions, tenant.org.id, factory, work, entries)
            finally:
                await engine.dispose()


async def _stages(sessions: Any, org: Any, work: Sequence[Any], limits: Any) -> list[Any]:
    totals: dict[str, float] = defaultdict(float)
    wall = 0.0
    entries: list[Any] = []
    with timed_stages(totals):
        for specs in work:
            started = time.perf_counter()
            entries = await domain_batch(sessions, org, specs, limits)
            wall += time.perf_counter() - started
    print(f"1. stages, per 1,000-event batch (10 % retries), {len(work)} batches")
    print(f"   {'whole transaction (domain_batch)':36s} {per_batch(wall, len(work))}")
    for label, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"   {label:36s} {per_batch(seconds, len(work))}")
    print("   (nested stages overlap: _append/_append_pipelined hold the inserts and _settle;")
    print("    in a pipelined batch insert_on runs while _usage_entries builds the next chunk)")
    return entries


async def _candidates(
    sessions: Any, org_id: Any, factory: EventFactory, work: Any, entries: list[Any]
) -> None:
    print("2. candidates, per 1,000-event batch (best of 5), same inputs, same results")
    events = [to_usage_event(spec) for spec in work[0]]
    assert all(request_hash("usage", e) == fast_request_hash("usage", e) for e in events)
    _compare(
        "request_hash x1000",
        lambda: [request_hash("usage", e) for e in events],
        "fast_request_hash",
        lambda: [fast_request_hash("usage", e) for e in events],
    )

    stamp = entries[0].occurred_at
    assert all(
        dataclasses.replace(e, recorded_at=stamp) == fast_replace(e, recorded_at=stamp)
        for e in entries
    )
    _compare(
        "dataclasses.replace(entry) x1000",
        lambda: [dataclasses.replace(e, recorded_at=stamp) for e in entries],
        "fast_replace",
        lambda: [fast_replace(e, recorded_at=stamp) for e in entries],
    )

    assert repo._column_arrays(entries) == fast_column_arrays(entries)
    _compare(
        "_column_arrays(1000 entries)",
        lambda: repo._column_arrays(entries),
        "fast_column_arrays",
        lambda: fast_column_arrays(entries),
    )

    # As the ledger calls it before inserting: every key of a batch, a tenth of them known.
    known = [spec.idempotency_key for spec in random.Random(5).sample(factory.sent, 100)]
    keys = known + [f"unknown-{index}" for index in range(900)]
    orm_times, raw_times = [], []
    for _ in range(8):  # past PostgreSQL's five custom plans, into the cached generic plan
        async with sessions() as session, session.begin():
            bind_tenant(session.sync_session, org_id)
            started = time.perf_counter()
            by_orm = await repo.find_by_keys(session, keys)
            orm_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            by_raw = await find_by_keys_raw(session, keys)
            raw_times.append(time.perf_counter() - started)
    assert by_orm == by_raw and len(by_raw) == 100, "the raw lookup must find the same entries"
    before, after = statistics.median(orm_times[-3:]), statistics.median(raw_times[-3:])
    label = "find_by_keys(1000 keys, 100 known)"
    print(f"   {label:36s} {before * 1000:8.1f} ms -> {after * 1000:6.1f} ms  find_by_keys_raw")


def _compare(
    label: str, current: Callable[[], Any], name: str, candidate: Callable[[], Any]
) -> None:
    before, after = best_of(5, current), best_of(5, candidate)
    print(f"   {label:36s} {before * 1000:8.1f} ms -> {after * 1000:6.1f} ms  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=15)
    args = parser.parse_args()
    with postgres_server() as server_url:
        run_async(profile(server_url, args.batches))


if __name__ == "__main__":
    main()
