"""Rate limiting at the ``/graphql`` gate: budgets per principal and per OAuth client, 429 with
``Retry-After`` and ``RATE_LIMITED``, nothing executed when refused, counts shared between
instances through the machine's Redis (a key prefix of each test's own), in-process otherwise.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError

from costgraph.app.main import create_app
from costgraph.app.rate_limit import RateLimiter, storage_url
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.auth.keys import KeyStore
from costgraph.auth.tokens import mint_access_token
from tests.conftest import Tenant, app_state, make_tenant, raw_connection
from tests.servers import free_port

REDIS = "redis://127.0.0.1:6379/15"
ME = "{ me { subject } }"


@contextlib.asynccontextmanager
async def limited_app(
    settings: Settings, database_url: str, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    """An app of its own with these settings (a second instance when called twice)."""
    application = create_app(settings.model_copy(update=overrides), database_url)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, app_state(application)


async def post(client: httpx.AsyncClient, token: str, query: str, **variables: Any) -> Any:
    return await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )


def client_token(keys: KeyStore, settings: Settings, org: uuid.UUID, client_id: str) -> str:
    """A client-credentials token as /oauth/token issues them (each one a new ``jti``)."""
    return mint_access_token(
        keys.active,
        issuer=settings.issuer,
        audience=settings.audience,
        subject=client_id,
        organization_id=org,
        scopes=["usage:read", "usage:write"],
        client_id=client_id,
        ttl=timedelta(minutes=10),
    )


@contextlib.asynccontextmanager
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"costgraph-test-{uuid.uuid4().hex}"
    yield prefix
    client = aioredis.Redis.from_url(REDIS)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def refused(response: httpx.Response, budget: str) -> int:
    """Check a rate-limit refusal; its Retry-After in seconds."""
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    error = response.json()["errors"][0]
    assert error["extensions"] == {
        "code": "RATE_LIMITED",
        "retryAfter": retry_after,
        "budget": budget,
    }
    assert "retry after" in error["message"]
    return retry_after


async def test_a_principal_over_its_budget_gets_429_and_nothing_runs(
    settings: Settings, database_url: str, mint: Any
) -> None:
    async with limited_app(
        settings,
        database_url,
        rate_limit_principal_per_minute=3,
        rate_limit_client_per_minute=0,
    ) as (client, state):
        tenant = await make_tenant(state, client, mint)
        for _ in range(3):
            assert (await post(client, tenant.token, ME)).status_code == 200
        refused(await post(client, tenant.token, ME), "principal")
        deposit = """mutation($input: DepositInput!) { deposit(input: $input) { __typename } }"""
        value = {
            "idempotencyKey": f"d-{uuid.uuid4().hex}",
            "accountId": str(tenant.account_id),
            "amount": "5.00",
            "currency": "USD",
        }
        refused(await post(client, tenant.token, deposit, input=value), "principal")
        assert await entry_count(database_url, tenant) == 0
        # Another person of the same organisation has a budget of their own.
        colleague = mint(tenant.org.id, ["org_admin"], subject="colleague")
        assert (await post(client, colleague, ME)).json()["data"]["me"]["subject"] == "colleague"


async def test_an_oauth_client_shares_one_budget_across_its_tokens(
    settings: Settings, database_url: str, mint: Any, keys: KeyStore
) -> None:
    async with limited_app(
        settings,
        database_url,
        rate_limit_principal_per_minute=0,
        rate_limit_client_per_minute=2,
    ) as (client, state):
        tenant = await make_tenant(state, client, mint)
        client_id = f"cg_{tenant.org.id.hex}_{uuid.uuid4().hex[:8]}"
        first = client_token(keys, settings, tenant.org.id, client_id)
        second = client_token(keys, settings, tenant.org.id, client_id)
        assert first != second
        assert (await post(client, first, ME)).status_code == 200
        assert (await post(client, second, ME)).status_code == 200
        refused(await post(client, first, ME), "client")
        refused(await post(client, second, ME), "client")
        other = client_token(keys, settings, tenant.org.id, f"{client_id}x")
        assert (await post(client, other, ME)).status_code == 200
        # A person's token draws on the principal budget, off here.
        for _ in range(3):
            assert (await post(client, tenant.token, ME)).status_code == 200


async def test_instances_share_the_budget_through_redis(
    settings: Settings, database_url: str, mint: Any
) -> None:
    async with (
        redis_prefix() as prefix,
        limited_app(
            settings,
            database_url,
            rate_limit_url=REDIS,
            rate_limit_key_prefix=prefix,
            rate_limit_principal_per_minute=4,
        ) as (first, state),
        limited_app(
            settings,
            database_url,
            rate_limit_url=REDIS,
            rate_limit_key_prefix=prefix,
            rate_limit_principal_per_minute=4,
        ) as (second, _),
    ):
        tenant = await make_tenant(state, first, mint)
        for _ in range(3):
            assert (await post(first, tenant.token, ME)).status_code == 200
        assert (await post(second, tenant.token, ME)).status_code == 200
        # The second instance sees the first one's three requests.
        refused(await post(second, tenant.token, ME), "principal")
        refused(await post(first, tenant.token, ME), "principal")
        assert state.rate_limiter is not None and state.rate_limiter.shared


async def test_in_process_counts_are_per_instance(
    settings: Settings, database_url: str, mint: Any
) -> None:
    """Without Redis each instance counts alone: right for a single instance only."""
    async with (
        limited_app(settings, database_url, rate_limit_principal_per_minute=2) as (first, state),
        limited_app(settings, database_url, rate_limit_principal_per_minute=2) as (second, _),
    ):
        tenant = await make_tenant(state, first, mint)
        for _ in range(2):
            assert (await post(first, tenant.token, ME)).status_code == 200
        refused(await post(first, tenant.token, ME), "principal")
        assert (await post(second, tenant.token, ME)).status_code == 200
        assert state.rate_limiter is not None and not state.rate_limiter.shared


async def test_requests_pass_while_redis_is_unreachable(
    settings: Settings, database_url: str, mint: Any
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    async with limited_app(
        settings, database_url, rate_limit_url=nowhere, rate_limit_principal_per_minute=1
    ) as (client, state):
        tenant = await make_tenant(state, client, mint)
        for _ in range(3):
            assert (await post(client, tenant.token, ME)).status_code == 200


def test_settings_choose_the_store_and_zero_turns_limiting_off(settings: Settings) -> None:
    assert storage_url(settings.model_copy(update={"broadcast_url": "memory://"})) == "memory://"
    assert storage_url(settings.model_copy(update={"broadcast_url": REDIS})) == REDIS
    explicit = settings.model_copy(update={"broadcast_url": REDIS, "rate_limit_url": "memory://"})
    assert storage_url(explicit) == "memory://"
    off = settings.model_copy(
        update={"rate_limit_principal_per_minute": 0, "rate_limit_client_per_minute": 0}
    )
    assert RateLimiter.from_settings(off) is None
    defaults = Settings()
    assert defaults.rate_limit_principal_per_minute > 0 < defaults.rate_limit_client_per_minute
    with pytest.raises(ValidationError, match="COSTGRAPH_RATE_LIMIT_URL"):
        Settings(rate_limit_url="http://127.0.0.1:6379")


async def entry_count(database_url: str, tenant: Tenant) -> int:
    async with raw_connection(database_url) as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE organization_id = $1", tenant.org.id
        )
    return count


async def test_the_overhead_bench_runs(server_url: str) -> None:
    """bench/hardening_overhead.py on a tiny scale: its patches still find what they replace."""
    from bench import hardening_overhead

    rows = await hardening_overhead.measure(server_url, requests=3, rounds=1, redis=REDIS)
    assert [row.ours.operations for row in rows] == [3, 3]
