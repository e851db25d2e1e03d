"""The GraphQL documents the client sends, their selections written from ``models.py``.

tests/test_client.py validates every one against the committed SDL.
"""

from __future__ import annotations

from gql import GraphQLRequest, gql

from .models import (
    Account,
    Allowance,
    Budget,
    BudgetStatus,
    Forecast,
    PnL,
    Reservation,
    UsageAuthorized,
    UsageBatchRecorded,
    UsageRecorded,
    UsageRow,
    UsageUpdate,
)
from .shapes import selection

#: What a refusal tells besides its code, message and field.
_DETAILS = {
    "BudgetLimitReached": "budgetId limit currency spent resetsAt",
    "AllowanceExhausted": "accountId needed balance tokensLeft",
}


def _mutation(
    name: str, signature: str, call: str, success: type, refusals: tuple[str, ...]
) -> str:
    details = " ".join(f"... on {kind} {{ {_DETAILS[kind]} }}" for kind in refusals)
    return (
        f"mutation {name}{signature} {{ {call} {{ __typename"
        f" ... on {success.TYPENAME} {{ {selection(success)} }}"  # type: ignore[attr-defined]
        f" ... on UserError {{ code message field }} {details} }} }}"
    )


_BOTH = ("BudgetLimitReached", "AllowanceExhausted")

SOURCES: dict[str, str] = {
    "record_usage": _mutation(
        "RecordUsage",
        "($input: UsageEventInput!)",
        "recordUsage(input: $input)",
        UsageRecorded,
        _BOTH,
    ),
    "record_usage_batch": _mutation(
        "RecordUsageBatch",
        "($input: [UsageEventInput!]!)",
        "recordUsageBatch(input: $input)",
        UsageBatchRecorded,
        _BOTH,
    ),
    "authorize_usage": _mutation(
        "AuthorizeUsage",
        "($input: AuthorizeUsageInput!)",
        "authorizeUsage(input: $input)",
        UsageAuthorized,
        ("BudgetLimitReached",),
    ),
    "settle_usage": _mutation(
        "SettleUsage",
        "($input: SettleUsageInput!)",
        "settleUsage(input: $input)",
        UsageRecorded,
        _BOTH,
    ),
    "release_reservation": (
        "mutation ReleaseReservation($id: ID!) { releaseReservation(id: $id)"
        f" {{ {selection(Reservation)} }} }}"
    ),
    "accounts": (
        "query Accounts($first: Int, $after: String, $customerId: ID) {"
        " accounts(first: $first, after: $after, customerId: $customerId)"
        f" {{ nodes {{ {selection(Account)} }} pageInfo {{ hasNextPage endCursor }} }} }}"
    ),
    "account_pnl": (
        "query AccountPnl($id: ID!, $range: DateRange!, $currency: CurrencyCode) {"
        f" accountPnl(accountId: $id, range: $range, currency: $currency) {{ {selection(PnL)} }} }}"
    ),
    "customer_pnl": (
        "query CustomerPnl($id: ID!, $range: DateRange!, $currency: CurrencyCode) {"
        " customerPnl(customerId: $id, range: $range, currency: $currency)"
        f" {{ {selection(PnL)} }} }}"
    ),
    "organization_pnl": (
        "query OrganizationPnl($range: DateRange!, $currency: CurrencyCode) {"
        f" organizationPnl(range: $range, currency: $currency) {{ {selection(PnL)} }} }}"
    ),
    "usage": (
        "query Usage($range: DateRange!, $groupBy: [UsageDimension!]!, $bucket: TimeBucket,"
        " $filter: UsageFilter, $currency: CurrencyCode) {"
        " usage(range: $range, groupBy: $groupBy, bucket: $bucket, filter: $filter,"
        f" currency: $currency) {{ {selection(UsageRow)} }} }}"
    ),
    "budgets": (
        "query Budgets($scope: BudgetScopeInput) {"
        f" budgets(scope: $scope) {{ {selection(Budget)} }} }}"
    ),
    "budget_status": (
        "query BudgetStatus($id: ID!) {"
        f" budgetStatus(budgetId: $id) {{ {selection(BudgetStatus)} }} }}"
    ),
    "allowance": (
        f"query Allowance($id: ID!) {{ allowance(accountId: $id) {{ {selection(Allowance)} }} }}"
    ),
    "forecast": (
        "query Forecast($scope: BudgetScopeInput!, $basis: BudgetBasis) {"
        f" forecast(scope: $scope, basis: $basis) {{ {selection(Forecast)} }} }}"
    ),
    "usage_updates": (
        "subscription UsageUpdates($scope: BudgetScopeInput) {"
        f" usageUpdates(scope: $scope) {{ {selection(UsageUpdate)} }} }}"
    ),
    "budget_status_changed": (
        "subscription BudgetStatusChanged($id: ID!) {"
        f" budgetStatusChanged(budgetId: $id) {{ {selection(BudgetStatus)} }} }}"
    ),
    "allowance_changed": (
        "subscription AllowanceChanged($id: ID!) {"
        f" allowanceChanged(accountId: $id) {{ {selection(Allowance)} }} }}"
    ),
}

DOCUMENTS: dict[str, GraphQLRequest] = {name: gql(source) for name, source in SOURCES.items()}
