"""Budget authorisation, one ``authorizeUsage`` per request over HTTP, at concurrency 16, in
two scenarios: every client on one hot budget (one account), and the clients spread over 16
accounts with a budget each (requests round robin: no counter row shared by requests in
flight, bar the odd overlap).

Each budgeted account has a hard-capped MONTH budget of 1,000,000.00 USD, so every estimate
(0.0010 USD, caller-priced: no catalog needed) is held against a real counter and none is
refused during the run. Measured in alternating slices, per scenario, against:

- the trivial query ``{ me { subject } }`` in the same run — the target (DESIGN.md): at least
  0.5x its throughput, a p99 at most 2x its p99;
- the same hold statement (``reserve_budget_holds``, with the arguments the app computes)
  through raw asyncpg in this process, c=16, one pool connection per worker: what the database
  and the row lock allow without HTTP, GraphQL or the domain's Python (reported);
- a bare Starlette route doing one primary-key lookup of the account (the first ceiling, hot
  scenario only, reported).

Both HTTP servers run under the same uvicorn configuration in their own processes and get the
very same request bytes (a GraphQL POST body, a fresh idempotency key each).

    python -m bench.authorize [--duration 3] [--rounds 2] [--concurrency 16] [--tuning …]
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson

from bench.apps import BARE_AUTHORIZE_PATH
from bench.db import TOP_UP, BenchTenant
from bench.env import BenchEnv
from bench.hot_path import (
    TARGET_RATIO,
    AgainstTrivial,
    Reported,
    ServerCpu,
    alternate,
    closed_loop,
    http_slice,
    summary,
    trivial_plan,
)
from bench.httpbench import HttpConfig, http_main
from bench.stats import Comparison
from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.billing import budgets, directory, ledger, reservation_repository, reservations
from costgraph.billing.commands import Payment
from costgraph.billing.directory import OrgContext
from costgraph.billing.periods import Period
from costgraph.billing.reservation_repository import HoldRequest, _arguments
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.kernel.clock import utcnow
from costgraph.kernel.database_url import plain_url
from costgraph.models.scoping import bind_tenant

BUDGET_LIMIT = Decimal("1000000.00")
ESTIMATED_COST = "0.0010"
#: (name, budgeted accounts the requests go round robin over).
SCENARIOS = (("one hot budget", 1), ("16 accounts", 16))

AUTHORIZE_MUTATION = """
mutation Authorize($input: AuthorizeUsageInput!) {
  authorizeUsage(input: $input) {
    __typename
    ... on UsageAuthorized { replayed reservation { id state aiCost currency } }
    ... on UserError { code message field }
  }
}
"""
EXPECT = b'"UsageAuthorized"'


class EstimateFactory:
    """Each request a fresh estimate (a new idempotency key), round robin over the accounts."""

    def __init__(self, account_ids: Sequence[uuid.UUID], side: str) -> None:
        self.account_ids = [str(a) for a in account_ids]
        self.run = f"{uuid.uuid4().hex[:8]}-{side}"  # keys unique across runs and sides
        self.count = 0

    def body_for(self, index: int) -> bytes:
        self.count += 1
        estimate = {
            "idempotencyKey": f"auth-{self.run}-{self.count:08d}",
            "accountId": self.account_ids[self.count % len(self.account_ids)],
            "provider": "openai",
            "model": "gpt-4o-mini",
            "estimatedInputTokens": 1000,
            "estimatedOutputTokens": 200,
            "estimatedCost": ESTIMATED_COST,
            "estimatedCostCurrency": "USD",
        }
        return orjson.dumps({"query": AUTHORIZE_MUTATION, "variables": {"input": estimate}})


async def budgeted_accounts(
    settings: Settings, database_url: str, tenant: BenchTenant, count: int = 1
) -> list[uuid.UUID]:
    """New prepaid, topped-up accounts of the tenant, each with a hard-capped MONTH budget.

    Accounts of their own so the budgets do not change what the other benches of a run
    measure. Through the domain functions, as the API would; one transaction.
    """
    engine = create_engine(database_url, settings)
    made: list[uuid.UUID] = []
    try:
        sessions = create_sessionmaker(engine)
        async with sessions() as session, session.begin():
            org = tenant.org
            bind_tenant(session.sync_session, org.id)
            for _ in range(count):
                account = await directory.create_account(
                    session, org, tenant.customer_id, f"authorize {uuid.uuid4().hex[:8]}", False
                )
                top_up = Payment(f"bench-top-up-{account.id}", account.id, TOP_UP, "USD")
                await ledger.deposit(session, org, top_up, AppState.limits_of(settings))
                spec = budgets.BudgetSpec(
                    scope=Scope(ScopeKind.ACCOUNT, account.id),
                    period=Period.MONTH,
                    limit=BUDGET_LIMIT,
                    currency="USD",
                    hard_cap=True,
                )
                await budgets.set_budget(session, org, spec)
                made.append(account.id)
    finally:
        await engine.dispose()
    return made


class RawHolds:
    """``reserve_budget_holds`` as the app sends it, straight through an asyncpg pool.

    The hold of each account is worked out once by the domain's own planner (pricing, scopes,
    budget versions, counter amounts: the statement's 22 arguments); each call then changes
    only the key, the request hash and the clock.
    """

    def __init__(self, settings: Settings, url: str, org: OrgContext, run: str) -> None:
        self.settings = settings
        self.url = url
        self.org = org
        self.run = run
        self.plans: list[HoldRequest] = []
        self.count = 0
        self.pool: Any = None

    async def open(self, account_ids: Sequence[uuid.UUID], concurrency: int) -> None:
        engine = create_engine(self.url, self.settings)
        limits = AppState.limits_of(self.settings)
        try:
            async with create_sessionmaker(engine)() as session:
                bind_tenant(session.sync_session, self.org.id)
                for account_id in account_ids:
                    request = reservations.EstimateRequest(
                        idempotency_key="plan",
                        account_id=account_id,
                        provider="openai",
                        model="gpt-4o-mini",
                        input_tokens=1000,
                        output_tokens=200,
                        estimated_cost=Decimal(ESTIMATED_COST),
                        estimated_cost_currency="USD",
                    )
                    now = utcnow()
                    plan = await reservations._plan(
                        session,
                        self.org,
                        request,
                        request.as_usage(now),
                        b"",
                        limits,
                        now,
                        fresh_budgets=True,
                    )
                    self.plans.append(plan.hold)
        finally:
            await engine.dispose()
        self.pool = await asyncpg.create_pool(
            plain_url(self.url), min_size=concurrency, max_size=concurrency
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def hold(self, index: int) -> None:
        self.count += 1
        now = utcnow()
        template = self.plans[self.count % len(self.plans)]
        hold = replace(
            template,
            now=now,
            expires_at=now + (template.expires_at - template.now),
            idempotency_key=f"raw-{self.run}-{self.count:08d}",
            request_hash=secrets.token_bytes(32),
        )
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(reservation_repository.RESERVE_SQL, *_arguments(hold))
        if row is None or row[1]:
            raise AssertionError(f"the raw hold was not made: {row}")


async def measure(env: BenchEnv, config: HttpConfig) -> list[Comparison]:
    rows: list[Comparison] = []
    for name, count in SCENARIOS:
        rows.extend(await _scenario(env, config, name, count))
    return rows


async def _scenario(env: BenchEnv, config: HttpConfig, name: str, count: int) -> list[Comparison]:
    account_ids = await budgeted_accounts(env.settings, env.url, env.tenant, count)
    before = await _held(env.url, env.tenant.org.id, account_ids)
    ours_estimates = EstimateFactory(account_ids, "ours")
    ceiling_estimates = EstimateFactory(account_ids, "ceiling")
    raw = RawHolds(env.settings, env.url, env.tenant.org, uuid.uuid4().hex[:8])
    await raw.open(account_ids, config.concurrency)
    headers = {"Authorization": f"Bearer {env.token}"}
    ours_cpu, trivial_cpu = ServerCpu(env.ours_pid), ServerCpu(env.ours_pid)
    ours_label = f"authorizeUsage over HTTP, {name}"
    trivial_label = "{ me { subject } } over HTTP"
    raw_label = "reserve_budget_holds via raw asyncpg"
    bare_label = "bare Starlette + asyncpg PK lookup"
    sides = [
        (
            ours_label,
            ours_cpu.slice(
                http_slice(
                    env.ours_port,
                    config.plan("/graphql", ours_estimates.body_for, EXPECT, headers),
                    ours_label,
                )
            ),
        ),
        (
            trivial_label,
            trivial_cpu.slice(http_slice(env.ours_port, trivial_plan(env, config), trivial_label)),
        ),
        (raw_label, lambda: closed_loop(raw.hold, config, raw_label)),
    ]
    if count == 1:
        bare = config.plan(BARE_AUTHORIZE_PATH, ceiling_estimates.body_for, EXPECT, headers)
        sides.append((bare_label, http_slice(env.bare_port, bare, bare_label)))
    try:
        measured = await alternate(sides, config.rounds)
    finally:
        await raw.close()
    after = await _held(env.url, env.tenant.org.id, account_ids)
    checks = {
        "reservations": after[0] - before[0],
        "requests_sent": ours_estimates.count,
        "raw_holds": raw.count,
        "ceiling_requests_sent": ceiling_estimates.count,
        "reserved": str(after[1]),
    }
    ours, trivial, raw_sql = measured[ours_label], measured[trivial_label], measured[raw_label]
    # A failed request (counted in ours.errors, which fails the row) made no reservation.
    if not 0 <= ours_estimates.count + raw.count - checks["reservations"] <= ours.errors:
        raise AssertionError(f"reservations made differ from requests sent: {checks}")
    details = {
        "concurrency": config.concurrency,
        "accounts": count,
        "checks": checks,
        "budget": {"period": "MONTH", "limit": str(BUDGET_LIMIT), "hard_cap": True},
        "server_cpu_us_per_request": {
            "authorizeUsage": ours_cpu.us_per_request,
            "trivial query": trivial_cpu.us_per_request,
        },
        "raw_sql": summary(raw_sql),
        "trivial_query": summary(trivial),
        "tuning": list(env.tuning),
    }
    workload = f"authorizeUsage, {name} (HTTP, c={config.concurrency})"
    rows: list[Comparison] = [
        AgainstTrivial(
            f"{workload} vs trivial query", "req/s", ours, trivial, TARGET_RATIO, details=details
        ),
        Reported(f"{workload} vs raw reserve SQL", "req/s", ours, raw_sql, details=details),
    ]
    if count == 1:
        rows.append(
            Reported(
                f"{workload} vs bare PK lookup",
                "req/s",
                ours,
                measured[bare_label],
                details=details,
            )
        )
    return rows


async def _held(
    url: str, org_id: uuid.UUID, account_ids: Sequence[uuid.UUID]
) -> tuple[int, Decimal]:
    """The accounts' reservations, and what their budget counters hold reserved."""
    connection = await asyncpg.connect(plain_url(url))
    try:
        reservations = await connection.fetchval(
            "SELECT count(*) FROM reservations"
            " WHERE organization_id = $1 AND account_id = ANY($2::uuid[])",
            org_id,
            list(account_ids),
        )
        reserved = await connection.fetchval(
            "SELECT coalesce(sum(c.reserved), 0) FROM budget_counters c"
            " JOIN budgets b ON b.id = c.budget_id"
            " WHERE b.organization_id = $1 AND b.scope_kind = 'ACCOUNT'"
            " AND b.scope_id = ANY($2::uuid[])",
            org_id,
            list(account_ids),
        )
    finally:
        await connection.close()
    return int(reservations), Decimal(reserved)


def main() -> None:
    http_main("authorize", __doc__, measure)


if __name__ == "__main__":
    main()
