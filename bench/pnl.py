"""P&L over a large ledger: a 30-day account P&L and a 30-day organisation P&L by model,
against the same GROUP BY on the rollup table with raw asyncpg (the ceiling).

The dataset is built for the bench, straight in SQL, not through the API (ingest has its own
bench): ``generate_series`` into the partitioned ledger in chunks of 500,000 (with the
session in ``replica`` role, so no foreign-key trigger runs per row: the references hold by
construction), and after each chunk the real rollup job
(:func:`costgraph.billing.rollups.catch_up`) folds it in. One organisation over the last 360
days: ``--entries`` entries, 96 % usage (2 providers, 8 models, 20 agents, 10 features, 500
users) on 200 accounts of 50 customers, the rest top-ups, subscription payments, refunds and
fees; ids are sequential. ``ledger_keys`` is not filled (P&L never reads it).

Ours is the domain call an ``accountPnl`` / ``organizationPnl { byModel }`` resolver makes,
with a fresh tenant session per call as a request has: range checks, the scope's existence
check, the read transaction with the high-water mark, the rollup rows of the whole hours,
the ledger's rows of partial edge hours and the not-yet-rolled-up tail. The ceiling is the
rollup GROUP BY alone over the whole hours of the same range. The two alternate call by
call. Rows: 30-day ranges ending on an hour (a dashboard's "last 30 days"), the same ending
anywhere (partial hours at both ends read from the ledger), and an account P&L with a tail
of 1,000 fresh entries the job has not folded in yet.

Target (docs/architecture.md): ours p50 <= 1.2 x the ceiling's p50 + 3 ms, and ours p99 <= 25 ms.

    python -m bench.pnl                       # 200,000 entries (quick)
    python -m bench.pnl --entries 10000000 --keep pnl10m   # the full size, kept for reruns
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench.db import bench_settings, on_database
from bench.report import standalone
from bench.stats import Comparison, Measurement
from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.billing import pnl, rollups
from costgraph.billing.directory import OrgContext
from costgraph.billing.pnl_measures import MEASURE_NAMES
from costgraph.billing.pnl_ranges import ReportLimits
from costgraph.kernel.database_url import plain_url
from costgraph.models.scoping import bind_tenant

RATIO = 1.2
SLACK_MS = 3.0
P99_MS = 25.0
CHUNK = 500_000
ACCOUNTS, CUSTOMERS, USERS = 200, 50, 500
SPAN = timedelta(days=360)
RANGE = timedelta(days=30)
TAIL = 1_000
TAIL_FIRST = 10_000_000_000


@dataclass(frozen=True, slots=True)
class PnLConfig:
    entries: int = 200_000
    calls: int = 300
    warmup: int = 30
    seed: int = 7


@dataclass(frozen=True, slots=True)
class LatencyComparison(Comparison):
    """Latency against the ceiling: p50 within ``ratio`` x + slack, p99 under a bound."""

    slack_ms: float = SLACK_MS
    p99_bound_ms: float = P99_MS

    @property
    def ratio(self) -> float:
        return self.ours.p50_ms / self.ceiling.p50_ms if self.ceiling.p50_ms > 0 else 0.0

    @property
    def passed(self) -> bool:
        if self.ours.errors or self.ceiling.errors:
            return False
        within = self.ours.p50_ms <= self.target_ratio * self.ceiling.p50_ms + self.slack_ms
        return within and self.ours.p99_ms <= self.p99_bound_ms

    @property
    def target(self) -> str:
        return (
            f"p50 <= {self.target_ratio:g}x + {self.slack_ms:g} ms, p99 <= {self.p99_bound_ms:g} ms"
        )


@dataclass(slots=True)
class Dataset:
    org: OrgContext
    accounts: list[uuid.UUID]
    customers: list[uuid.UUID]  # of each account, in the same order
    users: list[uuid.UUID]
    start: datetime
    end: datetime
    entries: int
    build_seconds: float
    details: dict[str, Any] = field(default_factory=dict)


_ENTRIES_SQL = """
INSERT INTO ledger_entries (organization_id, id, type, account_id, customer_id, occurred_at,
    currency, amount, balance_delta, ai_cost, provider_cost, provider_currency, fx_rate,
    caller_priced, provider, model, input_tokens, output_tokens, cached_input_tokens,
    markup_percent, user_id, department_id, feature, agent, idempotency_key, request_hash)
SELECT $1, ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, kind,
    CASE WHEN kind = 'PLATFORM_FEE' THEN NULL ELSE acct END,
    CASE WHEN kind = 'PLATFORM_FEE' THEN NULL ELSE cust END,
    $2::timestamptz + make_interval(secs => (g - $11) * $3::float8), 'USD',
    CASE WHEN usage THEN cost * 1.2 WHEN kind = 'REFUND' THEN 5 ELSE 25 END,
    CASE WHEN usage THEN -cost * 1.2 WHEN kind = 'DEPOSIT' THEN 25 ELSE 0 END,
    CASE WHEN usage THEN cost ELSE 0 END,
    CASE WHEN usage THEN cost END, CASE WHEN usage THEN 'USD' END,
    CASE WHEN usage THEN 1 END, usage,
    CASE WHEN usage THEN (ARRAY['openai', 'anthropic'])[1 + g % 2] END,
    CASE WHEN usage THEN 'model-' || (g % 8) END,
    CASE WHEN usage THEN 200 + g % 3000 ELSE 0 END,
    CASE WHEN usage THEN 50 + g % 700 ELSE 0 END,
    CASE WHEN usage THEN g % 500 ELSE 0 END,
    CASE WHEN usage THEN 20 END,
    CASE WHEN usage THEN ($6::uuid[])[1 + (g * 13) % $7] END,
    NULL,
    CASE WHEN usage THEN 'feature-' || (g % 10) END,
    CASE WHEN usage AND g % 3 <> 0 THEN 'agent-' || (g % 20) END,
    'bench-' || g, '\\x00'::bytea
FROM (
    SELECT g,
        CASE WHEN g % 100 < 96 THEN 'USAGE_CHARGE' WHEN g % 100 < 98 THEN 'DEPOSIT'
             WHEN g % 100 = 98 THEN 'SUBSCRIPTION_PAYMENT'
             WHEN g % 200 = 99 THEN 'REFUND' ELSE 'PLATFORM_FEE' END AS kind,
        g % 100 < 96 AS usage,
        ($4::uuid[])[1 + (g * 31) % $8] AS acct,
        ($5::uuid[])[1 + (g * 31) % $8] AS cust,
        ((g * 7919) % 100000)::numeric / 10000000 AS cost
    FROM generate_series($9::bigint, $10::bigint) AS g
) s
"""


async def _directory(
    connection: asyncpg.Connection, entries: int
) -> tuple[OrgContext, list[Any], list[Any]]:
    org_id, slug = uuid.uuid4(), f"pnl-bench-{entries}"
    await connection.execute(
        "INSERT INTO organizations (id, name, slug, reporting_currency) VALUES ($1,$2,$2,'USD')",
        org_id,
        slug,
    )
    customers = [uuid.uuid4() for _ in range(CUSTOMERS)]
    await connection.executemany(
        "INSERT INTO customers (organization_id, id, name) VALUES ($1, $2, 'bench')",
        [(org_id, c) for c in customers],
    )
    accounts = [(uuid.uuid4(), customers[i % CUSTOMERS], i % 4 == 0) for i in range(ACCOUNTS)]
    await connection.executemany(
        "INSERT INTO accounts (organization_id, id, customer_id, name, currency, postpaid) "
        "VALUES ($1, $2, $3, $4, 'USD', $5)",
        [(org_id, a, c, f"acct {i:03}", post) for i, (a, c, post) in enumerate(accounts)],
    )
    users = [uuid.uuid4() for _ in range(USERS)]
    await connection.executemany(
        "INSERT INTO users (organization_id, id, email) VALUES ($1, $2, $3)",
        [(org_id, u, f"{u.hex}@bench.example") for u in users],
    )
    return OrgContext(org_id, slug, slug, "USD"), accounts, users


async def existing(connection: asyncpg.Connection, entries: int) -> Dataset | None:
    """A dataset a previous run built and kept (``--keep``), of the same size."""
    found = await connection.fetchrow(
        "SELECT id, slug FROM organizations WHERE slug = $1", f"pnl-bench-{entries}"
    )
    if found is None:
        return None
    org = OrgContext(found["id"], found["slug"], found["slug"], "USD")
    accounts = await connection.fetch(
        "SELECT id, customer_id FROM accounts WHERE organization_id = $1 ORDER BY name, id",
        org.id,
    )
    users = await connection.fetch("SELECT id FROM users WHERE organization_id = $1", org.id)
    bounds = await connection.fetchrow(
        "SELECT min(occurred_at), max(occurred_at) FROM ledger_entries "
        "WHERE organization_id = $1 AND idempotency_key LIKE 'bench-%' AND type = 'USAGE_CHARGE' "
        "AND occurred_at > now() - interval '400 days'",
        org.id,
    )
    print(f"reusing the kept dataset of {entries:,} entries", flush=True)
    await rollups.catch_up(connection)  # the tail a previous run left
    await rollups.summarize_brin(connection)
    return Dataset(
        org,
        [r["id"] for r in accounts],
        [r["customer_id"] for r in accounts],
        [r["id"] for r in users],
        bounds[0],
        bounds[1],
        entries,
        0.0,
        {"reused": True},
    )


async def build(connection: asyncpg.Connection, entries: int) -> Dataset:
    started_at = time.perf_counter()
    org, accounts, users = await _directory(connection, entries)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - SPAN
    step = SPAN.total_seconds() / max(entries, 1)
    account_ids = [a for a, _, _ in accounts]
    customer_ids = [c for _, c, _ in accounts]
    insert_seconds = rollup_seconds = 0.0
    try:  # a bench dataset: its references hold by construction, so no FK trigger per row
        await connection.execute("SET session_replication_role = replica")
        fast = True
    except asyncpg.InsufficientPrivilegeError:
        fast = False
    for first in range(0, entries, CHUNK):
        last = min(first + CHUNK, entries) - 1
        t0 = time.perf_counter()
        await connection.execute(
            _ENTRIES_SQL,
            org.id,
            start,
            step,
            account_ids,
            customer_ids,
            users,
            len(users),
            len(account_ids),
            first,
            last,
            0,
        )
        t1 = time.perf_counter()
        if fast:
            await connection.execute("SET session_replication_role = origin")
        done = await rollups.catch_up(connection)
        if fast:
            await connection.execute("SET session_replication_role = replica")
        assert done is not None
        rollup_seconds += time.perf_counter() - t1
        insert_seconds += t1 - t0
        print(
            f"  {last + 1:>11,} entries  insert {t1 - t0:6.1f}s  rollup "
            f"{time.perf_counter() - t1:6.1f}s",
            flush=True,
        )
    if fast:
        await connection.execute("SET session_replication_role = origin")
    t0 = time.perf_counter()
    await rollups.summarize_brin(connection)
    await connection.execute("ANALYZE")
    analyze_seconds = time.perf_counter() - t0
    rows = {
        table: await connection.fetchval(f"SELECT count(*) FROM {table}")
        for table in rollups.TABLE_KEYS
    }
    return Dataset(
        org,
        account_ids,
        customer_ids,
        users,
        start,
        end,
        entries,
        time.perf_counter() - started_at,
        {
            "insert_seconds": round(insert_seconds, 1),
            "rollup_seconds": round(rollup_seconds, 1),
            "analyze_seconds": round(analyze_seconds, 1),
            "rollup_rows": rows,
            "ledger_bytes": int(
                await connection.fetchval(
                    "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                    "WHERE inhparent = 'ledger_entries'::regclass"
                )
            ),
        },
    )


_SUMS = ", ".join(f"sum({m})" for m in MEASURE_NAMES)
CEILING_ACCOUNT_SQL = (
    f"SELECT currency, {_SUMS}, max(last_at) FROM rollup_account_hourly "
    "WHERE organization_id = $1 AND account_id = $2 AND bucket >= $3 AND bucket < $4 "
    "GROUP BY currency"
)
CEILING_MODEL_SQL = (
    f"SELECT currency, provider, model, {_SUMS}, max(last_at) FROM rollup_model_hourly "
    "WHERE organization_id = $1 AND bucket >= $2 AND bucket < $3 "
    "GROUP BY currency, provider, model"
)


def _hour_up(at: datetime) -> datetime:
    floor = at.replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + timedelta(hours=1)


def _hour_down(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


Call = Callable[[uuid.UUID, datetime, datetime], Awaitable[Any]]


async def _alternate(
    ours: Call, ceiling: Call, data: Dataset, config: PnLConfig, aligned: bool
) -> tuple[Measurement, Measurement]:
    rng = random.Random(config.seed)
    mine: list[float] = []
    theirs: list[float] = []
    for index in range(config.warmup + config.calls):
        account = rng.choice(data.accounts)
        # A 30-day range ending somewhere in the last week: on an hour (a dashboard's "last
        # 30 days") or anywhere (the ledger then answers the partial hours at both ends).
        end = data.end - timedelta(minutes=rng.randrange(7, 7 * 24 * 60), seconds=13)
        if aligned:
            end = _hour_down(end)
        start = end - RANGE
        pair = [(ours, mine), (ceiling, theirs)]
        if index % 2:
            pair.reverse()
        for call, samples in pair:
            t0 = time.perf_counter()
            await call(account, start, end)
            if index >= config.warmup:
                samples.append(time.perf_counter() - t0)
    return (
        Measurement("ours (domain call)", len(mine), sum(mine), tuple(mine)),
        Measurement("rollup GROUP BY (asyncpg)", len(theirs), sum(theirs), tuple(theirs)),
    )


async def measure_url(url: str, config: PnLConfig) -> list[Comparison]:
    with tempfile.TemporaryDirectory(prefix="costgraph-bench-") as tmp:
        settings = bench_settings(Path(tmp), url)
        raw = await asyncpg.connect(plain_url(url), server_settings={"timezone": "UTC"})
        engine = create_engine(url, settings)
        sessions = create_sessionmaker(engine)
        try:
            data = await existing(raw, config.entries)
            if data is None:
                print(f"building {config.entries:,} entries ...", flush=True)
                data = await build(raw, config.entries)
            print(f"  built in {data.build_seconds:.1f}s {data.details}", flush=True)
            limits = ReportLimits()

            async def account_pnl(account: uuid.UUID, start: datetime, end: datetime) -> Any:
                session = sessions()
                bind_tenant(session.sync_session, data.org.id)
                try:
                    scope = pnl.Scope(pnl.ScopeKind.ACCOUNT, account)
                    report = await pnl.open_report(
                        session, data.org, scope, start, end, None, limits
                    )
                    return await pnl.totals(session, report)
                finally:
                    await session.close()

            async def org_by_model(_: uuid.UUID, start: datetime, end: datetime) -> Any:
                session = sessions()
                bind_tenant(session.sync_session, data.org.id)
                try:
                    scope = pnl.Scope(pnl.ScopeKind.ORGANIZATION)
                    report = await pnl.open_report(
                        session, data.org, scope, start, end, None, limits
                    )
                    return await pnl.breakdown(
                        session, report, ("provider", "model"), pnl.Order.COST
                    )
                finally:
                    await session.close()

            async def account_ceiling(account: uuid.UUID, start: datetime, end: datetime) -> Any:
                return await raw.fetch(
                    CEILING_ACCOUNT_SQL, data.org.id, account, _hour_up(start), _hour_down(end)
                )

            async def model_ceiling(_: uuid.UUID, start: datetime, end: datetime) -> Any:
                return await raw.fetch(
                    CEILING_MODEL_SQL, data.org.id, _hour_up(start), _hour_down(end)
                )

            details = {
                "entries": data.entries,
                "build_seconds": round(data.build_seconds, 1),
                **data.details,
                "calls": config.calls,
            }
            rows: list[Comparison] = []
            for name, ours, ceiling, aligned in (
                ("30-day account P&L", account_pnl, account_ceiling, True),
                ("30-day org P&L by model", org_by_model, model_ceiling, True),
                ("30-day account P&L, unaligned", account_pnl, account_ceiling, False),
                ("30-day org P&L by model, unaligned", org_by_model, model_ceiling, False),
            ):
                mine, theirs = await _alternate(ours, ceiling, data, config, aligned)
                rows.append(LatencyComparison(name, "calls/s", mine, theirs, RATIO, None, details))
                print(
                    f"  {name}: {mine.p50_ms:.2f}/{mine.p99_ms:.2f} ms against "
                    f"{theirs.p50_ms:.2f}/{theirs.p99_ms:.2f} ms",
                    flush=True,
                )
            # A tail the job has not folded in yet: fresh entries spread over the last weeks
            # (ids of their own on every run, for a kept dataset).
            tail_first = TAIL_FIRST + (time.time_ns() // 1_000_000 % 10**9) * TAIL
            await raw.execute(
                _ENTRIES_SQL,
                data.org.id,
                data.end - RANGE,
                RANGE.total_seconds() / TAIL,
                data.accounts,
                data.customers,
                data.users,
                len(data.users),
                len(data.accounts),
                tail_first,
                tail_first + TAIL - 1,
                tail_first,
            )
            mine, theirs = await _alternate(account_pnl, account_ceiling, data, config, True)
            tail_details = {**details, "unrolled_tail_entries": TAIL}
            rows.append(
                LatencyComparison(
                    f"30-day account P&L, {TAIL:,}-entry tail",
                    "calls/s",
                    mine,
                    theirs,
                    RATIO,
                    None,
                    tail_details,
                )
            )
            return rows
        finally:
            await engine.dispose()
            await raw.close()


async def run(
    server_url: str, config: PnLConfig | None = None, keep: str | None = None
) -> list[Comparison]:
    """On a fresh database; or, with ``keep``, on that named database, kept afterwards and
    reused by the next run (the dataset is then built once: ``--keep pnl10m``)."""
    settled = config or PnLConfig()
    return await on_database(server_url, keep, lambda url: measure_url(url, settled))


def main() -> None:
    default = PnLConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=default.entries)
    parser.add_argument("--calls", type=int, default=default.calls)
    parser.add_argument("--warmup", type=int, default=default.warmup)
    parser.add_argument(
        "--keep", metavar="DATABASE", help="build into this database, keep it, reuse it next time"
    )
    args = parser.parse_args()
    config = PnLConfig(entries=args.entries, calls=args.calls, warmup=args.warmup)
    standalone("pnl", lambda url: run(url, config, args.keep))


if __name__ == "__main__":
    main()
