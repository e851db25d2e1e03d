"""Budget authorisation, one ``authorizeUsage`` per request over HTTP, against a bare Starlette
route doing one primary-key lookup (the account) with asyncpg.

The tenant gets an account of its own with a hard-capped MONTH budget of 1,000,000.00 USD, so
every estimate (0.0010 USD, caller-priced: no catalog needed) is held against a real counter
and none is refused during the run. Both servers run under the same uvicorn configuration in
their own processes and get the very same request bytes (a GraphQL POST body, a fresh
idempotency key each), from the loopback load generator at concurrency 16; they are measured
in alternating slices. Target (DESIGN.md): throughput >= 0.5x the ceiling and p99 <= 5 ms.

    python -m bench.authorize [--duration 3] [--rounds 2] [--concurrency 16] [--tuning …]
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

import asyncpg  # type: ignore[import-untyped]
import orjson

from bench.apps import BARE_AUTHORIZE_PATH
from bench.db import TOP_UP, BenchTenant
from bench.env import BenchEnv, bench_env
from bench.httpbench import HttpConfig, http_arguments
from bench.loadgen import alternate
from bench.report import standalone
from bench.stats import Comparison
from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.billing import budgets, directory, ledger
from costgraph.billing.commands import Payment
from costgraph.billing.periods import Period
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.kernel.database_url import plain_url
from costgraph.models.scoping import bind_tenant

TARGET_RATIO = 0.5
TARGET_P99_MS = 5.0
BUDGET_LIMIT = Decimal("1000000.00")
ESTIMATED_COST = "0.0010"

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


@dataclass(frozen=True, slots=True)
class AuthorizeComparison(Comparison):
    """Throughput against the ceiling (``target_ratio``) and ours' p99 under a bound."""

    p99_bound_ms: float = TARGET_P99_MS

    @property
    def passed(self) -> bool:
        return Comparison.passed.fget(self) and self.ours.p99_ms <= self.p99_bound_ms  # type: ignore[attr-defined]

    @property
    def target(self) -> str:
        return f"{Comparison.target.fget(self)}, p99 <= {self.p99_bound_ms:g} ms"  # type: ignore[attr-defined]


class EstimateFactory:
    """Each request a fresh estimate (a new idempotency key) on the budgeted account."""

    def __init__(self, account_id: uuid.UUID, side: str) -> None:
        self.account_id = str(account_id)
        self.run = f"{uuid.uuid4().hex[:8]}-{side}"  # keys unique across runs and sides
        self.count = 0

    def body_for(self, index: int) -> bytes:
        self.count += 1
        estimate = {
            "idempotencyKey": f"auth-{self.run}-{self.count:08d}",
            "accountId": self.account_id,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "estimatedInputTokens": 1000,
            "estimatedOutputTokens": 200,
            "estimatedCost": ESTIMATED_COST,
            "estimatedCostCurrency": "USD",
        }
        return orjson.dumps({"query": AUTHORIZE_MUTATION, "variables": {"input": estimate}})


async def budgeted_account(settings: Settings, database_url: str, tenant: BenchTenant) -> uuid.UUID:
    """A new prepaid, topped-up account of the tenant with a hard-capped MONTH budget.

    Its own account so the budget does not change what the other benches of a run measure.
    Through the domain functions, as the API would; one transaction.
    """
    engine = create_engine(database_url, settings)
    try:
        sessions = create_sessionmaker(engine)
        async with sessions() as session, session.begin():
            org = tenant.org
            bind_tenant(session.sync_session, org.id)
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
            account_id: uuid.UUID = account.id
    finally:
        await engine.dispose()
    return account_id


async def measure(env: BenchEnv, config: HttpConfig) -> list[Comparison]:
    account_id = await budgeted_account(env.settings, env.url, env.tenant)
    before = await _held(env.url, env.tenant.org.id, account_id)
    ours_estimates = EstimateFactory(account_id, "ours")
    ceiling_estimates = EstimateFactory(account_id, "ceiling")
    headers = {"Authorization": f"Bearer {env.token}"}
    ours, ceiling = await alternate(
        [
            (
                "authorizeUsage over HTTP",
                env.ours_port,
                config.plan("/graphql", ours_estimates.body_for, EXPECT, headers),
            ),
            (
                "bare Starlette + asyncpg PK lookup",
                env.bare_port,
                config.plan(BARE_AUTHORIZE_PATH, ceiling_estimates.body_for, EXPECT, headers),
            ),
        ],
        config.rounds,
    )
    after = await _held(env.url, env.tenant.org.id, account_id)
    checks = {
        "reservations": after[0] - before[0],
        "requests_sent": ours_estimates.count,
        "ceiling_requests_sent": ceiling_estimates.count,
        "reserved": str(after[1]),
    }
    if checks["reservations"] != ours_estimates.count:
        raise AssertionError(f"reservations made differ from requests sent: {checks}")
    return [
        AuthorizeComparison(
            f"budget authorisation (HTTP, c={config.concurrency})",
            "req/s",
            ours,
            ceiling,
            TARGET_RATIO,
            details={
                "concurrency": config.concurrency,
                "checks": checks,
                "budget": {"period": "MONTH", "limit": str(BUDGET_LIMIT), "hard_cap": True},
                "p99_target_ms": TARGET_P99_MS,
                "tuning": list(env.tuning),
            },
        )
    ]


async def _held(url: str, org_id: uuid.UUID, account_id: uuid.UUID) -> tuple[int, Decimal]:
    """The account's reservations, and what its budget counters hold reserved."""
    connection = await asyncpg.connect(plain_url(url))
    try:
        reservations = await connection.fetchval(
            "SELECT count(*) FROM reservations WHERE organization_id = $1 AND account_id = $2",
            org_id,
            account_id,
        )
        reserved = await connection.fetchval(
            "SELECT coalesce(sum(c.reserved), 0) FROM budget_counters c"
            " JOIN budgets b ON b.id = c.budget_id"
            " WHERE b.organization_id = $1 AND b.scope_kind = 'ACCOUNT' AND b.scope_id = $2",
            org_id,
            account_id,
        )
    finally:
        await connection.close()
    return int(reservations), Decimal(reserved)


async def run(
    server_url: str, config: HttpConfig | None = None, tuning: tuple[str, ...] = ()
) -> list[Comparison]:
    async with bench_env(server_url, tuning) as env:
        return await measure(env, config or HttpConfig())


def main() -> None:
    config, tuning = http_arguments(__doc__.split("\n\n")[0])
    standalone("authorize", lambda url: run(url, config, tuning))


if __name__ == "__main__":
    main()
