"""JSON Web Key Sets of external identity providers: from a file or from a URL.

Both sources take only RSA signing keys with a plain ``kid``. The URL source caches the set,
refetches it when it grows old, and on an unknown ``kid`` — but never more than once per
``min_refetch_interval`` however many unknown kids arrive, and concurrent misses share one
fetch. A failed fetch keeps the keys it had. So a rotation at the provider is picked up
without a restart, and a flood of made-up kids cannot turn into a flood of requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from costgraph.auth.verify import KID_RE

logger = logging.getLogger("costgraph.auth.jwks")

MIN_KEY_BITS = 2048
MAX_JWKS_BYTES = 256 * 1024
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")


def parse_jwks(document: object) -> dict[str, rsa.RSAPublicKey]:
    """The usable keys of a JWKS document; keys that are not RS256 signing keys are skipped."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError('a JWKS is a JSON object with a "keys" array')
    keys: dict[str, rsa.RSAPublicKey] = {}
    for jwk in document["keys"]:
        key = _signing_key(jwk)
        if key is not None:
            keys[str(jwk["kid"])] = key
    return keys


def _signing_key(jwk: object) -> rsa.RSAPublicKey | None:
    if not isinstance(jwk, Mapping) or jwk.get("kty") != "RSA":
        return None
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not KID_RE.fullmatch(kid):
        return None
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
        return None
    if any(member in jwk for member in _PRIVATE_MEMBERS):
        logger.warning("JWKS key %s carries private members; ignored", kid)
        return None
    try:
        key = RSAAlgorithm.from_jwk(dict(jwk))
    except Exception:  # any malformed member: the key is unusable, the others still count
        logger.warning("JWKS key %s is malformed; ignored", kid)
        return None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_KEY_BITS:
        return None
    return key


class JwksFileKeys:
    """A JWKS kept in a file; re-read on an unknown kid when the file changed (bounded)."""

    def __init__(self, path: Path, min_reload_interval: float = 5.0) -> None:
        self.path = path
        self.min_reload_interval = min_reload_interval
        self._mtime = 0.0
        self._checked_at = 0.0
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._load()  # a missing or broken file stops the start with a clear message

    def _load(self) -> None:
        try:
            stat = self.path.stat()
            document = json.loads(self.path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the JWKS file {self.path}: {exc}") from exc
        self._keys = parse_jwks(document)
        self._mtime = stat.st_mtime
        self._checked_at = time.monotonic()

    def public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._checked_at >= self.min_reload_interval:
            self._checked_at = time.monotonic()
            try:
                if self.path.stat().st_mtime != self._mtime:
                    self._load()
            except (OSError, ValueError):
                logger.warning("JWKS file %s unreadable; keeping the keys loaded", self.path)
            key = self._keys.get(kid)
        return key


class JwksUrlKeys:
    """An identity provider's JWKS endpoint, cached, with bounded refetch."""

    def __init__(
        self,
        url: str,
        *,
        min_refetch_interval: float = 30.0,
        max_age: float = 3600.0,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.min_refetch_interval = min_refetch_interval
        self.max_age = max_age
        self.timeout = timeout
        self._transport = transport
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        #: Fetches attempted so far (successful or not); for metrics and tests.
        self.fetches = 0

    def public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        """From the cache only: synchronous callers never wait on the network."""
        return self._keys.get(kid)

    async def public_key_async(self, kid: str) -> rsa.RSAPublicKey | None:
        key = self._keys.get(kid)
        if key is not None and not self._stale():
            return key
        await self.refresh()
        return self._keys.get(kid)

    def _stale(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at >= self.max_age

    async def refresh(self) -> bool:
        """Fetch the set unless one was attempted within ``min_refetch_interval``."""
        async with self._lock:
            now = time.monotonic()
            if (
                self._attempted_at is not None
                and now - self._attempted_at < self.min_refetch_interval
            ):
                return False
            self._attempted_at = now
            self.fetches += 1
            try:
                keys = parse_jwks(await self._fetch())
            except (httpx.HTTPError, ValueError) as exc:
                logger.warning("JWKS fetch from %s failed: %s", self.url, exc)
                return False
            self._keys = keys
            self._fetched_at = time.monotonic()
            return True

    async def _fetch(self) -> Any:
        async with (
            httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, transport=self._transport
            ) as http,
            http.stream("GET", self.url, headers={"Accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
        return json.loads(body)
