"""The one-statement hold behind ``authorizeUsage``: budgets changed behind this process's
back, one idempotency key raced, a hold inside a caller's transaction."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, text

from costgraph.app.state import AppState
from costgraph.billing import reservation_repository, reservations, statement_pool
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import BudgetLimitReached
from costgraph.models.scoping import bind_tenant
from tests.conftest import Tenant, raw_connection
from tests.subscriptions_support import subscribed
from tests.test_budgets import AUTHORIZE, RELEASE, SET_BUDGET, STATUS, authorize_input, set_budget
from tests.test_subscriptions import Live, live
from tests.test_subscriptions_state import BUDGET_STATUS_CHANGED, post

__all__ = ["live"]  # the module-scoped server fixture


async def authorize(tenant: Tenant, cost: str, **overrides: str) -> dict[str, object]:
    body = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, cost, **overrides)})
    result: dict[str, object] = body["data"]["authorizeUsage"]
    return result


async def test_budgets_changed_elsewhere_are_enforced_at_once(
    tenant: Tenant, database_url: str
) -> None:
    budget = (await set_budget(tenant, limit="10.00"))["data"]["setBudget"]
    assert (await authorize(tenant, "1.00"))["__typename"] == "UsageAuthorized"
    assert reservation_repository.BUDGETS.get(tenant.org.id), "this process keeps a copy"
    async with raw_connection(database_url) as connection:  # another instance lowers the cap
        await connection.execute(
            "UPDATE budgets SET limit_amount = 1.50 WHERE id = $1", uuid.UUID(budget["id"])
        )
    refused = await authorize(tenant, "1.00")
    assert refused["__typename"] == "BudgetLimitReached", refused
    assert refused["budgetId"] == budget["id"] and Decimal(str(refused["spent"])) == 1
    async with raw_connection(database_url) as connection:  # and adds an organisation budget
        await connection.execute(
            "INSERT INTO budgets (organization_id, scope_kind, scope_id, period, limit_amount,"
            " currency, basis, hard_cap, thresholds)"
            " VALUES ($1, 'ORGANIZATION', $1, 'MONTH', 0.20, 'USD', 'AI_COST', true, '{100}')",
            tenant.org.id,
        )
    too_big = await authorize(tenant, "0.30")
    assert too_big["code"] == "VALIDATION_FAILED" and "could ever allow" in str(too_big["message"])
    status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
    assert Decimal(status["reserved"]) == Decimal("1.00"), "refusals held nothing"


async def test_one_key_raced_holds_once(tenant: Tenant) -> None:
    budget = (await set_budget(tenant, limit="10.00"))["data"]["setBudget"]
    same = authorize_input(tenant, "1.00")
    bodies = await asyncio.gather(*(tenant.gql(AUTHORIZE, {"input": same}) for _ in range(8)))
    results = [body["data"]["authorizeUsage"] for body in bodies]
    assert {r["__typename"] for r in results} == {"UsageAuthorized"}, results
    assert len({r["reservation"]["id"] for r in results}) == 1
    assert sorted(r["replayed"] for r in results) == [False] + [True] * 7
    status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
    assert Decimal(status["reserved"]) == Decimal("1.00")
    changed = await authorize(tenant, "2.00", idempotencyKey=same["idempotencyKey"])
    assert changed["code"] == "IDEMPOTENCY_CONFLICT"


async def test_a_refusal_inside_a_transaction_leaves_it_usable(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    await set_budget(tenant, limit="1.00")
    first = reservations.EstimateRequest(
        idempotency_key=f"tx-{uuid.uuid4().hex}",
        account_id=tenant.account_id,
        provider="openai",
        model="gpt-4o",
        estimated_cost=Decimal("0.80"),
        estimated_cost_currency="USD",
    )
    second = replace(first, idempotency_key=f"tx-{uuid.uuid4().hex}")
    session = state.sessions()
    bind_tenant(session.sync_session, tenant.org.id)
    try:
        async with session.begin():
            await session.execute(text("SELECT 1"))  # the transaction is open from here
            held, replayed = await reservations.authorize(
                session, tenant.org, first, state.limits, utcnow()
            )
            assert not replayed
            with pytest.raises(BudgetLimitReached):
                await reservations.authorize(session, tenant.org, second, state.limits, utcnow())
            again, replayed = await reservations.authorize(
                session, tenant.org, first, state.limits, utcnow()
            )
            assert replayed and again.id == held.id, "the transaction is still usable"
    finally:
        await session.close()
    async with raw_connection(database_url) as connection:
        count = await connection.fetchval(
            "SELECT count(*) FROM reservations WHERE organization_id = $1", tenant.org.id
        )
    assert count == 1, "the first hold committed with the transaction, the refused one not"


async def test_budget_status_follows_holds_and_terms(live: Live, tenant: Tenant) -> None:
    budget = (await set_budget(tenant, limit="1.00"))["data"]["setBudget"]
    variables = {"id": budget["id"]}
    async with subscribed(live.port, tenant.token, BUDGET_STATUS_CHANGED, variables) as client:
        first = (await client.next_data("1"))["budgetStatusChanged"]
        assert Decimal(first["reserved"]) == 0

        held = (await post(live, tenant, AUTHORIZE, {"input": authorize_input(tenant, "0.30")}))[
            "authorizeUsage"
        ]
        assert held["__typename"] == "UsageAuthorized", held
        reserved = (await client.next_data("1"))["budgetStatusChanged"]
        assert Decimal(reserved["reserved"]) == Decimal("0.30")
        assert Decimal(reserved["remaining"]) == Decimal("0.70")

        released = await post(live, tenant, RELEASE, {"id": held["reservation"]["id"]})
        assert released["releaseReservation"]["state"] == "RELEASED"
        freed = (await client.next_data("1"))["budgetStatusChanged"]
        assert Decimal(freed["reserved"]) == 0

        terms = {
            "scope": {"kind": "ACCOUNT", "id": str(tenant.account_id)},
            "period": "MONTH",
            "limit": "2.00",
            "currency": "USD",
            "hardCap": True,
        }
        await post(live, tenant, SET_BUDGET, {"input": terms})
        raised = (await client.next_data("1"))["budgetStatusChanged"]
        assert Decimal(raised["remaining"]) == Decimal("2.00")


async def test_first_holds_of_a_period_race_to_create_its_counter(tenant: Tenant) -> None:
    budget = (await set_budget(tenant, limit="100.00"))["data"]["setBudget"]
    bodies = await asyncio.gather(
        *(tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "1.00")}) for _ in range(24))
    )
    kinds = [body["data"]["authorizeUsage"]["__typename"] for body in bodies]
    assert kinds == ["UsageAuthorized"] * 24, bodies
    status = (await tenant.gql(STATUS, {"id": budget["id"]}))["data"]["budgetStatus"]
    assert Decimal(status["reserved"]) == Decimal("24.00")


async def test_an_authorisation_takes_one_connection_at_a_time(
    tenant: Tenant, state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its lookups, a counter it opens and its hold take turns on one connection at a time —
    the lookups and the counter on the engine's pool, the hold on the statement pool — so
    the requests in flight never need more connections than there are of them; once warm,
    the lookups come from this process's copies and only the hold takes a connection."""
    await set_budget(tenant, limit="10.00")
    engine = state.engine.sync_engine
    pool = statement_pool.pool_of(state.engine)
    assert pool is not None, "the app's engine has a statement pool"
    seen = {"out": 0, "most": 0, "engine": 0, "statement": 0}

    def taken(source: str) -> None:
        seen[source] += 1
        seen["out"] += 1
        seen["most"] = max(seen["most"], seen["out"])

    def given_back(*_: object) -> None:
        seen["out"] -= 1

    acquire, release = pool.acquire, pool.release

    async def counted_acquire() -> Any:
        connection = await acquire()
        taken("statement")
        return connection

    async def counted_release(connection: Any) -> None:
        given_back()
        await release(connection)

    def checkout(*_: object) -> None:
        taken("engine")

    monkeypatch.setattr(pool, "acquire", counted_acquire)
    monkeypatch.setattr(pool, "release", counted_release)
    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", given_back)
    try:
        cold = await authorize(tenant, "1.00")  # copies read, the period's counter opened
        cold_seen = dict(seen)
        seen.update(most=0, engine=0, statement=0)
        warm = await authorize(tenant, "1.00")
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", given_back)
    assert cold["__typename"] == warm["__typename"] == "UsageAuthorized", (cold, warm)
    assert cold_seen["most"] == 1 and cold_seen["out"] == 0, cold_seen
    assert cold_seen["statement"] == 1, cold_seen
    assert seen == {"out": 0, "most": 1, "engine": 0, "statement": 1}, seen
