"""Access-token verification: RS256 only, ``at+jwt`` only, keys by ``kid`` from a JWKS.

Everything suspicious in the header is refused before any key is looked up: other
algorithms (``none``, HS*), embedded or remote keys (``jwk``, ``jku``, ``x5u``, ``x5c``),
critical extensions we do not implement, and key ids that are not plain identifiers.

Tokens come from CostGraph itself (its own keys) and, optionally, from external identity
providers (:class:`TrustedIssuer`). The issuer is matched exactly, and each issuer verifies
only with its own keys, so one issuer's keys can never vouch for another's tokens.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from costgraph.auth.keys import KeyStore
from costgraph.auth.principal import Principal

#: A plain identifier: no slash, no quote, no space, not starting with a dot.
KID_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
_KID_RE = KID_RE  # the name used before; kept for imports elsewhere
_FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c")
_ACCEPTED_TYP = {"at+jwt", "application/at+jwt"}
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]


class InvalidToken(Exception):
    """The token is refused. The message is for logs; clients get a generic answer."""


class Verifier(Protocol):
    """What the HTTP gate and the websocket handshake need: a token in, a principal out."""

    def verify(self, token: str) -> Principal: ...

    async def verify_async(self, token: str) -> Principal: ...


class KeySource(Protocol):
    def public_key(self, kid: str) -> rsa.RSAPublicKey | None: ...


@runtime_checkable
class RefreshingKeySource(Protocol):
    """A key source that may fetch over the network on an unknown ``kid`` (bounded)."""

    def public_key(self, kid: str) -> rsa.RSAPublicKey | None: ...

    async def public_key_async(self, kid: str) -> rsa.RSAPublicKey | None: ...


class RevocationCheck(Protocol):
    def is_revoked(self, principal: Principal) -> bool: ...


@dataclass(frozen=True, slots=True)
class ClaimNames:
    """Where the principal's parts live in the token (configurable for external IdPs).

    A name is looked up as a top-level claim first; if there is none and the name has dots,
    it is followed as a path (``realm_access.roles``). An empty ``scope`` name means the
    issuer's scopes are not read at all (its people are limited by roles only).
    """

    organization: str = "org"
    roles: str = "roles"
    scope: str = "scope"
    #: The accounts a member's token is for: a list of account ids (or one id).
    accounts: str = "accounts"


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    """One issuer whose tokens are accepted, with the keys that verify them."""

    issuer: str
    audience: str
    keys: KeySource
    claims: ClaimNames = field(default_factory=ClaimNames)
    #: CostGraph's own tokens carry exactly one audience; IdPs often carry a list.
    strict_audience: bool = True
    #: When set, every token of this issuer belongs to this organisation (a company's own
    #: IdP): an ``org`` claim naming another organisation is refused.
    organization_id: uuid.UUID | None = None
    #: Roles this issuer may grant; others in its tokens are ignored. None: all of them.
    allowed_roles: frozenset[str] | None = None


class TokenVerifier:
    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: int = 30,
        claims: ClaimNames | None = None,
        external: Iterable[TrustedIssuer] = (),
        revocations: RevocationCheck | None = None,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway_seconds
        self.claims = claims or ClaimNames()
        self.revocations = revocations
        own = TrustedIssuer(issuer=issuer, audience=audience, keys=keys, claims=self.claims)
        self.issuers: dict[str, TrustedIssuer] = {issuer: own}
        for trusted in external:
            if trusted.issuer in self.issuers:
                raise ValueError(f"issuer {trusted.issuer!r} is configured twice")
            self.issuers[trusted.issuer] = trusted
        #: Issuers whose keys may be fetched on a miss (decided once: this is the hot path).
        self._refreshing: dict[str, RefreshingKeySource] = {
            iss: t.keys
            for iss, t in self.issuers.items()
            if isinstance(t.keys, RefreshingKeySource)
        }

    def verify(self, token: str) -> Principal:
        """Verify with the keys at hand (a remote JWKS is not fetched on this path)."""
        kid = self._check_header(_header(token))
        trusted = self._issuer_of(token)
        return self._finish(token, trusted, trusted.keys.public_key(kid))

    async def verify_async(self, token: str) -> Principal:
        """Verify; an unknown ``kid`` of a remote JWKS may trigger one bounded refetch."""
        kid = self._check_header(_header(token))
        trusted = self._issuer_of(token)
        refreshing = self._refreshing.get(trusted.issuer)
        if refreshing is not None:
            key = await refreshing.public_key_async(kid)
        else:
            key = trusted.keys.public_key(kid)
        return self._finish(token, trusted, key)

    def _finish(
        self, token: str, trusted: TrustedIssuer, key: rsa.RSAPublicKey | None
    ) -> Principal:
        if key is None:
            raise InvalidToken("unknown key id")
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=trusted.audience,
                issuer=trusted.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED_CLAIMS, "strict_aud": trusted.strict_audience},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        principal = _principal(payload, trusted)
        if self.revocations is not None and self.revocations.is_revoked(principal):
            raise InvalidToken("the token or its client was revoked")
        return principal

    def _check_header(self, header: Mapping[str, Any]) -> str:
        if header.get("alg") != "RS256":
            raise InvalidToken("only RS256 is accepted")
        if str(header.get("typ", "")).lower() not in _ACCEPTED_TYP:
            raise InvalidToken("typ must be at+jwt")
        if any(name in header for name in _FORBIDDEN_HEADERS):
            raise InvalidToken("embedded or remote keys are not accepted")
        if "crit" in header:
            raise InvalidToken("critical header extensions are not supported")
        kid = header.get("kid")
        if not isinstance(kid, str) or not KID_RE.fullmatch(kid):
            raise InvalidToken("kid missing or not a plain identifier")
        return kid

    def _issuer_of(self, token: str) -> TrustedIssuer:
        """The issuer configuration by exact ``iss``; verified again by the real decode."""
        if len(self.issuers) == 1:
            return self.issuers[self.issuer]
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from exc
        iss = unverified.get("iss")
        trusted = self.issuers.get(iss) if isinstance(iss, str) else None
        if trusted is None:
            raise InvalidToken("untrusted issuer")
        return trusted


def _header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"malformed token: {exc}") from exc


def claim(payload: Mapping[str, Any], name: str) -> Any:
    """A claim by name, or by dotted path when there is no top-level claim of that name."""
    if not name:
        return None
    if name in payload or "." not in name:
        return payload.get(name)
    value: Any = payload
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _principal(payload: Mapping[str, Any], trusted: TrustedIssuer) -> Principal:
    names = trusted.claims
    org_claim = claim(payload, names.organization)
    try:
        organization_id = None if org_claim is None else uuid.UUID(str(org_claim))
    except ValueError as exc:
        raise InvalidToken("org claim is not an organisation id") from exc
    if trusted.organization_id is not None:
        if organization_id not in (None, trusted.organization_id):
            raise InvalidToken("this issuer may not name another organisation")
        organization_id = trusted.organization_id
    roles = claim(payload, names.roles)
    if roles is None:
        roles = []
    if isinstance(roles, str):
        roles = roles.split()
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidToken("roles claim must be a list of strings")
    granted = frozenset(roles)
    if trusted.allowed_roles is not None:
        granted &= trusted.allowed_roles
    scope = claim(payload, names.scope)
    if scope is not None and not isinstance(scope, str):
        raise InvalidToken("scope claim must be a space-separated string")
    client_id = payload.get("client_id")
    token_id = payload.get("jti")
    accounts = claim(payload, names.accounts)
    if isinstance(accounts, str):
        accounts = [accounts]
    if accounts is None:
        accounts = []
    if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
        raise InvalidToken("accounts claim must be a list of account ids")
    try:
        account_ids = frozenset(uuid.UUID(a) for a in accounts)
    except ValueError as exc:
        raise InvalidToken("accounts claim holds something else than an account id") from exc
    return Principal(
        subject=str(payload["sub"]),
        organization_id=organization_id,
        roles=granted,
        scopes=None if scope is None else frozenset(scope.split()),
        expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
        client_id=client_id if isinstance(client_id, str) else None,
        token_id=token_id if isinstance(token_id, str) else None,
        account_ids=account_ids,
    )


class LocalKeys:
    """CostGraph's own keys; an unknown kid reloads the key directory at most every few seconds,
    so a key rotated by another process verifies without a restart."""

    def __init__(self, store: KeyStore, min_reload_interval: float = 5.0) -> None:
        self.store = store
        self.min_reload_interval = min_reload_interval

    def public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        key = self.store.get(kid)
        if key is None and self.store.seconds_since_reload() >= self.min_reload_interval:
            self.store.reload()
            key = self.store.get(kid)
        return None if key is None else key.public
