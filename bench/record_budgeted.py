"""Single ``recordUsage`` on budgeted, prepaid accounts at concurrency 16, in the two
scenarios of :mod:`bench.authorize`: every client on one hot budget (one account: one balance
row and one budget counter every request moves), and the clients round robin over 16 accounts
with a budget each (no row shared by requests in flight, bar the odd overlap).

Each account is prepaid and topped up, with a hard-capped MONTH budget of 1,000,000.00 USD,
so every event is charged to the balance and counted against a real cap and none is refused.
Measured in alternating slices, per scenario, against the trivial query ``{ me { subject } }``
in the same run — the target (DESIGN.md): at least 0.5x its throughput, a p99 at most 2x its
p99 — with the server CPU per request of each side read from the OS.

Checked after each scenario, exactly: one ledger entry per request sent, the accounts'
balances down by the sum of what was billed, and the budgets' counters up by the sum of the
entries' AI cost (the budget's basis).

    python -m bench.record_budgeted [--duration 3] [--rounds 2] [--concurrency 16] [--tuning …]
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench import single_usage
from bench.authorize import SCENARIOS, budgeted_accounts
from bench.db import TOP_UP
from bench.env import BenchEnv
from bench.hot_path import (
    TARGET_RATIO,
    AgainstTrivial,
    ServerCpu,
    alternate,
    http_slice,
    trivial_plan,
)
from bench.httpbench import HttpConfig, http_main
from bench.stats import Comparison
from bench.workload import EventFactory
from costgraph.kernel.database_url import plain_url

EXPECT = b'"UsageRecorded"'


async def measure(env: BenchEnv, config: HttpConfig) -> list[Comparison]:
    rows: list[Comparison] = []
    for name, count in SCENARIOS:
        rows.append(await _scenario(env, config, name, count))
    return rows


async def _scenario(env: BenchEnv, config: HttpConfig, name: str, count: int) -> Comparison:
    account_ids = await budgeted_accounts(env.settings, env.url, env.tenant, count)
    events = EventFactory(replace(env.tenant, account_ids=tuple(account_ids)), seed=11)
    headers = {"Authorization": f"Bearer {env.token}"}
    ours_cpu, trivial_cpu = ServerCpu(env.ours_pid), ServerCpu(env.ours_pid)
    ours_label = f"recordUsage over HTTP, {name}"
    trivial_label = "{ me { subject } } over HTTP"
    plan = config.plan("/graphql", single_usage.usage_body_factory(events), EXPECT, headers)
    measured = await alternate(
        [
            (ours_label, ours_cpu.slice(http_slice(env.ours_port, plan, ours_label))),
            (
                trivial_label,
                trivial_cpu.slice(
                    http_slice(env.ours_port, trivial_plan(env, config), trivial_label)
                ),
            ),
        ],
        config.rounds,
    )
    ours, trivial = measured[ours_label], measured[trivial_label]
    checks = await _checks(env.url, env.tenant.org.id, account_ids)
    checks["requests_sent"] = events.count
    # A failed request (counted in ours.errors, which fails the row) wrote nothing.
    if not 0 <= events.count - checks["entries"] <= ours.errors:
        raise AssertionError(f"entries written differ from requests sent: {checks}")
    if checks["balances_moved_by"] != checks["billed"]:
        raise AssertionError(f"the balances moved by other than what was billed: {checks}")
    if checks["counted"] != checks["ai_cost"]:
        raise AssertionError(f"the budget counters differ from the ledger: {checks}")
    details = {
        "concurrency": config.concurrency,
        "accounts": count,
        "checks": {k: str(v) if isinstance(v, Decimal) else v for k, v in checks.items()},
        "server_cpu_us_per_request": {
            "recordUsage": ours_cpu.us_per_request,
            "trivial query": trivial_cpu.us_per_request,
        },
        "tuning": list(env.tuning),
    }
    return AgainstTrivial(
        f"single recordUsage, {name} (HTTP, c={config.concurrency}) vs trivial query",
        "req/s",
        ours,
        trivial,
        TARGET_RATIO,
        details=details,
    )


async def _checks(url: str, org_id: uuid.UUID, account_ids: Sequence[uuid.UUID]) -> dict[str, Any]:
    """The accounts' usage entries and their sums, how far their balances moved from the
    top-up, and what their budgets' counters counted."""
    ids = list(account_ids)
    connection = await asyncpg.connect(plain_url(url))
    try:
        entries, billed, ai_cost = await connection.fetchrow(
            "SELECT count(*), coalesce(sum(amount), 0), coalesce(sum(ai_cost), 0)"
            " FROM ledger_entries WHERE organization_id = $1 AND account_id = ANY($2::uuid[])"
            " AND type = 'USAGE_CHARGE'",
            org_id,
            ids,
        )
        balance = await connection.fetchval(
            "SELECT coalesce(sum(balance), 0) FROM account_balances"
            " WHERE organization_id = $1 AND account_id = ANY($2::uuid[])",
            org_id,
            ids,
        )
        counted = await connection.fetchval(
            "SELECT coalesce(sum(c.spent), 0) FROM budget_counters c"
            " JOIN budgets b ON b.id = c.budget_id"
            " WHERE b.organization_id = $1 AND b.scope_kind = 'ACCOUNT'"
            " AND b.scope_id = ANY($2::uuid[])",
            org_id,
            ids,
        )
    finally:
        await connection.close()
    return {
        "entries": int(entries),
        "billed": Decimal(billed),
        "balances_moved_by": TOP_UP * len(ids) - Decimal(balance),
        "ai_cost": Decimal(ai_cost),
        "counted": Decimal(counted),
    }


def main() -> None:
    http_main("record_budgeted", __doc__, measure)


if __name__ == "__main__":
    main()
