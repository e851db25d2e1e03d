"""Helpers of the P&L tests: GraphQL documents and a few writes through the public API."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from costgraph.billing import rollups
from tests.conftest import Tenant

FIGURES = """currency revenue
  revenueBySource { subscriptions topUps billedUsage refunds withdrawals }
  aiCost billedUsage markupEarned platformFees balanceAdjustments margin marginPercent eventCount
  netImpact revenueBasis allowanceUsage
  tokens { input output total }"""

ACCOUNT_PNL = f"""query($id: ID!, $range: DateRange!, $currency: CurrencyCode) {{
  accountPnl(accountId: $id, range: $range, currency: $currency) {{ {FIGURES} }} }}"""
CUSTOMER_PNL = f"""query($id: ID!, $range: DateRange!, $currency: CurrencyCode) {{
  customerPnl(customerId: $id, range: $range, currency: $currency) {{ {FIGURES} }} }}"""
ORG_PNL = f"""query($range: DateRange!, $currency: CurrencyCode, $agent: String) {{
  organizationPnl(range: $range, currency: $currency, agent: $agent) {{ {FIGURES}
    byModel {{ key provider model aiCost billedUsage eventCount }}
    byProvider {{ key aiCost }}
    topAgents {{ key agent netImpact aiCost billedUsage margin }}
    topUsers(limit: 3) {{ key userId netImpact }}
    liabilityEstimates {{ currency total byAgent {{ agent amount estimates }} }} }} }}"""
TIMELINE = f"""query($scope: PnLScopeInput!, $range: DateRange!, $bucket: TimeBucket!,
                    $currency: CurrencyCode) {{
  pnlTimeline(scope: $scope, range: $range, bucket: $bucket, currency: $currency) {{
    start end {FIGURES} }} }}"""
USAGE = """query($range: DateRange!, $groupBy: [UsageDimension!]!, $bucket: TimeBucket,
                 $filter: UsageFilter, $currency: CurrencyCode) {
  usage(range: $range, groupBy: $groupBy, bucket: $bucket, filter: $filter, currency: $currency) {
    bucket model provider customerId accountId userId feature agent currency events tokens
    aiCost billedUsage } }"""

CREATE_CUSTOMER = """mutation($input: CustomerInput!) { createCustomer(input: $input) { id } }"""
CREATE_ACCOUNT = """mutation($input: AccountInput!) { createAccount(input: $input) { id } }"""
CREATE_USER = """mutation($input: UserInput!) { createUser(input: $input) { id } }"""
SET_RATE = """mutation($input: ExchangeRateInput!) { setExchangeRate(input: $input) { id } }"""
SET_MARKUP = """mutation($input: MarkupInput!) { setMarkup(input: $input) { id } }"""
RECORD_USAGE = """mutation($input: UsageEventInput!) { recordUsage(input: $input) {
  __typename ... on UsageRecorded { entry { id amount aiCost } }
  ... on UserError { code message } } }"""
_ENTRY = """__typename ... on LedgerEntryRecorded { entry { id amount } }
  ... on UserError { code message }"""
DEPOSIT = f"""mutation($input: DepositInput!) {{ deposit(input: $input) {{ {_ENTRY} }} }}"""
SUBSCRIPTION = f"""mutation($input: SubscriptionPaymentInput!) {{
  recordSubscriptionPayment(input: $input) {{ {_ENTRY} }} }}"""
REFUND = f"""mutation($input: RefundInput!) {{ refund(input: $input) {{ {_ENTRY} }} }}"""
FEE = (
    f"""mutation($input: PlatformFeeInput!) {{ recordPlatformFee(input: $input) {{ {_ENTRY} }} }}"""
)
ADJUST = f"""mutation($input: AdjustmentInput!) {{ adjust(input: $input) {{ {_ENTRY} }} }}"""
LIABILITY = """mutation($input: LiabilityEstimateInput!) { recordLiabilityEstimate(input: $input) {
  __typename ... on LiabilityEstimateRecorded { replayed estimate { id amount currency } }
  ... on UserError { code message field } } }"""


def key() -> str:
    return uuid.uuid4().hex


async def ok(tenant: Tenant, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    body = await tenant.gql(query, variables)
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def write(tenant: Tenant, query: str, name: str, input: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = (await ok(tenant, query, {"input": input}))[name]
    assert "code" not in result, result
    return result


async def usage_event(
    tenant: Tenant, account: str, at: str, cost: str, currency: str, **extra: Any
) -> dict[str, Any]:
    event = {
        "idempotencyKey": key(),
        "accountId": account,
        "occurredAt": at,
        "provider": "openai",
        "model": "gpt-4o",
        "inputTokens": 1000,
        "outputTokens": 100,
        "providerCost": cost,
        "providerCurrency": currency,
        **extra,
    }
    return await write(tenant, RECORD_USAGE, "recordUsage", event)


def error_code(body: dict[str, Any]) -> str:
    (error,) = body["errors"]
    code: str = error["extensions"]["code"]
    return code


async def catch_up(connection: asyncpg.Connection) -> None:
    """One rollup run of our own (waiting while the app's runs hold the lock)."""
    for _ in range(1_000):
        if await rollups.catch_up(connection) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the rollup job never came free")
