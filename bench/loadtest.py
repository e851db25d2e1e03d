"""A mixed load test: ingestion, queries and live subscriptions at once, for a bounded time,
against one real CostGraph server on loopback.

    python -m bench.loadtest [--duration 60] [--writers 4] [--batch-writers 2]
                             [--batch-size 50] [--readers 4] [--subscribers 20]

What runs at the same time, each a closed loop on its own keep-alive connection
(:mod:`bench.loadgen`, the benches' client; loopback only):

* ``--writers`` connections posting ``recordUsage`` (one fresh event each, as an
  integrator's ``usage:write`` token);
* ``--batch-writers`` connections posting ``recordUsageBatch`` of ``--batch-size`` events;
* ``--readers`` connections cycling through a ledger page (``ledger(first: 50)``), the
  organisation's P&L for the month, and ``budgetStatus`` (as an org_admin);
* ``--subscribers`` graphql-transport-ws connections (each a finance_viewer) subscribed to the
  organisation's ``usageUpdates`` for the whole run.

Reported per operation type: requests, throughput, error rate and latency percentiles
(p50/p95/p99; requests started in the ``--warmup`` are not timed, but their errors count);
per subscriber: deliveries, the events they covered (``eventsIncluded``, bursts are
coalesced) against the usage entries written while subscribed, and the delivery latency from
the server's ``publishedAt`` to the client's receipt. The result goes to
``bench/results/loadtest-<UTC>.json``. There is no ceiling: this is a soak of the whole
service, not a comparison; the ratios are in the other benches.

A response counts as an error unless it is HTTP 200 with the expected result type (no
``errors``, no typed ``UserError``). Bounded in time (``--duration`` ≤ 600 s) and in
requests (``--max-requests``); it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.db import (
    BenchTenant,
    bench_settings,
    create_tenant,
    fresh_database,
    integrator_token,
    postgres_server,
    role_token,
)
from bench.loadgen import LOOPBACK, Connection
from bench.report import RESULTS_DIR, environment, run_async
from bench.server import COSTGRAPH, ServerConfig, free_port, started
from bench.stats import Measurement, percentile
from bench.workload import EventFactory, to_graphql_input
from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.settings import Settings
from costgraph.billing import budget_repository, budgets
from costgraph.billing.budgets import BudgetSpec
from costgraph.billing.periods import Period
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.kernel.clock import utcnow
from costgraph.kernel.database_url import plain_url
from costgraph.models.scoping import bind_tenant

MAX_DURATION = 600.0
MAX_CONNECTIONS = 64
MAX_SUBSCRIBERS = 500
PROTOCOL = "graphql-transport-ws"
#: How long the subscribers may take to receive the last updates after the writes stop.
DRAIN_SECONDS = 15.0

RECORD_USAGE = """mutation($input: UsageEventInput!) { recordUsage(input: $input) {
  __typename ... on UsageRecorded { replayed entry { id } } ... on UserError { code message } } }"""
RECORD_BATCH = """mutation($input: [UsageEventInput!]!) { recordUsageBatch(input: $input) {
  __typename ... on UsageBatchRecorded { recorded replayed }
  ... on UserError { code message } } }"""
LEDGER_PAGE = """query { ledger(first: 50) {
  edges { cursor node { id type amount occurredAt model } }
  pageInfo { hasNextPage endCursor } } }"""
PNL = """query($range: DateRange!) { organizationPnl(range: $range) {
  currency revenue aiCost billedUsage margin marginPercent eventCount } }"""
BUDGET_STATUS = """query($id: ID!) { budgetStatus(budgetId: $id) {
  spent reserved remaining percentUsed stagesReached } }"""
USAGE_UPDATES = """subscription { usageUpdates {
  kind eventsIncluded totals { currency events } event { entryId publishedAt } } }"""

INGEST_SINGLE = "recordUsage"
INGEST_BATCH = "recordUsageBatch"
QUERY_LEDGER = "ledger page"
QUERY_PNL = "organizationPnl"
QUERY_BUDGET = "budgetStatus"


@dataclass(frozen=True, slots=True)
class LoadConfig:
    duration: float = 60.0
    warmup: float = 2.0
    writers: int = 4
    batch_writers: int = 2
    batch_size: int = 50
    readers: int = 4
    subscribers: int = 20
    max_requests: int = 1_000_000

    def checked(self) -> LoadConfig:
        if not 0 < self.duration <= MAX_DURATION or not 0 <= self.warmup <= 60:
            raise SystemExit(f"--duration must be in (0, {MAX_DURATION:g}], --warmup in [0, 60]")
        for name in ("writers", "batch_writers", "readers"):
            if not 0 <= getattr(self, name) <= MAX_CONNECTIONS:
                raise SystemExit(f"--{name.replace('_', '-')} must be 0..{MAX_CONNECTIONS}")
        if not 0 <= self.subscribers <= MAX_SUBSCRIBERS:
            raise SystemExit(f"--subscribers must be 0..{MAX_SUBSCRIBERS}")
        if not 1 <= self.batch_size <= 1_000 or not 1 <= self.max_requests <= 10_000_000:
            raise SystemExit("--batch-size must be 1..1000, --max-requests 1..10,000,000")
        return self


@dataclass
class OpStats:
    """One operation type: what was sent, what failed, how long the timed ones took."""

    name: str
    requests: int = 0
    errors: int = 0
    #: Events a request carries (1, or the batch size): ingestion throughput is in events.
    events_per_request: int = 0
    latencies: list[float] = field(default_factory=list)
    first_error: str | None = None

    def measurement(self, seconds: float) -> Measurement:
        return Measurement(self.name, len(self.latencies), seconds, tuple(self.latencies))

    def to_json(self, seconds: float) -> dict[str, Any]:
        timed = len(self.latencies)
        return {
            "operation": self.name,
            "requests": self.requests,
            "timed_requests": timed,
            "requests_per_second": round(timed / seconds, 1) if seconds else 0.0,
            "events_per_second": round(timed * self.events_per_request / seconds, 1)
            if seconds and self.events_per_request
            else None,
            "errors": self.errors,
            "error_rate": round(self.errors / self.requests, 6) if self.requests else 0.0,
            "p50_ms": round(percentile(self.latencies, 0.50) * 1000, 3),
            "p95_ms": round(percentile(self.latencies, 0.95) * 1000, 3),
            "p99_ms": round(percentile(self.latencies, 0.99) * 1000, 3),
            "max_ms": round(max(self.latencies, default=0.0) * 1000, 3),
            "first_error": self.first_error,
        }


@dataclass
class SubscriberStats:
    updates: int = 0
    events_covered: int = 0
    interrupted: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass
class Report:
    config: LoadConfig
    seconds: float
    operations: list[OpStats]
    subscribers: list[SubscriberStats]
    #: Usage entries the ledger holds at the end, and what the writers were told was recorded.
    ledger_usage_rows: int
    events_acknowledged: int
    #: The machine's 1-minute load average before and after: on a shared machine the figures
    #: mean little without it.
    load_average: tuple[float, float] = (0.0, 0.0)

    def to_json(self) -> dict[str, Any]:
        deliveries = sum(s.updates for s in self.subscribers)
        delivery_latencies = [x for s in self.subscribers for x in s.latencies]
        return {
            "suite": "loadtest",
            "config": asdict(self.config),
            "environment": environment(),
            "measured_seconds": round(self.seconds, 3),
            "load_average_1m": {"before": self.load_average[0], "after": self.load_average[1]},
            "operations": [op.to_json(self.seconds) for op in self.operations],
            "subscriptions": {
                "subscribers": len(self.subscribers),
                "deliveries": deliveries,
                "deliveries_per_second": round(deliveries / self.seconds, 1)
                if self.seconds
                else 0.0,
                "events_covered_min": min((s.events_covered for s in self.subscribers), default=0),
                "events_covered_max": max((s.events_covered for s in self.subscribers), default=0),
                "interrupted": sum(s.interrupted for s in self.subscribers),
                "errors": sum(s.errors for s in self.subscribers),
                "latency_p50_ms": round(percentile(delivery_latencies, 0.50) * 1000, 3),
                "latency_p99_ms": round(percentile(delivery_latencies, 0.99) * 1000, 3),
            },
            "checks": {
                "ledger_usage_rows": self.ledger_usage_rows,
                "events_acknowledged": self.events_acknowledged,
            },
        }


def render(report: Report) -> str:
    header = ("operation", "requests", "req/s", "events/s", "errors", "p50 ms", "p95 ms", "p99 ms")
    lines = [header]
    for op in report.to_json()["operations"]:
        lines.append(
            (
                op["operation"],
                f"{op['requests']:,}",
                f"{op['requests_per_second']:,.1f}",
                "" if op["events_per_second"] is None else f"{op['events_per_second']:,.0f}",
                f"{op['errors']} ({op['error_rate']:.2%})",
                f"{op['p50_ms']:.1f}",
                f"{op['p95_ms']:.1f}",
                f"{op['p99_ms']:.1f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rows = [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    rows.insert(1, "-+-".join("-" * w for w in widths))
    live = report.to_json()["subscriptions"]
    checks = report.to_json()["checks"]
    rows.append("")
    rows.append(
        f"subscriptions: {live['subscribers']} subscribers, {live['deliveries']:,} deliveries "
        f"({live['deliveries_per_second']:,.1f}/s), events covered per subscriber "
        f"{live['events_covered_min']:,}..{live['events_covered_max']:,} of "
        f"{checks['ledger_usage_rows']:,} written, delivery latency p50 "
        f"{live['latency_p50_ms']:.1f} ms / p99 {live['latency_p99_ms']:.1f} ms, "
        f"{live['interrupted']} interrupted, {live['errors']} errors"
    )
    rows.append(
        f"ledger: {checks['ledger_usage_rows']:,} usage entries for "
        f"{checks['events_acknowledged']:,} events acknowledged; machine load average "
        f"{report.load_average[0]:.1f} before, {report.load_average[1]:.1f} after"
    )
    return "\n".join(rows)


# --- the tenant's extra set-up ---


async def soft_budget(settings: Settings, url: str, tenant: BenchTenant) -> uuid.UUID:
    """A budget for ``budgetStatus`` to read: the tenant's first, else a new soft monthly one
    on the organisation (counted on every write, never refusing)."""
    engine = create_engine(url, settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            bind_tenant(session.sync_session, tenant.org.id)
            existing = await budget_repository.list_budgets(session, None)
            if existing:  # a shared bench tenant: leave its budgets' terms alone
                return existing[0].id
            scope = Scope(ScopeKind.ORGANIZATION, tenant.org.id)
            spec = BudgetSpec(scope, Period.MONTH, Decimal("1000000000"), "USD", False)
            budget = await budgets.set_budget(session, tenant.org, spec)
            return budget.id
    finally:
        await engine.dispose()


async def usage_rows(url: str, org_id: uuid.UUID) -> int:
    connection = await asyncpg.connect(plain_url(url))
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE organization_id = $1 "
            "AND type = 'USAGE_CHARGE'",
            org_id,
        )
        return count
    finally:
        await connection.close()


# --- the load ---


class Clock:
    """The run's shared bounds: when timing starts, when sending stops, how many requests."""

    def __init__(self, config: LoadConfig) -> None:
        self.started = time.perf_counter()
        self.measure_from = self.started + config.warmup
        self.deadline = self.measure_from + config.duration
        self.budget = config.max_requests
        self.issued = 0

    def next(self) -> float | None:
        now = time.perf_counter()
        if now >= self.deadline or self.issued >= self.budget:
            return None
        self.issued += 1
        return now


def now_rfc3339() -> str:
    return utcnow().isoformat().replace("+00:00", "Z")


class Bodies:
    """Request bodies: fresh events stamped now (so live totals of this month include them)."""

    def __init__(self, tenant: BenchTenant, budget_id: uuid.UUID, batch_size: int) -> None:
        self.events = EventFactory(tenant, seed=11)
        self.batch_size = batch_size
        self.budget_id = str(budget_id)
        start = utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        self.month = {
            "start": start.isoformat().replace("+00:00", "Z"),
            "end": (start + timedelta(days=32)).replace(day=1).isoformat().replace("+00:00", "Z"),
        }
        self.reads = itertools.cycle((QUERY_LEDGER, QUERY_PNL, QUERY_BUDGET))

    def _event(self) -> dict[str, Any]:
        spec = replace(self.events.fresh(), occurred_at=utcnow())
        return to_graphql_input(spec)

    def single(self) -> bytes:
        return orjson.dumps({"query": RECORD_USAGE, "variables": {"input": self._event()}})

    def batch(self) -> bytes:
        events = [self._event() for _ in range(self.batch_size)]
        return orjson.dumps({"query": RECORD_BATCH, "variables": {"input": events}})

    def read(self) -> tuple[str, bytes]:
        name = next(self.reads)
        if name == QUERY_LEDGER:
            return name, orjson.dumps({"query": LEDGER_PAGE})
        if name == QUERY_PNL:
            return name, orjson.dumps({"query": PNL, "variables": {"range": self.month}})
        return name, orjson.dumps({"query": BUDGET_STATUS, "variables": {"id": self.budget_id}})


def failed(status: int, body: bytes, expect: bytes) -> bool:
    return status != 200 or expect not in body or b'"errors"' in body


async def http_worker(
    port: int,
    token: str,
    clock: Clock,
    make: Callable[[], tuple[OpStats, bytes, bytes]],
) -> None:
    """A closed loop on one keep-alive connection: the next request on the answer."""
    connection = Connection(LOOPBACK, port)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    try:
        await connection.open()
        while (sent_at := clock.next()) is not None:
            stats, body, expect = make()
            response = await connection.send(connection.encode("POST", "/graphql", body, headers))
            done = time.perf_counter()
            stats.requests += 1
            if failed(response.status, response.body, expect):
                stats.errors += 1
                if stats.first_error is None:
                    stats.first_error = f"{response.status}: {response.body[:300]!r}"
            elif sent_at >= clock.measure_from:
                stats.latencies.append(done - sent_at)
    finally:
        await connection.close()


async def subscriber(
    port: int, token: str, stats: SubscriberStats, ready: asyncio.Event, stop: asyncio.Event
) -> None:
    """One widget: subscribe, take the SNAPSHOT, then count every update until told to stop."""
    url = f"ws://{LOOPBACK}:{port}/graphql"
    async with connect(url, subprotocols=[PROTOCOL], max_queue=None) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await socket.send(orjson.dumps(init).decode())
        ack = orjson.loads(await asyncio.wait_for(socket.recv(), 30))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"subscription refused: {ack}")
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": USAGE_UPDATES}}
        await socket.send(orjson.dumps(subscribe).decode())
        snapshot = orjson.loads(await asyncio.wait_for(socket.recv(), 30))
        if snapshot.get("type") != "next":
            raise RuntimeError(f"no snapshot: {snapshot}")
        ready.set()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                receiving = asyncio.ensure_future(socket.recv())
                done, _ = await asyncio.wait(
                    {receiving, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if receiving not in done:
                    receiving.cancel()
                    return
                received = time.time()
                message = orjson.loads(receiving.result())
                kind = message.get("type")
                if kind == "ping":
                    await socket.send(orjson.dumps({"type": "pong"}).decode())
                    continue
                if kind != "next" or "errors" in message.get("payload", {}):
                    stats.errors += 1
                    continue
                update = message["payload"]["data"]["usageUpdates"]
                stats.updates += 1
                stats.events_covered += update["eventsIncluded"]
                if update["kind"] == "INTERRUPTED":
                    stats.interrupted += 1
                event = update.get("event")
                if event and event.get("publishedAt"):
                    published = datetime.fromisoformat(event["publishedAt"].replace("Z", "+00:00"))
                    stats.latencies.append(max(0.0, received - published.timestamp()))
        except ConnectionClosed:
            stats.errors += 1
        finally:
            stopping.cancel()


async def run_load(config: LoadConfig, url: str, data_dir: Path) -> Report:
    """A tenant (prepaid accounts, topped up) and one CostGraph server for this run."""
    settings = bench_settings(data_dir, url)
    tenant = await create_tenant(settings, url)
    server_config = ServerConfig(COSTGRAPH, free_port(), url, str(data_dir), str(tenant.org.id))
    async with started(server_config) as (server,):
        writer_token = integrator_token(settings, tenant.org.id)
        return await run_against(config, url, settings, tenant, server.port, writer_token)


async def run_against(
    config: LoadConfig,
    url: str,
    settings: Settings,
    tenant: BenchTenant,
    port: int,
    writer_token: str,
) -> Report:
    """The mixed load against a running server of ``tenant``'s database."""
    budget_id = await soft_budget(settings, url, tenant)
    admin_token = role_token(settings, tenant.org.id, ["org_admin"], "load-admin")
    bodies = Bodies(tenant, budget_id, config.batch_size)
    stats = {
        name: OpStats(name)
        for name in (INGEST_SINGLE, INGEST_BATCH, QUERY_LEDGER, QUERY_PNL, QUERY_BUDGET)
    }
    stats[INGEST_SINGLE].events_per_request = 1
    stats[INGEST_BATCH].events_per_request = config.batch_size

    # Subscribers first, each its own principal, all subscribed before the first write.
    live = [SubscriberStats() for _ in range(config.subscribers)]
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in live]
    listeners = [
        asyncio.create_task(
            subscriber(
                port,
                role_token(settings, tenant.org.id, ["finance_viewer"], f"widget-{i}"),
                s,
                ready,
                stop,
            )
        )
        for i, (s, ready) in enumerate(zip(live, readies, strict=True))
    ]
    try:
        await _all_ready(listeners, readies)

        def single() -> tuple[OpStats, bytes, bytes]:
            return stats[INGEST_SINGLE], bodies.single(), b'"UsageRecorded"'

        def batch() -> tuple[OpStats, bytes, bytes]:
            return stats[INGEST_BATCH], bodies.batch(), b'"UsageBatchRecorded"'

        def read() -> tuple[OpStats, bytes, bytes]:
            name, body = bodies.read()
            return stats[name], body, b'"data"'

        before = await usage_rows(url, tenant.org.id)
        load_before = os.getloadavg()[0]
        clock = Clock(config)
        await asyncio.gather(
            *(http_worker(port, writer_token, clock, single) for _ in range(config.writers)),
            *(http_worker(port, writer_token, clock, batch) for _ in range(config.batch_writers)),
            *(http_worker(port, admin_token, clock, read) for _ in range(config.readers)),
        )
        finished = time.perf_counter()
        load_after = os.getloadavg()[0]
        written = await usage_rows(url, tenant.org.id) - before
        # The last updates reach the subscribers (bounded: a lost update shows in the report).
        drain_until = time.monotonic() + DRAIN_SECONDS
        # Polled: the counters are bumped by many tasks, none of which knows ``written``.
        while time.monotonic() < drain_until and any(s.events_covered < written for s in live):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*listeners, return_exceptions=True)
    acknowledged = (stats[INGEST_SINGLE].requests - stats[INGEST_SINGLE].errors) + (
        stats[INGEST_BATCH].requests - stats[INGEST_BATCH].errors
    ) * config.batch_size
    return Report(
        config=config,
        seconds=max(min(finished, clock.deadline) - clock.measure_from, 1e-9),
        operations=[s for s in stats.values() if s.requests],
        subscribers=live,
        ledger_usage_rows=written,
        events_acknowledged=acknowledged,
        load_average=(round(load_before, 2), round(load_after, 2)),
    )


async def _all_ready(listeners: list[asyncio.Task[None]], readies: list[asyncio.Event]) -> None:
    waiting = [asyncio.ensure_future(r.wait()) for r in readies]
    if not waiting:
        return
    deadline = time.monotonic() + 60
    while not all(r.is_set() for r in readies):
        failed_ = [t for t in listeners if t.done() and t.exception() is not None]
        if failed_:
            raise RuntimeError("a subscriber failed to start") from failed_[0].exception()
        if time.monotonic() > deadline:
            raise RuntimeError("subscribers not ready within 60 s")
        await asyncio.sleep(0.05)
    for future in waiting:
        future.cancel()


async def measure(server_url: str, config: LoadConfig) -> Report:
    """A fresh database and data directory on ``server_url``; both gone afterwards."""
    config = config.checked()
    async with fresh_database(server_url) as url:
        with tempfile.TemporaryDirectory(prefix="costgraph-loadtest-") as tmp:
            return await run_load(config, url, Path(tmp))


def write_report(report: Report) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    data = orjson.dumps({**report.to_json(), "finished_at": stamp}, option=orjson.OPT_INDENT_2)
    path = RESULTS_DIR / f"loadtest-{stamp}.json"
    path.write_bytes(data)
    (RESULTS_DIR / "loadtest-latest.json").write_bytes(data)
    return path


def main() -> None:
    default = LoadConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=default.duration)
    parser.add_argument("--warmup", type=float, default=default.warmup)
    parser.add_argument("--writers", type=int, default=default.writers)
    parser.add_argument("--batch-writers", type=int, default=default.batch_writers)
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument("--readers", type=int, default=default.readers)
    parser.add_argument("--subscribers", type=int, default=default.subscribers)
    parser.add_argument("--max-requests", type=int, default=default.max_requests)
    args = parser.parse_args()
    config = LoadConfig(
        duration=args.duration,
        warmup=args.warmup,
        writers=args.writers,
        batch_writers=args.batch_writers,
        batch_size=args.batch_size,
        readers=args.readers,
        subscribers=args.subscribers,
        max_requests=args.max_requests,
    ).checked()
    with postgres_server() as server_url:
        report = run_async(measure(server_url, config))
    print(render(report))
    print(f"results: {write_report(report)}")


if __name__ == "__main__":
    main()
