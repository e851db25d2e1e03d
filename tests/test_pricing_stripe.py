"""The Stripe webhook with locally signed payloads: verified, recorded once, after commit."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from tests.conftest import Tenant, raw_connection

SECRET = "whsec_test_" + uuid.uuid4().hex


@pytest.fixture(scope="module")
async def stripe_client(settings: Settings, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(update={"stripe_webhook_secret": SecretStr(SECRET)})
    app = create_app(configured, database_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def sign(payload: bytes, secret: str = SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def checkout(
    tenant: Tenant, payment_intent: str, amount: int = 2500, **meta: Any
) -> dict[str, Any]:
    metadata = {
        "costgraph_organization_id": str(tenant.org.id),
        "costgraph_account_id": str(tenant.account_id),
        **meta,
    }
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"cs_{uuid.uuid4().hex}",
                "object": "checkout.session",
                "payment_intent": payment_intent,
                "payment_status": "paid",
                "amount_total": amount,
                "currency": "usd",
                "metadata": metadata,
            }
        },
    }


async def post(client: httpx.AsyncClient, event: dict[str, Any], **kw: Any) -> httpx.Response:
    payload = orjson.dumps(event)
    signature = kw.pop("signature", None) or sign(payload, **kw)
    return await client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": signature}
    )


async def deposits(database_url: str, tenant: Tenant) -> list[Any]:
    async with raw_connection(database_url) as connection:
        return list(
            await connection.fetch(
                "SELECT amount, currency, metadata->>'stripe_payment_id' AS pid, idempotency_key "
                "FROM ledger_entries WHERE organization_id = $1 AND type = 'DEPOSIT'",
                tenant.org.id,
            )
        )


async def test_a_paid_checkout_is_one_deposit(
    stripe_client: httpx.AsyncClient, tenant: Tenant, database_url: str
) -> None:
    pi = f"pi_{uuid.uuid4().hex}"
    response = await post(stripe_client, checkout(tenant, pi))
    assert response.status_code == 200, response.text
    assert response.json()["recorded"] is True and response.json()["replayed"] is False
    # Stripe retries, and also reports the payment intent: still one deposit.
    again = await post(stripe_client, checkout(tenant, pi))
    assert again.json()["replayed"] is True
    intent = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "created": int(time.time()) + 1,
        "data": {
            "object": {
                "id": pi,
                "object": "payment_intent",
                "amount": 2500,
                "amount_received": 2500,
                "currency": "usd",
                "metadata": checkout(tenant, pi)["data"]["object"]["metadata"],
            }
        },
    }
    assert (await post(stripe_client, intent)).json()["replayed"] is True
    rows = await deposits(database_url, tenant)
    assert [(str(r["amount"]), r["currency"], r["pid"]) for r in rows] == [
        ("25.000000000000", "USD", pi)
    ]
    assert rows[0]["idempotency_key"] == f"stripe:{pi}"


async def test_bad_signatures_and_stale_timestamps_are_refused(
    stripe_client: httpx.AsyncClient, tenant: Tenant, database_url: str
) -> None:
    event = checkout(tenant, f"pi_{uuid.uuid4().hex}")
    assert (await post(stripe_client, event, secret="whsec_other")).status_code == 400
    assert (await post(stripe_client, event, at=int(time.time()) - 3600)).status_code == 400
    assert (await post(stripe_client, event, signature="t=1,v0=abc")).status_code == 400
    missing = await stripe_client.post("/webhooks/stripe", content=orjson.dumps(event))
    assert missing.status_code == 400
    # A body changed after signing does not verify.
    payload = orjson.dumps(event)
    tampered = await stripe_client.post(
        "/webhooks/stripe",
        content=payload.replace(b"2500", b"9500"),
        headers={"Stripe-Signature": sign(payload)},
    )
    assert tampered.status_code == 400
    assert await deposits(database_url, tenant) == []


async def test_other_events_are_acknowledged_and_ignored(
    stripe_client: httpx.AsyncClient, tenant: Tenant, database_url: str
) -> None:
    other = {"id": "evt_x", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}
    response = await post(stripe_client, other)
    assert (response.status_code, response.json()["recorded"]) == (200, False)
    foreign = checkout(tenant, "pi_foreign")
    foreign["data"]["object"]["metadata"] = {"order": "42"}  # not CostGraph's payment
    assert (await post(stripe_client, foreign)).json()["recorded"] is False
    unpaid = checkout(tenant, "pi_unpaid")
    unpaid["data"]["object"]["payment_status"] = "unpaid"
    assert (await post(stripe_client, unpaid)).json()["recorded"] is False
    assert await deposits(database_url, tenant) == []


async def test_metadata_that_does_not_resolve_is_refused(
    stripe_client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database_url: str
) -> None:
    # Another tenant's account under this organisation: answers as a missing one.
    wrong = checkout(
        tenant, f"pi_{uuid.uuid4().hex}", costgraph_account_id=str(other_tenant.account_id)
    )
    response = await post(stripe_client, wrong)
    assert response.status_code == 422 and response.json()["error"]["code"] == "NOT_FOUND"
    euros = checkout(tenant, f"pi_{uuid.uuid4().hex}")
    euros["data"]["object"]["currency"] = "eur"
    response = await post(stripe_client, euros)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "CURRENCY_MISMATCH"
    assert await deposits(database_url, tenant) == []


async def test_the_webhook_is_off_without_a_secret(client: httpx.AsyncClient) -> None:
    response = await client.post("/webhooks/stripe", content=b"{}")
    assert response.status_code == 503
