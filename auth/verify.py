"""Access-token verification: RS256 only, ``at+jwt`` only, keys by ``kid`` from a JWKS.

Everything suspicious in the header is refused before any key is looked up: other
algorithms (``none``, HS*), embedded or remote keys (``jwk``, ``jku``, ``x5u``, ``x5c``),
critical extensions we do not implement, and key ids that are not plain identifiers.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from costgraph.auth.principal import Principal

_KID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c")
_ACCEPTED_TYP = {"at+jwt", "application/at+jwt"}


class InvalidToken(Exception):
    """The token is refused. The message is for logs; clients get a generic answer."""


class KeySource(Protocol):
    def public_key(self, kid: str) -> rsa.RSAPublicKey | None: ...


@dataclass(frozen=True, slots=True)
class ClaimNames:
    """Where the principal's parts live in the token (configurable for external IdPs)."""

    organization: str = "org"
    roles: str = "roles"
    scope: str = "scope"


class TokenVerifier:
    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: int = 30,
        claims: ClaimNames | None = None,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway_seconds
        self.claims = claims or ClaimNames()

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from exc
        self._check_header(header)
        key = self.keys.public_key(header["kid"])
        if key is None:
            raise InvalidToken("unknown key id")
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"], "strict_aud": True},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        return self._principal(payload)

    def _check_header(self, header: Mapping[str, Any]) -> None:
        if header.get("alg") != "RS256":
            raise InvalidToken("only RS256 is accepted")
        if str(header.get("typ", "")).lower() not in _ACCEPTED_TYP:
            raise InvalidToken("typ must be at+jwt")
        if any(name in header for name in _FORBIDDEN_HEADERS):
            raise InvalidToken("embedded or remote keys are not accepted")
        if "crit" in header:
            raise InvalidToken("critical header extensions are not supported")
        kid = header.get("kid")
        if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
            raise InvalidToken("kid missing or not a plain identifier")

    def _principal(self, payload: Mapping[str, Any]) -> Principal:
        org_claim = payload.get(self.claims.organization)
        try:
            organization_id = None if org_claim is None else uuid.UUID(str(org_claim))
        except ValueError as exc:
            raise InvalidToken("org claim is not an organisation id") from exc
        roles = payload.get(self.claims.roles, [])
        if isinstance(roles, str):
            roles = roles.split()
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidToken("roles claim must be a list of strings")
        scope = payload.get(self.claims.scope)
        if scope is not None and not isinstance(scope, str):
            raise InvalidToken("scope claim must be a space-separated string")
        return Principal(
            subject=str(payload["sub"]),
            organization_id=organization_id,
            roles=frozenset(roles),
            scopes=None if scope is None else frozenset(scope.split()),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
            client_id=payload.get("client_id"),
            token_id=payload.get("jti"),
        )


class LocalKeys:
    """CostGraph's own keys; an unknown kid reloads the key directory at most every few seconds,
    so a key rotated by another process verifies without a restart."""

    def __init__(self, store: Any, min_reload_interval: float = 5.0) -> None:
        self.store = store
        self.min_reload_interval = min_reload_interval

    def public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        key = self.store.get(kid)
        if key is None and self.store.seconds_since_reload() >= self.min_reload_interval:
            self.store.reload()
            key = self.store.get(kid)
        return None if key is None else key.public  # type: ignore[no-any-return]
