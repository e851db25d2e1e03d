"""A demo-like tenant for the console's browser tests, built through the public API: two
customers (one postpaid, one prepaid on a plan whose allowance is 80 % used), departments and
users, two weeks of caller-priced usage across models, features and agents, a top-up, and a
department budget whose stages the usage crossed (so there are alerts to acknowledge)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tests import dates
from tests.conftest import Tenant
from tests.pnl_support import CREATE_ACCOUNT, CREATE_CUSTOMER, CREATE_USER, DEPOSIT, ok, write

MODELS = (
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4"),
    ("google", "gemini-2.0-flash"),
)
FEATURES = ("chat", "search", "summarise")
AGENTS = ("triage-bot", "writer", None)
#: The plan's included tokens; the prepaid account's usage uses 80 % of them (BUY_MORE).
INCLUDED_TOKENS = 100_000

BATCH = """mutation($input: [UsageEventInput!]!) { recordUsageBatch(input: $input) {
  __typename ... on UsageBatchRecorded { recorded entries { id } }
  ... on UserError { code message } } }"""


@dataclass
class ConsoleTenant:
    tenant: Tenant
    prepaid_account: str
    engineering: str
    users: dict[str, str]
    budget_id: str


def event(
    account: str, user: str, n: int, at: Any, cost: str, tokens: int = 1000
) -> dict[str, Any]:
    provider, model = MODELS[n % len(MODELS)]
    return {
        "idempotencyKey": f"console-{uuid.uuid4().hex}",
        "accountId": account,
        "occurredAt": dates.rfc(at),
        "provider": provider,
        "model": model,
        "inputTokens": tokens * 4 // 5,
        "outputTokens": tokens // 5,
        "userId": user,
        "feature": FEATURES[n % len(FEATURES)],
        "agent": AGENTS[n % len(AGENTS)],
        "providerCost": cost,
        "providerCurrency": "USD",
    }


async def _gql_write(tenant: Tenant, query: str, name: str, variables: dict[str, Any]) -> Any:
    result = (await ok(tenant, query, variables))[name]
    assert not (isinstance(result, dict) and "message" in result), result
    return result


async def build(tenant: Tenant) -> ConsoleTenant:
    acme = (await write(tenant, CREATE_CUSTOMER, "createCustomer", {"name": "Acme Robotics"}))["id"]
    prepaid = (
        await write(
            tenant, CREATE_ACCOUNT, "createAccount", {"customerId": acme, "name": "Acme main"}
        )
    )["id"]
    await write(
        tenant,
        DEPOSIT,
        "deposit",
        {
            "idempotencyKey": f"console-{uuid.uuid4().hex}",
            "accountId": prepaid,
            "amount": "250.00",
            "currency": "USD",
            "occurredAt": dates.rfc(dates.ago(days=14)),
        },
    )
    await _gql_write(
        tenant,
        "mutation($input: PlanInput!) { setPlan(input: $input) { code } }",
        "setPlan",
        {
            "input": {
                "code": "console-pro",
                "name": "Pro",
                "monthlyFee": "0",
                "currency": "USD",
                "includedTokens": INCLUDED_TOKENS,
            }
        },
    )
    await _gql_write(
        tenant,
        "mutation($input: AccountSubscriptionInput!) { subscribeAccount(input: $input) { id } }",
        "subscribeAccount",
        {
            "input": {
                "accountId": prepaid,
                "planCode": "console-pro",
                "billing": "MONTHLY",
                "startsAt": dates.rfc(dates.ago(hours=1)),
            }
        },
    )
    departments = {}
    for name in ("Engineering", "Support"):
        created = await _gql_write(
            tenant,
            "mutation($input: DepartmentInput!) { createDepartment(input: $input) { id } }",
            "createDepartment",
            {"input": {"name": name}},
        )
        departments[name] = created["id"]
    users = {}
    for name, department in (
        ("Ada", "Engineering"),
        ("Linus", "Engineering"),
        ("Grace", "Support"),
    ):
        created = await write(
            tenant,
            CREATE_USER,
            "createUser",
            {
                "email": f"{name.lower()}-{uuid.uuid4().hex[:6]}@demo.example",
                "name": name,
                "departmentId": departments[department],
            },
        )
        users[name] = created["id"]
    # Engineering's monthly budget: the usage recorded below crosses all of its stages.
    budget = await _gql_write(
        tenant,
        "mutation($input: BudgetInput!) { setBudget(input: $input) { id } }",
        "setBudget",
        {
            "input": {
                "scope": {"kind": "DEPARTMENT", "id": departments["Engineering"]},
                "period": "MONTH",
                "limit": "1.00",
                "currency": "USD",
                "hardCap": False,
                "thresholds": [50, 75, 90, 100],
            }
        },
    )
    postpaid = str(tenant.account_id)
    names = list(users.values())
    history = [
        event(
            postpaid,
            names[n % 3],
            n,
            dates.ago(days=1 + n % 12, hours=n % 7),
            f"{Decimal('0.0123') * (1 + n % 5)}",
        )
        for n in range(36)
    ]
    # Today, on the prepaid account: 80 % of its allowance, and Engineering over its budget.
    today = [
        event(
            prepaid,
            users["Ada"],
            n,
            dates.ago(minutes=10 + n),
            "0.305",
            tokens=INCLUDED_TOKENS // 10,
        )
        for n in range(8)
    ]
    for batch in (history, today):
        recorded = await _gql_write(tenant, BATCH, "recordUsageBatch", {"input": batch})
        assert recorded["recorded"] == len(batch), recorded
    return ConsoleTenant(tenant, prepaid, departments["Engineering"], users, budget["id"])
