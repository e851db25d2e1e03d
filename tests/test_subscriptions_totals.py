"""Live totals read from the rollups, the tail and the edges equal a plain SUM over the ledger.

Every scope kind, two currencies, payments and a reprice correction in the same hours as
usage, entries before and after rollup runs (the job runs only when the test says so), and
periods whose bounds cut hours.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from bench.live_totals import plain_sum
from costgraph.app.state import AppState
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.models.scoping import bind_tenant
from costgraph.subscriptions.totals import UsageTotals, period_totals
from tests.conftest import Tenant, raw_connection
from tests.dates import month, rfc
from tests.pnl_support import (
    CREATE_ACCOUNT,
    CREATE_CUSTOMER,
    CREATE_USER,
    DEPOSIT,
    catch_up,
    key,
    usage_event,
    write,
)
from tests.test_pricing_catalog import SET_RATE, provider_name, record, set_price
from tests.test_pricing_reprice import REPRICE


def books_month() -> tuple[datetime, datetime]:
    """The month before last, where the books are kept."""
    return (month(-2), month(-1))


def cut() -> tuple[datetime, datetime]:
    """Bounds that cut hours."""
    return (month(-2, 3, 10, 30), month(-2, 4, 8, 30))


def inside_an_hour() -> tuple[datetime, datetime]:
    """A period inside one hour (no whole hour at all)."""
    return (month(-2, 3, 10, 20), month(-2, 3, 10, 45))


def shown(rows: list[UsageTotals]) -> list[tuple[Any, ...]]:
    """Rows as the payload shows them (decimals by their text, so the scale counts too)."""
    return [
        (
            r.currency,
            r.entries,
            r.input_tokens,
            r.output_tokens,
            r.cached_input_tokens,
            r.cache_write_tokens,
            r.reasoning_tokens,
            str(r.ai_cost),
            str(r.billed),
        )
        for r in rows
    ]


async def fresh_read(
    state: AppState, tenant: Tenant, scope: Scope, period: tuple[datetime, datetime]
) -> list[UsageTotals]:
    """As a live update reads: a session of its own, the read its first statement. The read
    begins and ends its own transaction: the connection goes back to the pool idle."""
    async with state.sessions() as session:
        bind_tenant(session.sync_session, tenant.org.id)
        rows = await period_totals(session, scope, period)
        raw = await (await session.connection()).get_raw_connection()
        assert not raw.driver_connection.is_in_transaction()
    return rows


async def compare(state: AppState, tenant: Tenant, scopes: list[Scope]) -> int:
    """Every scope over every period: the same rows both ways (read on its own, and inside a
    transaction the session had begun). Returns the rows compared."""
    compared = 0
    async with state.sessions() as session:
        bind_tenant(session.sync_session, tenant.org.id)
        for scope in scopes:
            for period in (books_month(), cut(), inside_an_hour()):
                alone = await fresh_read(state, tenant, scope, period)
                expected = await plain_sum(session, scope, period)
                inside = await period_totals(session, scope, period)
                assert shown(alone) == shown(expected), (scope, period)
                assert shown(inside) == shown(expected), (scope, period)
                compared += len(expected)
    return compared


async def test_totals_from_rollups_equal_a_plain_sum(
    state: AppState, tenant: Tenant, mint: Any, database_url: str
) -> None:
    department = (
        await tenant.gql('mutation { createDepartment(input: {name: "Research"}) { id } }')
    )["data"]["createDepartment"]["id"]
    user = await write(
        tenant,
        CREATE_USER,
        "createUser",
        {"email": f"u-{key()}@example.com", "departmentId": department},
    )
    customer_b = await write(tenant, CREATE_CUSTOMER, "createCustomer", {"name": "B"})
    euro = await write(
        tenant,
        CREATE_ACCOUNT,
        "createAccount",
        {"customerId": customer_b["id"], "name": "B1", "postpaid": True, "currency": "EUR"},
    )
    usd = str(tenant.account_id)
    # Catalog-priced usage (so a reprice can correct it): a platform price in EUR, the
    # tenant's EUR->USD rate.
    provider = provider_name()
    platform = mint(None, ["platform_admin"])
    await set_price(tenant, token=platform, provider=provider, currency="EUR")
    rate = {"base": "EUR", "quote": "USD", "rate": "1.25", "effectiveFrom": rfc(month(-11))}
    assert "errors" not in await tenant.gql(SET_RATE, {"input": rate})

    async def priced(at: str) -> None:
        result = await record(
            tenant, provider, occurredAt=at, userId=user["id"], cacheWriteTokens=7
        )
        assert result["__typename"] == "UsageRecorded", result

    # Rolled up: usage in both currencies, a top-up in the same hour, entries just outside.
    await write(
        tenant,
        DEPOSIT,
        "deposit",
        {
            "idempotencyKey": key(),
            "accountId": usd,
            "amount": "100.00",
            "currency": "USD",
            "occurredAt": rfc(month(-2, 3, 10, 5)),
        },
    )
    await priced(rfc(month(-2, 3, 10, 15)))
    await usage_event(tenant, usd, rfc(month(-2, 3, 10, 40)), "2.50", "USD", userId=user["id"])
    await usage_event(tenant, euro["id"], rfc(month(-2, 3, 10, 41)), "10.00", "EUR")
    await usage_event(tenant, usd, rfc(month(-2) - timedelta(seconds=1)), "1.00", "USD")
    await usage_event(tenant, usd, rfc(month(-1)), "1.00", "USD")
    async with raw_connection(database_url) as connection:
        await catch_up(connection)

    scopes = [
        Scope(ScopeKind.ORGANIZATION, tenant.org.id),
        Scope(ScopeKind.CUSTOMER, tenant.customer_id),
        Scope(ScopeKind.CUSTOMER, uuid.UUID(customer_b["id"])),
        Scope(ScopeKind.ACCOUNT, tenant.account_id),
        Scope(ScopeKind.ACCOUNT, uuid.UUID(euro["id"])),
        Scope(ScopeKind.USER, uuid.UUID(user["id"])),
        Scope(ScopeKind.DEPARTMENT, uuid.UUID(department)),
    ]
    assert await compare(state, tenant, scopes) > 0

    # Not rolled up yet: more usage in hours already rolled up and in new ones.
    await priced(rfc(month(-2, 4, 8)))
    await usage_event(tenant, euro["id"], rfc(month(-2, 3, 10, 50)), "4.00", "EUR")
    await usage_event(tenant, usd, rfc(month(-2, 20, 23)), "0.75", "USD", userId=user["id"])
    await compare(state, tenant, scopes)

    # A corrected rate and a reprice: corrections (not usage charges) in the tail, then rolled.
    rate = {"base": "EUR", "quote": "USD", "rate": "1.10", "effectiveFrom": rfc(month(-2))}
    assert "errors" not in await tenant.gql(SET_RATE, {"input": rate})
    range_ = {"start": rfc(month(-2)), "end": rfc(month(-1))}
    body = await tenant.gql(REPRICE, {"input": {"range": range_, "reason": "fix"}})
    assert body["data"]["repriceUsage"]["adjusted"] == 2, body
    await compare(state, tenant, scopes)
    async with raw_connection(database_url) as connection:
        await catch_up(connection)
    await usage_event(tenant, usd, rfc(month(-2, 4, 8, 20)), "0.25", "USD", userId=user["id"])
    assert await compare(state, tenant, scopes) > 0

    # The department's totals are not trivially empty: its user's usage reached it.
    async with state.sessions() as session:
        bind_tenant(session.sync_session, tenant.org.id)
        rows = await period_totals(
            session, Scope(ScopeKind.DEPARTMENT, uuid.UUID(department)), books_month()
        )
    assert [(r.currency, r.entries) for r in rows] == [("USD", 5)]


async def test_another_organisations_scope_has_no_totals(
    state: AppState, tenant: Tenant, other_tenant: Tenant
) -> None:
    await usage_event(
        other_tenant, str(other_tenant.account_id), rfc(month(-2, 3, 10, 40)), "2.50", "USD"
    )
    async with state.sessions() as session:
        bind_tenant(session.sync_session, tenant.org.id)
        for scope in (
            Scope(ScopeKind.ORGANIZATION, other_tenant.org.id),
            Scope(ScopeKind.ACCOUNT, other_tenant.account_id),
            Scope(ScopeKind.CUSTOMER, other_tenant.customer_id),
        ):
            assert await period_totals(session, scope, books_month()) == []
