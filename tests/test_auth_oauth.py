"""CostGraph as an OAuth2 authorization server: client registration, the client-credentials
grant at /oauth/token, RFC 7009 revocation, RFC 8414 metadata and the JWKS."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from costgraph.app.identity import load_all_revocations
from costgraph.app.state import AppState
from costgraph.auth.principal import Principal
from costgraph.auth.revocation import RevocationList
from costgraph.auth.secret_hash import verify_secret
from tests.conftest import Tenant, raw_connection

REGISTER = """
mutation($input: OAuthClientInput!) {
  registerOAuthClient(input: $input) {
    clientId clientSecret tokenEndpoint
    client { id clientId name scopes createdAt revokedAt }
  }
}"""
CLIENTS = "{ oauthClients { id clientId name scopes revokedAt } }"
REVOKE = "mutation($id: ID!) { revokeOAuthClient(id: $id) { id revokedAt } }"
ME = "{ me { subject organizationId scopes clientId roles } }"


async def register(tenant: Tenant, scopes: list[str], name: str = "Shop backend") -> dict[str, Any]:
    body = await tenant.gql(REGISTER, {"input": {"name": name, "scopes": scopes}})
    assert "errors" not in body, body
    credentials: dict[str, Any] = body["data"]["registerOAuthClient"]
    return credentials


async def token_request(
    client: httpx.AsyncClient,
    credentials: dict[str, Any] | None = None,
    *,
    method: str = "basic",
    path: str = "/oauth/token",
    **form: str,
) -> httpx.Response:
    data = {"grant_type": "client_credentials", **form} if path == "/oauth/token" else dict(form)
    auth = None
    if credentials is not None and method == "basic":
        auth = (credentials["clientId"], credentials["clientSecret"])
    elif credentials is not None:
        data |= {"client_id": credentials["clientId"], "client_secret": credentials["clientSecret"]}
    return await client.post(path, data=data, auth=auth)


async def access_token(client: httpx.AsyncClient, credentials: dict[str, Any], **form: str) -> str:
    response = await token_request(client, credentials, **form)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def me(tenant: Tenant, token: str) -> httpx.Response:
    return await tenant.client.post(
        "/graphql", json={"query": ME}, headers={"Authorization": f"Bearer {token}"}
    )


async def test_registration_shows_the_secret_once_and_keeps_a_hash(
    tenant: Tenant, database_url: str
) -> None:
    credentials = await register(tenant, ["usage:write", "usage:read", "usage:write"])
    assert credentials["clientSecret"].startswith("cgs_") and len(credentials["clientSecret"]) > 40
    assert credentials["clientId"] == credentials["client"]["clientId"]
    assert credentials["client"]["scopes"] == ["usage:read", "usage:write"]
    assert credentials["tokenEndpoint"] == "https://costgraph.test/oauth/token"

    listed = await tenant.gql(CLIENTS)
    assert listed["data"]["oauthClients"] == [
        {
            "id": credentials["client"]["id"],
            "clientId": credentials["clientId"],
            "name": "Shop backend",
            "scopes": ["usage:read", "usage:write"],
            "revokedAt": None,
        }
    ]
    async with raw_connection(database_url) as connection:
        stored = await connection.fetchval(
            "SELECT secret_hash FROM oauth_clients WHERE client_id = $1", credentials["clientId"]
        )
    assert stored.startswith("scrypt$16384$8$1$")
    assert credentials["clientSecret"] not in stored
    assert verify_secret(credentials["clientSecret"], stored)
    assert not verify_secret(credentials["clientSecret"] + "x", stored)


@pytest.mark.parametrize(
    ("name", "scopes", "field"),
    [
        ("ok", [], "input.scopes"),
        ("ok", ["usage:write", "admin"], "input.scopes"),
        ("  ", ["usage:write"], "input.name"),
        ("x" * 201, ["usage:write"], "input.name"),
    ],
)
async def test_registration_refuses_bad_input_and_writes_nothing(
    tenant: Tenant, name: str, scopes: list[str], field: str
) -> None:
    body = await tenant.gql(REGISTER, {"input": {"name": name, "scopes": scopes}})
    error = body["errors"][0]
    assert error["extensions"] == {"code": "VALIDATION_FAILED", "field": field}
    assert (await tenant.gql(CLIENTS))["data"]["oauthClients"] == []


@pytest.mark.parametrize("method", ["basic", "post"])
async def test_client_credentials_grant_issues_an_rs256_access_token(
    tenant: Tenant, state: AppState, method: str
) -> None:
    credentials = await register(tenant, ["usage:write", "billing:read"])
    response = await token_request(tenant.client, credentials, method=method)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    issued = response.json()
    assert issued["token_type"] == "Bearer"
    assert issued["expires_in"] == 3600
    assert issued["scope"] == "billing:read usage:write"
    assert "refresh_token" not in issued

    header = jwt.get_unverified_header(issued["access_token"])
    assert header["alg"] == "RS256" and header["typ"] == "at+jwt"
    jwks = (await tenant.client.get("/.well-known/jwks.json")).json()
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}

    principal = state.verifier.verify(issued["access_token"])
    assert principal.organization_id == tenant.org.id
    assert principal.client_id == credentials["clientId"] == principal.subject
    assert principal.scopes == {"usage:write", "billing:read"}
    assert principal.roles == frozenset()
    assert (await me(tenant, issued["access_token"])).json()["data"]["me"]["clientId"] == (
        credentials["clientId"]
    )


async def test_requested_scopes_must_be_a_subset_of_the_clients(tenant: Tenant) -> None:
    credentials = await register(tenant, ["usage:write", "usage:read"])
    narrowed = await token_request(tenant.client, credentials, scope="usage:read")
    assert narrowed.json()["scope"] == "usage:read"
    principal_scopes = (await me(tenant, narrowed.json()["access_token"])).json()["data"]["me"]
    assert principal_scopes["scopes"] == ["usage:read"]

    for scope in ("usage:read billing:write", "billing:read", "admin"):
        refused = await token_request(tenant.client, credentials, scope=scope)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_scope"
        assert "access_token" not in refused.json()


async def test_failed_client_authentication_gives_no_hint(tenant: Tenant) -> None:
    credentials = await register(tenant, ["usage:write"])
    other = await register(tenant, ["usage:write"], name="Other")
    revoked = await register(tenant, ["usage:write"], name="Revoked")
    await tenant.gql(REVOKE, {"id": revoked["client"]["id"]})
    unknown_id = credentials["clientId"][:-6] + "000000"
    attempts = [
        {**credentials, "clientSecret": credentials["clientSecret"] + "x"},  # wrong secret
        {**credentials, "clientSecret": other["clientSecret"]},  # another client's secret
        {**credentials, "clientSecret": ""},  # no secret
        {**credentials, "clientId": unknown_id},  # unknown id, right shape
        {**credentials, "clientId": "' OR 1=1 --"},  # not an id at all
        {**credentials, "clientId": f"cg_{other['clientId'][3:35]}_{'0' * 24}"},
        revoked,  # the right secret of a revoked client
    ]
    answers = set()
    for attempt in attempts:
        for method in ("basic", "post"):
            response = await token_request(tenant.client, attempt, method=method)
            assert response.status_code == 401, (attempt, response.text)
            assert "access_token" not in response.json()
            answers.add(
                (
                    response.text,
                    response.headers["www-authenticate"],
                    response.headers["cache-control"],
                )
            )
    assert answers == {
        (
            '{"error":"invalid_client","error_description":"client authentication failed"}',
            'Basic error="invalid_client", error_description="client authentication failed"',
            "no-store",
        )
    }
    # No credentials at all answers the same way.
    bare = await token_request(tenant.client)
    assert (bare.status_code, bare.json()["error"]) == (401, "invalid_client")


async def test_malformed_token_requests_are_refused(tenant: Tenant) -> None:
    credentials = await register(tenant, ["usage:write"])
    basic = (
        "Basic "
        + base64.b64encode(
            f"{credentials['clientId']}:{credentials['clientSecret']}".encode()
        ).decode()
    )
    form = {"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"}
    cases = {
        "two authentication methods": (
            form,
            f"grant_type=client_credentials&client_secret={credentials['clientSecret']}",
            "invalid_request",
        ),
        "a repeated parameter": (
            form,
            "grant_type=client_credentials&grant_type=client_credentials",
            "invalid_request",
        ),
        "a JSON body": (
            {**form, "Content-Type": "application/json"},
            '{"grant_type": "client_credentials"}',
            "invalid_request",
        ),
        "a huge body": (form, "grant_type=client_credentials&x=" + "a" * 20_000, "invalid_request"),
        "another grant type": (
            form,
            "grant_type=password&username=a&password=b",
            "unsupported_grant_type",
        ),
    }
    for case, (headers, body, error) in cases.items():
        response = await tenant.client.post("/oauth/token", content=body, headers=headers)
        assert response.status_code == 400, case
        assert response.json()["error"] == error, case
    assert (await tenant.client.get("/oauth/token")).status_code == 405


async def test_a_revoked_clients_tokens_stop_working(tenant: Tenant, state: AppState) -> None:
    credentials = await register(tenant, ["usage:read"])
    token = await access_token(tenant.client, credentials)
    assert (await me(tenant, token)).status_code == 200

    body = await tenant.gql(REVOKE, {"id": credentials["client"]["id"]})
    revoked_at = body["data"]["revokeOAuthClient"]["revokedAt"]
    assert revoked_at is not None
    again = await tenant.gql(REVOKE, {"id": credentials["client"]["id"]})  # idempotent
    assert again["data"]["revokeOAuthClient"]["revokedAt"] == revoked_at

    refused = await me(tenant, token)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert (await token_request(tenant.client, credentials)).status_code == 401
    listed = (await tenant.gql(CLIENTS))["data"]["oauthClients"]
    assert listed[0]["revokedAt"] == revoked_at

    # Another instance learns it from the database (its refresh loads the same way).
    elsewhere = RevocationList()
    elsewhere.merge(await load_all_revocations(state.sessions))
    assert elsewhere.is_revoked(_principal_of(token))


def _principal_of(token: str) -> Principal:
    """What a verifier makes of one of our tokens (only the ids matter for revocation)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return Principal(
        subject=claims["sub"],
        organization_id=uuid.UUID(claims["org"]),
        roles=frozenset(),
        scopes=frozenset(claims["scope"].split()),
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        client_id=claims["client_id"],
        token_id=claims["jti"],
    )


async def test_rfc7009_revocation_of_an_access_token(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    credentials = await register(tenant, ["usage:read"])
    other = await register(tenant, ["usage:read"], name="Other")
    first = await access_token(tenant.client, credentials)
    second = await access_token(tenant.client, credentials)
    foreign = await access_token(tenant.client, other)

    # Only the client a token was issued to may revoke it.
    response = await token_request(tenant.client, other, path="/oauth/revoke", token=first)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert (await me(tenant, first)).status_code == 200
    unauthenticated = await tenant.client.post("/oauth/revoke", data={"token": first})
    assert unauthenticated.status_code == 401
    assert (await me(tenant, first)).status_code == 200

    response = await token_request(
        tenant.client,
        credentials,
        path="/oauth/revoke",
        token=first,
        token_type_hint="access_token",
    )
    assert (response.status_code, response.json()) == (200, {})
    assert (await me(tenant, first)).status_code == 401
    assert (await me(tenant, second)).status_code == 200  # only that token
    assert (await me(tenant, foreign)).status_code == 200

    for junk in ("not-a-token", first, tenant.token[:-4] + "AAAA"):  # RFC 7009 §2.2: still 200
        response = await token_request(tenant.client, credentials, path="/oauth/revoke", token=junk)
        assert response.status_code == 200, response.text

    async with raw_connection(database_url) as connection:
        rows = await connection.fetch(
            "SELECT organization_id, client_id FROM oauth_revoked_tokens WHERE client_id = $1",
            credentials["clientId"],
        )
    assert [(r["organization_id"], r["client_id"]) for r in rows] == [
        (tenant.org.id, credentials["clientId"])
    ]
    elsewhere = RevocationList()
    elsewhere.merge(await load_all_revocations(state.sessions))
    assert elsewhere.is_revoked(_principal_of(first))
    assert not elsewhere.is_revoked(_principal_of(second))


async def test_metadata_and_jwks(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["issuer"] == "https://costgraph.test"
    assert metadata["token_endpoint"] == "https://costgraph.test/oauth/token"
    assert metadata["revocation_endpoint"] == "https://costgraph.test/oauth/revoke"
    assert metadata["jwks_uri"] == "https://costgraph.test/.well-known/jwks.json"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert metadata["scopes_supported"] == [
        "usage:write",
        "usage:read",
        "billing:read",
        "billing:write",
    ]
    assert metadata["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    checked = AuthorizationServerMetadata(metadata)
    for name in (
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "scopes_supported",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint",
        "revocation_endpoint_auth_methods_supported",
    ):
        getattr(checked, f"validate_{name}")()

    credentials = await register(tenant, ["usage:read"])
    token = await access_token(tenant.client, credentials)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == jwt.get_unverified_header(token)["kid"]]
    assert set(jwk) == {"kty", "n", "e", "kid", "use", "alg"}  # public members only
    public = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
    claims = jwt.decode(token, public, algorithms=["RS256"], audience="costgraph-test")
    assert claims["org"] == str(tenant.org.id)
