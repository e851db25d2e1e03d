"""PostgreSQL stopped under write load and started again, behind a running app.

The test runs its own PostgreSQL (tests/own_postgres.py) and the app in process with its real
pool. Writers keep recording usage while the server is stopped — once with ``-m fast``
(backends terminated), once with ``-m immediate`` (a crash) — and started again. Checked:

- every answer is a success or a clean, typed ``UNAVAILABLE`` with a retry hint: no HTTP 500,
  no ``INTERNAL``; ``/readyz`` answers 503 while the database is away;
- the same app (same pool, no restart) writes again once the server is back;
- no partial writes: each idempotency key has one entry or none, and the account balance and
  the budget's counter equal the sums over the ledger; re-sending every unanswered write with
  its key leaves each written exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.kernel.clock import utcnow
from costgraph.kernel.database_url import plain_url
from tests.conftest import Tenant, app_state, make_tenant
from tests.own_postgres import OwnPostgres, migrated_database, own_postgres

RECORD_USAGE = """
mutation($input: UsageEventInput!) {
  recordUsage(input: $input) {
    __typename
    ... on UsageRecorded { replayed entry { id } }
    ... on UserError { code message }
  }
}"""
LEDGER = "query { ledger(first: 1) { nodes { id } } }"
SET_BUDGET = """mutation($input: BudgetInput!) { setBudget(input: $input) { id } }"""


@dataclass
class Outcomes:
    ok: set[str] = field(default_factory=set)
    unavailable: set[str] = field(default_factory=set)
    bad: list[str] = field(default_factory=list)  # anything else: the test fails on it


@dataclass
class Running:
    """The app in process on the test's own PostgreSQL."""

    http: httpx.AsyncClient
    state: AppState
    database_url: str


@pytest.fixture(scope="module")
def postgres() -> Any:
    with own_postgres() as server:
        yield server


@contextlib.asynccontextmanager
async def app_on(server: OwnPostgres, settings: Settings) -> AsyncIterator[Running]:
    url = await migrated_database(server, "costgraph_faults")
    own = settings.model_copy(
        update={
            "database_url": url,
            "db_connect_timeout_seconds": 2.0,
            "db_pool_size": 4,
            # The background jobs run too: they must live through the outage.
            "rollup_interval_seconds": 0.5,
            "alerts_worker": True,
        }
    )
    application = create_app(own, url)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://faults") as http:
            yield Running(http, app_state(application), url)


#: One event time for the run (the business clock at the session's start): a re-sent write
#: is then the same request (a replay).
AT = utcnow().replace(microsecond=0).isoformat()


def _event(tenant: Tenant, key: str) -> dict[str, Any]:
    return {
        "idempotencyKey": key,
        "accountId": str(tenant.account_id),
        "occurredAt": AT,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputTokens": 1000,
        "outputTokens": 100,
        "providerCost": "0.001000000000",
        "providerCurrency": "USD",
    }


def _judge(outcomes: Outcomes, key: str, response: httpx.Response) -> None:
    if response.status_code != 200:
        outcomes.bad.append(f"{key}: HTTP {response.status_code} {response.text[:300]}")
        return
    body = response.json()
    result = (body.get("data") or {}).get("recordUsage")
    if result and result["__typename"] == "UsageRecorded" and not body.get("errors"):
        outcomes.ok.add(key)
        return
    errors = body.get("errors") or []
    codes = {e.get("extensions", {}).get("code") for e in errors}
    clean = all(
        e.get("extensions", {}).get("retryAfter", 0) >= 1
        and "Traceback" not in e["message"]
        and "asyncpg" not in e["message"]
        for e in errors
    )
    if codes == {"UNAVAILABLE"} and clean:
        outcomes.unavailable.add(key)
    else:
        outcomes.bad.append(f"{key}: {body}")


async def _writer(
    http: httpx.AsyncClient, tenant: Tenant, outcomes: Outcomes, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        key = f"f-{uuid.uuid4().hex}"
        response = await http.post(
            "/graphql",
            json={"query": RECORD_USAGE, "variables": {"input": _event(tenant, key)}},
            headers={"Authorization": f"Bearer {tenant.token}"},
        )
        _judge(outcomes, key, response)
        await asyncio.sleep(0.005)


async def _until(predicate: Any, seconds: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_postgres_stopped_under_load_and_started_again(
    postgres: OwnPostgres, settings: Settings, mint: Any
) -> None:
    async with app_on(postgres, settings) as running:
        http, state, database_url = running.http, running.state, running.database_url
        tenant = await make_tenant(state, http, mint)
        auth = {"Authorization": f"Bearer {tenant.token}"}
        budget = await tenant.gql(
            SET_BUDGET,
            {
                "input": {
                    "scope": {"kind": "ACCOUNT", "id": str(tenant.account_id)},
                    "period": "MONTH",
                    "limit": "1000000.00",
                    "currency": "USD",
                    "hardCap": False,
                }
            },
        )
        assert "errors" not in budget, budget
        outcomes = Outcomes()

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        for mode in ("fast", "immediate"):
            stop = asyncio.Event()
            writers = [asyncio.create_task(_writer(http, tenant, outcomes, stop)) for _ in range(6)]
            ok_before = len(outcomes.ok)
            await _until(lambda n=ok_before: _more(outcomes, n))  # writing under load
            failed_before = len(outcomes.unavailable)
            await asyncio.to_thread(postgres.stop, mode)
            await _until(lambda n=failed_before: _more_failed(outcomes, n + 5))

            readyz = await http.get("/readyz")
            assert readyz.status_code == 503
            assert int(readyz.headers["retry-after"]) >= 1
            query = (await http.post("/graphql", json={"query": LEDGER}, headers=auth)).json()
            assert [e["extensions"]["code"] for e in query["errors"]] == ["UNAVAILABLE"]

            await asyncio.to_thread(postgres.start)
            await _until(ready)  # the same pool: no restart of the app
            ok_after = len(outcomes.ok)
            await _until(lambda n=ok_after: _more(outcomes, n + 5))
            stop.set()
            await asyncio.gather(*writers)

        assert outcomes.bad == []
        assert outcomes.ok and outcomes.unavailable

        # The rollup job in the app lived through both outages: it runs again.
        runs = await _rollup_runs(database_url)
        await _until(lambda: _rollup_ran_since(database_url, runs))

        written_before = await _keys(database_url, outcomes.ok | outcomes.unavailable)
        # Every answered success is in the ledger, exactly once.
        assert all(written_before.get(k) == 1 for k in outcomes.ok)
        # An unanswered write is there once or not at all (a COMMIT cut off is either).
        assert all(written_before.get(k, 0) in (0, 1) for k in outcomes.unavailable)
        await _sums_agree(database_url, tenant)

        # The client's retry: every unanswered key again, same body.
        replayed = 0
        for key in sorted(outcomes.unavailable):
            response = await http.post(
                "/graphql",
                json={"query": RECORD_USAGE, "variables": {"input": _event(tenant, key)}},
                headers=auth,
            )
            result = response.json()["data"]["recordUsage"]
            assert result["__typename"] == "UsageRecorded", result
            replayed += result["replayed"]
        written_after = await _keys(database_url, outcomes.ok | outcomes.unavailable)
        assert all(count == 1 for count in written_after.values())
        assert set(written_after) == outcomes.ok | outcomes.unavailable
        assert replayed == sum(1 for k in outcomes.unavailable if k in written_before)
        await _sums_agree(database_url, tenant)


async def _more(outcomes: Outcomes, count: int) -> bool:
    return len(outcomes.ok) > count


async def _more_failed(outcomes: Outcomes, count: int) -> bool:
    return len(outcomes.unavailable) > count


async def _rollup_runs(database_url: str) -> int:
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        runs: int = await connection.fetchval("SELECT coalesce(sum(runs), 0) FROM rollup_state")
    finally:
        await connection.close()
    return runs


async def _rollup_ran_since(database_url: str, runs: int) -> bool:
    return await _rollup_runs(database_url) > runs


async def _keys(database_url: str, keys: set[str]) -> dict[str, int]:
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        rows = await connection.fetch(
            "SELECT idempotency_key, count(*) AS n FROM ledger_entries "
            "WHERE idempotency_key = ANY($1::text[]) GROUP BY idempotency_key",
            list(keys),
        )
    finally:
        await connection.close()
    return {row["idempotency_key"]: row["n"] for row in rows}


async def _sums_agree(database_url: str, tenant: Tenant) -> None:
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        balance = await connection.fetchval(
            "SELECT balance FROM account_balances WHERE account_id = $1", tenant.account_id
        )
        ledger_balance = await connection.fetchval(
            "SELECT coalesce(sum(balance_delta), 0) FROM ledger_entries WHERE account_id = $1",
            tenant.account_id,
        )
        spent = await connection.fetchval(
            "SELECT coalesce(sum(spent), 0) FROM budget_counters c JOIN budgets b "
            "ON b.id = c.budget_id WHERE b.organization_id = $1",
            tenant.org.id,
        )
        ai_cost = await connection.fetchval(
            "SELECT coalesce(sum(ai_cost), 0) FROM ledger_entries "
            "WHERE organization_id = $1 AND type = 'USAGE_CHARGE'",
            tenant.org.id,
        )
        keys = await connection.fetchval(
            "SELECT count(*) FROM ledger_keys WHERE organization_id = $1", tenant.org.id
        )
        entries = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE organization_id = $1", tenant.org.id
        )
    finally:
        await connection.close()
    assert Decimal(balance) == Decimal(ledger_balance)
    assert Decimal(spent) == Decimal(ai_cost)
    assert keys == entries
