"""Access tokens at the door: every malformed or hostile token is refused with a 401, a valid
token without the right gets FORBIDDEN, and signing keys rotate without a restart."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from costgraph.app.settings import Settings
from costgraph.auth.keys import KeyStore
from costgraph.auth.tokens import mint_access_token
from costgraph.auth.verify import InvalidToken, LocalKeys, TokenVerifier
from tests.conftest import Tenant
from tests.dates import month, rfc
from tests.identity_support import claims_for, forge, jwk_of, new_rsa_key

ME = "{ me { subject organizationId roles } }"


@dataclass
class Forge:
    settings: Settings
    keys: KeyStore
    org: uuid.UUID

    @property
    def header(self) -> dict[str, Any]:
        return {"alg": "RS256", "typ": "at+jwt", "kid": self.keys.active.kid}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        return claims_for(self.settings.issuer, self.settings.audience, self.org, **overrides)

    def signed(self, header: dict[str, Any] | None = None, **overrides: Any) -> str:
        return forge(
            header or self.header, self.claims(**overrides), rsa_key=self.keys.active.private
        )

    @property
    def public_pem(self) -> bytes:
        return self.keys.active.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


NOW = int(time.time())

#: Each token is right in every respect but the one named.
#: The second member is a fragment of the reason logged for the refusal.
REFUSED: dict[str, tuple[Callable[[Forge], str], str]] = {
    "alg none": (
        lambda f: forge({**f.header, "alg": "none"}, f.claims()),
        "only RS256",
    ),
    "alg none, lower and upper": (
        lambda f: forge({**f.header, "alg": "NoNe"}, f.claims()),
        "only RS256",
    ),
    "HS256 signed with the public key": (
        lambda f: forge({**f.header, "alg": "HS256"}, f.claims(), hmac_key=f.public_pem),
        "only RS256",
    ),
    "RS512": (
        lambda f: forge({**f.header, "alg": "RS512"}, f.claims(), rsa_key=f.keys.active.private),
        "only RS256",
    ),
    "embedded jwk": (
        lambda f: f.signed({**f.header, "jwk": jwk_of(f.keys.active.kid, f.keys.active.private)}),
        "embedded or remote keys",
    ),
    "jku header": (
        lambda f: f.signed({**f.header, "jku": "https://evil.example/jwks.json"}),
        "embedded or remote keys",
    ),
    "x5u header": (
        lambda f: f.signed({**f.header, "x5u": "https://evil.example/cert.pem"}),
        "embedded or remote keys",
    ),
    "x5c header": (
        lambda f: f.signed({**f.header, "x5c": ["MIIB"]}),
        "embedded or remote keys",
    ),
    "unknown crit": (
        lambda f: f.signed({**f.header, "crit": ["urn:evil"], "urn:evil": True}),
        "critical extension",
    ),
    "expired": (
        lambda f: f.signed(exp=NOW - 3600, iat=NOW - 7200, nbf=NOW - 7200),
        "expired",
    ),
    "not yet valid (nbf beyond the leeway)": (
        lambda f: f.signed(nbf=NOW + 600),
        "not yet valid (nbf)",
    ),
    "issued in the future (iat beyond the leeway)": (
        lambda f: f.signed(iat=NOW + 600, nbf=None),
        "not yet valid (iat)",
    ),
    "wrong aud": (
        lambda f: f.signed(aud="someone-else"),
        "Audience",
    ),
    "aud as a list": (
        lambda f: f.signed(aud=[f.settings.audience, "someone-else"]),
        "strict",
    ),
    "iss a prefix of ours": (
        lambda f: f.signed(iss=f.settings.issuer[:-1]),
        "Invalid issuer",
    ),
    "iss with a suffix": (
        lambda f: f.signed(iss=f.settings.issuer + ".evil.example"),
        "Invalid issuer",
    ),
    "iss with a path": (
        lambda f: f.signed(iss=f.settings.issuer + "/tenant"),
        "Invalid issuer",
    ),
    "missing exp": (
        lambda f: f.signed(exp=None),
        '"exp" claim',
    ),
    "missing iat": (
        lambda f: f.signed(iat=None),
        '"iat" claim',
    ),
    "missing sub": (
        lambda f: f.signed(sub=None),
        '"sub" claim',
    ),
    "missing iss": (
        lambda f: f.signed(iss=None),
        '"iss" claim',
    ),
    "missing aud": (
        lambda f: f.signed(aud=None),
        '"aud" claim',
    ),
    "typ JWT": (
        lambda f: f.signed({**f.header, "typ": "JWT"}),
        "typ must be at+jwt",
    ),
    "no typ": (
        lambda f: f.signed({"alg": "RS256", "kid": f.keys.active.kid}),
        "typ must be at+jwt",
    ),
    "kid carrying a path": (
        lambda f: f.signed({**f.header, "kid": "../../../../etc/passwd"}),
        "plain identifier",
    ),
    "kid carrying SQL": (
        lambda f: f.signed({**f.header, "kid": "x' OR '1'='1"}),
        "plain identifier",
    ),
    "kid '..'": (
        lambda f: f.signed({**f.header, "kid": ".."}),
        "plain identifier",
    ),
    "kid not a string": (
        lambda f: f.signed({**f.header, "kid": 7}),
        "Key ID",
    ),
    "no kid": (
        lambda f: f.signed({"alg": "RS256", "typ": "at+jwt"}),
        "plain identifier",
    ),
    "unknown kid": (
        lambda f: f.signed({**f.header, "kid": uuid.uuid4().hex}),
        "unknown key id",
    ),
    "our kid, another key": (
        lambda f: forge(f.header, f.claims(), rsa_key=new_rsa_key()),
        "Signature verification failed",
    ),
    "org not an id": (
        lambda f: f.signed(org="acme"),
        "organisation id",
    ),
    "not a JWT": (
        lambda f: "not-a-jwt",
        "malformed",
    ),
}


@pytest.fixture
def forger(settings: Settings, keys: KeyStore, tenant: Tenant) -> Forge:
    return Forge(settings, keys, tenant.org.id)


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(
        "/graphql", json={"query": ME}, headers={"Authorization": f"Bearer {token}"}
    )


async def test_a_well_formed_forged_token_is_accepted(
    forger: Forge, client: httpx.AsyncClient
) -> None:
    """The control: the forging helper makes tokens the server accepts, so each refusal below
    is down to the one defect it names."""
    response = await _me(client, forger.signed(nbf=NOW + 10))  # within the 30 s leeway
    assert response.status_code == 200, response.text
    assert response.json()["data"]["me"]["organizationId"] == str(forger.org)


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_refused_with_401(case: str, forger: Forge, client: httpx.AsyncClient) -> None:
    response = await _me(client, REFUSED[case][0](forger))
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "data" not in response.json()


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_for_its_own_reason(case: str, forger: Forge, settings: Settings) -> None:
    build, reason = REFUSED[case]
    verifier = TokenVerifier(
        LocalKeys(forger.keys), issuer=settings.issuer, audience=settings.audience
    )
    with pytest.raises(InvalidToken, match=re.escape(reason)):
        verifier.verify(build(forger))


async def test_missing_or_non_bearer_token_is_401(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}):
        response = await client.post("/graphql", json={"query": ME}, headers=headers)
        assert response.status_code == 401
        assert 'error="invalid_request"' in response.headers["www-authenticate"]


RECORD_USAGE = """
mutation($input: UsageEventInput!) {
  recordUsage(input: $input) { __typename ... on UsageRecorded { entry { id } } }
}"""
DEPOSIT = """
mutation($input: DepositInput!) {
  deposit(input: $input) { __typename }
}"""
LEDGER = "{ ledger(first: 50) { nodes { id } } }"


async def test_billing_read_token_calling_a_write_is_forbidden_and_writes_nothing(
    tenant: Tenant,
) -> None:
    reader = tenant.token_for(scopes=["billing:read"])
    usage = {
        "idempotencyKey": "forbidden-1",
        "accountId": str(tenant.account_id),
        "occurredAt": rfc(month(-11, 5, 10)),
        "provider": "openai",
        "model": "gpt-4o",
        "inputTokens": 10,
        "providerCost": "0.01",
        "providerCurrency": "USD",
    }
    deposit = {
        "idempotencyKey": "forbidden-2",
        "accountId": str(tenant.account_id),
        "amount": "10.00",
        "currency": "USD",
    }
    for query, variables in ((RECORD_USAGE, usage), (DEPOSIT, deposit)):
        body = await tenant.gql(query, {"input": variables}, token=reader)
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    # The same token reads (so the refusal is about the right, not the token) ...
    readable = await tenant.gql(LEDGER, token=reader)
    assert readable["data"]["ledger"]["nodes"] == []
    # ... and nothing was written.
    assert (await tenant.gql(LEDGER))["data"]["ledger"]["nodes"] == []


@pytest.mark.parametrize(
    ("roles", "scopes"),
    [
        ([], ["usage:write"]),
        ([], ["billing:write"]),
        (["finance_viewer"], None),
        (["member"], None),
    ],
)
async def test_only_org_admins_manage_clients(
    tenant: Tenant, roles: list[str], scopes: list[str] | None
) -> None:
    token = tenant.token_for(roles=roles, scopes=scopes)
    body = await tenant.gql(
        'mutation { registerOAuthClient(input: {name: "x", scopes: ["usage:write"]}) '
        "{ clientId } }",
        token=token,
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    listing = await tenant.gql("{ oauthClients { id } }", token=token)
    assert listing["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await tenant.gql("{ oauthClients { id } }"))["data"]["oauthClients"] == []


def _mint(store: KeyStore, settings: Settings) -> str:
    return mint_access_token(
        store.active,
        issuer=settings.issuer,
        audience=settings.audience,
        subject="rotation",
        organization_id=None,
        roles=["member"],
        ttl=timedelta(minutes=5),
    )


def test_rotation_new_key_signs_old_key_verifies_until_removed(
    tmp_path: Path, settings: Settings
) -> None:
    signer = KeyStore(tmp_path / "keys")  # e.g. `costgraph` in another process
    old = signer.ensure()
    server_store = KeyStore(tmp_path / "keys")
    server_store.reload()
    verifier = TokenVerifier(
        LocalKeys(server_store, min_reload_interval=0),
        issuer=settings.issuer,
        audience=settings.audience,
    )
    old_token = _mint(signer, settings)
    assert verifier.verify(old_token).subject == "rotation"

    time.sleep(0.01)  # a later mtime: the new key becomes the active one
    new = signer.rotate()
    assert signer.active.kid == new.kid != old.kid
    new_token = _mint(signer, settings)
    assert verifier.verify(new_token).subject == "rotation"  # picked up without a restart
    assert verifier.verify(old_token).subject == "rotation"  # the old key still verifies

    signer.remove(old.kid)
    server_store.reload()
    with pytest.raises(InvalidToken):
        verifier.verify(old_token)
    assert verifier.verify(new_token).subject == "rotation"
