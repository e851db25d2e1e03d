"""allowanceChanged and budgetStatusChanged over graphql-transport-ws against a real server."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from tests.conftest import Tenant
from tests.subscriptions_support import subscribed, usage_input
from tests.test_allowances import prepaid_account
from tests.test_budgets import set_budget
from tests.test_ledger import DEPOSIT, deposit_input
from tests.test_subscriptions import Live, live

__all__ = ["live"]  # the module-scoped server fixture

ALLOWANCE_CHANGED = """subscription($id: ID!) { allowanceChanged(accountId: $id) {
  accountId planCode included used remaining topUpBalance banner } }"""
BUDGET_STATUS_CHANGED = """subscription($id: ID!) { budgetStatusChanged(budgetId: $id) {
  budget { id } spent reserved remaining percentUsed stagesReached } }"""


async def post(live: Live, tenant: Tenant, query: str, variables: dict[str, Any]) -> Any:
    """Through the live server, so that its bus announces the write."""
    response = await live.http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


RECORD = """mutation($input: UsageEventInput!) { recordUsage(input: $input) {
  __typename ... on UserError { code message } } }"""


async def record(live: Live, tenant: Tenant, account_id: str, **overrides: Any) -> None:
    event = usage_input(uuid.UUID(account_id), **overrides)
    result = (await post(live, tenant, RECORD, {"input": event}))["recordUsage"]
    assert result["__typename"] == "UsageRecorded", result


async def test_allowance_changed_follows_deposits_and_usage(live: Live, tenant: Tenant) -> None:
    account = await prepaid_account(tenant, tokens=1000)
    async with subscribed(live.port, tenant.token, ALLOWANCE_CHANGED, {"id": account}) as client:
        first = (await client.next_data("1"))["allowanceChanged"]
        assert first["accountId"] == account
        assert (first["included"], first["used"]) == (1000, 0)
        assert Decimal(first["topUpBalance"]) == 0

        deposited = await post(
            live, tenant, DEPOSIT, {"input": deposit_input(tenant, accountId=account)}
        )
        assert deposited["deposit"]["__typename"] == "LedgerEntryRecorded", deposited
        topped = (await client.next_data("1"))["allowanceChanged"]
        assert Decimal(topped["topUpBalance"]) == Decimal("25.00")
        assert topped["used"] == 0

        await record(live, tenant, account, inputTokens=800, outputTokens=0)
        used = (await client.next_data("1"))["allowanceChanged"]
        assert (used["used"], used["remaining"], used["banner"]) == (800, 200, "BUY_MORE")
        assert Decimal(used["topUpBalance"]) == Decimal("25.00")  # covered by the allowance


async def test_allowance_changed_ignores_other_accounts(live: Live, tenant: Tenant) -> None:
    account = await prepaid_account(tenant, tokens=1000)
    async with subscribed(live.port, tenant.token, ALLOWANCE_CHANGED, {"id": account}) as client:
        await client.next_data("1")
        await record(live, tenant, str(tenant.account_id))  # another account of the tenant
        await post(live, tenant, DEPOSIT, {"input": deposit_input(tenant)})
        await record(live, tenant, account, inputTokens=10, outputTokens=0)
        update = (await client.next_data("1"))["allowanceChanged"]
        assert update["used"] == 10  # the first update is this account's own usage
        assert Decimal(update["topUpBalance"]) == 0


async def test_budget_status_changed_follows_usage_in_its_scope(live: Live, tenant: Tenant) -> None:
    budget = (await set_budget(tenant, hardCap=False))["data"]["setBudget"]
    variables = {"id": budget["id"]}
    async with subscribed(live.port, tenant.token, BUDGET_STATUS_CHANGED, variables) as client:
        first = (await client.next_data("1"))["budgetStatusChanged"]
        assert first["budget"]["id"] == budget["id"]
        assert Decimal(first["spent"]) == 0

        await record(live, tenant, str(tenant.account_id), providerCost="0.300000000000")
        update = (await client.next_data("1"))["budgetStatusChanged"]
        assert Decimal(update["spent"]) == Decimal("0.30")
        assert Decimal(update["remaining"]) == Decimal("0.70")

        await record(live, tenant, str(tenant.account_id), providerCost="0.300000000000")
        second = (await client.next_data("1"))["budgetStatusChanged"]
        assert Decimal(second["spent"]) == Decimal("0.60")
        assert second["stagesReached"] == [50]


async def refusals(live: Live, tenant: Tenant, query: str, ids: list[str]) -> list[Any]:
    errors = []
    for ident in ids:
        async with subscribed(live.port, tenant.token, query, {"id": ident}) as client:
            message = await client.recv()
            assert message["type"] == "error", message
            errors.append(message["payload"][0])
    return errors


async def test_another_tenants_account_and_budget_answer_as_unknown(
    live: Live, tenant: Tenant, other_tenant: Tenant
) -> None:
    their_budget = (await set_budget(other_tenant))["data"]["setBudget"]["id"]
    cases = [
        (ALLOWANCE_CHANGED, str(other_tenant.account_id), "account"),
        (BUDGET_STATUS_CHANGED, their_budget, "budget"),
    ]
    for query, theirs_id, noun in cases:
        missing_id = str(uuid.uuid4())
        theirs, missing = await refusals(live, tenant, query, [theirs_id, missing_id])
        assert theirs["extensions"]["code"] == missing["extensions"]["code"] == "NOT_FOUND"
        assert theirs["message"] == f"{noun} {theirs_id} not found"
        assert missing["message"] == f"{noun} {missing_id} not found"
