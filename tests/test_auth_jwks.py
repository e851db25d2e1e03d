"""External identity providers: JWKS from a real local HTTP server or a file, bounded refetch,
rotation without restart, configurable claim names, and issuers kept apart."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from costgraph.auth.jwks import JwksFileKeys, JwksUrlKeys, parse_jwks
from costgraph.auth.keys import KeyStore
from costgraph.auth.verify import (
    ClaimNames,
    InvalidToken,
    LocalKeys,
    TokenVerifier,
    TrustedIssuer,
)
from tests.conftest import Tenant
from tests.identity_support import JwksServer, claims_for, forge, jwk_of, new_rsa_key

IDP = "https://idp.example.test/tenant-1"
IDP_AUDIENCE = "costgraph-api"


@pytest.fixture(scope="module")
def idp_keys() -> dict[str, rsa.RSAPrivateKey]:
    return {"idp-1": new_rsa_key(), "idp-2": new_rsa_key()}


@pytest.fixture
def idp_server(idp_keys: dict[str, rsa.RSAPrivateKey]) -> Iterator[JwksServer]:
    server = JwksServer()
    server.publish(("idp-1", idp_keys["idp-1"]))
    with server.running():
        yield server


def idp_token(kid: str, key: rsa.RSAPrivateKey, **claims: Any) -> str:
    header = {"alg": "RS256", "typ": "at+jwt", "kid": kid}
    return forge(header, claims_for(IDP, IDP_AUDIENCE, **claims), rsa_key=key)


def verifier_for(source: Any, settings: Settings, keys: KeyStore, **options: Any) -> TokenVerifier:
    return TokenVerifier(
        LocalKeys(keys),
        issuer=settings.issuer,
        audience=settings.audience,
        external=[TrustedIssuer(IDP, IDP_AUDIENCE, source, strict_audience=False, **options)],
    )


async def test_flood_of_random_kids_costs_one_fetch(
    idp_server: JwksServer,
    idp_keys: dict[str, rsa.RSAPrivateKey],
    settings: Settings,
    keys: KeyStore,
) -> None:
    source = JwksUrlKeys(idp_server.url, min_refetch_interval=60)
    verifier = verifier_for(source, settings, keys)
    signer = idp_keys["idp-1"]
    flood = [idp_token(uuid.uuid4().hex, signer) for _ in range(300)]

    async def refused(token: str) -> bool:
        try:
            await verifier.verify_async(token)
        except InvalidToken:
            return True
        return False

    assert all(await asyncio.gather(*(refused(t) for t in flood)))  # concurrently
    assert all([await refused(t) for t in flood[:100]])  # and one after another
    assert idp_server.requests == 1
    assert source.fetches == 1
    # The one fetch did load the provider's keys: its real kid verifies with no new request.
    principal = await verifier.verify_async(idp_token("idp-1", signer, sub="alice"))
    assert principal.subject == "alice"
    assert idp_server.requests == 1


async def test_provider_rotation_is_picked_up_without_restart(
    idp_server: JwksServer,
    idp_keys: dict[str, rsa.RSAPrivateKey],
    settings: Settings,
    keys: KeyStore,
) -> None:
    source = JwksUrlKeys(idp_server.url, min_refetch_interval=0.2)
    verifier = verifier_for(source, settings, keys)
    old_token = idp_token("idp-1", idp_keys["idp-1"])
    new_token = idp_token("idp-2", idp_keys["idp-2"])
    assert (await verifier.verify_async(old_token)).subject == "forger"

    idp_server.publish(("idp-2", idp_keys["idp-2"]))  # rotated: the old key is withdrawn
    with pytest.raises(InvalidToken):  # within the refetch interval: not fetched again
        await verifier.verify_async(new_token)
    assert idp_server.requests == 1
    await asyncio.sleep(0.25)
    assert (await verifier.verify_async(new_token)).subject == "forger"
    assert idp_server.requests == 2
    with pytest.raises(InvalidToken):
        await verifier.verify_async(old_token)  # the withdrawn key no longer verifies


async def test_failed_refetch_keeps_the_keys_it_had(
    idp_server: JwksServer,
    idp_keys: dict[str, rsa.RSAPrivateKey],
    settings: Settings,
    keys: KeyStore,
) -> None:
    source = JwksUrlKeys(idp_server.url, min_refetch_interval=0, max_age=0.05)
    verifier = verifier_for(source, settings, keys)
    token = idp_token("idp-1", idp_keys["idp-1"])
    assert (await verifier.verify_async(token)).subject == "forger"
    idp_server.status = 500
    await asyncio.sleep(0.1)  # the cache is stale now: the next check refetches, and fails
    assert (await verifier.verify_async(token)).subject == "forger"
    assert idp_server.requests == 2


def test_sync_verification_never_fetches(
    idp_server: JwksServer,
    idp_keys: dict[str, rsa.RSAPrivateKey],
    settings: Settings,
    keys: KeyStore,
) -> None:
    verifier = verifier_for(JwksUrlKeys(idp_server.url), settings, keys)
    with pytest.raises(InvalidToken, match="unknown key id"):
        verifier.verify(idp_token("idp-1", idp_keys["idp-1"]))
    assert idp_server.requests == 0


async def test_issuers_verify_only_with_their_own_keys(
    idp_server: JwksServer,
    idp_keys: dict[str, rsa.RSAPrivateKey],
    settings: Settings,
    keys: KeyStore,
    tenant: Tenant,
) -> None:
    verifier = verifier_for(JwksUrlKeys(idp_server.url), settings, keys)
    ours = claims_for(settings.issuer, settings.audience, tenant.org.id)
    # The provider's key signing a token that claims to be ours ...
    with pytest.raises(InvalidToken):
        await verifier.verify_async(
            forge(
                {"alg": "RS256", "typ": "at+jwt", "kid": "idp-1"}, ours, rsa_key=idp_keys["idp-1"]
            )
        )
    # ... and our key signing a token that claims to be the provider's.
    header = {"alg": "RS256", "typ": "at+jwt", "kid": keys.active.kid}
    with pytest.raises(InvalidToken):
        await verifier.verify_async(
            forge(header, claims_for(IDP, IDP_AUDIENCE), rsa_key=keys.active.private)
        )
    for issuer in (IDP + "/", IDP[:-1], "https://idp.example.test", IDP.upper()):
        with pytest.raises(InvalidToken, match="untrusted issuer"):
            await verifier.verify_async(
                forge(
                    {"alg": "RS256", "typ": "at+jwt", "kid": "idp-1"},
                    claims_for(issuer, IDP_AUDIENCE),
                    rsa_key=idp_keys["idp-1"],
                )
            )
    # Both issuers do verify their own tokens.
    assert (await verifier.verify_async(forge(header, ours, rsa_key=keys.active.private))).roles
    assert (await verifier.verify_async(idp_token("idp-1", idp_keys["idp-1"]))).subject


async def test_claim_names_of_the_provider_are_configurable(
    idp_server: JwksServer,
    idp_keys: dict[str, rsa.RSAPrivateKey],
    settings: Settings,
    keys: KeyStore,
) -> None:
    names = ClaimNames(
        organization="https://costgraph.example/org", roles="realm_access.roles", scope=""
    )
    verifier = verifier_for(JwksUrlKeys(idp_server.url), settings, keys, claims=names)
    org = uuid.uuid4()
    token = idp_token(
        "idp-1",
        idp_keys["idp-1"],
        roles=None,
        **{
            "https://costgraph.example/org": str(org),
            "realm_access": {"roles": ["finance_viewer"]},
            "scope": "openid profile",
            "aud": [IDP_AUDIENCE, "account"],
        },
    )
    principal = await verifier.verify_async(token)
    assert principal.organization_id == org
    assert principal.roles == {"finance_viewer"}
    assert principal.scopes is None  # an empty scope claim name: the IdP's scopes are not read


async def test_pinned_provider_speaks_for_one_organisation_only(
    idp_server: JwksServer,
    idp_keys: dict[str, rsa.RSAPrivateKey],
    settings: Settings,
    keys: KeyStore,
) -> None:
    pinned = uuid.uuid4()
    verifier = verifier_for(
        JwksUrlKeys(idp_server.url),
        settings,
        keys,
        organization_id=pinned,
        allowed_roles=frozenset({"org_admin", "finance_viewer", "member"}),
    )
    signer = idp_keys["idp-1"]
    principal = await verifier.verify_async(
        idp_token("idp-1", signer, roles=["platform_admin", "member"])
    )
    assert principal.organization_id == pinned
    assert principal.roles == {"member"}  # never platform_admin from a company's IdP
    with pytest.raises(InvalidToken, match="another organisation"):
        await verifier.verify_async(idp_token("idp-1", signer, org=str(uuid.uuid4())))


async def test_jwks_file_source_reloads_when_the_file_changes(
    tmp_path: Path, idp_keys: dict[str, rsa.RSAPrivateKey], settings: Settings, keys: KeyStore
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk_of("idp-1", idp_keys["idp-1"])]}))
    source = JwksFileKeys(path, min_reload_interval=0)
    verifier = verifier_for(source, settings, keys)
    old_token = idp_token("idp-1", idp_keys["idp-1"])
    new_token = idp_token("idp-2", idp_keys["idp-2"])
    assert verifier.verify(old_token).subject == "forger"
    with pytest.raises(InvalidToken):
        verifier.verify(new_token)

    path.write_text(json.dumps({"keys": [jwk_of("idp-2", idp_keys["idp-2"])]}))
    later = time.time() + 5
    os.utime(path, (later, later))
    assert (await verifier.verify_async(new_token)).subject == "forger"
    with pytest.raises(InvalidToken):
        verifier.verify(old_token)


def test_only_rs256_signing_keys_are_taken_from_a_jwks(
    idp_keys: dict[str, rsa.RSAPrivateKey],
) -> None:
    good = jwk_of("good", idp_keys["idp-1"])
    weak = jwk_of("weak", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    private = {**jwk_of("private", idp_keys["idp-2"]), "d": "AQAB"}
    document = {
        "keys": [
            good,
            weak,
            private,
            {**good, "kid": "../etc/passwd"},
            {**good, "kid": "enc", "use": "enc"},
            {**good, "kid": "ps256", "alg": "PS256"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not a key",
        ]
    }
    assert set(parse_jwks(document)) == {"good"}
    with pytest.raises(ValueError, match="keys"):
        parse_jwks({"keys": "nope"})


@pytest.fixture
async def idp_app(
    settings: Settings, database_url: str, idp_server: JwksServer, tenant: Tenant
) -> AsyncIterator[httpx.AsyncClient]:
    """The application configured, through settings, for a company's own identity provider."""
    configured = Settings(
        **{
            **settings.model_dump(),
            "idp_issuer": IDP,
            "idp_audience": IDP_AUDIENCE,
            "idp_jwks_url": idp_server.url,
            "idp_organization_id": tenant.org.id,
            "idp_roles_claim": "https://idp.example.test/roles",
            "jwks_min_refetch_seconds": 60,
        }
    )
    app = create_app(configured, database_url)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


async def test_provider_tokens_reach_graphql_through_settings(
    idp_app: httpx.AsyncClient,
    idp_server: JwksServer,
    idp_keys: dict[str, rsa.RSAPrivateKey],
    tenant: Tenant,
) -> None:
    query = {"query": "{ me { subject roles organizationId } organization { slug } }"}
    token = idp_token(
        "idp-1",
        idp_keys["idp-1"],
        sub="alice@company",
        roles=None,
        **{"https://idp.example.test/roles": ["finance_viewer"]},
    )
    response = await idp_app.post(
        "/graphql", json=query, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["me"] == {
        "subject": "alice@company",
        "roles": ["finance_viewer"],
        "organizationId": str(tenant.org.id),
    }
    assert data["organization"]["slug"] == tenant.org.slug
    # CostGraph's own tokens keep working beside the provider's.
    own = await idp_app.post(
        "/graphql", json=query, headers={"Authorization": f"Bearer {tenant.token}"}
    )
    assert own.json()["data"]["me"]["organizationId"] == str(tenant.org.id)
    # A random kid is refused without another fetch (the first request fetched once).
    stray = idp_token(uuid.uuid4().hex, idp_keys["idp-1"])
    refused = await idp_app.post(
        "/graphql", json=query, headers={"Authorization": f"Bearer {stray}"}
    )
    assert refused.status_code == 401
    assert idp_server.requests == 1


def test_settings_refuse_an_incomplete_or_insecure_provider(settings: Settings) -> None:
    base = settings.model_dump()
    bad: list[dict[str, Any]] = [
        {"idp_issuer": IDP},
        {"idp_jwks_url": "https://idp.example.test/jwks"},
        {"idp_issuer": IDP, "idp_jwks_url": "http://idp.example.test/jwks"},
        {"idp_issuer": settings.issuer, "idp_jwks_url": "https://idp.example.test/jwks"},
        {"idp_issuer": IDP, "idp_jwks_url": "https://a/j", "idp_jwks_file": "/tmp/j.json"},
    ]
    for update in bad:
        with pytest.raises(ValueError):
            Settings(**{**base, **update})
