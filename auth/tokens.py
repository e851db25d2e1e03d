"""Minting RS256 access tokens (RFC 9068 profile: ``typ: at+jwt``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import jwt

from costgraph.auth.keys import SigningKey


def mint_access_token(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    organization_id: uuid.UUID | None,
    roles: Iterable[str] = (),
    scopes: Iterable[str] | None = None,
    ttl: timedelta = timedelta(hours=1),
    client_id: str | None = None,
    now: datetime | None = None,
    accounts: Iterable[uuid.UUID] = (),
) -> str:
    issued = now or datetime.now(UTC)
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": int(issued.timestamp()),
        "nbf": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if organization_id is not None:
        claims["org"] = str(organization_id)
    role_list = sorted(set(roles))
    if role_list:
        claims["roles"] = role_list
    if scopes is not None:
        claims["scope"] = " ".join(sorted(set(scopes)))
    if client_id is not None:
        claims["client_id"] = client_id
    account_list = sorted({str(a) for a in accounts})
    if account_list:
        claims["accounts"] = account_list
    return jwt.encode(
        claims, key.private, algorithm="RS256", headers={"kid": key.kid, "typ": "at+jwt"}
    )
