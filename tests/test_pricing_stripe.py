"""The Stripe webhook with locally signed payloads: verified, recorded once, after commit."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from costgraph.kernel.clock import utcnow
from costgraph.subscriptions import feeds
from tests.alerts_support import ALERTS, CHANNEL, DELIVERIES
from tests.conftest import Tenant, app_state, raw_connection

SECRET = "whsec_test_" + uuid.uuid4().hex


@pytest.fixture(scope="module")
async def stripe_app(settings: Settings, database_url: str) -> AsyncIterator[Starlette]:
    configured = settings.model_copy(update={"stripe_webhook_secret": SecretStr(SECRET)})
    app = create_app(configured, database_url)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def stripe_client(stripe_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=stripe_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def created() -> int:
    """An event's ``created``: business time (the signature's timestamp is the wall clock's)."""
    return int(utcnow().timestamp())


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
        "created": created(),
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
        "created": created() + 1,
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


@pytest.mark.parametrize("when", [10**12, -(10**12), 2**63])
async def test_a_created_time_no_calendar_holds_is_refused(
    stripe_client: httpx.AsyncClient, tenant: Tenant, database_url: str, when: int
) -> None:
    # A signed event whose `created` is past year 9999 (or before year 1) is a bad body
    # (422 naming the field), never a 500.
    event = checkout(tenant, f"pi_{uuid.uuid4().hex}")
    event["created"] = when
    response = await post(stripe_client, event)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_FAILED"
    assert "created" in response.json()["error"]["message"]
    assert await deposits(database_url, tenant) == []


async def test_the_webhook_is_off_without_a_secret(client: httpx.AsyncClient) -> None:
    response = await client.post("/webhooks/stripe", content=b"{}")
    assert response.status_code == 503


def intent_succeeded(tenant: Tenant, payment_intent: str, amount: int) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "created": created(),
        "data": {
            "object": {
                "id": payment_intent,
                "object": "payment_intent",
                "amount": amount,
                "amount_received": amount,
                "currency": "usd",
                "metadata": checkout(tenant, payment_intent)["data"]["object"]["metadata"],
            }
        },
    }


def charge_refunded(
    tenant: Tenant,
    payment_intent: str,
    refunded: int,
    refunds: list[tuple[str, int]] | None,
    charge: str = "ch_1",
) -> dict[str, Any]:
    """A ``charge.refunded`` event: the refunds listed (``None``: left out, as API versions
    from 2022-11-15 do unless expanded)."""
    obj: dict[str, Any] = {
        "id": charge,
        "object": "charge",
        "payment_intent": payment_intent,
        "amount": 2500,
        "amount_refunded": refunded,
        "currency": "usd",
        "metadata": checkout(tenant, payment_intent)["data"]["object"]["metadata"],
    }
    if refunds is not None:
        obj["refunds"] = {
            "object": "list",
            "data": [
                {"id": ident, "object": "refund", "amount": amount, "status": "succeeded"}
                for ident, amount in refunds
            ],
            "has_more": False,
        }
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "charge.refunded",
        "created": created(),
        "data": {"object": obj},
    }


MANUAL_DEPOSIT = """mutation($input: DepositInput!) { deposit(input: $input) {
  __typename ... on UserError { code } } }"""


async def conflict_count(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("costgraph_stripe_payment_conflicts_total{") and (
            'event_type="checkout.session.completed"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_key_taken_by_another_request_is_a_conflict_not_a_replay(
    stripe_client: httpx.AsyncClient,
    stripe_app: Starlette,
    tenant: Tenant,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pi = f"pi_{uuid.uuid4().hex}"
    feed = feeds.alert_feed(app_state(stripe_app).bus, tenant.org.id)
    announced = asyncio.ensure_future(anext(feed))
    # Someone records a manual 0.01 deposit under the key the Stripe payment will use.
    manual = await tenant.gql(
        MANUAL_DEPOSIT,
        {
            "input": {
                "idempotencyKey": f"stripe:{pi}",
                "accountId": str(tenant.account_id),
                "amount": "0.01",
                "currency": "USD",
            }
        },
    )
    assert manual["data"]["deposit"]["__typename"] == "LedgerEntryRecorded"
    org_wide = await tenant.gql(
        CHANNEL, {"input": {"kind": "WEBHOOK", "target": "http://127.0.0.1:9/org"}}
    )
    scoped = await tenant.gql(
        CHANNEL,
        {
            "input": {
                "kind": "WEBHOOK",
                "target": "http://127.0.0.1:9/account",
                "scope": {"kind": "ACCOUNT", "id": str(tenant.account_id)},
            }
        },
    )
    before = await conflict_count(stripe_client)
    with caplog.at_level(logging.WARNING, logger="costgraph.stripe"):
        response = await post(stripe_client, checkout(tenant, pi, amount=50_000))
    # Not a replay: Stripe is told to retry (non-2xx), nothing of the 500.00 is recorded.
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    rows = await deposits(database_url, tenant)
    assert [str(r["amount"]) for r in rows] == ["0.010000000000"]
    async with raw_connection(database_url) as connection:
        recorded = await connection.fetchval(
            "SELECT request_hash FROM ledger_entries WHERE idempotency_key = $1", f"stripe:{pi}"
        )
    (logged,) = [r.getMessage() for r in caplog.records if "conflicts with entry" in r.message]
    assert bytes(recorded).hex() in logged  # both fingerprints are logged
    offered = logged.split("this event's ")[1].split(";")[0]
    assert len(offered) == 64 and offered != bytes(recorded).hex()
    assert await conflict_count(stripe_client) == before + 1
    notice = await asyncio.wait_for(announced, 5)  # on alertRaised, after commit
    await feed.aclose()
    assert notice.code == "PAYMENT_CONFLICT" and notice.budget_id is None

    (alert,) = (await tenant.gql(ALERTS, {"filter": {"kind": "PAYMENT_CONFLICT"}}))["data"][
        "alerts"
    ]["nodes"]
    assert alert["code"] == "PAYMENT_CONFLICT" and alert["budgetId"] is None
    assert alert["scope"]["kind"] == "ORGANIZATION" and pi in alert["message"]
    assert Decimal(alert["spent"]) == Decimal("500") and Decimal(alert["limit"]) == Decimal("0.01")
    deliveries = (await tenant.gql(DELIVERIES, {"id": alert["id"]}))["data"]["alertDeliveries"]
    assert len(deliveries) == 1  # the organisation-wide channel only
    async with raw_connection(database_url) as connection:
        channel = await connection.fetchval(
            "SELECT channel_id FROM alert_deliveries WHERE alert_id = $1::uuid", alert["id"]
        )
    assert str(channel) == org_wide["data"]["createNotificationChannel"]["id"]
    assert str(channel) != scoped["data"]["createNotificationChannel"]["id"]

    # Stripe retries the same delivery: still a conflict, still one alert.
    again = await post(stripe_client, checkout(tenant, pi, amount=50_000))
    assert again.status_code == 409
    nodes = (await tenant.gql(ALERTS, {"filter": {"kind": "PAYMENT_CONFLICT"}}))["data"]["alerts"]
    assert len(nodes["nodes"]) == 1
    assert await conflict_count(stripe_client) == before + 2


async def test_the_same_payment_with_another_amount_is_a_conflict(
    stripe_client: httpx.AsyncClient, tenant: Tenant, database_url: str
) -> None:
    pi = f"pi_{uuid.uuid4().hex}"
    assert (await post(stripe_client, checkout(tenant, pi))).status_code == 200
    # The checkout's payment intent, as Stripe reports it too: the same payment, a replay.
    same = await post(stripe_client, intent_succeeded(tenant, pi, 2500))
    assert (same.status_code, same.json()["replayed"]) == (200, True)
    changed = await post(stripe_client, intent_succeeded(tenant, pi, 3000))
    assert changed.status_code == 409
    rows = await deposits(database_url, tenant)
    assert [str(r["amount"]) for r in rows] == ["25.000000000000"]


async def test_concurrent_deliveries_of_one_payment_record_one_deposit(
    stripe_client: httpx.AsyncClient, tenant: Tenant, database_url: str
) -> None:
    pi = f"pi_{uuid.uuid4().hex}"
    answers = await asyncio.gather(
        post(stripe_client, checkout(tenant, pi)),
        post(stripe_client, intent_succeeded(tenant, pi, 2500)),
        post(stripe_client, checkout(tenant, pi)),
    )
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert sorted(a.json()["replayed"] for a in answers) == [False, True, True]
    assert len(await deposits(database_url, tenant)) == 1


async def test_a_stripe_top_up_is_announced_after_commit(
    stripe_client: httpx.AsyncClient, stripe_app: Starlette, tenant: Tenant, database_url: str
) -> None:
    """``allowanceChanged`` hears of a Stripe top-up like of any other deposit."""
    state = app_state(stripe_app)

    async def balance() -> Decimal:
        async with raw_connection(database_url) as connection:
            value = await connection.fetchval(
                "SELECT balance FROM account_balances WHERE account_id = $1", tenant.account_id
            )
        return Decimal(0) if value is None else Decimal(value)

    feed = feeds.allowance_feed(state.bus, tenant.org.id, tenant.account_id, balance)
    assert await anext(feed) == Decimal(0)
    heard = asyncio.ensure_future(anext(feed))
    await asyncio.sleep(0.1)  # subscribed
    assert (await post(stripe_client, checkout(tenant, f"pi_{uuid.uuid4().hex}"))).is_success
    assert await asyncio.wait_for(heard, 5) == Decimal(25)
    await feed.aclose()


async def refunds(database_url: str, tenant: Tenant) -> list[Any]:
    async with raw_connection(database_url) as connection:
        return list(
            await connection.fetch(
                "SELECT r.amount, r.idempotency_key, d.idempotency_key AS deposit_key "
                "FROM ledger_entries r JOIN ledger_entries d ON d.organization_id = "
                "r.organization_id AND d.id = r.related_entry_id "
                "WHERE r.organization_id = $1 AND r.type = 'REFUND' ORDER BY r.recorded_at",
                tenant.org.id,
            )
        )


async def test_charge_refunded_records_one_refund_per_stripe_refund(
    stripe_client: httpx.AsyncClient, tenant: Tenant, database_url: str
) -> None:
    pi = f"pi_{uuid.uuid4().hex}"
    assert (await post(stripe_client, checkout(tenant, pi))).status_code == 200  # 25.00
    first = await post(stripe_client, charge_refunded(tenant, pi, 1000, [("re_a", 1000)]))
    assert first.status_code == 200, first.text
    assert first.json()["replayed"] is False
    again = await post(stripe_client, charge_refunded(tenant, pi, 1000, [("re_a", 1000)]))
    assert again.json()["replayed"] is True  # a redelivery: the same refund
    both = await post(
        stripe_client, charge_refunded(tenant, pi, 1500, [("re_b", 500), ("re_a", 1000)])
    )
    assert both.status_code == 200
    rows = await refunds(database_url, tenant)
    assert [(str(r["amount"]), r["idempotency_key"]) for r in rows] == [
        ("10.000000000000", "stripe:re_a"),
        ("5.000000000000", "stripe:re_b"),
    ]
    assert {r["deposit_key"] for r in rows} == {f"stripe:{pi}"}
    # Bounded like any refund: no more than what is left of the deposit (10.00).
    over = await post(
        stripe_client,
        charge_refunded(tenant, pi, 3000, [("re_c", 1500), ("re_b", 500), ("re_a", 1000)]),
    )
    assert over.status_code == 422 and over.json()["error"]["code"] == "VALIDATION_FAILED"
    assert len(await refunds(database_url, tenant)) == 2
    async with raw_connection(database_url) as connection:
        balance = await connection.fetchval(
            "SELECT balance FROM account_balances WHERE account_id = $1", tenant.account_id
        )
    assert balance == Decimal("10")  # 25.00 in, 15.00 refunded


async def test_charge_refunded_without_the_list_records_the_cumulative_total(
    stripe_client: httpx.AsyncClient, tenant: Tenant, database_url: str
) -> None:
    pi = f"pi_{uuid.uuid4().hex}"
    # A refund before its payment is recorded: refused, so Stripe delivers it again later.
    early = await post(stripe_client, charge_refunded(tenant, pi, 500, None))
    assert early.status_code == 422 and early.json()["error"]["code"] == "NOT_FOUND"
    assert (await post(stripe_client, checkout(tenant, pi))).status_code == 200
    for _ in range(2):  # recorded once, then a replay
        assert (await post(stripe_client, charge_refunded(tenant, pi, 500, None))).is_success
    assert (await post(stripe_client, charge_refunded(tenant, pi, 800, None))).is_success
    rows = await refunds(database_url, tenant)
    assert [(str(r["amount"]), r["idempotency_key"]) for r in rows] == [
        ("5.000000000000", "stripe:ch_1:refunded:500"),
        ("3.000000000000", "stripe:ch_1:refunded:800"),
    ]
