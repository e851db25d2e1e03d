"""Live totals (what every ``usageUpdates`` update re-reads) as the month fills up: the read
from the rollups, the tail and the edges against the plain grouped SUM over the month's
ledger entries it replaced, at growing ledger sizes.

The month's entries are written straight in SQL (``generate_series``, one organisation, one
account, user and department, spread over the hours of the month so far), folded in by the
real rollup job, then ``--tail`` more are written that the job has not reached. No ANALYZE
is run (as in a new month's partition, or the load test's new database). Both reads run
through a fresh tenant session per call, as a live update does, alternating call by call, and
must return the same rows. What to see: ours stays flat while the plain SUM grows with the
entries.

    python -m bench.live_totals                          # 20,000 then 200,000 entries
    python -m bench.live_totals --sizes 50000 500000 --calls 50
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bench.db import bench_settings, create_tenant, fresh_database, postgres_server
from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.billing import rollups
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.kernel.database_url import plain_url
from costgraph.models.ledger import EntryType, LedgerEntry
from costgraph.models.scoping import bind_tenant
from costgraph.subscriptions.totals import UsageTotals, current_period, period_totals

_INSERT = """INSERT INTO ledger_entries (organization_id, id, type, account_id, customer_id,
  occurred_at, currency, amount, ai_cost, input_tokens, output_tokens, user_id, department_id,
  idempotency_key, request_hash)
SELECT $1, gen_random_uuid(), 'USAGE_CHARGE', $2, $3,
  $4::timestamptz + (g % $5) * interval '1 minute', 'USD', 0.012, 0.01, 1000, 100, $6, $7,
  $8 || g, '\\x00'::bytea
FROM generate_series(1, $9) g"""

_COLUMNS = {
    ScopeKind.ORGANIZATION: LedgerEntry.organization_id,
    ScopeKind.CUSTOMER: LedgerEntry.customer_id,
    ScopeKind.ACCOUNT: LedgerEntry.account_id,
    ScopeKind.DEPARTMENT: LedgerEntry.department_id,
    ScopeKind.USER: LedgerEntry.user_id,
}


async def plain_sum(
    session: AsyncSession, scope: Scope, period: tuple[datetime, datetime]
) -> list[UsageTotals]:
    """The read every live update made before: one grouped SUM over the scope's usage charges
    (the tenant filter of the session applies). Also the reference of
    ``tests/test_subscriptions_totals.py``."""

    def total(column: Any) -> Any:
        return func.coalesce(func.sum(column), 0)

    statement = (
        select(
            LedgerEntry.currency,
            func.count(),
            total(LedgerEntry.input_tokens),
            total(LedgerEntry.output_tokens),
            total(LedgerEntry.cached_input_tokens),
            total(LedgerEntry.cache_write_tokens),
            total(LedgerEntry.reasoning_tokens),
            total(LedgerEntry.ai_cost),
            total(LedgerEntry.amount),
        )
        .where(
            LedgerEntry.type == EntryType.USAGE_CHARGE.value,
            LedgerEntry.occurred_at >= period[0],
            LedgerEntry.occurred_at < period[1],
            _COLUMNS[scope.kind] == scope.id,
        )
        .group_by(LedgerEntry.currency)
        .order_by(LedgerEntry.currency)
    )
    rows = (await session.execute(statement)).all()
    return [
        UsageTotals(r[0], *(int(v) for v in r[1:7]), Decimal(r[7]), Decimal(r[8])) for r in rows
    ]


Read = Callable[[AsyncSession, Scope, tuple[datetime, datetime]], Awaitable[list[UsageTotals]]]


async def main(sizes: list[int], tail: int, calls: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir, postgres_server() as server:
        async with fresh_database(server) as url:
            settings = bench_settings(Path(data_dir), url)
            tenant = await create_tenant(settings, url, accounts=1, users=1)
            engine = create_engine(url, settings)
            sessions = create_sessionmaker(engine)
            connection = await asyncpg.connect(plain_url(url))
            try:
                department = await connection.fetchval(
                    "SELECT department_id FROM users WHERE id = $1", tenant.user_ids[0]
                )
                period = current_period()
                minutes = max(1, int((time.time() - period[0].timestamp()) // 60) - 1)
                scopes = [
                    Scope(ScopeKind.ORGANIZATION, tenant.org.id),
                    Scope(ScopeKind.ACCOUNT, tenant.account_ids[0]),
                    Scope(ScopeKind.USER, tenant.user_ids[0]),
                    Scope(ScopeKind.DEPARTMENT, department),
                ]
                written = 0

                async def write(count: int, tag: str) -> None:
                    await connection.execute(
                        _INSERT,
                        tenant.org.id,
                        tenant.account_ids[0],
                        tenant.customer_id,
                        period[0],
                        minutes,
                        tenant.user_ids[0],
                        department,
                        f"bench-{tag}-{uuid.uuid4().hex}-",
                        count,
                    )

                async def timed(read: Read, scope: Scope) -> tuple[float, list[UsageTotals]]:
                    async with sessions() as session:
                        bind_tenant(session.sync_session, tenant.org.id)
                        started = time.perf_counter()
                        rows = await read(session, scope, period)
                        return (time.perf_counter() - started) * 1000, rows

                print(f"{'entries':>9} | {'scope':<12} | ours p50 ms | plain SUM p50 ms | ratio")
                for size in sizes:
                    await write(size - written, "month")
                    written = size
                    # No server runs here: nothing else holds the job's lock.
                    assert await rollups.catch_up(connection) is not None
                    await rollups.summarize_brin(connection)
                    await write(tail, "tail")
                    written += tail
                    for scope in scopes:
                        ours: list[float] = []
                        plain: list[float] = []
                        for _ in range(calls):
                            took, mine = await timed(period_totals, scope)
                            ours.append(took)
                            took, reference = await timed(plain_sum, scope)
                            plain.append(took)
                            assert mine == reference, (scope, mine, reference)
                        a, b = statistics.median(ours), statistics.median(plain)
                        print(
                            f"{written:>9,} | {scope.kind.value:<12} | {a:>11.2f} | "
                            f"{b:>16.2f} | {b / a:>5.1f}x"
                        )
            finally:
                await connection.close()
                await engine.dispose()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--tail", type=int, default=500, help="entries not rolled up yet")
    parser.add_argument("--calls", type=int, default=30, help="calls per read and scope")
    args = parser.parse_args()
    if sorted(args.sizes) != args.sizes or args.sizes[0] < 1:
        raise SystemExit("--sizes must be positive and ascending")
    asyncio.run(main(args.sizes, args.tail, args.calls))


if __name__ == "__main__":
    cli()
