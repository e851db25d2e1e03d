"""``costgraph verify`` over a large ledger: how long recomputing every derived number takes.

The ledger is the P&L bench's (:func:`bench.pnl.build`: ``--entries`` entries over 360 days
in one organisation, 200 accounts, 50 customers, 500 users, the rollup job run after each
chunk). On top of it, what the write path would have kept, derived here in SQL so that
verify has every kind of number to check and finds no drift: the account balances, three
MONTH budgets (organisation, a customer, an account) with a counter for every month,
20 accounts on a plan with an allowance (the bench's usage is charged in full, so none is
drawn), and every finished month closed by the real monthly close.

Ours is the domain call ``costgraph verify`` makes (:func:`costgraph.billing.verify.verify`
with every check, live totals included, over the whole platform, in one read-only
snapshot), once, after one warm-up pass of the reference. The target (docs/architecture.md)
is "minutes, not hours"; the reference beside it is one plain pass over the ledger
(``count(*)`` and two sums), so the ratio says how many such passes verify costs. The time
of each check is in the details.

    python -m bench.verify                                  # 200,000 entries (quick)
    python -m bench.verify --entries 10000000 --keep verify10m   # the full size, kept
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg  # type: ignore[import-untyped]

from bench import pnl
from bench.db import bench_settings, on_database
from bench.report import standalone
from bench.stats import Comparison, Measurement
from costgraph.app.cli import UNBOUNDED_MS
from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.units import build_units
from costgraph.billing import month_close, verify
from costgraph.billing.allowances import cycle_window
from costgraph.billing.periods import Period, window
from costgraph.billing.pnl_measures import USAGE_SQL
from costgraph.kernel.database_url import plain_url
from costgraph.subscriptions.totals_check import LEDGER_CHECKS

#: docs/architecture.md: "minutes, not hours".
BOUND = timedelta(hours=1)
SUBSCRIBED = 20
UTC_ZONE = ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class VerifyConfig:
    entries: int = 200_000


@dataclass(frozen=True, slots=True)
class DurationComparison(Comparison):
    """One long operation against a reference: passes within a bound, with no drift."""

    bound_seconds: float = BOUND.total_seconds()

    @property
    def passed(self) -> bool:
        return not self.ours.errors and self.ours.seconds <= self.bound_seconds

    @property
    def target(self) -> str:
        return f"<= {self.bound_seconds / 60:g} min, no drift"


_BALANCES_SQL = """
INSERT INTO account_balances (organization_id, account_id, balance)
SELECT organization_id, account_id, sum(balance_delta) FROM ledger_entries
WHERE organization_id = $1 AND account_id IS NOT NULL GROUP BY 1, 2
ON CONFLICT (organization_id, account_id) DO UPDATE SET balance = excluded.balance
"""
_SPENT_SQL = f"""
SELECT coalesce(sum(CASE WHEN $5 = 'BILLED_USAGE' THEN e.amount ELSE e.ai_cost END), 0)
FROM ledger_entries e
WHERE e.organization_id = $1 AND e.occurred_at >= $2 AND e.occurred_at < $3 AND {USAGE_SQL}
  AND ($4::uuid IS NULL OR e.customer_id = $4 OR e.account_id = $4)
"""


async def derive(connection: asyncpg.Connection, data: pnl.Dataset) -> dict[str, Any]:
    """What the write path keeps beside the ledger (skipped when a kept dataset has it)."""
    org = data.org.id
    if await connection.fetchval("SELECT count(*) FROM budgets WHERE organization_id = $1", org):
        return {"derived": "reused"}
    t0 = time.perf_counter()
    await connection.execute(_BALANCES_SQL, org)
    budgets = [
        ("ORGANIZATION", org, None, "AI_COST"),
        ("CUSTOMER", data.customers[0], data.customers[0], "BILLED_USAGE"),
        ("ACCOUNT", data.accounts[1], data.accounts[1], "AI_COST"),
    ]
    counters = 0
    now = datetime.now(UTC)
    for kind, scope_id, match, basis in budgets:
        budget_id = uuid.uuid4()
        await connection.execute(
            "INSERT INTO budgets (organization_id, id, scope_kind, scope_id, period, "
            "limit_amount, currency, basis, hard_cap, thresholds, created_at) "
            "VALUES ($1, $2, $3, $4, 'MONTH', 1000000000, 'USD', $5, false, "
            "'{50,75,90,100}', $6)",
            org,
            budget_id,
            kind,
            scope_id,
            basis,
            now,
        )
        start, _ = window(Period.MONTH, data.start, UTC_ZONE)
        while start < now:
            span = window(Period.MONTH, start, UTC_ZONE)
            spent: Decimal = await connection.fetchval(
                _SPENT_SQL, org, span[0], span[1], match, basis
            )
            await connection.execute(
                "INSERT INTO budget_counters (organization_id, budget_id, period_start, "
                "period_end, spent) VALUES ($1, $2, $3, $4, $5)",
                org,
                budget_id,
                span[0],
                span[1],
                spent,
            )
            counters += 1
            start = span[1]
    plan_id = uuid.uuid4()
    await connection.execute(
        "INSERT INTO plans (organization_id, id, code, name, monthly_fee, currency, "
        "included_tokens) VALUES ($1, $2, 'bench', 'Bench', 20, 'USD', 1000000)",
        org,
        plan_id,
    )
    await connection.executemany(
        "INSERT INTO account_subscriptions (organization_id, account_id, plan_id, plan_code, "
        "billing, fee, currency, included_tokens, starts_at) "
        "VALUES ($1, $2, $3, 'bench', 'MONTHLY', 20, 'USD', 1000000, $4)",
        [(org, account, plan_id, data.start) for account in data.accounts[:SUBSCRIBED]],
    )
    cycles = await _allowance_counters(connection, data, now)
    return {
        "derived": "built",
        "budget_counters": counters,
        "subscriptions": SUBSCRIBED,
        "allowance_counters": cycles,
        "derive_seconds": round(time.perf_counter() - t0, 1),
    }


async def _allowance_counters(
    connection: asyncpg.Connection, data: pnl.Dataset, now: datetime
) -> int:
    """The bench's usage is charged in full, so nothing is drawn; entries that cost nothing
    draw nothing either (billing/allowances.py) but open their cycle's counter, as the write
    path opens it: at 0 used."""
    written = 0
    start, end = cycle_window(data.start, data.start)
    while start < now:
        await connection.execute(
            "INSERT INTO allowance_counters (organization_id, account_id, cycle_start, "
            "cycle_end, included_tokens, used_tokens) "
            "SELECT $1, e.account_id, $2, $3, 1000000, 0 "
            "FROM ledger_entries e WHERE e.organization_id = $1 AND e.account_id = ANY($4) "
            "AND e.type = 'USAGE_CHARGE' AND e.amount = 0 "
            "AND e.occurred_at >= $2 AND e.occurred_at < $3 GROUP BY e.account_id",
            data.org.id,
            start,
            end,
            data.accounts[:SUBSCRIBED],
        )
        written += 1
        start, end = cycle_window(data.start, end)
    return written


def _timed(checks: tuple[verify.NamedCheck, ...], seconds: dict[str, float]) -> list[Any]:
    """The checks, each adding its wall time to ``seconds``."""

    def timing(check: verify.NamedCheck) -> verify.NamedCheck:
        async def run(ctx: verify.VerifyContext) -> verify.Outcome:
            t0 = time.perf_counter()
            try:
                return await check.run(ctx)
            finally:
                seconds[check.name] = round(time.perf_counter() - t0, 2)

        return verify.NamedCheck(check.name, run)

    return [timing(check) for check in checks]


async def measure_url(url: str, config: VerifyConfig) -> list[Comparison]:
    with tempfile.TemporaryDirectory(prefix="costgraph-bench-") as tmp:
        settings = bench_settings(Path(tmp), url)
        raw = await asyncpg.connect(plain_url(url), server_settings={"timezone": "UTC"})
        # As `costgraph verify` runs: no statement bound on either side.
        engine = create_engine(
            url, settings.model_copy(update={"statement_timeout_ms": UNBOUNDED_MS})
        )
        try:
            data = await pnl.existing(raw, config.entries)
            if data is None:
                print(f"building {config.entries:,} entries ...", flush=True)
                data = await pnl.build(raw, config.entries)
            derived = await derive(raw, data)
            t0 = time.perf_counter()
            closed = await month_close.close_months(
                build_units(create_sessionmaker(engine)), datetime.now(UTC), timedelta(0)
            )
            derived["months_closed"] = len(closed)
            derived["close_seconds"] = round(time.perf_counter() - t0, 1)
            await raw.execute("ANALYZE")
            print(f"  dataset ready {derived}", flush=True)

            t0 = time.perf_counter()
            await raw.fetchrow(
                "SELECT count(*), sum(balance_delta), sum(ai_cost) FROM ledger_entries"
            )
            warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            await raw.fetchrow(
                "SELECT count(*), sum(balance_delta), sum(ai_cost) FROM ledger_entries"
            )
            scan = time.perf_counter() - t0
            print(f"  one ledger pass: {scan:.1f}s (warm-up {warm:.1f}s)", flush=True)

            per_check: dict[str, float] = {}
            t0 = time.perf_counter()
            report = await verify.verify(
                engine,
                UTC_ZONE,
                checks=_timed(LEDGER_CHECKS, per_check),
                statement_timeout_ms=0,
            )
            took = time.perf_counter() - t0
            print(f"  verify: {took:.1f}s, clean={report.clean} {per_check}", flush=True)
            for drift in report.drift[:10]:
                print(f"    drift: {drift}", flush=True)
            entries = int(await raw.fetchval("SELECT count(*) FROM ledger_entries"))
            details = {
                "entries": entries,
                "build_seconds": round(data.build_seconds, 1),
                **data.details,
                **derived,
                "checked": report.checked,
                "check_seconds": per_check,
                "drift": len(report.drift) + report.unlisted,
            }
            ours = Measurement(
                "costgraph verify (every check)", entries, took, (took,), int(not report.clean)
            )
            reference = Measurement("one pass over the ledger", entries, scan, (scan,))
            return [
                DurationComparison(
                    "costgraph verify, whole platform",
                    "entries/s",
                    ours,
                    reference,
                    0.0,
                    None,
                    details,
                )
            ]
        finally:
            await engine.dispose()
            await raw.close()


async def run(
    server_url: str, config: VerifyConfig | None = None, keep: str | None = None
) -> list[Comparison]:
    """On a fresh database; or, with ``keep``, on that named database, kept afterwards and
    reused by the next run (the dataset is built once: ``--keep verify10m``)."""
    settled = config or VerifyConfig()
    return await on_database(server_url, keep, lambda url: measure_url(url, settled))


def main() -> None:
    default = VerifyConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=default.entries)
    parser.add_argument(
        "--keep", metavar="DATABASE", help="build into this database, keep it, reuse it next time"
    )
    args = parser.parse_args()
    config = VerifyConfig(entries=args.entries)
    standalone("verify", lambda url: run(url, config, args.keep))


if __name__ == "__main__":
    main()
