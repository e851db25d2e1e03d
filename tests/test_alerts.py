"""Stage alerts: raised once per budget, stage and period, in the writer's transaction;
listed, filtered, acknowledged; announced after commit; channels validated (SSRF included)."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from costgraph.alerts import evaluation, rules, signing, ssrf
from costgraph.alerts.config import SmtpConfig
from costgraph.alerts.errors import TargetRefused
from costgraph.app.state import AppState
from costgraph.billing import budget_repository
from costgraph.models.scoping import bind_tenant
from costgraph.subscriptions import feeds
from tests import dates
from tests.alerts_support import ACKNOWLEDGE, ALERTS, CHANNEL
from tests.conftest import Tenant, raw_connection
from tests.test_budgets import (
    AUTHORIZE,
    RECORD_USAGE,
    SETTLE,
    authorize_input,
    charge,
    set_budget,
)
from tests.test_ledger import RECORD_BATCH

# --- the rule ---


def test_crossing_is_exact_and_includes_the_boundary() -> None:
    limit = Decimal("1.00")
    assert rules.crossed_stages([50, 75], limit, Decimal("0.49"), Decimal("0.50")) == [50]
    assert rules.crossed_stages([50, 75], limit, Decimal("0.50"), Decimal("0.74")) == []
    assert rules.crossed_stages([50, 75, 90, 100], limit, Decimal(0), Decimal("5")) == [
        50,
        75,
        90,
        100,
    ]
    # A thousandth of a cent short is short.
    assert rules.crossed_stages([100], limit, Decimal(0), Decimal("0.99999999")) == []


def test_standard_webhooks_signature_vector() -> None:
    # The test vector of the Standard Webhooks reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = signing.headers([signing.generate_secret(), secret], "m1", 1614265330, body)
    assert signing.verify(secret, headers, body, 1614265330) == "m1"
    with pytest.raises(signing.InvalidSignature):
        signing.verify(secret, headers, body + b" ", 1614265330)
    with pytest.raises(signing.InvalidSignature):
        signing.verify(secret, headers, body, 1614265330 + 3600)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",
        "64:ff9b::a00:1",
        "ff02::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert ssrf.TargetPolicy().refusal(ipaddress.ip_address(address)) is not None


def test_public_addresses_pass_and_allowed_networks_open_only_what_they_say() -> None:
    assert ssrf.TargetPolicy().refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert ssrf.TargetPolicy().refusal(ipaddress.ip_address("2606:2800:220:1::1")) is None
    policy = ssrf.TargetPolicy(ssrf.parse_networks(["127.0.0.0/8", "169.254.0.0/16"]))
    assert policy.refusal(ipaddress.ip_address("127.0.0.2")) is None
    assert policy.refusal(ipaddress.ip_address("10.0.0.1")) is not None
    # Metadata stays refused even inside an allowed network.
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) is not None


async def test_urls_are_checked_after_resolving_their_host() -> None:
    strict = ssrf.TargetPolicy()
    with pytest.raises(TargetRefused, match="refused address"):
        await ssrf.check_url("https://localhost/hook", strict)  # resolves to loopback
    with pytest.raises(TargetRefused, match="https"):
        await ssrf.check_url("http://93.184.216.34/hook", strict)
    with pytest.raises(TargetRefused, match="does not resolve"):
        await ssrf.check_url("https://no-such-host.invalid/hook", strict)
    assert await ssrf.check_url("https://93.184.216.34/hook", strict)
    loopback = ssrf.TargetPolicy(ssrf.parse_networks(["127.0.0.0/8"]))
    assert await ssrf.check_url("http://127.0.0.1:9/hook", loopback)


# --- raising ---


async def _alerts(tenant: Tenant, token: str | None = None, **variables: Any) -> list[Any]:
    body = await tenant.gql(ALERTS, variables, token)
    assert "errors" not in body, body
    nodes: list[Any] = body["data"]["alerts"]["nodes"]
    return nodes


async def _record(tenant: Tenant, cost: str) -> str:
    result = (await tenant.gql(RECORD_USAGE, {"input": charge(tenant, cost)}))["data"]
    kind: str = result["recordUsage"]["__typename"]
    return kind


async def test_each_stage_is_raised_once_as_spend_crosses_it(tenant: Tenant) -> None:
    budget = (await set_budget(tenant, hardCap=False))["data"]["setBudget"]
    assert await _record(tenant, "0.60") == "UsageRecorded"
    assert [a["stage"] for a in await _alerts(tenant)] == [50]
    await _record(tenant, "0.20")  # 0.80: 75
    await _record(tenant, "0.40")  # 1.20: 90 and 100 in one write
    await _record(tenant, "0.10")  # nothing new
    alerts = await _alerts(tenant)
    assert sorted(a["stage"] for a in alerts) == [50, 75, 90, 100]
    by_stage = {a["stage"]: a for a in alerts}
    assert Decimal(by_stage[50]["spent"]) == Decimal("0.60")
    assert Decimal(by_stage[100]["spent"]) == Decimal("1.20")
    first = by_stage[90]
    assert first["code"] == "BUDGET_THRESHOLD" and first["kind"] == "THRESHOLD"
    assert first["state"] == "OPEN" and first["budgetId"] == budget["id"]
    assert first["scope"] == {"kind": "ACCOUNT", "id": str(tenant.account_id)}
    assert Decimal(first["limit"]) == Decimal("1.00") and first["currency"] == "USD"
    assert "90%" in first["message"] and "1.20 USD" in first["message"]
    assert first["periodStart"] < first["raisedAt"] < first["periodEnd"]


async def test_a_refused_write_raises_nothing(tenant: Tenant) -> None:
    await set_budget(tenant)  # hard cap 1.00
    assert await _record(tenant, "1.50") == "BudgetLimitReached"
    assert await _alerts(tenant) == []
    assert await _record(tenant, "1.00") == "UsageRecorded"
    assert sorted(a["stage"] for a in await _alerts(tenant)) == [50, 75, 90, 100]


async def test_concurrent_writers_raise_each_stage_exactly_once(tenant: Tenant) -> None:
    await set_budget(tenant, hardCap=False, limit="1.20")

    async def writer() -> None:
        for _ in range(10):
            assert await _record(tenant, "0.03") == "UsageRecorded"

    await asyncio.gather(*(writer() for _ in range(4)))
    alerts = await _alerts(tenant)
    assert sorted(a["stage"] for a in alerts) == [50, 75, 90, 100]
    # The stage's alert records the spend of the write that crossed it: exactly the threshold.
    assert {a["stage"]: Decimal(a["spent"]) for a in alerts} == {
        50: Decimal("0.60"),
        75: Decimal("0.90"),
        90: Decimal("1.08"),
        100: Decimal("1.20"),
    }


async def test_batches_and_settlements_raise_alerts_too(tenant: Tenant) -> None:
    await set_budget(tenant, hardCap=False)
    batch = [charge(tenant, "0.30"), charge(tenant, "0.30"), charge(tenant, "0.20")]
    done = await tenant.gql(RECORD_BATCH, {"input": batch})
    assert "errors" not in done, done
    assert sorted(a["stage"] for a in await _alerts(tenant)) == [50, 75]
    held = (await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.05")}))["data"]
    reservation = held["authorizeUsage"]["reservation"]["id"]
    settled = await tenant.gql(
        SETTLE, {"input": {"reservationId": reservation, "usage": charge(tenant, "0.20")}}
    )
    assert settled["data"]["settleUsage"]["__typename"] == "UsageRecorded"
    assert sorted(a["stage"] for a in await _alerts(tenant)) == [50, 75, 90, 100]


async def test_channels_hear_their_scope_and_below(tenant: Tenant, database_url: str) -> None:
    department = (await tenant.gql('mutation { createDepartment(input: {name: "Ops"}) { id } }'))[
        "data"
    ]["createDepartment"]["id"]
    user = (
        await tenant.gql(
            'mutation($d: ID) { createUser(input: {email: "ann@x.io", departmentId: $d}) { id } }',
            {"d": department},
        )
    )["data"]["createUser"]["id"]
    user_budget = (await set_budget(tenant, scope={"kind": "USER", "id": user}, hardCap=False))[
        "data"
    ]["setBudget"]
    await set_budget(tenant, hardCap=False)  # the account's
    target = "http://127.0.0.1:9/never"
    made = {}
    for name, extra in {
        "org": {},
        "department": {"scope": {"kind": "DEPARTMENT", "id": department}},
        "user": {"scope": {"kind": "USER", "id": user}},
        "customer": {"scope": {"kind": "CUSTOMER", "id": str(tenant.customer_id)}},
        "budget": {"budgetId": user_budget["id"]},
    }.items():
        body = await tenant.gql(CHANNEL, {"input": {"kind": "WEBHOOK", "target": target, **extra}})
        made[body["data"]["createNotificationChannel"]["id"]] = name
    result = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0.50", userId=user)})
    assert result["data"]["recordUsage"]["__typename"] == "UsageRecorded"
    async with raw_connection(database_url) as connection:
        rows = await connection.fetch(
            """SELECT a.scope_kind, d.channel_id FROM alert_deliveries d
               JOIN alerts a ON a.organization_id = d.organization_id AND a.id = d.alert_id
               WHERE d.organization_id = $1""",
            tenant.org.id,
        )
        # Nobody is listening there: keep other tests' workers from trying.
        await connection.execute(
            "UPDATE alert_deliveries SET state = 'DEAD' WHERE organization_id = $1",
            tenant.org.id,
        )
    heard: dict[str, set[str]] = {}
    for row in rows:
        heard.setdefault(row["scope_kind"], set()).add(made[str(row["channel_id"])])
    assert heard == {
        "USER": {"org", "department", "user", "budget"},
        "ACCOUNT": {"org", "customer"},
    }


async def test_filters_and_pages(tenant: Tenant) -> None:
    await set_budget(tenant, hardCap=False)
    org_budget = (await set_budget(tenant, scope={"kind": "ORGANIZATION"}, limit="10.00"))["data"][
        "setBudget"
    ]
    await _record(tenant, "1.00")  # account: 4 stages; organisation: 10 % (none)
    await _record(tenant, "4.00")  # organisation: 50 %
    assert len(await _alerts(tenant)) == 5
    assert [
        a["budgetId"] for a in await _alerts(tenant, filter={"scope": {"kind": "ORGANIZATION"}})
    ] == [org_budget["id"]]
    assert len(await _alerts(tenant, filter={"stage": 50})) == 2
    assert len(await _alerts(tenant, filter={"kind": "FORECAST"})) == 0
    page = (await tenant.gql(ALERTS, {"first": 3}))["data"]["alerts"]
    assert len(page["nodes"]) == 3 and page["pageInfo"]["hasNextPage"]
    rest = (await tenant.gql(ALERTS, {"first": 3, "after": page["pageInfo"]["endCursor"]}))["data"][
        "alerts"
    ]
    assert len(rest["nodes"]) == 2 and not rest["pageInfo"]["hasNextPage"]
    seen = {a["id"] for a in page["nodes"]} | {a["id"] for a in rest["nodes"]}
    assert len(seen) == 5
    future = dates.later(days=1)  # alerts are raised by the business clock
    window = {"start": future.isoformat(), "end": (future + timedelta(days=1)).isoformat()}
    assert await _alerts(tenant, filter={"range": window}) == []
    bad = await tenant.gql(
        ALERTS, {"filter": {"range": {"start": window["end"], "end": window["start"]}}}
    )
    assert bad["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"


async def test_acknowledge_records_who_and_when(tenant: Tenant, other_tenant: Tenant) -> None:
    await set_budget(tenant, hardCap=False)
    await _record(tenant, "0.50")
    (alert,) = await _alerts(tenant)
    viewer = tenant.token_for(roles=["finance_viewer"])
    assert len(await _alerts(tenant, token=viewer)) == 1  # reading needs READ_USAGE only
    refused = await tenant.gql(ACKNOWLEDGE, {"id": alert["id"]}, token=viewer)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    admin = tenant.mint(tenant.org.id, ["org_admin"], None, subject="alice@example.com")
    done = (await tenant.gql(ACKNOWLEDGE, {"id": alert["id"]}, token=admin))["data"]
    acked = done["acknowledgeAlert"]
    assert acked["state"] == "ACKNOWLEDGED" and acked["acknowledgedBy"] == "alice@example.com"
    again = (await tenant.gql(ACKNOWLEDGE, {"id": alert["id"]}))["data"]["acknowledgeAlert"]
    assert again["acknowledgedBy"] == "alice@example.com"  # the first acknowledgement stays
    assert again["acknowledgedAt"] == acked["acknowledgedAt"]
    assert len(await _alerts(tenant, filter={"state": "OPEN"})) == 0
    assert len(await _alerts(tenant, filter={"state": "ACKNOWLEDGED"})) == 1

    # Another tenant's alert answers exactly as a missing one.
    for ident in (alert["id"], str(uuid.uuid4()), "not-an-id"):
        foreign = await other_tenant.gql(ACKNOWLEDGE, {"id": ident})
        assert foreign["data"] is None
        assert foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await _alerts(other_tenant) == []


async def test_raised_alerts_are_announced_after_commit(tenant: Tenant, state: AppState) -> None:
    await set_budget(tenant, hardCap=False)
    feed = feeds.alert_feed(state.bus, tenant.org.id)
    first = asyncio.ensure_future(anext(feed))
    await asyncio.sleep(0.1)  # subscribed
    await _record(tenant, "0.75")
    notices = [await asyncio.wait_for(first, 5), await asyncio.wait_for(anext(feed), 5)]
    await feed.aclose()
    assert sorted(n.stage or 0 for n in notices) == [50, 75]
    (stored,) = await _alerts(tenant, filter={"stage": 75})
    notice = next(n for n in notices if n.stage == 75)
    assert str(notice.id) == stored["id"] and notice.code == "BUDGET_THRESHOLD"
    assert notice.scope_kind == "ACCOUNT" and notice.spent == Decimal("0.75")


async def test_forecast_stage_is_raised_once_per_period(tenant: Tenant, state: AppState) -> None:
    made = (await set_budget(tenant, hardCap=False))["data"]["setBudget"]
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, tenant.org.id)
        budget = await budget_repository.get_budget(session, uuid.UUID(made["id"]))
        assert budget is not None
        period = (dates.month(), dates.month(1))  # this month
        under = await evaluation.raise_forecast_alert(
            session, tenant.org, budget, period, Decimal("0.99")
        )
        first = await evaluation.raise_forecast_alert(
            session, tenant.org, budget, period, Decimal("1.40")
        )
        second = await evaluation.raise_forecast_alert(
            session, tenant.org, budget, period, Decimal("1.60")
        )
    assert under is None and first is not None and second is None
    (alert,) = await _alerts(tenant, filter={"kind": "FORECAST"})
    assert alert["stage"] is None and alert["code"] == "BUDGET_FORECAST"
    assert Decimal(alert["spent"]) == Decimal("1.40") and "forecast" in alert["message"]


# --- channels ---


async def _channels(database_url: str, tenant: Tenant) -> int:
    async with raw_connection(database_url) as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM notification_channels WHERE organization_id = $1", tenant.org.id
        )
        return count


@pytest.mark.parametrize(
    ("value", "field", "text"),
    [
        ({"kind": "WEBHOOK", "target": "http://93.184.216.34/hook"}, "input.target", "https"),
        ({"kind": "WEBHOOK", "target": "https://10.0.0.5/hook"}, "input.target", "not a public"),
        ({"kind": "WEBHOOK", "target": "https://192.168.1.20/hook"}, "input.target", "public"),
        (
            {"kind": "SLACK", "target": "https://169.254.169.254/latest/meta-data"},
            "input.target",
            "metadata",
        ),
        ({"kind": "TEAMS", "target": "https://[::1]:8443/hook"}, "input.target", "public"),
        ({"kind": "WEBHOOK", "target": "https://u:p@example.com/h"}, "input.target", "password"),
        ({"kind": "WEBHOOK", "target": "ftp://example.com/h"}, "input.target", "https"),
        ({"kind": "WEBHOOK", "target": "  "}, "input.target", "required"),
        (
            {"kind": "WEBHOOK", "target": "http://127.0.0.1:9/h", "secret": "hunter2"},
            "input.secret",
            "whsec_",
        ),
        (
            {"kind": "SLACK", "target": "http://127.0.0.1:9/h", "secret": "x"},
            "input.secret",
            "no secret",
        ),
        ({"kind": "PAGERDUTY", "target": "http://127.0.0.1:9/h"}, "input.secret", "routing key"),
        ({"kind": "EMAIL", "target": "not-an-address"}, "input.target", "email"),
        ({"kind": "EMAIL", "target": "ops@example.com"}, "input.kind", "SMTP"),
        ({"kind": "SMS", "target": "0612345678"}, "input.target", "E.164"),
        ({"kind": "SMS", "target": "+447700900123"}, "input.kind", "SMS account"),
    ],
)
async def test_bad_channel_input_is_refused_and_writes_nothing(
    tenant: Tenant, database_url: str, value: dict[str, Any], field: str, text: str
) -> None:
    body = await tenant.gql(CHANNEL, {"input": value})
    assert body["data"] is None, body
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "VALIDATION_FAILED", "field": field}
    assert text in error["message"]
    assert await _channels(database_url, tenant) == 0


async def test_channel_scope_must_be_the_callers(tenant: Tenant, other_tenant: Tenant) -> None:
    foreign = {"kind": "ACCOUNT", "id": str(other_tenant.account_id)}
    body = await tenant.gql(
        CHANNEL, {"input": {"kind": "WEBHOOK", "target": "http://127.0.0.1:9/h", "scope": foreign}}
    )
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    body = await tenant.gql(
        CHANNEL,
        {
            "input": {
                "kind": "WEBHOOK",
                "target": "http://127.0.0.1:9/h",
                "budgetId": str(uuid.uuid4()),
            }
        },
    )
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_channels_are_created_listed_and_rotated(
    tenant: Tenant, state: AppState, other_tenant: Tenant
) -> None:
    made = (
        await tenant.gql(CHANNEL, {"input": {"kind": "WEBHOOK", "target": "http://127.0.0.1:9/h"}})
    )["data"]["createNotificationChannel"]
    secret = made["signingSecret"]
    assert secret.startswith("whsec_") and made["secretCount"] == 1 and made["scope"] is None
    slack = (
        await tenant.gql(
            CHANNEL,
            {
                "input": {
                    "kind": "SLACK",
                    "target": "http://127.0.0.1:9/services/T000/B000/XXXX",
                    "scope": {"kind": "ACCOUNT", "id": str(tenant.account_id)},
                }
            },
        )
    )["data"]["createNotificationChannel"]
    assert slack["target"] == "http://127.0.0.1:9/…"  # the URL is a credential
    assert slack["signingSecret"] is None
    listed = await tenant.gql("{ notificationChannels { id kind signingSecret } }")
    assert {c["id"] for c in listed["data"]["notificationChannels"]} == {made["id"], slack["id"]}
    assert all(c["signingSecret"] is None for c in listed["data"]["notificationChannels"])
    assert (await other_tenant.gql("{ notificationChannels { id } }"))["data"][
        "notificationChannels"
    ] == []

    rotate = """mutation($id: ID!, $keep: Int!) {
      rotateNotificationChannelSecret(id: $id, keepPrevious: $keep) {
        signingSecret secretCount } }"""
    rotated = (await tenant.gql(rotate, {"id": made["id"], "keep": 1}))["data"][
        "rotateNotificationChannelSecret"
    ]
    assert rotated["secretCount"] == 2 and rotated["signingSecret"] != secret
    final = (await tenant.gql(rotate, {"id": made["id"], "keep": 0}))["data"][
        "rotateNotificationChannelSecret"
    ]
    assert final["secretCount"] == 1
    foreign = await other_tenant.gql(rotate, {"id": made["id"], "keep": 0})
    assert foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_email_channel_when_smtp_is_configured(tenant: Tenant, state: AppState) -> None:
    saved = state.alerts
    state.alerts = replace(saved, smtp=SmtpConfig(host="127.0.0.1", port=2525, security="none"))
    try:
        body = await tenant.gql(CHANNEL, {"input": {"kind": "EMAIL", "target": "ops@example.com"}})
    finally:
        state.alerts = saved
    assert body["data"]["createNotificationChannel"]["kind"] == "EMAIL"
