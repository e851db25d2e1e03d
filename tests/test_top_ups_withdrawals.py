"""Withdrawals out of a prepaid balance (never overdrawn, in the P&L, exports and verify),
auto-top-up (banner, one request per crossing on a signed webhook and a subscription), and a
member reading its own account's allowance."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from costgraph.alerts.config import DeliveryConfig
from costgraph.alerts.worker import DeliveryWorker, running
from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.auth.keys import KeyStore
from costgraph.auth.tokens import mint_access_token
from costgraph.billing import ledger, top_ups
from costgraph.billing.commands import UsageEvent
from costgraph.kernel import clock
from tests.alerts_support import HttpReceiver, http_receiver, until
from tests.conftest import Tenant, raw_connection
from tests.dates import month, rfc
from tests.pnl_support import ACCOUNT_PNL
from tests.subscriptions_support import serving, subscribed
from tests.test_allowances import allowance, prepaid_account, spend
from tests.test_ledger import DEPOSIT, deposit_input, entry_count
from tests.test_subscription_billing import behind
from tests.verify_support import assert_no_drift

WITHDRAW = """
mutation($input: WithdrawalInput!) {
  withdraw(input: $input) {
    __typename
    ... on LedgerEntryRecorded { replayed entry { id type amount balanceDelta currency } }
    ... on InsufficientBalance { accountId requested balance currency }
    ... on UserError { code message field }
  }
}"""
SET_AUTO = """
mutation($input: AutoTopUpInput!) {
  setAutoTopUp(input: $input) {
    __typename
    ... on AutoTopUp { accountId enabled threshold amount currency requestedAt requests }
    ... on UserError { code message field }
  }
}"""
RECORD = """
mutation($input: UsageEventInput!) {
  recordUsage(input: $input) {
    __typename
    ... on UsageRecorded { entry { balanceDelta } }
    ... on UserError { code message }
  }
}"""
TOP_UPS = """subscription($id: ID!) { topUpRequested(accountId: $id) {
  alertId accountId amount currency balance threshold message requestedAt } }"""
ALLOWANCE = "query($id: ID!) { allowance(accountId: $id) { used banner autoTopUp } }"
FAST = DeliveryConfig(
    poll_interval=0.05,
    batch_size=20,
    timeout=2.0,
    lease=5.0,
    max_attempts=3,
    retry_base=0.05,
    retry_max=0.2,
)


def withdrawal(account: str, amount: str, **extra: Any) -> dict[str, Any]:
    return {
        "idempotencyKey": f"w-{uuid.uuid4().hex}",
        "accountId": account,
        "amount": amount,
        "currency": "USD",
        **extra,
    }


async def withdraw(tenant: Tenant, value: dict[str, Any]) -> dict[str, Any]:
    body = await tenant.gql(WITHDRAW, {"input": value})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["withdraw"]
    return result


async def funded(tenant: Tenant, amount: str, tokens: int | None = None) -> str:
    account = await prepaid_account(tenant, tokens=tokens)
    body = await tenant.gql(
        DEPOSIT, {"input": deposit_input(tenant, accountId=account, amount=amount)}
    )
    assert body["data"]["deposit"]["__typename"] == "LedgerEntryRecorded", body
    return account


def database(state: AppState) -> str:
    url = state.settings.database_url
    assert url is not None
    return url


# --- withdrawals ---


async def test_a_withdrawal_takes_money_out_and_shows_everywhere(
    tenant: Tenant, state: AppState
) -> None:
    account = await funded(tenant, "10.00")
    request = withdrawal(account, "4.00", metadata={"payout": "po_1"})
    first = await withdraw(tenant, request)
    assert first["__typename"] == "LedgerEntryRecorded" and first["replayed"] is False
    entry = first["entry"]
    assert entry["type"] == "WITHDRAWAL"
    assert (Decimal(entry["amount"]), Decimal(entry["balanceDelta"])) == (4, -4)
    again = await withdraw(tenant, request)  # a retry replays, moves nothing
    assert again["replayed"] is True and again["entry"]["id"] == entry["id"]
    conflict = await withdraw(tenant, {**request, "amount": "3.00"})
    assert conflict["code"] == "IDEMPOTENCY_CONFLICT"
    assert Decimal((await allowance(tenant, account))["topUpBalance"]) == 6

    before = await entry_count(database(state), tenant)
    refused = await withdraw(tenant, withdrawal(account, "6.01"))
    assert refused["__typename"] == "InsufficientBalance"
    assert (refused["code"], refused["field"]) == ("INSUFFICIENT_BALANCE", "input.amount")
    assert Decimal(refused["balance"]) == 6 and Decimal(refused["requested"]) == Decimal("6.01")
    assert "6.00 USD" in refused["message"] and "6.01 USD" in refused["message"]
    assert await entry_count(database(state), tenant) == before  # nothing written
    rest = await withdraw(tenant, withdrawal(account, "6.00"))
    assert rest["__typename"] == "LedgerEntryRecorded"
    assert Decimal((await allowance(tenant, account))["topUpBalance"]) == 0

    # P&L: money handed back, subtracted from revenue (received) like a refund.
    span = {"start": rfc(month(-1)), "end": rfc(month(1))}
    pnl = await tenant.gql(ACCOUNT_PNL, {"id": account, "range": span})
    figures = pnl["data"]["accountPnl"]
    assert Decimal(figures["revenueBySource"]["withdrawals"]) == 10
    assert Decimal(figures["revenueBySource"]["topUps"]) == 10
    assert Decimal(figures["revenue"]) == Decimal(figures["revenueBySource"]["subscriptions"])
    # Exports: the ledger's rows.
    export = await tenant.client.get(
        "/exports/ledger.csv",
        params=span,
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert export.status_code == 200, export.text
    assert export.text.count("WITHDRAWAL") == 2
    await assert_no_drift(state, tenant.org.id)


async def test_concurrent_withdrawals_never_overdraw(tenant: Tenant, state: AppState) -> None:
    account = await funded(tenant, "10.00")
    results = await asyncio.gather(
        *(withdraw(tenant, withdrawal(account, "1.00")) for _ in range(25))
    )
    kinds = [r["__typename"] for r in results]
    assert kinds.count("LedgerEntryRecorded") == 10
    assert kinds.count("InsufficientBalance") == 15
    async with raw_connection(database(state)) as connection:
        balance = await connection.fetchval(
            "SELECT balance FROM account_balances WHERE account_id = $1", uuid.UUID(account)
        )
        withdrawn = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE account_id = $1 AND type = 'WITHDRAWAL'",
            uuid.UUID(account),
        )
    assert (balance, withdrawn) == (0, 10)
    await assert_no_drift(state, tenant.org.id)


async def test_bad_withdrawals_are_refused(tenant: Tenant, state: AppState) -> None:
    account = await funded(tenant, "5.00")
    cases = [
        (withdrawal(account, "0"), "VALIDATION_FAILED", "input.amount"),
        (withdrawal(account, "-1.00"), "VALIDATION_FAILED", "input.amount"),
        (withdrawal(account, "1.001"), "VALIDATION_FAILED", "input.amount"),
        (withdrawal(account, "1.00", currency="EUR"), "CURRENCY_MISMATCH", "input.currency"),
        (withdrawal(str(uuid.uuid4()), "1.00"), "NOT_FOUND", "input.accountId"),
        # A postpaid account's credit is not money to withdraw.
        (withdrawal(str(tenant.account_id), "1.00"), "INSUFFICIENT_BALANCE", "input.amount"),
    ]
    before = await entry_count(database(state), tenant)
    for value, code, field in cases:
        refused = await withdraw(tenant, value)
        assert (refused["code"], refused["field"]) == (code, field), value
    assert await entry_count(database(state), tenant) == before
    member = tenant.token_for(roles=["member"])
    forbidden = await tenant.gql(WITHDRAW, {"input": withdrawal(account, "1.00")}, token=member)
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    await assert_no_drift(state, tenant.org.id)


# --- the banner, for a member of the account ---


def member_token(keys: KeyStore, settings: Settings, tenant: Tenant, *accounts: str) -> str:
    return mint_access_token(
        keys.active,
        issuer=settings.issuer,
        audience=settings.audience,
        subject="member-1",
        organization_id=tenant.org.id,
        roles=["member"],
        ttl=timedelta(minutes=10),
        accounts=[uuid.UUID(a) for a in accounts],
    )


async def test_a_member_reads_its_own_accounts_banner_only(
    tenant: Tenant, keys: KeyStore, settings: Settings
) -> None:
    own = await prepaid_account(tenant, tokens=1000)
    other = await prepaid_account(tenant, tokens=1000)
    token = member_token(keys, settings, tenant, own)
    mine = await tenant.gql(ALLOWANCE, {"id": own}, token=token)
    assert mine["data"]["allowance"] == {"used": 0, "banner": "NONE", "autoTopUp": False}
    refused = await tenant.gql(ALLOWANCE, {"id": other}, token=token)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert refused["data"] is None
    unnamed = member_token(keys, settings, tenant)
    nothing = await tenant.gql(ALLOWANCE, {"id": own}, token=unnamed)
    assert nothing["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # A member still cannot read the ledger or another account's money.
    ledger = await tenant.gql("query { ledger(first: 1) { nodes { id } } }", token=token)
    assert ledger["errors"][0]["extensions"]["code"] == "FORBIDDEN"


# --- auto-top-up ---


async def set_auto(tenant: Tenant, account: str, **values: Any) -> dict[str, Any]:
    value = {"accountId": account, "enabled": True, "threshold": "5.00", "amount": "20.00"}
    value.update(values)
    body = await tenant.gql(SET_AUTO, {"input": value})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["setAutoTopUp"]
    return result


async def top_up_alerts(state: AppState, tenant: Tenant) -> list[dict[str, Any]]:
    async with raw_connection(database(state)) as connection:
        rows = await connection.fetch(
            "SELECT subject, spent, limit_amount, requested_amount, scope_id FROM alerts "
            "WHERE organization_id = $1 AND kind = 'TOP_UP_REQUESTED' ORDER BY raised_at",
            tenant.org.id,
        )
    return [dict(row) for row in rows]


async def test_the_banner_does_not_prompt_when_auto_top_up_is_on(
    tenant: Tenant, state: AppState
) -> None:
    with_auto = await funded(tenant, "10.00", tokens=1000)
    without = await funded(tenant, "10.00", tokens=1000)
    made = await set_auto(tenant, with_auto)
    assert made["__typename"] == "AutoTopUp" and made["requestedAt"] is None
    assert (Decimal(made["threshold"]), Decimal(made["amount"])) == (5, 20)
    for account in (with_auto, without):
        body = await tenant.gql(RECORD, {"input": spend(tenant, account, 800, "0.80")})
        assert body["data"]["recordUsage"]["__typename"] == "UsageRecorded"
    assert (await tenant.gql(ALLOWANCE, {"id": with_auto}))["data"]["allowance"] == {
        "used": 800,
        "banner": "NONE",
        "autoTopUp": True,
    }
    assert (await tenant.gql(ALLOWANCE, {"id": without}))["data"]["allowance"]["banner"] == (
        "BUY_MORE"
    )
    await set_auto(tenant, with_auto, enabled=False)  # off again: the banner prompts
    assert (await tenant.gql(ALLOWANCE, {"id": with_auto}))["data"]["allowance"]["banner"] == (
        "BUY_MORE"
    )
    assert await top_up_alerts(state, tenant) == []  # balances never went below 5
    await assert_no_drift(state, tenant.org.id)


async def test_bad_settings_are_refused_and_a_low_balance_requests_at_once(
    tenant: Tenant, state: AppState
) -> None:
    account = await prepaid_account(tenant, tokens=None)
    for values, field in [
        ({"threshold": "-1"}, "input.threshold"),
        ({"amount": "0"}, "input.amount"),
        ({"amount": "1.001"}, "input.amount"),
    ]:
        refused = await set_auto(tenant, account, **values)
        assert (refused["code"], refused["field"]) == ("VALIDATION_FAILED", field)
    missing = await set_auto(tenant, str(uuid.uuid4()))
    assert (missing["code"], missing["field"]) == ("NOT_FOUND", "input.accountId")
    assert await top_up_alerts(state, tenant) == []
    # Set on an account already below its threshold: the request goes at once, and once.
    made = await set_auto(tenant, account)
    assert made["requests"] == 1 and made["requestedAt"] is not None
    again = await set_auto(tenant, account, amount="30.00")
    assert again["requests"] == 1
    (alert,) = await top_up_alerts(state, tenant)
    assert alert["requested_amount"] == 20 and alert["spent"] == 0 and alert["limit_amount"] == 5
    await assert_no_drift(state, tenant.org.id)


async def test_concurrent_usage_crossing_the_threshold_requests_once(
    tenant: Tenant, state: AppState
) -> None:
    account = await funded(tenant, "10.00")
    await set_auto(tenant, account)

    async def use() -> str:
        event = spend(tenant, account, 10, "0.50")
        body = await tenant.gql(RECORD, {"input": event})
        kind: str = body["data"]["recordUsage"]["__typename"]
        return kind

    kinds = await asyncio.gather(*(use() for _ in range(16)))
    assert kinds.count("UsageRecorded") == 16  # 10.00 - 8.00 = 2.00 left
    (alert,) = await top_up_alerts(state, tenant)
    assert alert["spent"] < 5 and alert["subject"] == f"top-up:{account}:1"
    await assert_no_drift(state, tenant.org.id)


async def test_usage_waiting_on_a_setting_being_made_requests_the_top_up(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    """A usage write that waits for the balance's lock while the account's auto-top-up is
    being set, then takes the balance below the threshold, raises the request. The write's
    insert statement started before the setting committed, so its snapshot does not hold the
    setting: it skips the evaluation only on the balance row's own flag, which it reads as
    the lock left it (migration 0021). Unordered, nobody raised this request."""
    account = uuid.UUID(await funded(tenant, "10.00"))
    made, release = asyncio.Event(), asyncio.Event()
    backend: list[int] = []

    async def set_and_hold(unit: Any) -> Any:
        spec = top_ups.AutoTopUpSpec(account, True, Decimal("5.00"), Decimal("20.00"))
        row = await top_ups.set_auto_top_up(unit.session, unit.org, spec)
        made.set()
        await release.wait()  # the setting in flight: the balance locked, not committed yet
        return row

    async def use_six(unit: Any) -> Any:
        backend.append(await unit.session.scalar(text("SELECT pg_backend_pid()")))
        event = UsageEvent(
            idempotency_key=f"u-{uuid.uuid4().hex}",
            account_id=account,
            occurred_at=clock.utcnow() - timedelta(minutes=1),
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=100,
            provider_cost=Decimal("6.00"),
            provider_currency="USD",
        )
        return await ledger.record_usage(unit.session, unit.org, event, state.limits)

    writer = await behind(
        state,
        tenant.org,
        set_and_hold,
        made,
        release,
        use_six,
        database_url,
        backend,
        "the usage write",
    )
    entry = await writer
    assert entry.balance_delta == Decimal("-6.00")  # 10.00 -> 4.00, below 5.00
    (alert,) = await top_up_alerts(state, tenant)
    assert alert["subject"] == f"top-up:{account}:1" and alert["spent"] == Decimal("4.00")
    await assert_no_drift(state, tenant.org.id)


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with http_receiver() as served:
        yield served


async def test_each_crossing_requests_one_top_up_on_a_webhook_and_a_subscription(
    tenant: Tenant,
    state: AppState,
    settings: Settings,
    database_url: str,
    receiver: HttpReceiver,
) -> None:
    account = await funded(tenant, "10.00", tokens=1000)
    hook = (
        await tenant.gql(
            """mutation($input: NotificationChannelInput!) {
              createNotificationChannel(input: $input) { signingSecret } }""",
            {"input": {"kind": "WEBHOOK", "target": receiver.url("rail")}},
        )
    )["data"]["createNotificationChannel"]
    receiver.secrets["rail"] = hook["signingSecret"]
    await set_auto(tenant, account)
    app = create_app(settings, database_url)
    worker = DeliveryWorker(state.units, replace(state.alerts, delivery=FAST, run_worker=True))
    headers = {"Authorization": f"Bearer {tenant.token}"}
    async with app.router.lifespan_context(app), serving(app, lifespan=False) as server:
        port: int = server.port  # type: ignore[attr-defined]
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as http,
            subscribed(port, tenant.token, TOP_UPS, {"id": account}) as feed,
            running(worker),
        ):

            async def post(query: str, value: dict[str, Any]) -> dict[str, Any]:
                body: dict[str, Any] = (
                    await http.post("/graphql", json={"query": query, "variables": value})
                ).json()
                assert "errors" not in body, body
                return body["data"]

            async def use(tokens: int, cost: str) -> None:
                data = await post(RECORD, {"input": spend(tenant, account, tokens, cost)})
                assert data["recordUsage"]["__typename"] == "UsageRecorded", data

            await use(1000, "1.00")  # the allowance covers it: the balance stays at 10
            await use(100, "3.00")  # 7.00: still above 5
            await use(100, "3.00")  # 4.00: below -> request 1
            await use(100, "1.00")  # 3.00: still below, no second request
            first = (await feed.next_data("1"))["topUpRequested"]
            assert first["accountId"] == account and first["currency"] == "USD"
            assert (Decimal(first["amount"]), Decimal(first["balance"])) == (20, 4)
            assert Decimal(first["threshold"]) == 5 and "20.00 USD" in first["message"]
            # The integrator's rail charges and records the deposit: re-armed, then crossed again.
            deposit = deposit_input(tenant, accountId=account, amount="20.00")
            assert (await post(DEPOSIT, {"input": deposit}))["deposit"]["entry"]
            await use(100, "19.50")  # 23.00 -> 3.50: request 2
            second = (await feed.next_data("1"))["topUpRequested"]
            assert Decimal(second["balance"]) == Decimal("3.5")
            assert second["alertId"] != first["alertId"]
            await until(lambda: len(receiver.at("rail")) >= 2, 20)
            await asyncio.sleep(0.3)  # room for a duplicate to show up
    hooks = receiver.at("rail")
    assert len(hooks) == 2 and all(r.verified_id is not None for r in hooks)  # signed
    bodies = [r.json() for r in hooks]
    assert {b["type"] for b in bodies} == {"account.top_up_requested"}
    assert {b["data"]["alertId"] for b in bodies} == {first["alertId"], second["alertId"]}
    assert all(Decimal(b["data"]["requestedAmount"]) == 20 for b in bodies)
    assert all(
        b["data"]["scope"] == {"kind": "ACCOUNT", "id": account, "name": "Prepaid"} for b in bodies
    )
    alerts = await top_up_alerts(state, tenant)
    assert [a["subject"] for a in alerts] == [f"top-up:{account}:1", f"top-up:{account}:2"]
    await assert_no_drift(state, tenant.org.id)
