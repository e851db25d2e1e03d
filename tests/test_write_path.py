"""The usage write path's shortcuts: per-process caches that a write in this process drops,
raw statements inside the session's transaction, the balance moved by the insert itself, and
the fast build of ``UsageEventInput`` — each giving what the slow way gave."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types.arguments import convert_argument

from costgraph.app.graphql_schema import build_schema
from costgraph.app.state import AppState
from costgraph.billing import catalog, directory, ledger, markup, tenant_cache
from costgraph.billing.commands import Payment, UsageEvent
from costgraph.billing.raw_connection import driver_connection
from costgraph.kernel.errors import AllowanceExhausted, RateMissing
from costgraph.models.scoping import bind_tenant
from costgraph.schema import inputs
from tests.conftest import Tenant
from tests.dates import month

#: When the events happen (computed at import: the session's start).
T0 = month(-9)


# --- the cache itself (pure) ---


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_expires_after_its_ttl() -> None:
    clock = FakeClock()
    cache: tenant_cache.TtlCache[str, int] = tenant_cache.TtlCache("t", ttl=5, clock=clock)
    cache.put("a", 1)
    clock.now = 4.9
    assert cache.get("a") == 1
    clock.now = 5.0
    assert cache.get("a") is None


def test_the_oldest_entries_go_first_past_the_bound() -> None:
    cache: tenant_cache.TtlCache[int, int] = tenant_cache.TtlCache("t", max_entries=2)
    for key in range(3):
        cache.put(key, key)
    assert [cache.get(k) for k in range(3)] == [None, 1, 2]


def test_a_ttl_of_zero_keeps_nothing() -> None:
    cache: tenant_cache.TtlCache[str, int] = tenant_cache.TtlCache("t", ttl=0)
    cache.put("a", 1)
    assert cache.get("a") is None


async def test_a_load_that_raced_an_invalidation_is_not_kept() -> None:
    cache: tenant_cache.TtlCache[str, str] = tenant_cache.TtlCache("t")

    async def stale_load() -> str:
        cache.invalidate("a")  # a writer drops the key while this load is in flight
        return "old"

    assert await cache.get_or_load("a", stale_load) == "old"
    assert cache.get("a") is None

    async def load() -> str:
        return "new"

    assert await cache.get_or_load("a", load) == "new"
    assert cache.get("a") == "new"


# --- in the database ---


async def _in_tenant(
    state: AppState, tenant: Tenant, action: Callable[[AsyncSession], Awaitable[Any]]
) -> Any:
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, tenant.org.id)
        return await action(session)


def _event(account_id: uuid.UUID, cost: str | None, **changes: Any) -> UsageEvent:
    values: dict[str, Any] = {
        "idempotency_key": f"wp-{uuid.uuid4().hex}",
        "account_id": account_id,
        "occurred_at": T0,
        "provider": "openai",
        "model": "gpt-wp",
        "input_tokens": 1_000_000,
        "provider_cost": None if cost is None else Decimal(cost),
        "provider_currency": None if cost is None else "USD",
    }
    values.update(changes)
    return UsageEvent(**values)


async def _record(state: AppState, tenant: Tenant, event: UsageEvent) -> Any:
    return await _in_tenant(
        state, tenant, lambda s: ledger.record_usage(s, tenant.org, event, state.limits)
    )


async def test_a_raw_first_statement_runs_in_the_sessions_transaction(
    state: AppState, tenant: Tenant
) -> None:
    async with state.sessions() as session, session.begin():
        connection = await driver_connection(session)
        raw = await connection.fetchval("SELECT txid_current()")
        orm = (await session.execute(text("SELECT txid_current()"))).scalar_one()
    assert raw == orm


async def test_a_markup_change_prices_this_processes_next_event(
    state: AppState, tenant: Tenant
) -> None:
    await _in_tenant(state, tenant, lambda s: markup.set_markup(s, tenant.org, Decimal(10)))
    first = await _record(state, tenant, _event(tenant.account_id, "1.00"))
    await _in_tenant(state, tenant, lambda s: markup.set_markup(s, tenant.org, Decimal(25)))
    second = await _record(state, tenant, _event(tenant.account_id, "1.00"))
    assert (first.amount, second.amount) == (Decimal("1.10"), Decimal("1.25"))


async def test_a_new_price_version_prices_this_processes_next_event(
    state: AppState, tenant: Tenant
) -> None:
    async def price(session: AsyncSession, start: datetime, per_million: str) -> Any:
        version = catalog.NewPriceVersion(
            provider="openai",
            model="gpt-wp",
            currency="USD",
            effective_from=start,
            input_per_million=Decimal(per_million),
        )
        return await catalog.set_model_price(session, tenant.org.id, version)

    await _in_tenant(state, tenant, lambda s: price(s, month(-12), "2"))
    before = await _record(state, tenant, _event(tenant.account_id, None))
    await _in_tenant(state, tenant, lambda s: price(s, month(-10), "3"))
    after = await _record(state, tenant, _event(tenant.account_id, None))
    earlier = await _record(state, tenant, _event(tenant.account_id, None, occurred_at=month(-11)))
    assert (before.ai_cost, after.ai_cost, earlier.ai_cost) == (
        Decimal(2),
        Decimal(3),
        Decimal(2),
    )


async def _prepaid_account(state: AppState, tenant: Tenant) -> uuid.UUID:
    async def create(session: AsyncSession) -> uuid.UUID:
        account = await directory.create_account(
            session, tenant.org, tenant.customer_id, "Prepaid", False
        )
        return account.id

    account_id: uuid.UUID = await _in_tenant(state, tenant, create)
    return account_id


async def _balance(state: AppState, tenant: Tenant, account_id: uuid.UUID) -> Decimal:
    async def read(session: AsyncSession) -> Decimal:
        value = await session.execute(
            text("SELECT balance FROM account_balances WHERE account_id = :a"), {"a": account_id}
        )
        return Decimal(value.scalar_one_or_none() or 0)

    balance: Decimal = await _in_tenant(state, tenant, read)
    return balance


async def test_a_prepaid_account_without_a_balance_row_refuses_usage(
    state: AppState, tenant: Tenant
) -> None:
    account_id = await _prepaid_account(state, tenant)
    with pytest.raises(AllowanceExhausted):
        await _record(state, tenant, _event(account_id, "1.00"))
    top_up = Payment(f"wp-top-up-{account_id}", account_id, Decimal("5.00"), "USD")
    await _in_tenant(state, tenant, lambda s: ledger.deposit(s, tenant.org, top_up, state.limits))
    await _record(state, tenant, _event(account_id, "1.50"))
    assert await _balance(state, tenant, account_id) == Decimal("3.50")
    with pytest.raises(AllowanceExhausted) as refused:
        await _record(state, tenant, _event(account_id, "4.00"))
    assert refused.value.balance == Decimal("3.50")
    assert await _balance(state, tenant, account_id) == Decimal("3.50")


async def test_a_batch_over_two_accounts_moves_both_or_neither(
    state: AppState, tenant: Tenant
) -> None:
    prepaid = await _prepaid_account(state, tenant)
    top_up = Payment(f"wp-top-up-{prepaid}", prepaid, Decimal("2.00"), "USD")
    await _in_tenant(state, tenant, lambda s: ledger.deposit(s, tenant.org, top_up, state.limits))
    postpaid = tenant.account_id
    before = await _balance(state, tenant, postpaid)

    async def batch(session: AsyncSession, cost: str) -> Any:
        events = [_event(postpaid, "1.00"), _event(prepaid, cost)]
        return await ledger.record_usage_batch(session, tenant.org, events, state.limits)

    with pytest.raises(AllowanceExhausted):
        await _in_tenant(state, tenant, lambda s: batch(s, "3.00"))
    assert await _balance(state, tenant, postpaid) == before
    assert await _balance(state, tenant, prepaid) == Decimal("2.00")
    await _in_tenant(state, tenant, lambda s: batch(s, "0.75"))
    assert await _balance(state, tenant, postpaid) == before - 1
    assert await _balance(state, tenant, prepaid) == Decimal("1.25")


def test_usage_input_is_built_as_strawberry_builds_it() -> None:
    schema = build_schema()
    definition = inputs.UsageEventInput.__strawberry_definition__  # type: ignore[attr-defined]
    value = {
        "idempotencyKey": "k",
        "accountId": "acc",
        "occurredAt": T0,
        "provider": "openai",
        "model": "m",
        "inputTokens": 3,
        "units": [{"kind": inputs.UnitKind.IMAGE, "quantity": Decimal(2)}],
        "metadata": {"a": [1, 2]},
        "providerCost": Decimal("0.5"),
    }
    registry, config = schema.schema_converter.scalar_registry, schema.config
    fast = convert_argument(value, inputs.UsageEventInput, registry, config)
    hook = definition.from_input
    definition.from_input = None
    try:
        slow = convert_argument(value, inputs.UsageEventInput, registry, config)
    finally:
        definition.from_input = hook
    assert hook is not None and fast == slow
    assert isinstance(fast.units[0], inputs.UnitUsageInput)


async def _count(state: AppState, tenant: Tenant, prefix: str) -> int:
    async def read(session: AsyncSession) -> int:
        value = await session.execute(
            text(
                "SELECT count(*) FROM ledger_entries WHERE organization_id = :o "
                "AND idempotency_key LIKE :p"
            ),
            {"o": tenant.org.id, "p": f"{prefix}%"},
        )
        return int(value.scalar_one())

    count: int = await _in_tenant(state, tenant, read)
    return count


async def test_a_large_batch_is_recorded_in_chunks_with_replays_in_place(
    state: AppState, tenant: Tenant
) -> None:
    prefix = f"big-{uuid.uuid4().hex[:8]}-"
    size = ledger.PIPELINE_CHUNK * 2 + 17
    events = [
        _event(tenant.account_id, "0.01", idempotency_key=f"{prefix}{i}") for i in range(size)
    ]

    async def batch(session: AsyncSession, sent: list[UsageEvent]) -> Any:
        return await ledger.record_usage_batch(session, tenant.org, sent, state.limits)

    earlier = await _in_tenant(state, tenant, lambda s: batch(s, events[:300:7]))
    retried = events[-5:] + events[:300] + [events[0]]  # replays, new ones, an in-batch repeat
    entries = await _in_tenant(state, tenant, lambda s: batch(s, retried + events[300:]))
    assert [e.idempotency_key for e in entries] == [
        e.idempotency_key for e in retried + events[300:]
    ]
    repeated = {e.idempotency_key for e in [events[0], *events[-5:]]}  # sent twice in the batch
    replayed = {e.idempotency_key for e in earlier} | repeated
    assert {e.idempotency_key for e in entries if e.replayed} == replayed
    by_key = {e.idempotency_key: e for e in entries}
    assert all(by_key[e.idempotency_key].id == e.id for e in earlier)
    assert await _count(state, tenant, prefix) == size


async def test_an_error_in_a_later_chunk_writes_nothing(state: AppState, tenant: Tenant) -> None:
    prefix = f"bad-{uuid.uuid4().hex[:8]}-"
    events = [
        _event(tenant.account_id, "0.01", idempotency_key=f"{prefix}{i}")
        for i in range(ledger.PIPELINE_CHUNK * 3)
    ]
    # No exchange rate to the account's USD: found while pricing the third chunk.
    events[-1] = _event(
        tenant.account_id,
        None,
        idempotency_key=f"{prefix}x",
        provider_cost=Decimal(1),
        provider_currency="XAF",
    )

    async def batch(session: AsyncSession) -> Any:
        return await ledger.record_usage_batch(session, tenant.org, events, state.limits)

    with pytest.raises(RateMissing):
        await _in_tenant(state, tenant, batch)
    assert await _count(state, tenant, prefix) == 0
