"""Feature ROI by hand and against a SUM over the ledger.

Markup 25 %, postpaid accounts (so all billed usage is charged: revenue attributed = billed).
The last day (the range) against the day before (``compareTo``):

- range: chat — U1 1.00 and 2.00, U2 3.00 (and U2 300 KES, no rate to USD); search — U1 0.40
  and 0.60 without a user; no feature — U3 0.20;
- the day before: chat — U1 4.00; legacy — U2 1.00.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from costgraph.app.state import AppState
from tests.conftest import Tenant, raw_connection
from tests.dates import ago, later, rfc
from tests.pnl_support import CREATE_ACCOUNT, CREATE_USER, SET_MARKUP, key, ok, usage_event, write
from tests.verify_support import assert_no_drift

D = Decimal
CHANGE = "current previous absolute relative"
FIGURES = """currency aiCost billedUsage revenue margin requests activeUsers requestsPerUser
  costPerActiveUser"""
ROI = f"""query($range: DateRange!, $compareTo: DateRange) {{
  featureRoi(range: $range, compareTo: $compareTo) {{ currency compareStart compareEnd
    missingRates {{ base quote }}
    features {{ feature {FIGURES} previous {{ {FIGURES} }}
      change {{ aiCost {{ {CHANGE} }} revenue {{ {CHANGE} }} margin {{ {CHANGE} }}
        activeUsers {{ {CHANGE} }} requests {{ {CHANGE} }} requestsPerUser {{ {CHANGE} }}
        costPerActiveUser {{ {CHANGE} }} }} }}
    byCurrency {{ currency features {{ feature aiCost revenue activeUsers requests }} }} }} }}"""


@dataclass
class Setup:
    tenant: Tenant
    rng: dict[str, str]
    before: dict[str, str]


@pytest.fixture
async def setup(tenant: Tenant) -> Setup:
    await write(tenant, SET_MARKUP, "setMarkup", {"percent": "25"})
    users = [
        (await write(tenant, CREATE_USER, "createUser", {"email": f"u{i}-{key()}@example.com"}))[
            "id"
        ]
        for i in range(3)
    ]
    u1, u2, u3 = users
    account = str(tenant.account_id)
    shillings = (
        await write(
            tenant,
            CREATE_ACCOUNT,
            "createAccount",
            {
                "customerId": str(tenant.customer_id),
                "name": "K",
                "postpaid": True,
                "currency": "KES",
            },
        )
    )["id"]
    now = rfc(ago(hours=2))
    then = rfc(ago(hours=30))
    for cost, feature, user in (
        ("1.00", "chat", u1),
        ("2.00", "chat", u1),
        ("3.00", "chat", u2),
        ("0.40", "search", u1),
        ("0.60", "search", None),
        ("0.20", None, u3),
    ):
        extra: dict[str, Any] = {}
        if feature is not None:
            extra["feature"] = feature
        if user is not None:
            extra["userId"] = user
        await usage_event(tenant, account, now, cost, "USD", **extra)
    await usage_event(tenant, shillings, now, "300", "KES", feature="chat", userId=u2)
    await usage_event(tenant, account, then, "4.00", "USD", feature="chat", userId=u1)
    await usage_event(tenant, account, then, "1.00", "USD", feature="legacy", userId=u2)
    rng = {"start": rfc(ago(days=1)), "end": rfc(later(hours=1))}
    before = {"start": rfc(ago(days=2)), "end": rfc(ago(days=1))}
    return Setup(tenant, rng, before)


def _d(value: str | None) -> Decimal | None:
    return None if value is None else D(value)


def check(
    change: dict[str, Any], current: str | None, previous: str | None, relative: str | None
) -> None:
    assert (_d(change["current"]), _d(change["previous"])) == (_d(current), _d(previous)), change
    assert _d(change["relative"]) == _d(relative), change


async def test_feature_roi_by_hand(setup: Setup, state: AppState) -> None:
    body = (await ok(setup.tenant, ROI, {"range": setup.rng, "compareTo": setup.before}))[
        "featureRoi"
    ]
    assert (body["currency"], body["compareStart"]) == ("USD", setup.before["start"])
    assert body["missingRates"] == [{"base": "KES", "quote": "USD"}]
    rows = {f["feature"]: f for f in body["features"]}
    assert [f["feature"] for f in body["features"]] == ["chat", "search", None, "legacy"]
    chat = rows["chat"]
    assert (D(chat["aiCost"]), D(chat["billedUsage"]), D(chat["revenue"]), D(chat["margin"])) == (
        D("6.00"),
        D("7.50"),
        D("7.50"),
        D("1.50"),
    )
    assert (chat["requests"], chat["activeUsers"]) == (3, 2)  # the KES call is left out
    assert (D(chat["requestsPerUser"]), D(chat["costPerActiveUser"])) == (D("1.5"), D("3.00"))
    change = chat["change"]
    check(change["aiCost"], "6.00", "4.00", "50.0000")
    check(change["revenue"], "7.50", "5.00", "50.0000")
    check(change["activeUsers"], "2", "1", "100.0000")
    check(change["requestsPerUser"], "1.5", "1", "50.0000")
    check(change["costPerActiveUser"], "3.00", "4.00", "-25.0000")
    search = rows["search"]  # one user; the call without a user counts as a request
    assert (D(search["aiCost"]), search["requests"], search["activeUsers"]) == (D("1.00"), 2, 1)
    assert (D(search["requestsPerUser"]), D(search["costPerActiveUser"])) == (D(2), D("1.00"))
    check(search["change"]["aiCost"], "1.00", "0", None)
    assert search["previous"]["requestsPerUser"] is None  # no users the day before
    check(search["change"]["costPerActiveUser"], "1.00", None, None)
    untagged = rows[None]
    assert (D(untagged["aiCost"]), untagged["activeUsers"]) == (D("0.20"), 1)
    legacy = rows["legacy"]  # the day before only
    assert (D(legacy["aiCost"]), legacy["activeUsers"], legacy["requestsPerUser"]) == (
        D(0),
        0,
        None,
    )
    check(legacy["change"]["margin"], "0", "0.25", "-100.0000")
    kes = next(p for p in body["byCurrency"] if p["currency"] == "KES")
    assert [
        (f["feature"], D(f["aiCost"]), D(f["revenue"]), f["activeUsers"]) for f in kes["features"]
    ] == [("chat", D("300"), D("375"), 1)]
    await assert_no_drift(state, setup.tenant.org.id)


_SQL = """
SELECT e.feature,
       sum(e.ai_cost), sum(e.amount), sum(-e.balance_delta), count(*),
       count(DISTINCT e.user_id)
FROM ledger_entries e
WHERE e.organization_id = $1 AND e.currency = 'USD' AND e.type = 'USAGE_CHARGE'
  AND e.occurred_at >= $2 AND e.occurred_at < $3
GROUP BY e.feature"""


async def test_feature_roi_is_a_sum_over_the_ledger(setup: Setup, database_url: str) -> None:
    for rng in (setup.rng, setup.before):
        body = (await ok(setup.tenant, ROI, {"range": rng}))["featureRoi"]
        usd = next(p for p in body["byCurrency"] if p["currency"] == "USD")
        found = {
            f["feature"]: (D(f["aiCost"]), D(f["revenue"]), f["requests"], f["activeUsers"])
            for f in usd["features"]
        }
        assert {f["feature"] for f in body["features"]} == set(found)
        async with raw_connection(database_url) as connection:
            rows = await connection.fetch(
                _SQL,
                setup.tenant.org.id,
                datetime.fromisoformat(rng["start"]),
                datetime.fromisoformat(rng["end"]),
            )
        expected = {r[0]: (r[1], r[3], r[4], r[5]) for r in rows}
        assert found == expected
        for feature in body["features"]:
            assert feature["previous"] is None and feature["change"] is None
