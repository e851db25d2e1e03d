"""Delivery through the outbox to real local receivers: exactly once per stage under concurrent
writers in two processes, retries with backoff, DEAD after the last attempt, no redirects, the
SSRF check at connect time, secret rotation, and a worker killed mid-delivery."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from starlette.responses import RedirectResponse, Response

from costgraph.alerts import signing
from costgraph.alerts.config import AlertsConfig, DeliveryConfig, SmtpConfig
from costgraph.alerts.ssrf import TargetPolicy, parse_networks
from costgraph.alerts.worker import DeliveryWorker, running
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from tests.alerts_support import (
    CHANNEL,
    DELIVERIES,
    HttpReceiver,
    Mailbox,
    hanging_tcp_server,
    http_receiver,
    smtp_server,
    statuses,
    until,
)
from tests.conftest import Tenant, raw_connection
from tests.dates import clock_environment
from tests.servers import running_servers
from tests.test_budgets import RECORD_USAGE, charge, set_budget

FAST = DeliveryConfig(
    poll_interval=0.05,
    batch_size=20,
    timeout=0.5,
    lease=5.0,
    max_attempts=3,
    retry_base=0.05,
    retry_max=0.2,
)


def fast_config(state: AppState, **changes: Any) -> AlertsConfig:
    return replace(state.alerts, delivery=FAST, run_worker=True, **changes)


async def deliveries(database_url: str, tenant: Tenant) -> list[dict[str, Any]]:
    async with raw_connection(database_url) as connection:
        rows = await connection.fetch(
            """SELECT d.id, d.state, d.attempts, d.last_error, c.kind, c.target, a.stage
               FROM alert_deliveries d
               JOIN notification_channels c
                 ON c.organization_id = d.organization_id AND c.id = d.channel_id
               JOIN alerts a ON a.organization_id = d.organization_id AND a.id = d.alert_id
               WHERE d.organization_id = $1""",
            tenant.org.id,
        )
    return [dict(row) for row in rows]


async def settled(database_url: str, tenant: Tenant, count: int) -> list[dict[str, Any]]:
    """Wait until the tenant has ``count`` deliveries, none of them PENDING."""
    found: list[dict[str, Any]] = []

    async def done() -> bool:
        nonlocal found
        found = await deliveries(database_url, tenant)
        return len(found) == count and all(d["state"] != "PENDING" for d in found)

    await until(done, within=20)
    return found


async def channel(tenant: Tenant, kind: str, target: str, **extra: Any) -> dict[str, Any]:
    body = await tenant.gql(CHANNEL, {"input": {"kind": kind, "target": target, **extra}})
    assert "errors" not in body, body
    made: dict[str, Any] = body["data"]["createNotificationChannel"]
    return made


async def record(tenant: Tenant, cost: str) -> None:
    result = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, cost)})
    assert result["data"]["recordUsage"]["__typename"] == "UsageRecorded", result


async def history(tenant: Tenant, alert_id: str) -> list[dict[str, Any]]:
    body = await tenant.gql(DELIVERIES, {"id": alert_id})
    assert "errors" not in body, body
    found: list[dict[str, Any]] = body["data"]["alertDeliveries"]
    return found


async def alert_ids(database_url: str, tenant: Tenant) -> dict[int, str]:
    async with raw_connection(database_url) as connection:
        rows = await connection.fetch(
            "SELECT stage, id FROM alerts WHERE organization_id = $1", tenant.org.id
        )
    return {row["stage"]: str(row["id"]) for row in rows}


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with http_receiver() as served:
        yield served


# --- exactly once, under concurrency, across processes ---


async def test_each_stage_reaches_each_channel_exactly_once(
    tenant: Tenant,
    settings: Settings,
    state: AppState,
    database_url: str,
    receiver: HttpReceiver,
) -> None:
    """Four writers in two processes (an API server process and this one) push spend through
    50/75/90/100 %; both processes run a delivery worker; the webhook receiver (checking
    signatures) and the SMTP server each get every stage exactly once."""
    mailbox = Mailbox()
    with smtp_server(mailbox) as smtp_port:
        smtp = SmtpConfig(host="127.0.0.1", port=smtp_port, security="none")
        env = {
            "COSTGRAPH_ALERTS_ALLOWED_NETWORKS": "127.0.0.0/8",
            "COSTGRAPH_ALERTS_WORKER": "true",
            "COSTGRAPH_ALERTS_POLL_INTERVAL_SECONDS": "0.1",
            "COSTGRAPH_SMTP_HOST": "127.0.0.1",
            "COSTGRAPH_SMTP_PORT": str(smtp_port),
            "COSTGRAPH_SMTP_SECURITY": "none",
            "COSTGRAPH_SMTP_FROM": "alerts@costgraph.test",
        }
        with running_servers(settings, 1, **env) as (url,):
            await set_budget(tenant, hardCap=False, limit="1.20")
            hook = await channel(tenant, "WEBHOOK", receiver.url("hook"))
            receiver.secrets["hook"] = hook["signingSecret"]
            await channel(tenant, "SLACK", receiver.url("slack"))
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                created = await http.post(
                    "/graphql",
                    json={
                        "query": CHANNEL,
                        "variables": {"input": {"kind": "EMAIL", "target": "ops@example.com"}},
                    },
                    headers={"Authorization": f"Bearer {tenant.token}"},
                )
                assert created.json()["data"]["createNotificationChannel"]["kind"] == "EMAIL"

            async def remote_writer() -> None:
                headers = {"Authorization": f"Bearer {tenant.token}"}
                async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as http:
                    for _ in range(10):
                        event = {"input": charge(tenant, "0.03")}
                        body = {"query": RECORD_USAGE, "variables": event}
                        result = (await http.post("/graphql", json=body)).json()
                        assert result["data"]["recordUsage"]["__typename"] == "UsageRecorded"

            async def local_writer() -> None:
                for _ in range(10):
                    await record(tenant, "0.03")

            # 40 x 0.03 = 1.20: the stages fall exactly on writes 20, 30, 36 and 40.
            local = DeliveryWorker(state.units, fast_config(state, smtp=smtp))
            async with running(local):
                writers = [remote_writer(), local_writer(), remote_writer(), local_writer()]
                await asyncio.gather(*writers)
                found = await settled(database_url, tenant, 12)
                await asyncio.sleep(0.5)  # room for any duplicate to show up
        assert all(d["state"] == "DELIVERED" and d["attempts"] == 1 for d in found), found
        stages = await alert_ids(database_url, tenant)
        assert sorted(stages) == [50, 75, 90, 100]

        hooks = receiver.at("hook")
        assert len(hooks) == 4
        assert all(r.verified_id is not None for r in hooks)  # every signature checks out
        assert sorted(r.json()["data"]["stage"] for r in hooks) == [50, 75, 90, 100]
        assert {r.json()["data"]["alertId"] for r in hooks} == set(stages.values())
        assert all(r.json()["type"] == "budget.threshold" for r in hooks)
        slack = receiver.at("slack")
        assert len(slack) == 4 and all("blocks" in r.json() for r in slack)
        assert sorted(mailbox.alert_ids().values()) == [1, 1, 1, 1]
        assert set(mailbox.alert_ids()) == set(stages.values())
        assert all(m["To"] == "ops@example.com" for m in mailbox.messages)


# --- retries, dead deliveries, the worker carrying on ---


async def test_500_then_200_is_retried_and_delivered_once(
    tenant: Tenant, state: AppState, database_url: str, receiver: HttpReceiver
) -> None:
    receiver.behaviours["flaky"] = statuses(500, 200)
    hook = await channel(tenant, "WEBHOOK", receiver.url("flaky"))
    receiver.secrets["flaky"] = hook["signingSecret"]
    await set_budget(tenant, hardCap=False, thresholds=[50])
    await record(tenant, "0.60")
    async with running(DeliveryWorker(state.units, fast_config(state))):
        (found,) = await settled(database_url, tenant, 1)
    assert found["state"] == "DELIVERED" and found["attempts"] == 2
    first, second = receiver.at("flaky")
    assert first.verified_id == second.verified_id == str(found["id"])  # the same message id
    assert first.body == second.body
    assert receiver.unique_ids("flaky") == {str(found["id"]): 2}  # a deduping receiver: once
    (stage_id,) = (await alert_ids(database_url, tenant)).values()
    (delivery,) = await history(tenant, stage_id)
    assert [(h["outcome"], h["statusCode"]) for h in delivery["history"]] == [
        ("HTTP_STATUS", 500),
        ("DELIVERED", None),
    ]


async def test_a_silent_receiver_goes_dead_and_the_worker_carries_on(
    tenant: Tenant, state: AppState, database_url: str, receiver: HttpReceiver
) -> None:
    receiver.behaviours["silent"] = receiver.hang
    await channel(tenant, "WEBHOOK", receiver.url("silent"))
    await channel(tenant, "TEAMS", receiver.url("teams"))
    await channel(tenant, "PAGERDUTY", receiver.url("pd"), secret="R0UTINGKEY0123456789abcdef")
    await set_budget(tenant, hardCap=False, thresholds=[50])
    await record(tenant, "0.60")
    started = time.monotonic()
    async with running(DeliveryWorker(state.units, fast_config(state))):
        await until(lambda: len(receiver.at("teams")) == 1 and len(receiver.at("pd")) == 1, 5)
        delivered_after = time.monotonic() - started
        found = await settled(database_url, tenant, 3)
    assert delivered_after < FAST.timeout * 2  # not held up by the silent one
    by_kind = {d["kind"]: d for d in found}
    assert by_kind["TEAMS"]["state"] == "DELIVERED"
    assert by_kind["PAGERDUTY"]["state"] == "DELIVERED"
    dead = by_kind["WEBHOOK"]
    assert dead["state"] == "DEAD" and dead["attempts"] == FAST.max_attempts
    assert len(receiver.at("silent")) == FAST.max_attempts
    (alert_id,) = (await alert_ids(database_url, tenant)).values()
    webhook = next(d for d in await history(tenant, alert_id) if d["channelKind"] == "WEBHOOK")
    assert [h["outcome"] for h in webhook["history"]] == ["TIMEOUT"] * FAST.max_attempts
    teams = receiver.at("teams")[0].json()
    assert teams["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    pd = receiver.at("pd")[0].json()
    assert pd["routing_key"] == "R0UTINGKEY0123456789abcdef"
    assert pd["dedup_key"] == alert_id and pd["event_action"] == "trigger"
    assert pd["payload"]["severity"] == "warning"


async def test_smtp_that_refuses_then_accepts_and_smtp_that_hangs(
    tenant: Tenant, state: AppState, database_url: str, receiver: HttpReceiver
) -> None:
    mailbox = Mailbox(refuse=1)
    saved = state.alerts
    with smtp_server(mailbox) as port:
        smtp = SmtpConfig(host="127.0.0.1", port=port, security="none", timeout=0.4)
        state.alerts = replace(saved, smtp=smtp)
        try:
            await channel(tenant, "EMAIL", "finance@example.com")
        finally:
            state.alerts = saved
        await set_budget(tenant, hardCap=False, thresholds=[50, 100])
        await record(tenant, "0.60")
        async with running(DeliveryWorker(state.units, fast_config(state, smtp=smtp))):
            (mail,) = await settled(database_url, tenant, 1)
    assert mail["state"] == "DELIVERED" and mail["attempts"] == 2
    assert mailbox.refused == 1 and len(mailbox.messages) == 1
    assert "50%" in str(mailbox.messages[0]["Subject"])

    # Now the SMTP server hangs: bounded by the timeout, retried, dead; the webhook goes out.
    await channel(tenant, "WEBHOOK", receiver.url("beside-smtp"))
    async with hanging_tcp_server() as port:
        hung = SmtpConfig(host="127.0.0.1", port=port, security="none", timeout=0.3)
        async with running(DeliveryWorker(state.units, fast_config(state, smtp=hung))):
            await record(tenant, "0.50")  # 1.10: stage 100
            found = await settled(database_url, tenant, 3)
    late = {d["kind"]: d for d in found if d["stage"] == 100}
    assert late["WEBHOOK"]["state"] == "DELIVERED"
    assert late["EMAIL"]["state"] == "DEAD" and late["EMAIL"]["attempts"] == FAST.max_attempts
    assert "in time" in late["EMAIL"]["last_error"] or "timed out" in late["EMAIL"]["last_error"]


# --- SSRF at delivery time, redirects ---


async def test_redirects_are_not_followed_and_addresses_are_rechecked(
    tenant: Tenant, state: AppState, database_url: str, receiver: HttpReceiver
) -> None:
    inner = HttpReceiver()
    async with http_receiver(inner, host="127.0.0.2"):

        async def redirect(request: Any, attempt: int) -> Response:
            return RedirectResponse(inner.url("private"), status_code=307)

        receiver.behaviours["redirect"] = redirect
        await channel(tenant, "WEBHOOK", receiver.url("redirect"))
        # Accepted when created (127.0.0.0/8 allowed then); the worker allows 127.0.0.1 only,
        # as if the name now resolved elsewhere: it must not connect.
        await channel(tenant, "WEBHOOK", inner.url("moved"))
        await set_budget(tenant, hardCap=False, thresholds=[50])
        await record(tenant, "0.60")
        narrow = fast_config(state, policy=TargetPolicy(parse_networks(["127.0.0.1/32"])))
        async with running(DeliveryWorker(state.units, narrow)):
            found = await settled(database_url, tenant, 2)
    assert all(d["state"] == "DEAD" for d in found)
    assert len(receiver.at("redirect")) == FAST.max_attempts
    assert inner.received == []  # neither the redirect target nor the re-checked target
    (alert_id,) = (await alert_ids(database_url, tenant)).values()
    outcomes = {
        d["id"]: {h["outcome"] for h in d["history"]} for d in await history(tenant, alert_id)
    }
    assert sorted(map(sorted, outcomes.values())) == [["REDIRECT"], ["REFUSED"]]


async def test_rotated_secrets_sign_with_each_active_secret(
    tenant: Tenant, state: AppState, database_url: str, receiver: HttpReceiver
) -> None:
    old = signing.generate_secret()
    made = await channel(tenant, "WEBHOOK", receiver.url("rotating"), secret=old)
    assert made["signingSecret"] == old
    rotate = """mutation($id: ID!) {
      rotateNotificationChannelSecret(id: $id, keepPrevious: 1) { signingSecret } }"""
    new = (await tenant.gql(rotate, {"id": made["id"]}))["data"]["rotateNotificationChannelSecret"][
        "signingSecret"
    ]
    await set_budget(tenant, hardCap=False, thresholds=[50])
    await record(tenant, "0.60")
    async with running(DeliveryWorker(state.units, fast_config(state))):
        await settled(database_url, tenant, 1)
    (message,) = receiver.at("rotating")
    assert len(message.headers["webhook-signature"].split(" ")) == 2
    now = int(time.time())
    assert signing.verify(old, message.headers, message.body, now)
    assert signing.verify(new, message.headers, message.body, now)


# --- a worker killed between the alert's commit and its delivery ---


def _start_worker(settings: Settings, **env: str) -> subprocess.Popen[bytes]:
    assert settings.database_url
    environment = dict(
        os.environ,
        COSTGRAPH_DATABASE_URL=settings.database_url,
        COSTGRAPH_DATA_DIR=str(settings.data_dir),
        COSTGRAPH_ALERTS_ALLOWED_NETWORKS="127.0.0.0/8",
        COSTGRAPH_ALERTS_POLL_INTERVAL_SECONDS="0.1",
        COSTGRAPH_ALERTS_DELIVERY_TIMEOUT_SECONDS="2",
        COSTGRAPH_ALERTS_CLAIM_LEASE_SECONDS="2.5",
        COSTGRAPH_ALERTS_RETRY_BASE_SECONDS="0.1",
        **clock_environment(),
        **env,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "costgraph.app.cli", "worker"],
        env=environment,
        stdout=subprocess.DEVNULL,
    )


async def test_a_delivery_survives_its_worker_being_killed(
    tenant: Tenant, settings: Settings, database_url: str, receiver: HttpReceiver
) -> None:
    answers = iter([receiver.hang])

    async def first_hangs(request: Any, attempt: int) -> Any:
        behaviour = next(answers, None)
        if behaviour is None:
            return await statuses(200)(request, attempt)
        return await behaviour(request, attempt)

    receiver.behaviours["durable"] = first_hangs
    hook = await channel(tenant, "WEBHOOK", receiver.url("durable"))
    receiver.secrets["durable"] = hook["signingSecret"]
    await set_budget(tenant, hardCap=False, thresholds=[50])
    await record(tenant, "0.60")  # committed; no worker is running
    (pending,) = await deliveries(database_url, tenant)
    assert pending["state"] == "PENDING" and pending["attempts"] == 0

    first = _start_worker(settings)
    try:
        await until(lambda: len(receiver.at("durable")) == 1, 20)  # mid-delivery
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    (claimed,) = await deliveries(database_url, tenant)
    assert claimed["state"] == "PENDING" and claimed["attempts"] == 1

    # Restarted: the row comes due when the dead worker's lease runs out, and is delivered.
    second = _start_worker(settings)
    try:
        (done,) = await settled(database_url, tenant, 1)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(10)
    assert done["state"] == "DELIVERED" and done["attempts"] == 2
    received = receiver.at("durable")
    assert len(received) == 2
    assert receiver.unique_ids("durable") == {str(done["id"]): 2}  # deduped: one alert
    assert second.returncode == 0
