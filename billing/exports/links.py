"""Signed download links: a short-lived JWT (RS256, the service's own signing keys, via
PyJWT) that carries the whole request, so the URL is ``/exports/{report}.csv?token=...``
and nothing in it can be changed without breaking the signature.

The token is bound to the organisation, the principal (subject, roles, scopes, client and
the access token's id, so a revocation of either also kills the link), the report, its
parameters and an expiry no later than the access token's own. Its ``typ`` header
(``export-link+jwt``) and audience (``<audience>:exports``) differ from an access token's,
so neither can stand in for the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from costgraph.auth.keys import SigningKey
from costgraph.auth.principal import Principal

TYP = "export-link+jwt"


class LinkRefused(Exception):
    """The link is not valid; the message says why (safe to show)."""


@dataclass(frozen=True, slots=True)
class Link:
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LinkClaims:
    principal: Principal
    report: str
    params: dict[str, str]


def audience_of(audience: str) -> str:
    return f"{audience}:exports"


def sign(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    principal: Principal,
    report: str,
    params: Mapping[str, str],
    ttl: timedelta,
    now: datetime | None = None,
) -> Link:
    issued = now or datetime.now(UTC)
    expires = min(issued + ttl, principal.expires_at)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience_of(audience),
        "sub": principal.subject,
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": uuid.uuid4().hex,
        "org": str(principal.organization_id),
        "roles": sorted(principal.roles),
        "rep": report,
        "prm": dict(params),
    }
    if principal.scopes is not None:
        claims["scope"] = " ".join(sorted(principal.scopes))
    if principal.client_id is not None:
        claims["client_id"] = principal.client_id
    if principal.token_id is not None:
        claims["atj"] = principal.token_id
    token = jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid, "typ": TYP})
    return Link(token, datetime.fromtimestamp(claims["exp"], UTC))


def verify(
    token: str,
    *,
    public_key: Callable[[str], rsa.RSAPublicKey | None],
    issuer: str,
    audience: str,
    report: str,
    leeway: int = 0,
) -> LinkClaims:
    """The link's claims, or :class:`LinkRefused` saying why (expired, or not valid)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise LinkRefused("the download link is not valid") from None
    key = public_key(str(header.get("kid", "")))
    if header.get("alg") != "RS256" or header.get("typ") != TYP or key is None:
        raise LinkRefused("the download link is not valid")
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=audience_of(audience),
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "org", "rep", "prm"]},
        )
    except jwt.ExpiredSignatureError:
        raise LinkRefused("the download link has expired: create a new one") from None
    except jwt.PyJWTError:
        raise LinkRefused("the download link is not valid") from None
    params = payload["prm"]
    if payload["rep"] != report or not isinstance(params, dict):
        raise LinkRefused("the download link is not valid for this report")
    scope = payload.get("scope")
    principal = Principal(
        subject=str(payload["sub"]),
        organization_id=uuid.UUID(str(payload["org"])),
        roles=frozenset(str(r) for r in payload.get("roles") or ()),
        scopes=None if scope is None else frozenset(str(scope).split()),
        expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
        client_id=payload.get("client_id"),
        token_id=payload.get("atj"),
    )
    return LinkClaims(principal, report, {str(k): str(v) for k, v in params.items()})
