"""Live subscriptions over graphql-transport-ws against a real uvicorn server (one process)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
from websockets.exceptions import InvalidStatus

from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.kernel.clock import utcnow
from costgraph.subscriptions.channels import usage_channel
from costgraph.subscriptions.events import UsageDelta, UsageNotice, encode_usage
from tests.conftest import Tenant, make_tenant
from tests.subscriptions_support import (
    RECORD_USAGE,
    USAGE_UPDATES,
    WsClient,
    serving,
    subscribed,
    usage_input,
    ws_client,
)

INIT_TIMEOUT = 0.5
MAX_SUBSCRIPTIONS = 3
MAX_CONNECTIONS = 2


@dataclass
class Live:
    state: AppState
    port: int
    http: httpx.AsyncClient

    async def record(self, tenant: Tenant, **overrides: Any) -> str:
        response = await self.http.post(
            "/graphql",
            json={
                "query": RECORD_USAGE,
                "variables": {"input": usage_input(tenant.account_id, **overrides)},
            },
            headers={"Authorization": f"Bearer {tenant.token}"},
        )
        result = response.json()["data"]["recordUsage"]
        assert result["__typename"] == "UsageRecorded", result
        entry_id: str = result["entry"]["id"]
        return entry_id


def live_settings(settings: Settings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ws_init_timeout_seconds": INIT_TIMEOUT,
        "ws_max_subscriptions_per_connection": MAX_SUBSCRIPTIONS,
        "ws_max_connections_per_principal": MAX_CONNECTIONS,
        "shutdown_timeout_seconds": 2.0,
    }
    values.update(overrides)
    return settings.model_copy(update=values)


@pytest.fixture(scope="module")
async def live(settings: Settings, database_url: str) -> AsyncIterator[Live]:
    app = create_app(live_settings(settings), database_url)
    async with app.router.lifespan_context(app), serving(app, lifespan=False) as server:
        graphql = next(r for r in app.routes if getattr(r, "path", "") == "/graphql")
        port: int = server.port  # type: ignore[attr-defined]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            yield Live(graphql.app.state, port, http)  # type: ignore[attr-defined]


def account_scope(tenant: Tenant, account_id: uuid.UUID | None = None) -> dict[str, Any]:
    return {"scope": {"kind": "ACCOUNT", "id": str(account_id or tenant.account_id)}}


async def snapshot(client: WsClient) -> dict[str, Any]:
    update = (await client.next_data("1"))["usageUpdates"]
    assert update["kind"] == "SNAPSHOT"
    return update


# --- the feed ---


async def test_usage_updates_start_with_a_snapshot_then_follow_recorded_usage(
    live: Live, tenant: Tenant
) -> None:
    async with subscribed(live.port, tenant.token, USAGE_UPDATES, account_scope(tenant)) as client:
        first = await snapshot(client)
        assert first["scopeKind"] == "ACCOUNT"
        assert first["scopeId"] == str(tenant.account_id)
        assert first["totals"] == []

        entry_id = await live.record(tenant)
        update = (await client.next_data("1"))["usageUpdates"]
        assert update["kind"] == "EVENT"
        assert update["eventsIncluded"] == 1
        assert update["event"]["entryId"] == entry_id
        assert update["event"]["totalTokens"] == 1200
        assert update["totals"] == [
            {
                "currency": "USD",
                "events": 1,
                "totalTokens": 1200,
                "aiCost": update["event"]["aiCost"],
                "billedUsage": update["event"]["billedUsage"],
            }
        ]
        assert Decimal(update["event"]["aiCost"]) == Decimal("0.00027")

        await live.record(tenant, inputTokens=10, outputTokens=0)
        second = (await client.next_data("1"))["usageUpdates"]
        assert second["totals"][0]["events"] == 2
        assert second["totals"][0]["totalTokens"] == 1210


async def test_organization_scope_is_the_default_and_other_accounts_do_not_wake_an_account_feed(
    live: Live, tenant: Tenant, state: AppState, client: httpx.AsyncClient, mint: Any
) -> None:
    async with subscribed(live.port, tenant.token, USAGE_UPDATES) as org_feed:
        assert (await snapshot(org_feed))["scopeKind"] == "ORGANIZATION"
        # An account feed on a second account that the usage does not touch.
        async with state.sessions() as session, session.begin():
            from costgraph.billing import directory
            from costgraph.models.scoping import bind_tenant

            bind_tenant(session.sync_session, tenant.org.id)
            other = await directory.create_account(
                session, tenant.org, tenant.customer_id, "Second", False
            )
        async with subscribed(
            live.port, tenant.token, USAGE_UPDATES, account_scope(tenant, other.id)
        ) as quiet:
            await snapshot(quiet)
            await live.record(tenant)
            update = (await org_feed.next_data("1"))["usageUpdates"]
            assert update["kind"] == "EVENT"
            assert update["scopeId"] == str(tenant.org.id)
            with pytest.raises(TimeoutError):
                await quiet.recv(within=0.5)


async def test_identical_subscriptions_share_one_execution_and_the_same_bytes(
    live: Live, tenant: Tenant
) -> None:
    variables = account_scope(tenant)
    async with (
        subscribed(live.port, tenant.token, USAGE_UPDATES, variables) as a,
        subscribed(live.port, tenant.token, USAGE_UPDATES, variables) as b,
    ):
        await snapshot(a)
        await snapshot(b)  # the late joiner gets the stream's latest frame at once
        hub = live.state.live.hub
        frames = hub.frames
        await live.record(tenant)
        from_a = await a.connection.recv()
        from_b = await b.connection.recv()
        assert from_a == from_b
        assert hub.frames == frames + 1  # executed and serialised once for both


async def test_an_event_of_another_organisation_is_never_delivered(
    live: Live, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with subscribed(live.port, tenant.token, USAGE_UPDATES, account_scope(tenant)) as client:
        await snapshot(client)
        forged = UsageNotice(
            organization_id=other_tenant.org.id,  # not the subscriber's tenant
            published_at=datetime.now(UTC),
            deltas=(
                UsageDelta(
                    entry_id=uuid.uuid4(),
                    account_id=tenant.account_id,
                    customer_id=tenant.customer_id,
                    department_id=None,
                    user_id=None,
                    currency="USD",
                    entries=5,
                    input_tokens=5,
                    output_tokens=0,
                    cached_input_tokens=0,
                    cache_write_tokens=0,
                    reasoning_tokens=0,
                    ai_cost=Decimal(1),
                    billed=Decimal(1),
                    occurred_at=utcnow(),  # in the subscriber's period
                ),
            ),
        )
        # Published on the subscriber's own channel: only the tenant check can stop it.
        live.state.bus.publish(usage_channel(tenant.org.id), encode_usage(forged))
        entry_id = await live.record(tenant)
        update = (await client.next_data("1"))["usageUpdates"]
        assert update["event"]["entryId"] == entry_id
        assert update["eventsIncluded"] == 1


async def test_a_query_over_the_socket_is_answered_once_then_completed(
    live: Live, tenant: Tenant
) -> None:
    async with ws_client(live.port) as client:
        await client.init(tenant.token)
        await client.subscribe("q", "{ me { subject } organization { slug } }")
        data = await client.next_data("q")
        assert data == {"me": {"subject": "tester"}, "organization": {"slug": tenant.org.slug}}
        assert await client.recv() == {"id": "q", "type": "complete"}


# --- bad input ---


async def test_another_tenants_account_answers_as_unknown(
    live: Live, tenant: Tenant, other_tenant: Tenant
) -> None:
    errors = []
    for account in (other_tenant.account_id, uuid.uuid4()):
        async with subscribed(
            live.port, tenant.token, USAGE_UPDATES, account_scope(tenant, account)
        ) as client:
            message = await client.recv()
            assert message["type"] == "error", message
            errors.append(message["payload"][0])
    theirs, missing = errors
    assert theirs["extensions"]["code"] == missing["extensions"]["code"] == "NOT_FOUND"
    assert theirs["message"] == f"account {other_tenant.account_id} not found"
    assert missing["message"].replace(missing["message"].split()[1], "X") == theirs[
        "message"
    ].replace(str(other_tenant.account_id), "X")


async def test_subscribing_before_connection_init_closes_4401(live: Live, tenant: Tenant) -> None:
    async with ws_client(live.port) as client:
        await client.subscribe("1", USAGE_UPDATES)
        assert (await client.closed())[0] == 4401


async def test_the_legacy_graphql_ws_protocol_is_refused(live: Live) -> None:
    """Refused in the handshake (HTTP 400, before accepting), not accepted then closed."""
    with pytest.raises(InvalidStatus) as refused:
        async with ws_client(live.port, subprotocol="graphql-ws"):
            pass
    response = refused.value.response
    assert response.status_code == 400
    assert b"graphql-transport-ws" in response.body


async def test_no_connection_init_within_the_timeout_closes_4408(live: Live) -> None:
    async with ws_client(live.port) as client:
        code, _ = await client.closed(within=INIT_TIMEOUT + 3)
        assert code == 4408


async def test_a_second_connection_init_closes_4429(live: Live, tenant: Tenant) -> None:
    async with ws_client(live.port) as client:
        assert (await client.init(tenant.token))["type"] == "connection_ack"
        await client.send({"type": "connection_init", "payload": {}})
        assert (await client.closed())[0] == 4429


@pytest.mark.parametrize("payload", [{}, {"authorization": "Bearer not-a-token"}, {"x": 1}])
async def test_connection_init_without_a_valid_token_closes_4403(
    live: Live, payload: dict[str, Any]
) -> None:
    async with ws_client(live.port) as client:
        await client.send({"type": "connection_init", "payload": payload})
        assert (await client.closed())[0] == 4403


async def test_more_subscriptions_than_allowed_are_refused(live: Live, tenant: Tenant) -> None:
    async with ws_client(live.port) as client:
        await client.init(tenant.token)
        for n in range(MAX_SUBSCRIPTIONS):
            await client.subscribe(str(n), USAGE_UPDATES)
            assert (await client.next_data(str(n)))["usageUpdates"]["kind"] == "SNAPSHOT"
        await client.subscribe("extra", USAGE_UPDATES)
        refused = await client.recv()
        assert refused["type"] == "error"
        assert refused["id"] == "extra"
        assert "at most 3 operations" in refused["payload"][0]["message"]
        assert refused["payload"][0]["extensions"]["code"] == "SUBSCRIPTION_LIMIT"


async def test_more_connections_per_principal_than_allowed_are_refused(
    live: Live, tenant: Tenant
) -> None:
    token = tenant.mint(tenant.org.id, ["org_admin"], subject=f"busy-{uuid.uuid4().hex}")
    async with ws_client(live.port) as a, ws_client(live.port) as b, ws_client(live.port) as c:
        assert (await a.init(token))["type"] == "connection_ack"
        assert (await b.init(token))["type"] == "connection_ack"
        await c.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        assert await c.closed() == (1008, "too many connections")  # not a bad token's 4403
        await a.connection.close()
    # A closed connection gives its place back.
    async with ws_client(live.port) as d:
        assert (await d.init(token))["type"] == "connection_ack"


async def test_a_token_that_expires_mid_stream_closes_the_socket_4403(
    live: Live, tenant: Tenant
) -> None:
    token = tenant.mint(tenant.org.id, ["org_admin"], ttl=timedelta(seconds=2))
    async with subscribed(live.port, token, USAGE_UPDATES) as client:
        await snapshot(client)
        code, reason = await client.closed(within=6)
        assert (code, reason) == (4403, "token expired")


async def test_a_token_revoked_mid_stream_closes_the_socket_before_the_next_update(
    live: Live, tenant: Tenant
) -> None:
    token = tenant.mint(tenant.org.id, ["org_admin"])
    claims = jwt.decode(token, options={"verify_signature": False})
    async with subscribed(live.port, token, USAGE_UPDATES) as client:
        await snapshot(client)
        live.state.revocations.revoke_token(
            claims["jti"], datetime.fromtimestamp(claims["exp"], UTC)
        )
        await live.record(tenant)
        code, reason = await client.closed(within=5)
        assert (code, reason) == (4403, "token revoked")


async def test_a_member_without_usage_rights_cannot_subscribe(live: Live, tenant: Tenant) -> None:
    token = tenant.mint(tenant.org.id, ["member"])
    async with subscribed(live.port, token, USAGE_UPDATES) as client:
        message = await client.recv()
        assert message["type"] == "error"
        assert message["payload"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_cross_origin_handshake_is_refused(live: Live) -> None:
    with pytest.raises(InvalidStatus):
        async with ws_client(live.port, origin="https://evil.example"):  # type: ignore[arg-type]
            pass


# --- shutdown ---


async def test_shutdown_closes_subscribers_cleanly_and_then_the_bus(
    settings: Settings, database_url: str, state: AppState, client: httpx.AsyncClient, mint: Any
) -> None:
    tenant = await make_tenant(state, client, mint)
    app = create_app(live_settings(settings), database_url)
    async with serving(app, lifespan=True) as server:
        port: int = server.port  # type: ignore[attr-defined]
        graphql = next(r for r in app.routes if getattr(r, "path", "") == "/graphql")
        own: AppState = graphql.app.state  # type: ignore[attr-defined]
        async with subscribed(port, tenant.token, USAGE_UPDATES) as subscriber:
            await snapshot(subscriber)
            server.should_exit = True
            code, _ = await subscriber.closed(within=10)
    assert code in {1001, 1012}  # going away / service restart: clean closes, never 1006
    assert len(own.live.connections) == 0
    assert not own.bus.up
    await asyncio.sleep(0)
