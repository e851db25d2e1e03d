"""An integrator's whole journey with the `gql` client: an org admin registers a client, the
integration gets a token at /oauth/token, posts usage and reads it back."""

from __future__ import annotations

from typing import Any

import httpx
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from starlette.applications import Starlette

from tests.conftest import Tenant
from tests.dates import month, rfc


def graphql_client(app: Starlette, token: str) -> Client:
    transport = HTTPXAsyncTransport(
        url="http://testserver/graphql",
        headers={"Authorization": f"Bearer {token}"},
        transport=httpx.ASGITransport(app=app),
    )
    return Client(transport=transport, fetch_schema_from_transport=False)


REGISTER = gql(
    """
    mutation Register($input: OAuthClientInput!) {
      registerOAuthClient(input: $input) { clientId clientSecret tokenEndpoint }
    }"""
)
RECORD = gql(
    """
    mutation Record($input: UsageEventInput!) {
      recordUsage(input: $input) {
        __typename
        ... on UsageRecorded {
          replayed
          entry { id type aiCost providerCost providerCurrency callerPriced }
        }
        ... on UserError { code message }
      }
    }"""
)
LEDGER = gql(
    """
    query Ledger($accountId: ID!) {
      ledger(filter: {accountId: $accountId}) {
        nodes { id type model inputTokens outputTokens providerCost providerCurrency
                idempotencyKey account { id } }
      }
    }"""
)


async def test_register_get_token_post_usage_read_it_back(app: Starlette, tenant: Tenant) -> None:
    # 1. The organisation's admin registers the integration (GraphQL, as org_admin).
    async with graphql_client(app, tenant.token) as admin:
        scopes = ["usage:write", "billing:read"]
        registered: dict[str, Any] = await admin.execute(
            GraphQLRequest(
                REGISTER, variable_values={"input": {"name": "Billing sync", "scopes": scopes}}
            )
        )
    credentials = registered["registerOAuthClient"]
    assert credentials["tokenEndpoint"].endswith("/oauth/token")

    # 2. The integration gets a token with its credentials (client_secret_basic).
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        response = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "usage:write billing:read"},
            auth=(credentials["clientId"], credentials["clientSecret"]),
        )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]

    # 3. It posts usage, priced by the caller (the catalog is another issue's).
    usage = {
        "idempotencyKey": "sync-0001",
        "accountId": str(tenant.account_id),
        "occurredAt": rfc(month(-9, 1, 12)),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputTokens": 1200,
        "outputTokens": 300,
        "providerCost": "0.000360000000",
        "providerCurrency": "USD",
    }
    async with graphql_client(app, token) as integration:
        recorded = await integration.execute(
            GraphQLRequest(RECORD, variable_values={"input": usage})
        )
        result = recorded["recordUsage"]
        assert result["__typename"] == "UsageRecorded", result
        assert result["replayed"] is False
        assert result["entry"]["callerPriced"] is True
        assert result["entry"]["providerCost"] == "0.000360000000"

        # 4. ... and reads it back.
        ledger = await integration.execute(
            GraphQLRequest(LEDGER, variable_values={"accountId": str(tenant.account_id)})
        )
        (entry,) = ledger["ledger"]["nodes"]
        assert entry["id"] == result["entry"]["id"]
        assert entry["type"] == "USAGE_CHARGE"
        assert (entry["model"], entry["inputTokens"], entry["outputTokens"]) == (
            "gpt-4o-mini",
            1200,
            300,
        )
        assert (entry["providerCost"], entry["providerCurrency"]) == ("0.000360000000", "USD")
        assert entry["account"]["id"] == str(tenant.account_id)

        # Its token carries its scopes and no more: it cannot register another client.
        try:
            await integration.execute(
                gql(
                    'mutation { registerOAuthClient(input: {name: "x", scopes: ["usage:write"]})'
                    " { clientId } }"
                )
            )
        except TransportQueryError as exc:
            assert exc.errors is not None and exc.errors[0]["extensions"]["code"] == "FORBIDDEN"
        else:
            raise AssertionError("an integration client registered another client")
