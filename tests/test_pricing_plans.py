"""Plans and subscriptions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Tenant, raw_connection
from tests.dates import month, rfc

SET_PLAN = """mutation($input: PlanInput!) { setPlan(input: $input) {
  id code name monthlyFee annualFee annualDiscountPercent currency includedTokens seats } }"""
SUBSCRIBE = """mutation($input: AccountSubscriptionInput!) { subscribeAccount(input: $input) {
  id accountId planCode billing fee currency includedTokens startsAt endsAt } }"""
PLANS = "{ plans { code monthlyFee includedTokens } }"


def plan(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "code": "pro",
        "name": "Pro",
        "monthlyFee": "49.00",
        "annualFee": "490.00",
        "currency": "USD",
        "includedTokens": 10_000_000,
        "seats": 5,
    }
    value.update(overrides)
    return value


async def test_plans_and_subscriptions(tenant: Tenant, database_url: str) -> None:
    saved = (await tenant.gql(SET_PLAN, {"input": plan()}))["data"]["setPlan"]
    # 12 * 49 = 588; (588 - 490) / 588 = 16.67 %
    assert saved["annualDiscountPercent"] == "16.67"
    await tenant.gql(SET_PLAN, {"input": plan(code="creator", name="Creator", monthlyFee="19.00")})
    subscribed = await tenant.gql(
        SUBSCRIBE,
        {
            "input": {
                "accountId": str(tenant.account_id),
                "planCode": "pro",
                "billing": "ANNUAL",
                "startsAt": rfc(month(-11)),
            }
        },
    )
    first = subscribed["data"]["subscribeAccount"]
    assert (first["fee"], first["includedTokens"], first["endsAt"]) == (
        "490.000000000000",
        10_000_000,
        None,
    )
    # Changing the plan later does not change the subscription's terms ...
    await tenant.gql(SET_PLAN, {"input": plan(annualFee="450.00")})
    # ... and moving to another plan ends the current one.
    moved = await tenant.gql(
        SUBSCRIBE,
        {
            "input": {
                "accountId": str(tenant.account_id),
                "planCode": "creator",
                "billing": "MONTHLY",
                "startsAt": rfc(month(-9)),
            }
        },
    )
    assert moved["data"]["subscribeAccount"]["fee"] == "19.000000000000"
    async with raw_connection(database_url) as connection:
        rows = await connection.fetch(
            "SELECT plan_code, fee, ends_at FROM account_subscriptions "
            "WHERE organization_id = $1 ORDER BY starts_at",
            tenant.org.id,
        )
    assert [(r["plan_code"], str(r["fee"])) for r in rows] == [
        ("pro", "490.000000000000"),
        ("creator", "19.000000000000"),
    ]
    assert rows[0]["ends_at"] is not None and rows[1]["ends_at"] is None
    codes = [p["code"] for p in (await tenant.gql(PLANS))["data"]["plans"]]
    assert codes == ["creator", "pro"]
    unknown = await tenant.gql(
        SUBSCRIBE,
        {"input": {"accountId": str(tenant.account_id), "planCode": "nope", "billing": "MONTHLY"}},
    )
    assert unknown["errors"][0]["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"includedTokens": -1}, "input.includedTokens"),
        ({"monthlyFee": "-1.00"}, "input.monthlyFee"),
        ({"monthlyFee": "1.001"}, "input.monthlyFee"),
        ({"seats": 0}, "input.seats"),
        ({"code": "Has Spaces"}, "input.code"),
    ],
)
async def test_bad_plans_write_nothing(
    tenant: Tenant, database_url: str, overrides: dict[str, Any], field: str
) -> None:
    body = await tenant.gql(SET_PLAN, {"input": plan(**overrides)})
    assert body["errors"][0]["extensions"] == {"code": "VALIDATION_FAILED", "field": field}
    async with raw_connection(database_url) as connection:
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM plans WHERE organization_id = $1", tenant.org.id
            )
            == 0
        )
